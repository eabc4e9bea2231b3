"""The stack's security invariants: pure rules (`rules.py`), policy-pack form (`pack.py`)."""

from llm_stack.policy.pack import PACK_NAME, policies
from llm_stack.policy.rules import RESOURCE_RULES, ResourceView, network_membership

__all__ = ["PACK_NAME", "RESOURCE_RULES", "ResourceView", "network_membership", "policies"]
