"""The emulator keeps llama-server's prompt caches as Ollama's runner does.

Each test names the behaviour it reproduces: llama.cpp `tools/server` (slot selection
in `get_available_slot`, the host-memory cache of `--cache-ram`) and Ollama
`llm/llama_server.go` (`-np NUM_PARALLEL`, `"cache_prompt": true`, `prompt_eval_count
= cache_n + prompt_n`, `prompt_eval_duration = prompt_ms`). Times are simulated.
"""

from __future__ import annotations

import asyncio
from typing import Any

from llm_emulator import generate as gen
from llm_emulator.cli import parse_args
from llm_emulator.prompt_cache import PromptCaches, common_prefix

from tests.emulator.inproc import emulator, ollama, seconds

SYSTEM = " ".join(f"s{i}" for i in range(1000))


def toks(*words: str) -> list[str]:
    return list(words)


# -- the slot choice, unit by unit -------------------------------------------------


def test_common_prefix_counts_equal_leading_tokens() -> None:
    long = [str(i) for i in range(1000)]
    assert common_prefix(long, [*long[:700], "x"]) == 700
    assert common_prefix(long, long) == 1000
    assert common_prefix([], long) == 0


def test_the_idle_slot_with_the_longest_matching_prefix_is_taken() -> None:
    """get_available_slot: the idle slot whose cached tokens share the largest fraction
    of the prompt (above --slot-prompt-similarity) wins; only the rest is evaluated."""
    caches = PromptCaches(slots=2, context=4096)
    a = caches.take(toks("a", "b", "c", "d"))
    caches.done(a, toks("x"))
    b = caches.take(toks("p", "q", "r", "s"))
    caches.done(b, [])
    again = caches.take(toks("a", "b", "c", "d", "x", "e"))
    assert again.slot is a.slot
    assert (again.cached, again.evaluated) == (5, 1)  # the answer "x" was cached too


def test_a_whole_prompt_in_cache_still_evaluates_its_last_token() -> None:
    """llama-server always evaluates at least one token, to get the logits."""
    caches = PromptCaches(slots=1, context=4096)
    caches.done(caches.take(toks("a", "b", "c")), [])
    same = caches.take(toks("a", "b", "c"))
    assert (same.cached, same.evaluated) == (2, 1)


def test_below_the_similarity_the_least_recently_used_slot_is_taken() -> None:
    """A match of at most --slot-prompt-similarity (0.1) of the prompt does not count:
    the least recently used idle slot is taken (and an empty slot before any)."""
    caches = PromptCaches(slots=2, context=4096)
    first = caches.take(toks(*"abcdefghij"))
    caches.done(first, [])
    second = caches.take(toks("z", *"0123456789"))
    assert second.slot is not first.slot  # the empty slot was older than any used one
    caches.done(second, [])
    third = caches.take(toks("a", *"0123456789x"))  # 1/12 < 0.1 of it matches slot 1
    assert third.slot is first.slot
    assert third.cached == 1


def test_a_busy_slot_is_never_shared() -> None:
    caches = PromptCaches(slots=2, context=4096)
    busy = caches.take(toks("a", "b", "c"))
    other = caches.take(toks("a", "b", "c"))
    assert other.slot is not busy.slot
    assert other.cached == 0


def test_the_host_cache_keeps_what_a_slot_loses() -> None:
    """--cache-ram: a slot taken by LRU saves its tokens in host memory first, and the
    host entry matching the new prompt best is loaded into the slot."""
    caches = PromptCaches(slots=1, context=4096, host_tokens=100)
    chat_a = toks(*(f"a{i}" for i in range(20)))
    chat_b = toks(*(f"b{i}" for i in range(20)))
    caches.done(caches.take(chat_a), [])
    caches.done(caches.take(chat_b), [])  # slot 0 had chat A: saved to host
    back = caches.take([*chat_a, "next"])
    assert back.from_host
    assert (back.cached, back.evaluated) == (20, 1)


def test_without_a_host_cache_the_slot_forgets() -> None:
    caches = PromptCaches(slots=1, context=4096, host_tokens=0)
    chat_a = toks(*(f"a{i}" for i in range(20)))
    caches.done(caches.take(chat_a), [])
    caches.done(caches.take(toks(*(f"b{i}" for i in range(20)))), [])
    assert caches.take([*chat_a, "next"]).cached == 0


def test_the_host_cache_drops_its_oldest_entries_past_its_size() -> None:
    caches = PromptCaches(slots=1, context=4096, host_tokens=45)
    chats = [toks(*(f"{c}{i}" for i in range(20))) for c in "abcd"]
    for chat in chats:
        caches.done(caches.take(chat), [])
    # a, b and c were saved in turn; 60 tokens do not fit in 45: a went first.
    assert caches.take([*chats[0], "x"]).cached == 0
    caches.done(caches.take(toks("filler")), [])
    assert caches.take([*chats[2], "x"]).cached == 20


