"""The program body `__main__.py` runs: read the config, declare one platform's stack.

`run()` is a function, not import-time code, so tests run the real program several
times in one process under Pulumi mocks, once per stack file.
"""

from __future__ import annotations

import pulumi

from llm_stack.docker.stack import DockerStack
from llm_stack.kubernetes.stack import KubernetesStack
from llm_stack.pulumi_config import read_pulumi_config


def run(stack_name: str | None = None) -> DockerStack | KubernetesStack:
    """The program: read and check the config, declare the stack, export its outputs."""
    sourced = read_pulumi_config(stack_name)
    stack: DockerStack | KubernetesStack
    if sourced.config.platform == "kubernetes":
        stack = KubernetesStack("llm-stack", sourced.config, sourced.secrets)
    else:
        stack = DockerStack("llm-stack", sourced.config, sourced.secrets)
    for key, value in stack.outputs.items():
        pulumi.export(key, value)
    return stack
