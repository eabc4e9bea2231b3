"""The llm-stack policy pack: `pulumi preview --policy-pack infra/policy`.

The rules live in `llm_stack.policy`; this file only serves them. It runs with the
project's virtualenv (PulumiPolicy.yaml), where `llm_stack` is installed.
"""

from llm_stack.policy import PACK_NAME, all_policies
from pulumi_policy import PolicyPack

PolicyPack(name=PACK_NAME, policies=all_policies())
