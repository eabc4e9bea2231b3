"""What each entry of GATEWAY_OLLAMA_INSTANCES is called (metrics, draining)."""

from __future__ import annotations

import pytest
from llm_gateway.settings import Settings
from pydantic import ValidationError


def instances(value: str) -> Settings:
    return Settings(routing="model-aware", ollama_instances=value)  # type: ignore[arg-type]


def test_a_bare_url_is_named_by_its_host_and_port_and_a_name_can_be_given() -> None:
    settings = instances("http://ollama-1:11434/, gpu-2=http://10.0.0.5:11434")
    assert settings.ollama_instances == ["http://ollama-1:11434", "gpu-2=http://10.0.0.5:11434"]
    assert settings.named_instances == [
        ("ollama-1:11434", "http://ollama-1:11434"),
        ("gpu-2", "http://10.0.0.5:11434"),
    ]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("gpu 1=http://a:1", "is not a name"),
        ("gpu/1=http://a:1", "is not a name"),
        ("a=http://a:1,a=http://b:1", "twice"),
        ("http://a:1,http://a:1", "twice"),
        ("a:1=http://b:2,http://a:1", "twice"),
        ("gpu-1=ftp://a:1", "must start with http"),
    ],
)
def test_bad_names_are_refused_at_start(value: str, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        instances(value)
