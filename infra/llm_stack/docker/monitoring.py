"""Monitoring: Prometheus, Grafana, the nginx exporter and (with GPUs) the DCGM exporter.

Every config file uploaded here comes from `llm_monitoring`'s renderers, the same ones
the local stack writes to disk. Grafana's admin password is uploaded as a file too and
applied at every start (`grafana_start_script`), so rotating it takes effect.
Prometheus and the exporters live on the internal network only; Grafana also joins the
edge network to publish its port, bound to the address the stack config gives.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker
from llm_config.model import MonitoringConfig, StackConfig
from llm_monitoring.grafana import grafana_files
from llm_monitoring.prometheus import ScrapeTargets, prometheus_args, prometheus_files
from llm_nginx import STUB_STATUS_PATH

from llm_stack.docker import containers as c
from llm_stack.docker.network import StackNetworks
from llm_stack.docker.volumes import StackVolumes
from llm_stack.shared.labels import (
    GPU_EXPORTER,
    GRAFANA,
    NGINX_EXPORTER,
    NO_HEALTHCHECK_LABEL,
    PROMETHEUS,
    WILDCARD_BIND_LABEL,
)
from llm_stack.shared.names import (
    GPU_EXPORTER_PORT,
    GRAFANA_PORT,
    NGINX_EXPORTER_PORT,
    PROMETHEUS_PORT,
    StackNames,
)
from llm_stack.shared.secrets import secret_text

PROMETHEUS_CONFIG_DIR = "/etc/prometheus"
PROMETHEUS_DATA_DIR = "/prometheus"
GRAFANA_PROVISIONING_DIR = "/etc/grafana/provisioning"
# Outside Grafana's data volume: the image's files, replaced with the container.
GRAFANA_DASHBOARDS_DIR = "/etc/grafana/dashboards"
GRAFANA_DATA_DIR = "/var/lib/grafana"


def scrape_targets(config: StackConfig, gateway_addresses: Sequence[str]) -> ScrapeTargets:
    names = StackNames.of(config)
    return ScrapeTargets(
        gateways=list(gateway_addresses),
        nginx_exporter=f"{names.nginx_exporter}:{NGINX_EXPORTER_PORT}",
        gpu_exporters=(
            [f"{names.gpu_exporter}:{GPU_EXPORTER_PORT}"] if config.ollama.uses_gpus else []
        ),
        prometheus=f"{names.prometheus}:{PROMETHEUS_PORT}",
    )


def prometheus_uploads(config: StackConfig, gateway_addresses: Sequence[str]) -> dict[str, str]:
    """Path -> text of the files uploaded into the Prometheus container."""
    return prometheus_files(
        config, scrape_targets(config, gateway_addresses), PROMETHEUS_CONFIG_DIR
    )


def prometheus_command(config: StackConfig) -> list[str]:
    """The prometheus binary's flags inside its container."""
    return prometheus_args(config, f"{PROMETHEUS_CONFIG_DIR}/prometheus.yml", PROMETHEUS_DATA_DIR)


def grafana_uploads(config: StackConfig) -> dict[str, str]:
    """Path -> text of the provisioning and dashboards uploaded into Grafana."""
    names = StackNames.of(config)
    return grafana_files(
        config,
        f"http://{names.prometheus}:{PROMETHEUS_PORT}",
        provisioning_dir=GRAFANA_PROVISIONING_DIR,
        dashboards_dir=GRAFANA_DASHBOARDS_DIR,
    )


def grafana_url(config: StackConfig) -> str | None:
    grafana = config.monitoring.grafana
    if not grafana.enabled:
        return None
    host = grafana.bind_address
    address = ipaddress.ip_address(host)
    if address.is_unspecified:
        host = config.edge.hostname
    elif address.version == 6:
        host = f"[{host}]"
    return f"http://{host}:{grafana.port}"


# The DCGM exporter reports on every GPU of the host. One device request for all of
# them: the provider reads `all` back as `all`, while a list (`device=0,1`) is split by
# Docker's CSV parser into `device=0` plus a count, refused by the engine or read back
# as `device=0` and replaced on every run.
GPU_EXPORTER_GPUS = "all"

