"""The outputs file of a local run: the Pulumi stack output names, plus a `local` section.

Written once everything is ready (and rewritten when a service restarts, so pids stay
true), atomically, 0600 because it holds the dev key. Tests and the live checks wait
for it to appear; it is removed when the stack stops.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llm_stack.local.plan import LocalPlan, LocalSecrets, ServiceSpec
from llm_stack.shared.labels import NGINX

KIND = "local"


def service_entry(spec: ServiceSpec, pid: int) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": spec.name,
        "role": spec.role,
        "address": "127.0.0.1",
        "port": spec.port,
        "pid": pid,
        "log": str(spec.log),
    }
    if spec.ports:
        entry["ports"] = dict(spec.ports)
    return entry


def build_outputs(
    plan: LocalPlan,
    secrets: LocalSecrets,
    pids: Sequence[tuple[ServiceSpec, int]],
    stack_pid: int,
) -> dict[str, Any]:
    config, layout, ports = plan.config, plan.layout, plan.ports
    edge_ports = [
        {"name": "https", "role": NGINX, "address": "127.0.0.1", "port": ports.https,
         "containerPort": None},
        {"name": "http", "role": NGINX, "address": "127.0.0.1", "port": ports.http,
         "containerPort": None},
    ]  # fmt: skip
    real = plan.real_ollama
    ollama: dict[str, Any] = {
        "real": real is not None,
        "url": real.url if real is not None else None,
        "version": real.version if real is not None else None,
        "emulators": [f"http://127.0.0.1:{p}" for p in ports.emulators] if real is None else [],
        "upstreams": plan.upstreams,
    }
    return {
        "environment": config.environment,
        "namePrefix": config.name_prefix,
        "gatewayUrl": plan.edge_url,
        # Grafana does not run locally (no Debian package); its files are rendered.
        "grafanaUrl": None,
        "edgePorts": edge_ports,
        "models": list(config.ollama.models),
        "devApiKey": secrets.dev_key,
        # Local only: an admin key (name dev-admin) for /admin/* and the usage report.
        "devAdminApiKey": secrets.admin_key,
        "local": {
            "kind": KIND,
            "stack": plan.source.stack,
            "stackFile": str(plan.source.path),
            "pid": stack_pid,
            "workdir": str(layout.workdir),
            "logs": str(layout.logs),
            "caCert": str(layout.cert),
            # The state Redis's URL (with its password), 0600: GATEWAY_REDIS_URL for
            # `llm-gateway usage`.
            "redisUrlFile": str(layout.redis_url_file),
            "prometheusUrl": plan.prometheus_url,
            "balancerUrl": plan.balancer_url,
            "grafanaProvisioning": str(layout.grafana_provisioning),
            "grafanaDashboards": str(layout.grafana_dashboards),
            "ollama": ollama,
            "services": [service_entry(spec, pid) for spec, pid in pids],
        },
    }


def write_outputs(path: Path, outputs: dict[str, Any]) -> None:
    """Replace `path` atomically with the outputs (0600: it holds the dev key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(outputs, handle, indent=2, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def remove_outputs(path: Path) -> None:
    path.unlink(missing_ok=True)
