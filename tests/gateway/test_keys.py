"""API keys: digests only, names and per-key rules from the keys file, expiry."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from llm_gateway.cli import main
from llm_gateway.contract import digest_of, mint_key
from llm_gateway.keys import KeyFileError, KeyRing, plausible_key, presented_key
from llm_gateway.settings import Settings
from pydantic import ValidationError


def test_minted_keys_are_long_random_and_url_safe() -> None:
    keys = {mint_key() for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert re.fullmatch(r"llmsk-[A-Za-z0-9_-]{43}", key)


def test_settings_accept_digests_and_refuse_plain_keys() -> None:
    digest = digest_of("secret-key")
    settings = Settings(api_keys=f" {digest.upper()} ,")  # type: ignore[arg-type]
    assert settings.api_keys == [digest]
    with pytest.raises(ValidationError, match="digests of keys"):
        Settings(api_keys="llmsk-plain-key")  # type: ignore[arg-type]


def test_keyring_from_env_and_file(tmp_path: Path) -> None:
    team_key, env_key = mint_key(), mint_key()
    keys_file = tmp_path / "keys.yaml"
    expires = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    keys_file.write_text(
        f"keys:\n  team-a:\n    digest: {digest_of(team_key)}\n"
        "    models: [llama3.2, 'qwen2.5:*']\n"
        f"    requestsPerMinute: 60\n    maxConcurrent: 2\n    expires: '{expires}'\n"
    )
    settings = Settings(
        api_keys=digest_of(env_key),  # type: ignore[arg-type]
        api_keys_file=keys_file,
        requests_per_minute=100,
    )
    ring = KeyRing.from_settings(settings)
    team = ring.lookup(team_key)
    assert team is not None
    assert team.name == "team-a"
    assert (team.requests_per_minute, team.max_concurrent) == (60, 2)
    assert team.allows("llama3.2")
    assert team.allows("llama3.2:latest")
    assert team.allows("qwen2.5:7b")
    assert not team.allows("llama3.1:8b")
    assert not team.expired(datetime.now(UTC))
    assert team.expired(datetime.now(UTC) + timedelta(days=2))
    other = ring.lookup(env_key)
    assert other is not None
    assert other.requests_per_minute == 100
    assert other.allows("anything")
    assert ring.lookup("llmsk-unknown") is None
    # The digest, not the key, is what the ring holds.
    assert team_key not in repr(ring.__dict__)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("keys:\n  a:\n    digest: nothex\n", "digest"),
        ("keys:\n  'bad name':\n    digest: " + "a" * 64 + "\n", "key name"),
        ("keys: [", "not YAML"),
        ('{"keys": {"a": {"digest": "' + "a" * 64 + '", "rpm": 3}}}', "rpm"),
    ],
)
def test_bad_keys_files_say_what_is_wrong(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(content)
    with pytest.raises(KeyFileError, match=message):
        KeyRing.from_settings(Settings(api_keys_file=path))


def test_presented_key_sources() -> None:
    assert presented_key("Bearer abc", None) == "abc"
    assert presented_key("bearer  abc ", None) == "abc"
    assert presented_key(None, "xyz") == "xyz"
    assert presented_key("Basic abc", "xyz") == "xyz"
    assert presented_key("Bearer ", None) is None
    assert presented_key(None, None) is None
    assert not plausible_key("a" * 300)
    assert not plausible_key("abc\r\nX-Injected: 1")
    assert not plausible_key("clé")


def test_keys_new_prints_the_key_once_and_its_digest(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "new", "--name", "team-a"]) == 0
    out = capsys.readouterr().out
    key = re.search(r"llmsk-[A-Za-z0-9_-]{43}", out)
    assert key is not None
    assert out.count(key.group(0)) == 1
    digest = digest_of(key.group(0))
    assert f"pulumi config set --secret --path 'apiKeys.team-a.digest' {digest}" in out
