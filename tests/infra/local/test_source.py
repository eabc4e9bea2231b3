"""Which stack file, its config, and the API keys it declares in plain text."""

from __future__ import annotations

from pathlib import Path

import pytest
from llm_config.load import ConfigError
from llm_stack.local.errors import LocalStackError
from llm_stack.local.source import load_source, stack_file_for

from tests.infra.local.conftest import REPO

BASE = "config:\n  llm-stack:ollama:\n    models: [llama3.2:1b]\n"


def _file(tmp_path: Path, text: str, name: str = "t") -> Path:
    path = tmp_path / f"Pulumi.{name}.yaml"
    path.write_text(text)
    return path


def test_plain_keys_are_used_encrypted_ones_skipped_with_a_note(tmp_path: Path) -> None:
    digest = "a" * 64
    path = _file(
        tmp_path,
        BASE + "  llm-stack:apiKeys:\n"
        f"    team-a:\n      digest: {digest}\n      requestsPerMinute: 5\n"
        "    team-b:\n      digest:\n        secure: v1:abc\n"
        f"    dev:\n      digest: {digest}\n",
    )
    source = load_source(path)
    assert dict(source.api_keys) == {"team-a": {"digest": digest, "requestsPerMinute": 5}}
    assert any("apiKeys.team-b is encrypted" in note for note in source.notes)
    assert any("apiKeys.dev" in note for note in source.notes)
    assert source.stack == "t"


def test_a_fully_encrypted_api_keys_value_is_noted(tmp_path: Path) -> None:
    source = load_source(_file(tmp_path, BASE + "  llm-stack:apiKeys:\n    secure: v1:abc\n"))
    assert source.api_keys == {}
    assert source.notes == (
        "apiKeys is encrypted (only the Pulumi CLI can read it): not used locally",
    )


def test_a_bad_plain_key_fails_with_its_name(tmp_path: Path) -> None:
    path = _file(tmp_path, BASE + "  llm-stack:apiKeys:\n    team-a:\n      digest: nothex\n")
    with pytest.raises(ConfigError, match=r"llm-stack:apiKeys\.team-a\.digest"):
        load_source(path)


def test_stack_files_are_found_in_cwd_then_in_the_project_root(tmp_path: Path) -> None:
    assert stack_file_for("dev", REPO) == REPO / "Pulumi.dev.yaml"
    assert stack_file_for("dev", REPO / "infra") == REPO / "Pulumi.dev.yaml"
    own = _file(tmp_path, BASE, "dev")
    assert stack_file_for("dev", tmp_path) == own
    with pytest.raises(LocalStackError, match=r"no stack file Pulumi\.nosuch\.yaml"):
        stack_file_for("nosuch", REPO)


def test_every_real_stack_file_loads(tmp_path: Path) -> None:
    for path in sorted(REPO.glob("Pulumi.*.yaml")):
        source = load_source(path)
        assert source.config.ollama.models
