"""The typed stack configuration: what a `Pulumi.<stack>.yaml` may say, checked once.

Every other package imports this one (the nginx and monitoring renderers, the
gateway environment, the Pulumi components, the local stack); it imports none of
them, so dependencies point one way: config <- renderers <- infra / local runner.

- `model.py`: `StackConfig` and its sections (pydantic, camelCase in stack files).
- `load.py`: stack values -> `StackConfig`, with errors that name each bad key;
  reading a stack file the way the Pulumi CLI does (`secure:` values stay opaque).
- `api_keys.py`: the `apiKeys` secret's shape (the gateway's keys file), validated.
- `images.py`: every image the stack runs or builds from, pinned in one place.
- `fields.py`: the field types and the section base every part of the config shares.
- `kubernetes.py`: the `kubernetes` section (what a cluster needs beyond the rest).

How the Pulumi program reads its config (secrets included) is `llm_stack.pulumi_config`.
"""

from llm_config.load import (
    ConfigError,
    SecureValue,
    load_stack_file,
    parse_stack_config,
    read_stack_file,
)
from llm_config.model import (
    AlertsConfig,
    BalancerConfig,
    EdgeConfig,
    GatewayConfig,
    GrafanaConfig,
    MonitoringConfig,
    NetworkConfig,
    OllamaConfig,
    QueueConfig,
    QuotaConfig,
    RedisConfig,
    StackConfig,
    TimeoutsConfig,
    TracingConfig,
)

__all__ = [
    "AlertsConfig",
    "BalancerConfig",
    "ConfigError",
    "EdgeConfig",
    "GatewayConfig",
    "GrafanaConfig",
    "MonitoringConfig",
    "NetworkConfig",
    "OllamaConfig",
    "QueueConfig",
    "QuotaConfig",
    "RedisConfig",
    "SecureValue",
    "StackConfig",
    "TimeoutsConfig",
    "TracingConfig",
    "load_stack_file",
    "parse_stack_config",
    "read_stack_file",
]
