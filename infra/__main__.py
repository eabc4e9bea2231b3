"""The llm-stack Pulumi program (`main: infra/` in Pulumi.yaml).

Thin on purpose: everything lives in `llm_stack.program.run`, which tests
call under Pulumi mocks once per stack file.
"""

import pulumi
from llm_config import ConfigError
from llm_stack.program import run

try:
    run()
except ConfigError as exc:
    # The message names each bad key and its fix; a traceback would only bury it.
    raise pulumi.RunError(str(exc)) from None