GRAFANA_RUN_SH = "/run.sh"
# Readable by the grafana user through its group (the image runs it as uid 472, gid 0);
# not by others.
GRAFANA_PASSWORD_FILE = "/etc/grafana/admin-password"  # noqa: S105 (a path)
GRAFANA_PASSWORD_FILE_MODE = "0440"  # noqa: S105 (a file mode)


def grafana_start_script(run_sh: str = GRAFANA_RUN_SH) -> str:
    """The Grafana container's start: set the admin password from its file, then `run_sh`.

    Grafana applies GF_SECURITY_ADMIN_PASSWORD only when it creates its database, so a
    rotated `grafanaAdminPassword` would otherwise never reach a running stack. A new
    password replaces the container (it is an uploaded file) and this sets it before
    the server starts. The password goes to the CLI on stdin, never in argv. On the very
    first start there is no admin user yet: the reset fails, and the server creates the
    admin from GF_SECURITY_ADMIN_PASSWORD__FILE (which `run_sh` reads).
    """
    return f"""\
set -u
log=/tmp/reset-admin-password.log
if grafana cli --homepath "$GF_PATHS_HOME" --config "$GF_PATHS_CONFIG" \\
    admin reset-admin-password --password-from-stdin \\
    < "$GF_SECURITY_ADMIN_PASSWORD__FILE" >"$log" 2>&1; then
  echo "grafana-start: admin password set from $GF_SECURITY_ADMIN_PASSWORD__FILE"
else
  echo "grafana-start: admin password not reset (normal on a first start: no admin yet):"
  tail -n 3 "$log"
fi
exec {run_sh} "$@"
"""


def _wget(url: str) -> list[str]:
    # Both images are busybox/alpine based: wget is there, curl is not.
    return ["CMD", "wget", "-q", "-O", "/dev/null", url]


@dataclass(frozen=True)
class MonitoringArgs:
    names: StackNames
    monitoring: MonitoringConfig
    # The DCGM exporter runs only on a GPU host.
    uses_gpus: bool
    # nginx's stub_status listener, scraped by the exporter.
    nginx_status_port: int
    # Rendered by `llm_monitoring`: Prometheus's flags and files, Grafana's files.
    prometheus_command: Sequence[str]
    prometheus_files: Mapping[str, str]
    grafana_files: Mapping[str, str]
    grafana_url: str | None
    grafana_admin_password: pulumi.Output[str] | None
    networks: StackNetworks
    volumes: StackVolumes


