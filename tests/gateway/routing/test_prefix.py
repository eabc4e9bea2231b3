"""Prefix affinity: a prompt goes where its prefix is likely cached, within a load bound.

llama-server (Ollama's runner) evaluates only the part of a prompt its slot's KV cache
(or its host prompt cache) does not already start with; the router estimates those
caches from what it sent where (`prefix.py`) and prefers, among the instances that
can start a request now, the one holding the longest prefix (`placement.py`).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest
from llm_gateway.metrics import GatewayMetrics
from llm_gateway.routing.clock import ManualClock
from llm_gateway.routing.dispatcher import Dispatcher
from llm_gateway.routing.fair_queue import FairQueue
from llm_gateway.routing.grant import Ticket
from llm_gateway.routing.instances import Instance
from llm_gateway.routing.placement import choose
from llm_gateway.routing.prefix import (
    BLOCK_CHARS,
    SHARE_WINDOW,
    Affinity,
    PrefixIndex,
    block_tokens,
    opens_conversation,
    prompt_blocks,
    rendered,
)
from llm_gateway.vocabulary import Kind
from prometheus_client import CollectorRegistry

from tests.gateway.routing.conftest import busy, instance

SYSTEM = "You are a careful assistant. " * 60  # ~1,700 characters: 3 whole blocks


def chat(*turns: str) -> dict[str, Any]:
    messages = [{"role": "system", "content": SYSTEM}]
    for number, text in enumerate(turns):
        messages.append({"role": "user" if number % 2 == 0 else "assistant", "content": text})
    return {"model": "m", "messages": messages}


def blocks_of(data: dict[str, Any], kind: Kind = Kind.CHAT) -> tuple[bytes, ...]:
    return prompt_blocks(rendered(kind, data), "m")


# -- the blocks ------------------------------------------------------------------------


def test_a_follow_up_shares_every_block_of_the_turn_before() -> None:
    first = blocks_of(chat("What is a KV cache? " * 20))
    follow = blocks_of(chat("What is a KV cache? " * 20, "It keeps... " * 40, "And then?"))
    assert len(first) >= 3
    assert follow[: len(first)] == first
    # A different system prompt changes every block: the hashes name whole prefixes.
    other = blocks_of({"messages": [{"role": "system", "content": "x" + SYSTEM}]})
    assert not set(other) & set(first)


def test_blocks_are_per_model_and_whole_blocks_only() -> None:
    text = "a" * (BLOCK_CHARS * 2 + 10)
    assert len(prompt_blocks(text, "m")) == 2
    assert prompt_blocks(text, "m") != prompt_blocks(text, "n")
    assert prompt_blocks("short", "m") == ()


def test_generate_renders_template_system_and_prompt() -> None:
    data = {"system": "s" * 600, "prompt": "p" * 600}
    assert len(blocks_of(data, Kind.GENERATE)) == 2
    assert rendered(Kind.EMBED, {"input": "x" * 2000}) == ""


def test_the_index_forgets_the_least_recently_used_blocks() -> None:
    """What an instance's slots and host cache hold is bounded: older prefixes go."""
    index = PrefixIndex(capacity_blocks=4)
    old, new = (b"o1", b"o2", b"o3"), (b"n1", b"n2", b"n3")
    index.sent(old)
    index.sent(new)
    assert index.matched(new) == 3
    assert index.matched(old) == 0  # o1 and o2 were dropped first, so o3 starts nothing
    assert len(index) == 4


# -- the choice --------------------------------------------------------------------------


def test_a_ready_instance_holding_the_prefix_wins_over_a_less_loaded_one() -> None:
    a, b = busy(instance("a", "m"), "m", 1), instance("b", "m")
    held = {"a": 5, "b": 0}
    choice = choose([a, b], "m", prefix=lambda i: held[i.name])
    assert choice is not None
    assert (choice.instance.name, choice.matched) == ("a", 5)
    # Without affinity: fewest in flight.
    plain = choose([a, b], "m")
    assert plain is not None
    assert plain.instance.name == "b"


def test_the_longest_prefix_wins_and_ties_go_to_the_least_loaded() -> None:
    a, b, c = instance("a", "m"), busy(instance("b", "m"), "m", 1), instance("c", "m")
    held = {"a": 3, "b": 7, "c": 7}
    choice = choose([a, b, c], "m", prefix=lambda i: held[i.name])
    assert choice is not None
    assert choice.instance.name == "c"


def test_a_busy_instance_is_never_waited_for_when_another_can_start_now() -> None:
    """The instance holding the prefix has every slot taken: the request starts now on
    another instance rather than wait there for its cache."""
    a, b = busy(instance("a", "m"), "m", 2), instance("b", "m")
    choice = choose([a, b], "m", prefix=lambda i: 9 if i.name == "a" else 0)
    assert choice is not None
    assert (choice.instance.name, choice.matched) == ("b", 0)


