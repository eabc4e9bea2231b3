"""The gateway's contract with the deployer (`llm_gateway.contract`) says what the
gateway really reads and mints."""

from __future__ import annotations

from llm_config.load import load_stack_file
from llm_gateway.contract import ENV_NAMES, ENV_PREFIX, KEY_PREFIX, digest_of, mint_key
from llm_gateway.keys import plausible_key
from llm_gateway.settings import Settings
from llm_stack.gateway_env import gateway_environment

from tests.test_layout import REPO


def test_env_names_are_exactly_the_settings_the_gateway_reads() -> None:
    assert {ENV_PREFIX + name.upper() for name in Settings.model_fields} == ENV_NAMES
    assert Settings.model_config.get("env_prefix") == ENV_PREFIX


def test_the_deployer_writes_only_names_the_gateway_reads() -> None:
    for routing in ("model-aware", "least-conn"):
        config = load_stack_file(REPO / "Pulumi.prod.yaml")
        config = config.model_copy(
            update={"gateway": config.gateway.model_copy(update={"routing": routing})}
        )
        env = gateway_environment(
            config,
            upstream_url="http://balancer:8080",
            redis_url="redis://redis:6379/0",
            instance_urls=["http://ollama-0:11434"],
            api_key_digests=[digest_of(mint_key())],
        )
        written = {name for name in env if name.startswith(ENV_PREFIX)}
        assert written, routing
        assert written <= ENV_NAMES, written - ENV_NAMES


def test_a_minted_key_is_one_the_gateway_takes() -> None:
    key = mint_key()
    assert key.startswith(KEY_PREFIX)
    assert plausible_key(key)
    assert len(digest_of(key)) == 64
    assert mint_key() != key
