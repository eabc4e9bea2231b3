"""Config errors stop the program before any resource exists, naming the key to fix."""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import pulumi
import pytest
from llm_config import ConfigError
from llm_config.api_keys import keys_file_text, validate_api_keys

from tests.infra.stack_run import StackMocks, prod_secrets, run_stack, stack_values


def failing_run(stack: str, values: dict[str, Any], **kwargs: Any) -> tuple[str, StackMocks]:
    mocks = StackMocks()
    with pytest.raises(ConfigError) as raised:
        run_stack(stack, values, mocks=mocks, **kwargs)
    return str(raised.value), mocks


def with_section(stack: str, section: str, **changes: Any) -> dict[str, Any]:
    values = copy.deepcopy(stack_values(stack, prod_secrets() if stack == "prod" else None))
    values[section] = {**values[section], **changes}
    return values


@pytest.mark.parametrize(
    ("stack", "section", "changes", "expected"),
    [
        ("prod", "ollama", {"gpus": ["0", "0"]}, "llm-stack:ollama: gpus: duplicate GPU ids ['0']"),
        ("prod", "ollama", {"gpus": ["0"]}, "1 GPU ids for 2 instances"),
        (
            "dev",
            "ollama",
            {"instances": 0},
            "llm-stack:ollama.instances: Input should be greater than or equal to 1",
        ),
        (
            "dev",
            "ollama",
            {"image": "ollama/ollama:latest"},
            "llm-stack:ollama.image: 'ollama/ollama:latest' uses 'latest'",
        ),
        (
            "dev",
            "ollama",
            {"image": "ollama/ollama"},
            "llm-stack:ollama.image: 'ollama/ollama' is not pinned",
        ),
        ("dev", "redis", {"image": "redis"}, "llm-stack:redis.image: 'redis' is not pinned"),
        (
            "dev",
            "edge",
            {"image": "nginx:latest"},
            "llm-stack:edge.image: 'nginx:latest' uses 'latest'",
        ),
        (
            "dev",
            "ollama",
            {"models": []},
            "llm-stack:ollama.models: List should have at least 1 item",
        ),
        (
            "dev",
            "edge",
            {"bindAddress": "localhost"},
            "bindAddress: 'localhost' is not an IP address",
        ),
        ("dev", "gateway", {"replicas": 0}, "llm-stack:gateway.replicas"),
        ("dev", "edge", {"httpsPort": 70000}, "llm-stack:edge.httpsPort"),
        ("prod", "edge", {"tls": "self-signed"}, "prod serves a provided certificate"),
        ("dev", "ollama", {"gpuz": ["0"]}, "llm-stack:ollama.gpuz: Extra inputs are not permitted"),
    ],
)
def test_bad_values_fail_before_any_resource(
    stack: str, section: str, changes: dict[str, Any], expected: str
) -> None:
    message, mocks = failing_run(stack, with_section(stack, section, **changes))
    assert expected in message
    assert mocks.created == []


def test_unknown_top_level_key_is_named() -> None:
    values = stack_values("dev", {"ollamaa": {"models": ["x:1"]}})
    message, mocks = failing_run("dev", values)
    assert "llm-stack:ollamaa: unknown key" in message
    assert mocks.created == []


@pytest.mark.parametrize(
    "missing", ["apiKeys", "redisPassword", "grafanaAdminPassword", "tlsCert", "tlsKey"]
)
def test_prod_names_each_missing_secret_and_how_to_set_it(missing: str) -> None:
    values = stack_values("prod", prod_secrets())
    del values[missing]
    message, mocks = failing_run("prod", values)
    assert f"llm-stack:{missing}: missing" in message
    assert "pulumi config set" in message
    if missing != "tlsCert":
        assert "--secret" in message
    assert mocks.created == []


def test_prod_without_any_secret_lists_them_all() -> None:
    message, _ = failing_run("prod", stack_values("prod"))
    for key in ("apiKeys", "redisPassword", "grafanaAdminPassword", "tlsCert", "tlsKey"):
        assert f"llm-stack:{key}: missing" in message


def test_secrets_in_plain_text_are_refused() -> None:
    values = stack_values("prod", prod_secrets())
    message, mocks = failing_run(
        "prod", values, secret_keys=("apiKeys", "grafanaAdminPassword", "tlsKey")
    )
    assert "llm-stack:redisPassword: stored in plain text" in message
    assert "pulumi config rm redisPassword" in message
    assert prod_secrets()["redisPassword"] not in message
    assert mocks.created == []


def test_short_passwords_and_bad_pem_are_refused() -> None:
    values = stack_values(
        "prod",
        {**prod_secrets(), "redisPassword": "short", "tlsCert": "not a cert", "tlsKey": "nope"},
    )
    message, _ = failing_run("prod", values)
    assert "llm-stack:redisPassword: use at least 16 characters" in message
    assert "llm-stack:tlsCert: not a PEM certificate" in message
    assert "llm-stack:tlsKey: not a PEM private key" in message
    assert "short" not in message.replace("redisPassword", "")  # values are never echoed


def test_malformed_api_keys_are_named() -> None:
    keys = {"team-a": {"digest": "not-hex"}, "bad name!": {"digest": "a" * 64}}
    message, mocks = failing_run("prod", stack_values("prod", {**prod_secrets(), "apiKeys": keys}))
    assert "llm-stack:apiKeys.team-a.digest: String should match pattern" in message
    assert "llm-stack:apiKeys.bad name!: key names use letters" in message
    assert mocks.created == []


def test_the_program_entry_point_reports_config_errors_without_a_traceback() -> None:
    mocks = StackMocks()
    with pytest.raises(pulumi.RunError, match="llm-stack:redisPassword: missing") as raised:
        run_stack("prod", stack_values("prod"), mocks=mocks, as_main=True)
    assert not isinstance(raised.value, ConfigError)
    assert mocks.created == []


def test_the_program_entry_point_declares_the_stack() -> None:
    run = run_stack("dev", stack_values("dev"), as_main=True)
    assert len(run.containers) == 9


def test_dev_runs_without_any_secret() -> None:
    # The committed dev stack file has no secrets: dev generates them.
    run = run_stack("dev", stack_values("dev"))
    assert run.containers


def test_a_failed_pull_starts_no_instance() -> None:
    mocks = StackMocks(puller_exit_code=1)
    failed = r"model puller llm-dev-model-puller-[0-9a-f]{8} exited with code 1"
    with pytest.raises(RuntimeError, match=failed):
        run_stack("dev", stack_values("dev"), mocks=mocks)
    containers = [name for typ, name in mocks.created if typ.endswith(":Container")]
    assert "model-puller" in containers
    assert not [name for name in containers if name.startswith("ollama-")]


def test_keys_file_is_what_the_gateway_reads(tmp_path: Any) -> None:
    from llm_gateway.keys import KeyRing
    from llm_gateway.settings import Settings

    keys = prod_secrets()["apiKeys"]
    assert validate_api_keys(keys) == []
    path = tmp_path / "keys.json"
    path.write_text(keys_file_text(keys))
    ring = KeyRing.from_settings(Settings(api_keys_file=path))
    team_a = ring.lookup("llmsk-team-a")
    assert team_a is not None
    assert team_a.name == "team-a"
    assert team_a.requests_per_minute == 60
    team_b = ring.lookup("llmsk-team-b")
    assert team_b is not None
    assert team_b.allows("llama3.1:8b")
    assert not team_b.allows("other")
    assert ring.lookup("llmsk-nobody") is None
    assert hashlib.sha256(b"llmsk-team-a").hexdigest() in path.read_text()
