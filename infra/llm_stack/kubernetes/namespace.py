"""The stack's namespace, under the `restricted` Pod Security Standard.

Every pod of the stack meets that standard (non-root, no privilege escalation, all
capabilities dropped, RuntimeDefault seccomp), so the namespace enforces it: a pod
that does not is refused by the API server, not merely reported.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s
from llm_config.model import StackConfig

from llm_stack.kubernetes import names as n

POD_SECURITY = {
    f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")
}


class StackNamespace(pulumi.ComponentResource):
    # The namespace's name, as an Output of the Namespace where the stack makes it (so
    # every object in it waits for it), else the configured name.
    name: pulumi.Output[str]

    def __init__(
        self, name: str, config: StackConfig, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("llm-stack:kubernetes:Namespace", name, None, opts)
        kube = config.kubernetes
        assert kube is not None
        names = n.KubeNames.of(config)
        if kube.create_namespace:
            namespace = k8s.core.v1.Namespace(
                "namespace",
                metadata={
                    "name": names.namespace,
                    "labels": {
                        n.PART_OF_LABEL: n.PART_OF,
                        n.MANAGED_BY_LABEL: "pulumi",
                        **POD_SECURITY,
                    },
                },
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.name = namespace.metadata.name
        else:
            self.name = pulumi.Output.from_input(names.namespace)
        self.register_outputs({"name": self.name})