def test_rendered_prompt_counts_as_ollama_reports_it() -> None:
    """The rendered tokens are as many as prompt_eval_count says (words + framing)."""
    messages = [("system", "be brief"), ("user", "hello there"), ("assistant", "hi")]
    texts = [text for _, text in messages]
    assert len(gen.prompt_tokens(messages)) == gen.count_prompt_tokens(texts, 3)


def test_cli_flags_set_llama_server_caching() -> None:
    settings = parse_args(["--slot-prompt-similarity", "0.5", "--cache-ram", "1024"])
    assert settings.scheduler.slot_prompt_similarity == 0.5
    assert settings.scheduler.cache_ram_mib == 1024
    assert parse_args(["--ollama-defaults"]).scheduler.cache_ram_mib == 8192


# -- end to end, through Ollama's API ----------------------------------------------


def _chat(history: list[dict[str, str]], text: str) -> dict[str, Any]:
    messages = [{"role": "system", "content": SYSTEM}, *history, {"role": "user", "content": text}]
    return {
        "model": "llama3.2",
        "messages": messages,
        "stream": False,
        "options": {"num_predict": 8},
    }


async def _post(emu: Any, body: dict[str, Any]) -> dict[str, Any]:
    response = await emu.client.post("/api/chat", json=body)
    assert response.status_code == 200, response.text
    reply: dict[str, Any] = response.json()
    return reply


async def test_a_follow_up_turn_evaluates_only_what_its_slot_lacks() -> None:
    """Ollama reports prompt_eval_count = cache_n + prompt_n (every prompt token) and
    prompt_eval_duration = prompt_ms (the uncached part only): a follow-up turn on the
    slot holding its history is counted whole and timed for its new tokens only."""
    settings = ollama(num_parallel=2, prompt_speed=100.0)
    async with emulator(settings) as emu:
        await emu.load("llama3.2")
        first = await _post(emu, _chat([], "question one"))
        answer = {"role": "assistant", "content": first["message"]["content"]}
        history = [{"role": "user", "content": "question one"}, answer]
        follow = await _post(emu, _chat(history, "two"))
        counters = emu.counters()
    assert first["prompt_eval_count"] == 1000 + 2 + 4 * 2 + 1
    assert seconds(first["prompt_eval_duration"]) >= first["prompt_eval_count"] / 100
    assert follow["prompt_eval_count"] == first["prompt_eval_count"] + 8 + 1 + 4 * 2
    # The answer was cached with the first turn: only the answer's closing tokens and
    # the new user message are evaluated.
    new_tokens = follow["prompt_eval_count"] - first["prompt_eval_count"] - 8
    assert new_tokens == 3 + 4 + 1 + 1
    assert seconds(follow["prompt_eval_duration"]) < 0.5 * seconds(first["prompt_eval_duration"])
    assert counters["prompt_tokens"] == first["prompt_eval_count"] + follow["prompt_eval_count"]
    assert counters["prompt_evaluated"] == first["prompt_eval_count"] + new_tokens


async def test_two_conversations_keep_their_own_slots() -> None:
    """With -np 2 each conversation's next turn finds its own slot by prefix, even
    though the other slot was used more recently."""
    settings = ollama(num_parallel=2, prompt_speed=1000.0)
    async with emulator(settings) as emu:
        await emu.load("llama3.2")
        a = await _post(emu, _chat([], "alpha " * 50))
        b_body = _chat([], "beta " * 50)
        b_body["messages"][0]["content"] = "other system " * 400
        await _post(emu, b_body)
        history = [{"role": "user", "content": "alpha " * 50}, a["message"]]
        again = await _post(emu, _chat(history, "more"))
        view = emu.loaded()["llama3.2:latest"]["prompt_cache"]
    assert seconds(again["prompt_eval_duration"]) < 0.05
    assert sorted(s["tokens"] for s in view["slots"]) == sorted(
        [again["prompt_eval_count"] + again["eval_count"], 800 + 50 + 4 * 2 + 1 + 8]
    )


async def test_concurrent_turns_of_one_prefix_take_both_slots() -> None:
    """A slot computing is not available: a second request with the same prefix at the
    same time gets the other slot and pays its whole prompt there."""
    settings = ollama(num_parallel=2, prompt_speed=200.0, decode_speed=1.0)
    async with emulator(settings) as emu:
        await emu.load("llama3.2")
        await _post(emu, _chat([], "warm"))
        replies = await asyncio.gather(_post(emu, _chat([], "x")), _post(emu, _chat([], "y")))
    # Each holds its slot for its 8 tokens at 1 token/s: the two overlap.
    fast, slow = sorted(seconds(r["prompt_eval_duration"]) for r in replies)
    assert fast < 1
    assert slow >= 1000 / 200
