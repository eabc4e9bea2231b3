"""Typed stack configuration (see `model.py`) and its loaders (see `load.py`)."""

from llm_stack.config.load import (
    ConfigError,
    SecureValue,
    load_stack_file,
    parse_stack_config,
    read_stack_file,
)
from llm_stack.config.model import (
    AlertsConfig,
    BalancerConfig,
    EdgeConfig,
    GatewayConfig,
    GrafanaConfig,
    MonitoringConfig,
    NetworkConfig,
    OllamaConfig,
    RedisConfig,
    StackConfig,
    TimeoutsConfig,
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
    "RedisConfig",
    "SecureValue",
    "StackConfig",
    "TimeoutsConfig",
    "load_stack_file",
    "parse_stack_config",
    "read_stack_file",
]
