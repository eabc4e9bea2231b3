"""The nginx container: TLS edge in front of the gateways, least_conn balancer in front
of the Ollama pool, and a stub_status page for the exporter.

Its nginx.conf is `llm_nginx.render_nginx_conf` for a topology of container names
and in-container paths; the certificate and key are uploaded next to it (the key as
a secret). It joins the edge network (where its ports are published, bound to the
stack's bind address) and the internal network (where it reaches everything else).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_docker as docker
from llm_config.model import EdgeConfig, StackConfig
from llm_nginx import (
    CONTAINER_CERT_PATH,
    CONTAINER_CONF_PATH,
    CONTAINER_HTTP_PORT,
    CONTAINER_HTTPS_PORT,
    CONTAINER_KEY_PATH,
    STUB_STATUS_PATH,
    container_topology,
    render_nginx_conf,
)

from llm_stack.docker import containers as c
from llm_stack.docker.network import StackNetworks
from llm_stack.shared.labels import NGINX, WILDCARD_BIND_LABEL
from llm_stack.shared.names import StackNames
from llm_stack.shared.tls import EdgeCertificate


def render_edge_conf(
    config: StackConfig, gateway_addresses: Sequence[str], ollama_addresses: Sequence[str]
) -> str:
    """The nginx.conf uploaded into the nginx container (names on the internal network)."""
    topology = container_topology(config, list(gateway_addresses), list(ollama_addresses))
    return render_nginx_conf(config, topology)


@dataclass(frozen=True)
class EdgeArgs:
    names: StackNames
    edge: EdgeConfig
    # The balancer's stub_status listener, for the healthcheck.
    status_port: int
    # nginx.conf (`render_edge_conf`).
    conf: str
    certificate: EdgeCertificate
    networks: StackNetworks
    # Start nginx once its upstreams exist, so the first requests find them.
    depends_on: Sequence[pulumi.Resource]


class Edge(pulumi.ComponentResource):
    container: docker.Container
    # What the stack publishes on the host, for the stack outputs.
    published_ports: list[dict[str, Any]]

    def __init__(
        self, name: str, args: EdgeArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("llm-stack:edge:Nginx", name, None, opts)
        self._args = args
        self.container = self._nginx()
        self.published_ports = published_ports(args.edge)
        self.register_outputs({"name": self.container.name})

    def _nginx(self) -> docker.Container:
        args, edge = self._args, self._args.edge
        image = c.pinned_image("nginx-image", edge.image, self)
        wildcard = ipaddress.ip_address(edge.bind_address).is_unspecified
        return docker.Container(
            "nginx",
            name=args.names.nginx,
            image=image.image_id,
            uploads=[
                c.upload(CONTAINER_CONF_PATH, args.conf),
                c.upload(CONTAINER_CERT_PATH, args.certificate.cert_pem),
                # Read by the root master process only.
                c.upload(CONTAINER_KEY_PATH, args.certificate.key_pem, permissions="0600"),
            ],
            ports=[
                docker.ContainerPortArgs(
                    internal=CONTAINER_HTTPS_PORT, external=edge.https_port, ip=edge.bind_address
                ),
                docker.ContainerPortArgs(
                    internal=CONTAINER_HTTP_PORT, external=edge.http_port, ip=edge.bind_address
                ),
            ],
            networks_advanced=c.networks([args.networks.edge, args.networks.internal]),
            restart="unless-stopped",
            # The alpine image has busybox wget; the status listener only answers the
            # internal network and loopback, which is where this runs.
            healthcheck=c.healthcheck(
                [
                    "CMD",
                    "wget",
                    "-q",
                    "-O",
                    "/dev/null",
                    f"http://127.0.0.1:{args.status_port}{STUB_STATUS_PATH}",
                ]
            ),
            labels=c.labels(
                NGINX, args.names.prefix, {WILDCARD_BIND_LABEL: "true"} if wildcard else None
            ),
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=list(args.depends_on), delete_before_replace=True
            ),
        )


def published_ports(edge: EdgeConfig) -> list[dict[str, Any]]:
    """What the edge publishes on the host, for the stack outputs."""
    return [
        {
            "name": "https",
            "role": NGINX,
            "address": edge.bind_address,
            "port": edge.https_port,
            "containerPort": CONTAINER_HTTPS_PORT,
        },
        {
            "name": "http",
            "role": NGINX,
            "address": edge.bind_address,
            "port": edge.http_port,
            "containerPort": CONTAINER_HTTP_PORT,
        },
    ]