def test_load_stays_bounded_above_the_mean() -> None:
    """Consistent hashing with bounded loads: the holder of the prefix is skipped when
    one more request would put it over load_share x the mean of the model's instances."""
    a = busy(instance("a", "m", num_parallel=8), "m", 3)
    b = instance("b", "m", num_parallel=8)
    c = instance("c", "m", num_parallel=8)
    prefer_a = {"prefix": lambda i: 4 if i.name == "a" else 0}
    # 3 in flight + this one over 3 instances: mean 1.33; 1.25x that, rounded up, is 2,
    # and one above the mean, rounded up, is 3: a would have 4.
    choice = choose([a, b, c], "m", load_share=1.25, **prefer_a)
    assert choice is not None
    assert choice.instance.name != "a"
    # A looser bound lets it follow its prefix.
    choice = choose([a, b, c], "m", load_share=3.0, **prefer_a)
    assert choice is not None
    assert choice.instance.name == "a"


def test_at_a_small_count_the_holder_may_take_one_more_than_the_mean() -> None:
    """One request in flight, on the holder, over three instances: the share bound alone
    (1.25 x 2/3, rounded up: 1) would send the conversation's next turn away from its
    history to an idle instance. One request above the mean is always allowed."""
    a = busy(instance("a", "m"), "m", 1)
    b, c = instance("b", "m"), instance("c", "m")
    choice = choose([a, b, c], "m", load_share=1.25, prefix=lambda i: 6 if i.name == "a" else 0)
    assert choice is not None
    assert (choice.instance.name, choice.matched) == ("a", 6)
    # Two more than the mean is past it: a with 2 in flight of 2 total + this one.
    a = busy(instance("a", "m", num_parallel=4), "m", 2)
    b, c = instance("b", "m", num_parallel=4), instance("c", "m", num_parallel=4)
    choice = choose([a, b, c], "m", load_share=1.25, prefix=lambda i: 6 if i.name == "a" else 0)
    assert choice is not None
    assert choice.instance.name != "a"


def test_equal_holders_go_by_their_share_of_recent_requests_first() -> None:
    """Every instance holds the shared system prompt: a new conversation starts on the
    one given the least lately, though it has one more in flight now (the others'
    conversations, between two turns, will come back to them)."""
    affinity = Affinity(capacity_tokens=100_000, load_share=1.25)
    for name in ("a", "a", "b", "b", "b", "c"):
        affinity.dispatched("m", name)
    assert affinity.share("m", "c") == pytest.approx(1 / 6)
    assert affinity.share("other", "a") == 0.0
    a, b, c = instance("a", "m"), busy(instance("b", "m"), "m", 1), busy(instance("c", "m"), "m", 1)
    choice = choose(
        [a, b, c], "m", prefix=lambda i: 3,
        recent=lambda i: affinity.share("m", i.name),
    )  # fmt: skip
    assert choice is not None
    assert choice.instance.name == "c"


def test_an_instance_over_its_share_of_recent_requests_gets_no_affinity() -> None:
    """Bounded loads over time: conversations that stay where they began pile work on
    one instance that no in-flight count of a moment shows; past load_share x an even
    share of the model's recent requests, that instance is not followed to."""
    affinity = Affinity(capacity_tokens=100_000, load_share=1.25)
    for n in range(SHARE_WINDOW):
        affinity.dispatched("m", "a" if n % 2 == 0 else ("b" if n % 4 == 1 else "c"))
    assert affinity.over_share("m", "a", serving=3)  # 50% > 1.25 / 3
    assert not affinity.over_share("m", "b", serving=3)  # 25%
    assert not affinity.over_share("m", "a", serving=1)
    a, b = busy(instance("a", "m", num_parallel=4), "m", 1), instance("b", "m", num_parallel=4)
    followed = choose([a, b], "m", prefix=lambda i: 5 if i.name == "a" else 0)
    assert followed is not None
    assert followed.instance.name == "a"  # within the in-flight bound
    choice = choose(
        [a, b], "m", prefix=lambda i: 5 if i.name == "a" else 0,
        over_share=lambda i: affinity.over_share("m", i.name, serving=3),
    )  # fmt: skip
    assert choice is not None
    assert choice.instance.name == "b"


# -- through the dispatcher ------------------------------------------------------------


def dispatcher(*instances: Instance, affinity: Affinity | None) -> Dispatcher:
    return Dispatcher(
        list(instances), FairQueue(100), GatewayMetrics(CollectorRegistry()),
        label=lambda model: model, poll_seconds=60, load_patience=60, clock=ManualClock(),
        affinity=affinity,
    )  # fmt: skip


def ticket(data: dict[str, Any]) -> Ticket:
    """As the proxy makes it for a chat (`proxy.py`)."""
    text = rendered(Kind.CHAT, data)
    return Ticket(
        "m", "k", 0, prefix=prompt_blocks(text, "m"), prompt_chars=len(text),
        opening=opens_conversation(Kind.CHAT, data),
    )  # fmt: skip


