"""Every file a local run needs, rendered into the work dir from the plan.

nginx.conf, prometheus.yml + alert rules and the Grafana provisioning come from the
same renderers the Pulumi program uploads into containers. Files holding credentials
(redis.conf with `requirepass`, the gateway keys file) are 0600, in a 0700 work dir.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llm_config.api_keys import keys_file_text
from llm_gateway.contract import digest_of
from llm_monitoring.grafana import grafana_files
from llm_monitoring.prometheus import prometheus_files
from llm_nginx import render_nginx_conf

from llm_stack.local.errors import LocalStackError
from llm_stack.local.plan import LocalPlan, LocalSecrets, redis_url
from llm_stack.local.ports import LOOPBACK
from llm_stack.local.source import DEV_ADMIN_KEY_NAME, DEV_KEY_NAME
from llm_stack.redis_conf import render_redis_conf


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, readable by this user only, replacing any old file."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def gateway_keys(secrets: LocalSecrets, stack_keys: Mapping[str, Any]) -> dict[str, Any]:
    """The minted dev keys (by digest) and the stack file's own plain keys."""
    keys = {**stack_keys, DEV_KEY_NAME: {"digest": digest_of(secrets.dev_key)}}
    if secrets.admin_key:
        keys[DEV_ADMIN_KEY_NAME] = {"digest": digest_of(secrets.admin_key), "admin": True}
    return keys


def rendered_files(plan: LocalPlan, secrets: LocalSecrets) -> dict[Path, str]:
    """Path -> text of every rendered file (pure: nothing is written)."""
    config, layout = plan.config, plan.layout
    files: dict[Path, str] = {
        layout.nginx_conf: render_nginx_conf(config, plan.nginx_topology),
        layout.redis_conf: render_redis_conf(
            config,
            secrets.redis_password,
            role="state",
            port=plan.ports.redis,
            bind=LOOPBACK,
            data_dir=str(layout.redis),
        ),
        layout.redis_cache_conf: render_redis_conf(
            config,
            secrets.redis_password,
            role="cache",
            port=plan.ports.redis_cache,
            bind=LOOPBACK,
            data_dir=str(layout.redis_cache),
        ),
        layout.keys_file: keys_file_text(gateway_keys(secrets, plan.source.api_keys)),
        # For `llm-gateway usage` (GATEWAY_REDIS_URL="$(cat <file>)"): the state Redis.
        layout.redis_url_file: redis_url(plan.ports.redis, secrets.redis_password) + "\n",
    }
    for path, text in prometheus_files(config, plan.scrape_targets, str(layout.prometheus)).items():
        files[Path(path)] = text
    grafana = grafana_files(
        config,
        plan.prometheus_url,
        provisioning_dir=str(layout.grafana_provisioning),
        dashboards_dir=str(layout.grafana_dashboards),
    )
    for path, text in grafana.items():
        files[Path(path)] = text
    return files


def prepare_workdir(plan: LocalPlan) -> None:
    """The work dir and every service's directory, private to this user."""
    layout = plan.layout
    for directory in (
        layout.workdir,
        layout.logs,
        layout.tls,
        layout.nginx,
        layout.redis,
        layout.redis_cache,
        layout.gateway,
        layout.prometheus,
        layout.prometheus_data,
        layout.grafana,
        layout.grafana_provisioning,
        layout.grafana_dashboards,
    ):
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
    # Each run starts with fresh logs (a restart within the run appends); the previous
    # run's are kept as <name>.log.1, the evidence of what happened before a restart.
    logs = [spec.log for spec in plan.services]
    logs += [layout.log(name) for name in ("nginx-access", "nginx-error")]
    for log in logs:
        if log.exists() and log.stat().st_size > 0:
            os.replace(log, log.with_name(log.name + ".1"))
        log.write_bytes(b"")
        os.chmod(log, 0o600)


def write_files(plan: LocalPlan, secrets: LocalSecrets) -> list[Path]:
    written = []
    for path, text in rendered_files(plan, secrets).items():
        write_private(path, text)
        written.append(path)
    return written


def check_nginx_conf(nginx: str, plan: LocalPlan) -> None:
    """`nginx -t` on the rendered config: a rejected render fails before anything runs."""
    layout = plan.layout
    result = subprocess.run(
        [nginx, "-t", "-q", "-p", str(layout.nginx), "-c", str(layout.nginx_conf),
         "-e", plan.nginx_topology.error_log],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise LocalStackError(
            f"nginx rejected the rendered config {layout.nginx_conf}:\n"
            f"{(result.stderr + result.stdout).strip()}",
            "this is a bug in the renderer or an nginx too old for it (1.22+ is tested); "
            "please report it with the message above",
        )