class Monitoring(pulumi.ComponentResource):
    prometheus: docker.Container
    grafana: docker.Container | None
    nginx_exporter: docker.Container
    gpu_exporter: docker.Container | None

    def __init__(
        self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("llm-stack:monitoring:Monitoring", name, None, opts)
        self._args = args
        self._child = pulumi.ResourceOptions(parent=self, delete_before_replace=True)
        self.prometheus = self._prometheus()
        self.nginx_exporter = self._nginx_exporter()
        self.gpu_exporter = self._gpu_exporter() if args.uses_gpus else None
        self.grafana = self._grafana() if args.monitoring.grafana.enabled else None
        self.register_outputs({"prometheus": self.prometheus.name})

    def _prometheus(self) -> docker.Container:
        args = self._args
        image = c.pinned_image("prometheus-image", args.monitoring.prometheus_image, self)
        return docker.Container(
            "prometheus",
            name=args.names.prometheus,
            image=image.image_id,
            command=list(args.prometheus_command),
            uploads=[c.upload(path, text) for path, text in sorted(args.prometheus_files.items())],
            volumes=[c.volume(args.volumes.prometheus, PROMETHEUS_DATA_DIR)],
            networks_advanced=c.networks([args.networks.internal]),
            restart="unless-stopped",
            healthcheck=c.healthcheck(_wget(f"http://127.0.0.1:{PROMETHEUS_PORT}/-/ready")),
            labels=c.labels(PROMETHEUS, args.names.prefix),
            opts=self._child,
        )

    def _nginx_exporter(self) -> docker.Container:
        args, names = self._args, self._args.names
        image = c.pinned_image("nginx-exporter-image", args.monitoring.nginx_exporter_image, self)
        scrape_uri = f"http://{names.nginx}:{args.nginx_status_port}{STUB_STATUS_PATH}"
        return docker.Container(
            "nginx-exporter",
            name=names.nginx_exporter,
            image=image.image_id,
            command=[f"--nginx.scrape-uri={scrape_uri}"],
            networks_advanced=c.networks([args.networks.internal]),
            restart="unless-stopped",
            labels=c.labels(
                NGINX_EXPORTER,
                names.prefix,
                {
                    NO_HEALTHCHECK_LABEL: (
                        "scratch image, no shell or HTTP client inside; "
                        'Prometheus watches up{job="nginx"} and nginx_up'
                    )
                },
            ),
            opts=self._child,
        )

    def _gpu_exporter(self) -> docker.Container:
        args = self._args
        image = c.pinned_image("gpu-exporter-image", args.monitoring.gpu_exporter_image, self)
        return docker.Container(
            "gpu-exporter",
            name=args.names.gpu_exporter,
            image=image.image_id,
            gpus=GPU_EXPORTER_GPUS,
            networks_advanced=c.networks([args.networks.internal]),
            restart="unless-stopped",
            # Ubuntu-based image without curl: bash opens the port itself.
            healthcheck=c.healthcheck(
                ["CMD", "bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{GPU_EXPORTER_PORT}"],
                start_period_seconds=30,
            ),
            labels=c.labels(GPU_EXPORTER, args.names.prefix),
            opts=self._child,
        )

    def _grafana(self) -> docker.Container:
        args = self._args
        if args.grafana_admin_password is None or args.volumes.grafana is None:
            raise ValueError("Grafana is enabled but has no admin password or data volume")
        grafana = args.monitoring.grafana
        image = c.pinned_image("grafana-image", grafana.image, self)
        wildcard = ipaddress.ip_address(grafana.bind_address).is_unspecified
        plain_env = {
            "GF_SECURITY_ADMIN_USER": "admin",
            "GF_AUTH_ANONYMOUS_ENABLED": "false",
            "GF_USERS_ALLOW_SIGN_UP": "false",
            "GF_ANALYTICS_REPORTING_ENABLED": "false",
            "GF_ANALYTICS_CHECK_FOR_UPDATES": "false",
            "GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES": "false",
            "GF_PATHS_PROVISIONING": GRAFANA_PROVISIONING_DIR,
            "GF_SERVER_ROOT_URL": args.grafana_url or "",
        }
        return docker.Container(
            "grafana",
            name=args.names.grafana,
            image=image.image_id,
            # The password travels as a file (the image's /run.sh reads *__FILE
            # variables), so `docker inspect` shows its path, not its value.
            envs=c.env_list(
                {**plain_env, "GF_SECURITY_ADMIN_PASSWORD__FILE": GRAFANA_PASSWORD_FILE}
            ),
            entrypoints=["/bin/sh", "-c", grafana_start_script(), "grafana-start"],
            uploads=[
                *[c.upload(path, text) for path, text in sorted(args.grafana_files.items())],
                c.upload(
                    GRAFANA_PASSWORD_FILE,
                    secret_text(args.grafana_admin_password),
                    permissions=GRAFANA_PASSWORD_FILE_MODE,
                ),
            ],
            ports=[
                docker.ContainerPortArgs(
                    internal=GRAFANA_PORT, external=grafana.port, ip=grafana.bind_address
                )
            ],
            volumes=[c.volume(args.volumes.grafana, GRAFANA_DATA_DIR)],
            networks_advanced=c.networks([args.networks.internal, args.networks.edge]),
            restart="unless-stopped",
            # A first start creates and migrates the database (in the password reset,
            # before the server starts): give it a minute.
            healthcheck=c.healthcheck(
                _wget(f"http://127.0.0.1:{GRAFANA_PORT}/api/health"), start_period_seconds=60
            ),
            labels=c.labels(
                GRAFANA, args.names.prefix, {WILDCARD_BIND_LABEL: "true"} if wildcard else None
            ),
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[self.prometheus], delete_before_replace=True
            ),
        )
