"""The three networks of a stack and what each is for.

- internal (`internal=True`): every service talks here; no egress, no published ports.
  A fixed subnet, so nginx can allow exactly this CIDR on its internal listeners.
- edge: joined only by what publishes ports on the host (nginx, Grafana).
- egress: joined only by the one-shot model puller, the single thing that downloads.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from llm_stack.shared.labels import (
    EDGE_NETWORK,
    EGRESS_NETWORK,
    INTERNAL_NETWORK,
    NETWORK_LABEL,
    STACK_LABEL,
)
from llm_stack.shared.names import StackNames


def _labels(kind: str, stack: str) -> list[docker.NetworkLabelArgs]:
    return [
        docker.NetworkLabelArgs(label=NETWORK_LABEL, value=kind),
        docker.NetworkLabelArgs(label=STACK_LABEL, value=stack),
    ]


@dataclass(frozen=True)
class NetworksArgs:
    names: StackNames
    # The fixed subnet of the internal network (nginx allows exactly this CIDR).
    internal_subnet: str


class StackNetworks(pulumi.ComponentResource):
    internal: docker.Network
    edge: docker.Network
    egress: docker.Network

    def __init__(
        self, name: str, args: NetworksArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("llm-stack:network:Networks", name, None, opts)
        names = args.names
        child = pulumi.ResourceOptions(parent=self)
        stack = names.prefix
        self.internal = docker.Network(
            "internal",
            name=names.internal_network,
            driver="bridge",
            internal=True,
            ipam_configs=[docker.NetworkIpamConfigArgs(subnet=args.internal_subnet)],
            labels=_labels(INTERNAL_NETWORK, stack),
            opts=child,
        )
        self.edge = docker.Network(
            "edge",
            name=names.edge_network,
            driver="bridge",
            labels=_labels(EDGE_NETWORK, stack),
            opts=child,
        )
        self.egress = docker.Network(
            "egress",
            name=names.egress_network,
            driver="bridge",
            labels=_labels(EGRESS_NETWORK, stack),
            opts=child,
        )
        self.register_outputs(
            {
                "internal": self.internal.name,
                "edge": self.edge.name,
                "egress": self.egress.name,
            }
        )
