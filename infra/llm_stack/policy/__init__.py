"""The stack's security invariants: pure rules, and their policy-pack form.

- `common.py`: what both platforms' rules share (pinned images, secret names, the view).
- `docker_rules.py`: the Docker platform's resources (containers, networks, images).
- `kubernetes_rules.py`: the Kubernetes platform's manifests (pod templates, policies).
- `pack.py`: both as pulumi-policy objects (`infra/policy` serves them).
"""

from llm_stack.policy.common import ResourceView
from llm_stack.policy.docker_rules import RESOURCE_RULES, network_membership
from llm_stack.policy.kubernetes_rules import KUBERNETES_RULES, default_deny
from llm_stack.policy.pack import PACK_NAME, all_policies, kubernetes_policies, policies

__all__ = [
    "KUBERNETES_RULES",
    "PACK_NAME",
    "RESOURCE_RULES",
    "ResourceView",
    "all_policies",
    "default_deny",
    "kubernetes_policies",
    "network_membership",
    "policies",
]
