"""The llm-stack Pulumi program (`main: infra/` in Pulumi.yaml).

Thin on purpose: everything lives in `llm_stack.components.stack.run`, which tests
call under Pulumi mocks once per stack file.
"""

from llm_stack.components.stack import run

run()