def test_a_chat_opens_a_conversation_until_the_model_has_answered() -> None:
    assert opens_conversation(Kind.CHAT, chat("hello"))
    assert not opens_conversation(Kind.CHAT, chat("hello", "hi", "how are you?"))
    assert opens_conversation(Kind.OPENAI_CHAT, {"messages": [{"role": "user", "content": "x"}]})
    assert not opens_conversation(Kind.OPENAI_CHAT, chat("q", "a", "q2"))
    # A prompt has no turns to tell: it follows its prefix (a RAG template, say).
    assert not opens_conversation(Kind.GENERATE, {"prompt": "hello"})
    assert not opens_conversation(Kind.CHAT, {"messages": "not a list"})


async def test_a_new_conversation_goes_by_load_not_to_its_system_prompts_holder() -> None:
    """Conversation x started on one instance, which therefore holds the shared system
    prompt, and runs there now. A second conversation on the same system prompt starts
    on an idle instance (followed to the holder, it would share x's instance and could
    overwrite x's history there); its next turn follows its own history."""
    a, b, c = instance("a", "m"), instance("b", "m"), instance("c", "m")
    affinity = Affinity(capacity_tokens=100_000, load_share=10.0)
    d = dispatcher(a, b, c, affinity=affinity)
    x = await asyncio.wait_for(d.acquire(ticket(chat("conversation x " * 50))), 5)
    holder = x.instance.name
    y_turn = chat("conversation y " * 50)
    assert affinity.matched(holder, ticket(y_turn).prefix) >= 3  # the system prompt
    # Not known to open a conversation (as a raw prompt would not be), the same first
    # turn follows the system prompt to its holder.
    same = await asyncio.wait_for(d.acquire(replace(ticket(y_turn), opening=False)), 5)
    assert same.instance.name == holder
    same.release()
    y = await asyncio.wait_for(d.acquire(ticket(y_turn)), 5)
    assert y.instance.name != holder
    y_home = y.instance.name
    y.release()
    follow = await asyncio.wait_for(
        d.acquire(ticket(chat("conversation y " * 50, "an answer " * 40, "and?"))), 5
    )
    assert follow.instance.name == y_home
    follow.release()
    x.release()


async def test_each_conversation_stays_on_the_instance_that_served_it() -> None:
    a, b, c = instance("a", "m"), instance("b", "m"), instance("c", "m")
    d = dispatcher(a, b, c, affinity=Affinity(capacity_tokens=100_000, load_share=1.25))
    homes = {}
    for name in ("x", "y", "z"):
        turn = chat(f"conversation {name} " * 100)
        grant = await asyncio.wait_for(d.acquire(ticket(turn)), 5)
        homes[name] = grant.instance.name
        grant.release()
    for name in ("x", "y", "z"):
        follow = chat(f"conversation {name} " * 100, "an answer " * 50, "more?")
        grant = await asyncio.wait_for(d.acquire(ticket(follow)), 5)
        assert grant.instance.name == homes[name]
        grant.release()
    registry = d._metrics.registry
    hits = sum(
        registry.get_sample_value("llm_affinity_hits_total", {"ollama_instance": i, "model": "m"})
        or 0.0
        for i in "abc"
    )
    assert hits >= 3
    snap = d.snapshot()
    assert snap["prefix_affinity"] is True
    assert sum(i["affinity"]["hits"] for i in snap["instances"]) >= 3
    assert all(i["affinity"]["estimated_cached_tokens"] >= 0 for i in snap["instances"])


async def test_without_affinity_the_least_loaded_instance_is_chosen() -> None:
    a, b = instance("a", "m"), instance("b", "m")
    d = dispatcher(a, b, affinity=None)
    turn = chat("hello " * 200)
    first = await d.acquire(ticket(turn))
    second = await d.acquire(ticket(chat("hello " * 200, "hi " * 100, "again")))
    assert first.instance is not second.instance  # one slot each: load decides
    first.release()
    second.release()
    assert "affinity" not in d.snapshot()["instances"][0]


async def test_a_down_instance_or_a_new_load_forgets_its_caches() -> None:
    a, b = instance("a", "m"), instance("b", "m")
    affinity = Affinity(capacity_tokens=100_000, load_share=1.25)
    d = dispatcher(a, b, affinity=affinity)
    turn = chat("remember me " * 100)
    grant = await d.acquire(ticket(turn))
    home = grant.instance.name
    assert affinity.matched(home, ticket(turn).prefix) > 0
    grant.release("down")
    assert affinity.matched(home, ticket(turn).prefix) == 0


def test_estimated_tokens_add_up() -> None:
    affinity = Affinity(capacity_tokens=100_000, load_share=1.25)
    blocks = (b"1", b"2", b"3")
    assert affinity.sent("a", blocks, 2000) == (0, 500)
    assert affinity.sent("a", blocks, 2100) == (block_tokens(3), 525 - block_tokens(3))
    view = affinity.view("a")
    assert view["hits"] == 1
    assert view["estimated_cached_tokens"] == block_tokens(3)
