"""W5 (multi-turn chats) and W6 (an instance lost): plans, client, numbers, targets."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.system import chats, loadgen
from bench.system.chatload import FIRST, FOLLOW_UP, run_chats
from bench.system.chats import Conversation, Turn, make_chat_plan
from bench.system.chatstats import AFFINITY, IDEAL, chat_stats, check_w5
from bench.system.dropstats import check_w6, drop_stats
from bench.system.loadgen import Limits, Outcome
from bench.system.stack import Counters, emulator_argv
from bench.system.workloads import CHAT_SERVERS
from tests.support.ports import free_port
from tests.support.processes import ManagedProcess

# -- the plan ----------------------------------------------------------------------


def test_the_plan_is_seeded_and_shaped_as_the_workload_says() -> None:
    plan = make_chat_plan(seed=12, duration=1200.0)
    assert plan == make_chat_plan(seed=12, duration=1200.0)
    assert plan != make_chat_plan(seed=13, duration=1200.0)
    assert [len(t.split()) for t in plan.templates] == list(chats.TEMPLATE_WORDS)
    assert plan.rate == pytest.approx(chats.LOAD * chats.capacity() / 8)
    for conversation in plan.conversations:
        assert chats.TURNS[0] <= len(conversation.turns) <= chats.TURNS[1]
        assert conversation.turns[0].think == 0.0
        assert all(chats.THINK_SECONDS[0] <= t.think <= chats.THINK_SECONDS[1]
                   for t in conversation.turns[1:])  # fmt: skip
        assert 0 <= conversation.at < 1200.0
    # Poisson arrivals at the planned rate: about rate x duration conversations.
    expected = plan.rate * 1200.0
    assert abs(len(plan.conversations) - expected) < 4 * math.sqrt(expected)
    # Several conversations share each of the popular templates.
    assert len({c.template for c in plan.conversations}) == len(chats.TEMPLATE_WORDS)


def test_capacity_counts_two_batched_slots_per_instance() -> None:
    evaluated = sum(chats.QUESTION_WORDS) / 2 + 9
    one_turn = evaluated / chats.PROMPT_TPS + chats.NUM_PREDICT / chats.DECODE_TPS
    assert chats.capacity() == pytest.approx(3 * (2 / 1.15) / one_turn)


# -- the client against the W5 layout's emulator ------------------------------------


@pytest.fixture
def chat_server(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = ManagedProcess(emulator_argv(port, 100.0, CHAT_SERVERS), port, tmp_path / "emu.log")
    proc.start()
    try:
        httpx.post(
            f"http://127.0.0.1:{port}/api/generate", json={"model": chats.MODEL, "prompt": ""}
        ).raise_for_status()
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


@pytest.mark.timeout(120)
def test_each_turn_sends_the_history_and_finds_it_cached(chat_server: str) -> None:
    """The answers go back in the history as streamed, so the server's slot cache (the
    last prompt and its answer) is the next prompt's prefix: follow-ups are counted
    whole (prompt_eval_count) yet evaluate only their new tokens."""
    plan = make_chat_plan(seed=1, duration=1.0)
    turns = tuple(Turn(f"question {n} " + "word " * 30, 0.0 if n == 0 else 10.0) for n in range(3))
    plan = chats.ChatPlan(plan.templates, (Conversation(0, 0.0, 3, turns),), 1.0, 1.0)
    limits = Limits(ttft=60.0, total=120.0)
    result = loadgen.run(run_chats(plan, lambda c: (0, chat_server), "unused", 100.0, limits))
    outcomes = result.outcomes
    assert [o.kind for o in outcomes] == ["completed"] * 3
    assert [o.stream for o in outcomes] == [FIRST, FOLLOW_UP, FOLLOW_UP]
    assert [o.turn for o in outcomes] == [0, 1, 2]
    counts = [o.prompt_tokens for o in outcomes]
    # Each turn adds its question, the previous answer and their framing.
    assert counts[0] == 1000 + 32 + 4 * 2 + 1
    for before, after in itertools.pairwise(counts):
        assert after > before + chats.NUM_PREDICT
    view = httpx.get(f"{chat_server}/_emulator/scheduler").json()["counters"]
    assert view["prompt_tokens"] == sum(counts)
    # The first turn whole; each follow-up only the previous answer's closing tokens
    # and its own question: a few dozen tokens, however long the history.
    assert view["prompt_evaluated"] < counts[0] + 2 * 60
    assert all(o.prompt_eval < outcomes[0].prompt_eval / 5 for o in outcomes[1:])


# -- the numbers and targets ---------------------------------------------------------


def _turn(stream: int, ttft: float | None, kind: str = "completed") -> Outcome:
    outcome = Outcome(0, "chat", chats.MODEL, stream, None, 0, 0.0, kind=kind)
    outcome.first_token = ttft
    return outcome


def _counters(evaluated: tuple[int, ...], busy: tuple[float, ...]) -> Counters:
    return Counters(
        prompt_tokens=100_000, prompt_evaluated=sum(evaluated), evaluated=evaluated, busy=busy
    )


def test_chat_stats_split_first_turns_from_follow_ups() -> None:
    outcomes = [_turn(FIRST, 2.0), _turn(FIRST, 3.0), *(_turn(FOLLOW_UP, 0.1) for _ in range(19))]
    outcomes.append(_turn(FOLLOW_UP, None, "timeout"))
    stats = chat_stats("m", outcomes, _counters((10, 20, 30), (50.0, 100.0, 150.0)), 200.0, 1.0)
    assert (stats.first_p50, stats.first_p95) == (2.0, 3.0)
    assert stats.follow_p50 == 0.1
    assert stats.follow_p95 == 0.1
    assert stats.completed == len(outcomes) - 1
    assert stats.busy_share == [0.25, 0.5, 0.75]
    assert stats.busiest == pytest.approx(1.5)
    assert stats.evaluated_share == pytest.approx(60 / 100_000)


def test_w5_targets_compare_affinity_with_the_ideal() -> None:
    def stats(mode: str, follow: float, evaluated: int, busy: tuple[float, ...]) -> object:
        outcomes = [_turn(FOLLOW_UP, follow) for _ in range(10)]
        return chat_stats(mode, outcomes, _counters((evaluated,), busy), 100.0, 1.0)

    ideal = stats(IDEAL, 0.2, 1000, (60.0, 60.0, 60.0))
    good = stats(AFFINITY, 0.24, 1150, (55.0, 60.0, 65.0))
    verdicts = check_w5({IDEAL: ideal, AFFINITY: good})  # type: ignore[dict-item]
    assert [v.passed for v in verdicts] == [True] * 5
    bad = stats(AFFINITY, 0.4, 1500, (30.0, 60.0, 90.0))
    verdicts = check_w5({IDEAL: ideal, AFFINITY: bad})  # type: ignore[dict-item]
    assert [v.passed for v in verdicts] == [False, False, False, False, True]
    assert check_w5({})[0].passed is None


def _request(sent: float, kind: str, ttft: float | None, ended: float) -> Outcome:
    outcome = Outcome(0, "k", "m", 0, None, 0, sent, sent=sent, kind=kind)
    outcome.first_token, outcome.ended = ttft, ended
    return outcome


def test_w6_phases_cuts_and_shed_waits() -> None:
    outcomes = [
        _request(100.0, "completed", 1.0, 110.0),  # steady
        _request(290.0, "error", 0.5, 301.0),  # in flight when the instance went: cut
        _request(400.0, "shed", None, 420.0),  # waited 20 s for its 503
        _request(450.0, "timeout", None, 630.0),  # admitted, never served
        _request(800.0, "completed", 1.5, 810.0),  # recovered
    ]
    stats = drop_stats("model-aware", outcomes, 1.0, 300.0, 600.0)
    assert (stats.cut, stats.failed, stats.shed) == (1, 1, 1)
    assert stats.shed_wait_max == 20.0
    assert (stats.steady_p95, stats.recovered_p95) == (1.0, 1.5)
    verdicts = check_w6(stats, deadline=120.0)
    assert [v.passed for v in verdicts] == [False, False, True]


def test_w6_a_request_refused_after_its_instance_went_is_cut_not_a_shed_wait() -> None:
    # Queued 30 s before the loss, then dispatched to the instance that went: the gateway
    # sent it again and refused it (instance_lost). It was admitted; its 503 did not
    # keep it waiting to be refused.
    lost = _request(270.0, "shed", None, 300.5)
    lost.detail = (
        '{"error":"the instance serving this request went down before its first token, '
        'and no other can start it within its deadline (120s): it would wait about 140s"}'
    )
    outcomes = [lost, _request(350.0, "shed", None, 350.1)]
    stats = drop_stats("model-aware", outcomes, 1.0, 300.0, 600.0)
    assert (stats.shed, stats.admitted, stats.cut, stats.failed) == (1, 1, 1, 0)
    assert stats.shed_wait_max == pytest.approx(0.1)


def test_counters_of_a_restarted_instance_count_from_zero() -> None:
    before = Counters(prompt_tokens=10, prompt_evaluated=5, evaluated=(5, 0), busy=(30.0, 10.0))
    after = Counters(prompt_tokens=30, prompt_evaluated=15, evaluated=(12, 3), busy=(50.0, 4.0))
    diff = after.minus(before)
    assert diff.evaluated == (7, 3)
    assert diff.busy == (20.0, 4.0)
