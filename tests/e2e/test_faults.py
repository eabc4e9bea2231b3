"""Parts of the running local stack fail; requests keep succeeding; the stack heals.

The last test stops the stack with SIGTERM: it exits 0 and leaves no process behind.
"""

from __future__ import annotations

import signal
from collections import Counter

import httpx

from tests.e2e.stack_process import pid_alive
from tests.e2e.traffic import RunningStack, generate_body, poll

RUN_REQUESTS = 40


def test_a_killed_ollama_instance_costs_no_request_and_is_restarted(
    stack: RunningStack, source_address: str
) -> None:
    old_pid = stack.kill("ollama-0")
    statuses: Counter[int] = Counter()
    with stack.client(source_address) as client:
        for _ in range(RUN_REQUESTS):
            # Not cacheable (temperature 0.8): every request goes to an Ollama instance.
            response = client.post("/api/generate", json=generate_body(deterministic=False))
            statuses[response.status_code] += 1
    assert statuses == {200: RUN_REQUESTS}
    restarted = stack.wait_restarted("ollama-0", old_pid)
    assert not pid_alive(old_pid)
    version_url = f"http://127.0.0.1:{restarted['port']}/api/version"
    poll(lambda: httpx.get(version_url).is_success, 20, "the restarted emulator answers")
    assert "ollama-0 (pid" in stack.process.console()
    assert "ollama-0 restarted" in stack.process.console()


def test_a_killed_redis_means_bypass_then_hits_resume_once_it_is_restarted(
    stack: RunningStack, source_address: str
) -> None:
    cached = generate_body()
    with stack.client(source_address) as client:
        assert client.post("/api/generate", json=cached).headers["x-cache"] == "MISS"
        assert client.post("/api/generate", json=cached).headers["x-cache"] == "HIT"
        old_pid = stack.kill("redis")
        # Redis is gone (the supervisor waits a second before restarting it): served
        # from Ollama, uncached, and never failed.
        during = client.post("/api/generate", json=generate_body())
        assert during.status_code == 200, during.text
        assert during.headers["x-cache"] == "BYPASS"
        outage: Counter[int] = Counter()
        for _ in range(RUN_REQUESTS // 2):
            outage[client.post("/api/generate", json=generate_body()).status_code] += 1
        assert outage == {200: RUN_REQUESTS // 2}
        stack.wait_restarted("redis", old_pid)
        fresh = generate_body()

        def hit_again() -> bool:
            first = client.post("/api/generate", json=fresh)
            assert first.status_code == 200
            second = client.post("/api/generate", json=fresh)
            assert second.status_code == 200
            return second.headers["x-cache"] == "HIT"

        poll(hit_again, 30, "cache hits after Redis came back", interval=0.5)
    console = stack.process.console()
    assert "redis (pid" in console
    assert "redis restarted" in console


def test_sigterm_stops_the_stack_with_exit_0_and_no_process_left(stack: RunningStack) -> None:
    stack.refresh()  # every pid the outputs name now, on top of those seen before
    pids = set(stack.process.seen_pids)
    assert stack.process.leftovers(), "the stack's processes should be visible while it runs"
    stack.process.signal(signal.SIGTERM)
    assert stack.process.wait(timeout=60) == 0, stack.process.console()[-3000:]
    assert not stack.process.outputs_path.exists()
    assert [pid for pid in pids if pid_alive(pid)] == []
    assert stack.process.leftovers() == []
    assert "stopped" in stack.process.console()
