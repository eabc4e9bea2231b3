"""Cache plans and wanted forms, decided per request before Redis is asked."""

from __future__ import annotations

from typing import Any

import pytest
from llm_gateway.plans import NO_CACHE, cache_plan, wanted_form
from llm_gateway.vocabulary import Form, Kind

GREEDY = {"model": "llama3.2", "prompt": "x", "options": {"temperature": 0}}
DIGEST = "d" * 64


def test_deterministic_mode_caches_only_greedy_or_seeded() -> None:
    plan = cache_plan("deterministic", Kind.GENERATE, GREEDY, {}, DIGEST)
    assert plan is not None
    assert plan.key is not None
    assert plan.lookup
    assert plan.store
    sampled = {"model": "llama3.2", "prompt": "x"}
    assert cache_plan("deterministic", Kind.GENERATE, sampled, {}, DIGEST) is NO_CACHE
    assert cache_plan("all", Kind.GENERATE, sampled, {}, DIGEST) != NO_CACHE
    assert cache_plan("off", Kind.GENERATE, GREEDY, {}, DIGEST) is NO_CACHE


def test_unknown_digest_asks_for_a_refresh_and_load_only_never_caches() -> None:
    assert cache_plan("deterministic", Kind.GENERATE, GREEDY, {}, None) is None
    load = {"model": "llama3.2", "options": {"temperature": 0}}
    assert cache_plan("all", Kind.GENERATE, load, {}, DIGEST) is NO_CACHE


@pytest.mark.parametrize(
    ("directive", "lookup", "store"),
    [
        ("", True, True),
        ("no-cache", False, True),
        ("No-Store", False, False),
        ("max-age=0, no-cache", False, True),
    ],
)
def test_cache_control(directive: str, lookup: bool, store: bool) -> None:
    plan = cache_plan("deterministic", Kind.GENERATE, GREEDY, {"cache-control": directive}, DIGEST)
    assert plan is not None
    assert (plan.lookup, plan.store) == (lookup, store)


def test_latest_is_implied() -> None:
    short = cache_plan("all", Kind.GENERATE, GREEDY, {}, DIGEST)
    tagged = cache_plan("all", Kind.GENERATE, {**GREEDY, "model": "llama3.2:latest"}, {}, DIGEST)
    assert short is not None
    assert tagged is not None
    assert short.key == tagged.key


@pytest.mark.parametrize(
    ("kind", "body", "form", "usage"),
    [
        (Kind.GENERATE, {}, Form.NDJSON, False),
        (Kind.CHAT, {"stream": False}, Form.JSON, False),
        (Kind.CHAT, {"stream": True}, Form.NDJSON, False),
        (Kind.EMBED, {"stream": True}, Form.JSON, False),
        (Kind.OPENAI_CHAT, {}, Form.JSON, False),
        (Kind.OPENAI_CHAT, {"stream": True}, Form.SSE, False),
        (
            Kind.OPENAI_COMPLETIONS,
            {"stream": True, "stream_options": {"include_usage": True}},
            Form.SSE,
            True,
        ),
    ],
)
def test_wanted_form(kind: Kind, body: dict[str, Any], form: Form, usage: bool) -> None:
    wanted = wanted_form(kind, body)
    assert (wanted.form, wanted.include_usage) == (form, usage)
