"""The stack's credentials: from the stack config where set, generated where allowed.

Prod refuses to start without its secrets (`pulumi_config.check_secrets`); dev and
test generate what is missing with `pulumi_random`, so the values stay stable in the
state across runs instead of changing on every `pulumi up`. Every value here is a
secret Output; the plain API key of a generated dev key is exported as a secret too.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pulumi
import pulumi_random as random
from llm_config.api_keys import keys_file_text
from llm_config.model import StackConfig

from llm_stack.pulumi_config import StackSecrets

DEV_KEY_NAME = "dev"
# Same prefix as keys minted by `llm-gateway keys new`, so a leaked one is recognizable.
DEV_KEY_PREFIX = "llmsk-"


def _dev_keys_file(key: str) -> str:
    digest = hashlib.sha256(key.encode()).hexdigest()
    return keys_file_text({DEV_KEY_NAME: {"digest": digest}})


class StackCredentials(pulumi.ComponentResource):
    redis_password: pulumi.Output[str]
    grafana_admin_password: pulumi.Output[str]
    # Text of the gateway's keys file (JSON), a secret.
    api_keys_file: pulumi.Output[str]
    # The plain generated dev key, or None when the stack config provides apiKeys.
    dev_api_key: pulumi.Output[str] | None
    # True when the Grafana admin password was generated here (the user must learn it).
    grafana_password_generated: bool

    def __init__(
        self,
        name: str,
        config: StackConfig,
        provided: StackSecrets,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("llm-stack:secrets:Credentials", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        def generated(resource_name: str, length: int = 32) -> pulumi.Output[str]:
            # Letters and digits only: the Redis password also travels inside a URL.
            password = random.RandomPassword(
                resource_name, length=length, special=False, opts=child
            )
            return pulumi.Output.secret(password.result)

        self.redis_password = (
            provided.redis_password
            if provided.redis_password is not None
            else generated("redis-password")
        )
        self.grafana_password_generated = provided.grafana_admin_password is None
        self.grafana_admin_password = (
            provided.grafana_admin_password
            if provided.grafana_admin_password is not None
            else generated("grafana-admin-password")
        )
        if provided.api_keys is not None:
            self.dev_api_key = None
            keys: pulumi.Output[Any] = provided.api_keys
            self.api_keys_file = pulumi.Output.secret(keys.apply(keys_file_text))
        else:
            key = generated("dev-api-key", length=43)
            self.dev_api_key = pulumi.Output.secret(key.apply(lambda k: DEV_KEY_PREFIX + k))
            self.api_keys_file = pulumi.Output.secret(self.dev_api_key.apply(_dev_keys_file))
        self.register_outputs({})


def secret_text(value: pulumi.Input[str]) -> pulumi.Output[str]:
    """`value` as a secret Output (typed, which `Output.secret` alone is not for mypy)."""
    result: pulumi.Output[str] = pulumi.Output.secret(value)
    return result
