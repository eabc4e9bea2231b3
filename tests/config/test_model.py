"""The typed stack config on its own (no Pulumi): defaults, cross-field rules, and the
keys-file shape it shares with the gateway."""

from __future__ import annotations

import json
from typing import Any

import pytest
from llm_config import ConfigError, StackConfig, parse_stack_config
from llm_config.api_keys import ApiKeyEntry, keys_file_text, validate_api_keys
from llm_gateway.keys import _KeyEntry, _KeysFile
from pydantic import ValidationError

MINIMAL: dict[str, Any] = {"ollama": {"models": ["llama3.2:1b"]}}


def config(**sections: Any) -> StackConfig:
    return StackConfig.model_validate({**MINIMAL, **sections})


def test_defaults_are_a_working_single_host_stack() -> None:
    stack = config()
    assert stack.gateway.routing == "model-aware"
    assert stack.gateway.share_in_flight is True
    assert stack.gateway.runner_options == "strip"
    assert stack.gateway.queue.deadline_seconds == 120
    assert stack.gateway.quotas.tokens_per_minute is None
    assert stack.gateway.usage_retention_days == 90
    assert stack.gateway.tracing.enabled is False
    assert stack.ollama.context_length is None


def test_model_aware_routing_with_its_settings() -> None:
    stack = config(
        gateway={"routing": "model-aware", "queue": {"maxDepth": 10}, "pollSeconds": 0.5},
        ollama={"models": ["a:1b"], "vramGb": 24, "contextLength": 8192},
    )
    assert stack.gateway.routing == "model-aware"
    assert stack.gateway.queue.max_depth == 10
    assert stack.ollama.vram_gb == 24
    assert stack.ollama.context_length == 8192


@pytest.mark.parametrize(
    ("sections", "problem"),
    [
        ({"gateway": {"routing": "round-robin"}}, "routing"),
        ({"gateway": {"queue": {"deadlineSeconds": 0}}}, "deadlineSeconds"),
        ({"gateway": {"tracing": {"enabled": True}}}, "endpoint"),
        ({"gateway": {"tracing": {"endpoint": "otel:4318"}}}, "endpoint"),
        ({"gateway": {"tracing": {"samplingRatio": 1.5}}}, "samplingRatio"),
        ({"gateway": {"quotas": {"tokensPerMinute": 0}}}, "tokensPerMinute"),
        ({"gateway": {"runnerOptions": "keep"}}, "runnerOptions"),
        ({"ollama": {"models": ["a"], "contextLength": 10}}, "contextLength"),
        ({"gateway": {"semanticCache": {"enabled": True}}}, "embedModel"),
        ({"gateway": {"semanticCache": {"threshold": 0.2}}}, "threshold"),
        (
            {
                "ollama": {"models": ["llama3.2:1b", "all-minilm"]},
                "gateway": {"semanticCache": {"enabled": True, "models": ["qwen2.5"]}},
            },
            "semanticCache.models",
        ),
    ],
)
def test_bad_values_name_their_key(sections: dict[str, Any], problem: str) -> None:
    values = {**MINIMAL, **sections}
    if "ollama" in sections:
        values["ollama"] = {**MINIMAL["ollama"], **sections["ollama"]}
    with pytest.raises(ConfigError) as raised:
        parse_stack_config(values, "dev")
    assert problem in str(raised.value)


def test_the_config_package_and_the_gateway_read_one_keys_file_shape() -> None:
    """The `apiKeys` secret becomes the gateway's keys file: both sides must accept the
    same fields (the gateway cannot import the config package: it ships alone)."""
    config_fields = {f.alias or name for name, f in ApiKeyEntry.model_fields.items()}
    gateway_fields = {f.alias or name for name, f in _KeyEntry.model_fields.items()}
    assert config_fields == gateway_fields
    keys = {
        "team-a": {
            "digest": "ab" * 32, "models": ["llama3.2"], "requestsPerMinute": 60,
            "maxConcurrent": 4, "tokensPerMinute": 20000, "tokensPerDay": 2000000,
            "weight": 2, "priorities": ["interactive", "batch"], "admin": True,
            "semanticCache": True, "expires": "2027-01-01T00:00:00Z",
        },
        "batchy": {"digest": "cd" * 32, "priorities": ["batch"]},
    }  # fmt: skip
    assert validate_api_keys(keys) == []
    parsed = _KeysFile.model_validate(json.loads(keys_file_text(keys)))
    assert parsed.keys["team-a"].weight == 2
    assert parsed.keys["team-a"].admin is True
    assert parsed.keys["team-a"].semantic_cache is True
    assert parsed.keys["batchy"].semantic_cache is False
    assert parsed.keys["batchy"].priorities == ["batch"]
    assert validate_api_keys({"x": {"digest": "ab" * 32, "priorities": ["urgent"]}})


def test_semantic_cache_is_off_by_default_and_names_pulled_models() -> None:
    assert config().gateway.semantic_cache.enabled is False
    stack = config(
        ollama={"models": ["llama3.2:1b", "all-minilm:latest"]},
        gateway={"semanticCache": {"enabled": True, "models": ["llama3.2:1b"], "threshold": 0.9}},
    )
    semantic = stack.gateway.semantic_cache
    assert (semantic.embed_model, semantic.models, semantic.threshold) == (
        "all-minilm", ["llama3.2:1b"], 0.9,
    )  # fmt: skip


def test_unknown_keys_in_a_section_are_errors() -> None:
    with pytest.raises(ValidationError, match="extra"):
        config(gateway={"routng": "model-aware"})
