"""The emulator schedules like Ollama's server/sched.go (0.32-0.33), in simulated time.

Each test names the Ollama behaviour it reproduces. Times are simulated seconds (see
inproc.py); lower bounds are exact (no pause ends early) up to the
spread of arrivals meant to be simultaneous, upper bounds are generous.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from llm_emulator.scheduler import MAX_QUEUE_MESSAGE

from tests.emulator.inproc import NS, emulator, ollama, seconds

CHAT = {"model": "llama3.1:8b", "messages": [{"role": "user", "content": "x"}]}


def load_s(reply: dict[str, Any]) -> float:
    return seconds(reply["load_duration"])


def expires_in(model: dict[str, Any]) -> float:
    """Real seconds until an /api/ps `expires_at`."""
    text = model["expires_at"].rstrip("Z")
    head, _, frac = text.partition(".")
    stamp = datetime.fromisoformat(head).replace(tzinfo=UTC).timestamp()
    return stamp + float("0." + (frac or "0")) - time.time()


async def test_parallel_slots_and_unbounded_wait_on_a_loaded_model() -> None:
    """getRunner hands a loaded runner out at once; llama-server's OLLAMA_NUM_PARALLEL
    semaphore makes the rest wait without bound, outside the pending queue, so
    OLLAMA_MAX_QUEUE never sheds them (issue 7758)."""
    async with emulator(ollama(num_parallel=2, max_queue=1), first_token_delay=20) as emu:
        await emu.load("llama3.2")
        start = time.monotonic()
        tasks = [asyncio.ensure_future(emu.ok("llama3.2")) for _ in range(6)]
        while emu.loaded()["llama3.2:latest"]["in_flight"] < 6:
            await asyncio.sleep(0.001)
        # Each total runs from that request's own arrival, while the waves run from the
        # first one's: a later arrival in a wave may finish up to this spread early.
        spread = (time.monotonic() - start) * emu.scale
        await emu.sleep(5)
        runner = emu.loaded()["llama3.2:latest"]
        assert (runner["in_flight"], runner["computing"], runner["waiting_for_slot"]) == (6, 2, 4)
        assert emu.view()["pending_count"] == 0
        replies = await asyncio.gather(*tasks)
    totals = sorted(seconds(r["total_duration"]) for r in replies)
    for wave, total in zip([1, 1, 2, 2, 3, 3], totals, strict=True):
        assert 20 * wave - spread <= total < 20 * wave + 19
    # The wait for a slot is not the scheduler's: load_duration stays small.
    assert all(load_s(r) < 5 for r in replies)
    assert all(seconds(r["prompt_eval_duration"]) >= 20 for r in replies)
    assert emu.counters()["rejected"] == 0


async def test_cold_requests_queue_in_order_behind_each_load() -> None:
    """processPending takes pending requests one at a time, in order, and blocks on each
    load: a cold request waits behind the one being loaded, even when its model fits."""
    times = {"llama3.2": 10, "llama3.2:1b": 10, "llama3.1:8b": 10}
    async with emulator(ollama(model_load_times=times)) as emu:
        first = asyncio.ensure_future(emu.ok("llama3.2"))
        second = emu.later(1, emu.ok("llama3.2:1b"))
        third = emu.later(2, emu.ok("llama3.1:8b"))
        await emu.sleep(5)
        view = emu.view()
        assert view["scheduling"]["model"] == "llama3.2:latest"
        assert view["scheduling"]["loading"] is True
        assert [p["model"] for p in view["pending"]] == ["llama3.2:1b", "llama3.1:8b"]
        assert await emu.ps() == []  # a model being loaded is not listed yet
        replies = await asyncio.gather(first, second, third)
        loaded = {m["name"] for m in await emu.ps()}
        assert loaded == {"llama3.2:latest", "llama3.2:1b", "llama3.1:8b"}
    assert 10 <= load_s(replies[0]) < 20
    assert 15 <= load_s(replies[1]) < 30  # its own load began at 10 s
    assert 25 <= load_s(replies[2]) < 40  # and this one's at 20 s
    assert emu.counters()["loads"] == {"llama3.2:latest": 1, "llama3.2:1b": 1, "llama3.1:8b": 1}


async def test_more_than_max_queue_pending_get_503() -> None:
    """getRunner: the pending channel holds OLLAMA_MAX_QUEUE requests; past that Ollama
    answers 503 with ErrMaxQueue. A loaded model's requests are never shed."""
    async with emulator(ollama(max_queue=2, model_load_times={"llama3.1:8b": 10})) as emu:
        await emu.load("llama3.2")
        first = asyncio.ensure_future(emu.generate("llama3.1:8b"))
        await emu.sleep(1)  # the loop took it from the queue and is loading
        queued = [emu.later(0, emu.generate("llama3.1:8b")) for _ in range(2)]
        await emu.sleep(1)
        shed = await emu.generate("llama3.1:8b")
        assert shed.status_code == 503
        assert shed.json() == {"error": MAX_QUEUE_MESSAGE}
        assert MAX_QUEUE_MESSAGE == (
            "server busy, please try again.  maximum pending requests exceeded"
        )
        v1 = await emu.client.post("/v1/chat/completions", json=CHAT)
        assert v1.status_code == 503
        assert v1.json()["error"]["message"] == MAX_QUEUE_MESSAGE
        assert (await emu.generate("llama3.2")).status_code == 200
        done = await asyncio.gather(first, *queued)
    assert [r.status_code for r in done] == [200, 200, 200]
    assert emu.counters()["rejected"] == 2


async def test_eviction_takes_an_idle_runner_first_then_the_shortest_keep_alive() -> None:
    """findRunnerToUnload at OLLAMA_MAX_LOADED_MODELS: runners sorted by session duration
    (then name); the first idle one goes; if none is idle, the shortest, once its last
    request has ended. Then the new model loads."""
    async with emulator(ollama(max_loaded_models=2)) as emu:
        await emu.load("llama3.2", keep_alive="10m")
        await emu.load("llama3.2:1b", keep_alive="1m")
        await emu.load("llama3.1:8b")
        assert set(emu.loaded()) == {"llama3.2:latest", "llama3.1:8b"}
        assert emu.counters()["evictions"] == {"llama3.2:1b": 1}

        # The idle runner goes, although the busy one has the shorter keep-alive.
        emu.app.state.knobs.first_token_delay = 30
        busy = asyncio.ensure_future(emu.ok("llama3.1:8b"))
        await emu.sleep(2)
        await emu.load("llama3.2:1b", keep_alive="1m")
        assert set(emu.loaded()) == {"llama3.2:1b", "llama3.1:8b"}

        # None idle: the shortest keep-alive (1 min) is the victim; the new model waits
        # for its request to end.
        other = asyncio.ensure_future(emu.ok("llama3.2:1b"))
        await emu.sleep(5)
        await emu.load("llama3.2")
        # The load waited for the victim's request to end (whatever the machine's pace).
        assert other.done()
        await asyncio.gather(busy, other)
        assert set(emu.loaded()) == {"llama3.2:latest", "llama3.1:8b"}
    assert emu.counters()["evictions"] == {"llama3.2:1b": 2, "llama3.2:latest": 1}


async def test_a_victim_with_steady_traffic_keeps_draining() -> None:
    """useLoadedRunner serves a victim's new requests (getRunner checks no victim flag):
    while they overlap the victim never goes idle and every cold request waits."""
    async with emulator(ollama(max_loaded_models=1), first_token_delay=10) as emu:
        await emu.load("llama3.2")
        traffic = [emu.later(5 * i, emu.ok("llama3.2")) for i in range(6)]
        cold = emu.later(2, emu.ok("llama3.2:1b"))
        await emu.sleep(20)
        assert emu.loaded()["llama3.2:latest"]["victim"] is True
        assert emu.view()["scheduling"]["model"] == "llama3.2:1b"
        replies = await asyncio.gather(*traffic)
        cold_reply = await cold
    # Six requests of 10 s on one slot: busy from 0 to 60 s. The victim's requests got
    # their runner at once; the cold one waited for all of them.
    assert all(load_s(r) < 5 for r in replies)
    assert 55 <= load_s(cold_reply) < 80
    assert emu.counters()["evictions"] == {"llama3.2:latest": 1}


async def test_keep_alive_on_a_victim_cancels_its_pending_unload() -> None:
    """useLoadedRunner copies a request's keep_alive to the runner: a victim's session
    duration goes back above 0, so when it drains processCompleted arms a timer instead
    of unloading, and the pending load waits for that timer too."""
    async with emulator(ollama(max_loaded_models=1), first_token_delay=10) as emu:
        await emu.load("llama3.2")
        first = asyncio.ensure_future(emu.ok("llama3.2"))  # busy until 10 s
        cold = emu.later(2, emu.ok("llama3.2:1b"))  # makes llama3.2 the victim
        again = emu.later(4, emu.ok("llama3.2", keep_alive="30s"))  # busy until 20 s
        await emu.sleep(25)
        ps = await emu.ps()
        assert [m["name"] for m in ps] == ["llama3.2:latest"]  # idle, not unloaded
        assert 0.1 < expires_in(ps[0]) * emu.scale <= 30
        assert emu.view()["scheduling"]["model"] == "llama3.2:1b"
        await asyncio.gather(first, again)
        reply = await cold
    assert 45 <= load_s(reply) < 70  # 20 s of traffic, then 30 s of keep-alive


async def test_other_runner_options_force_a_reload() -> None:
    """needsReload: a request whose runner options (num_ctx here) differ from the loaded
    runner's unloads it and loads it again; two clients with different num_ctx thrash
    one model (issues 8903, 10948). Sampling options do not matter."""
    async with emulator(ollama(model_load_times={"llama3.2": 4})) as emu:
        first = await emu.ok("llama3.2", options={"num_ctx": 2048})
        same = await emu.ok("llama3.2", options={"num_ctx": 2048, "temperature": 0})
        other = await emu.ok("llama3.2", options={"num_ctx": 8192})
        assert 4 <= load_s(first) < 9
        assert load_s(same) < 3
        assert 4 <= load_s(other) < 9
        ps = (await emu.ps())[0]
        kv = emu.app.state.catalog.lookup("llama3.2").spec.kv_bytes_per_token
        assert ps["context_length"] == 8192
        assert ps["size"] == 2019393189 + kv * 8192
        for num_ctx in (2048, 8192, 2048, 8192):
            await emu.ok("llama3.2", options={"num_ctx": num_ctx})
        counters = emu.counters()
    assert counters["loads"] == {"llama3.2:latest": 6}
    assert counters["reloads"] == {"llama3.2:latest": 5}
    assert counters["unloads"] == {"llama3.2:latest": 5}


async def test_keep_alive_expiry_zero_and_forever() -> None:
    """processCompleted: an idle runner unloads after its keep-alive (the request's
    keep_alive, else OLLAMA_KEEP_ALIVE); 0 unloads right after the request; negative
    never (Go's math.MaxInt64)."""
    async with emulator(ollama(keep_alive_ns=20 * NS)) as emu:
        await emu.ok("llama3.2")
        await emu.ok("llama3.2:1b", keep_alive="50s")
        await emu.ok("llama3.1:8b", keep_alive=-1)
        ps = {m["name"]: m for m in await emu.ps()}
        assert int(ps["llama3.1:8b"]["expires_at"][:4]) > 2200
        assert 30 < expires_in(ps["llama3.2:1b"]) * emu.scale <= 50
        assert 5 < expires_in(ps["llama3.2:latest"]) * emu.scale <= 20
        await emu.sleep(30)
        assert [m["name"] for m in await emu.ps()] == ["llama3.1:8b", "llama3.2:1b"]
        await emu.sleep(40)
        assert [m["name"] for m in await emu.ps()] == ["llama3.1:8b"]
        assert emu.counters()["expired"] == 2
        await emu.ok("llama3.2", keep_alive=0)
        assert [m["name"] for m in await emu.ps()] == ["llama3.1:8b"]
        assert emu.counters()["unloads"] == {"llama3.2:latest": 2, "llama3.2:1b": 1}


async def test_ps_lists_the_longest_remaining_keep_alive_first() -> None:
    """PsHandler sorts by expires_at in whole seconds, latest first."""
    async with emulator(ollama()) as emu:
        await emu.load("llama3.2", keep_alive="10m")
        await emu.load("llama3.2:1b", keep_alive="1h")
        await emu.load("llama3.1:8b", keep_alive="-1s")
        names = [m["name"] for m in await emu.ps()]
    assert names == ["llama3.1:8b", "llama3.2:1b", "llama3.2:latest"]


async def test_load_only_and_unload_requests() -> None:
    """routes.go: an empty prompt (or messages, or input) only loads the model; with
    keep_alive 0 it calls expireRunner, which unloads at once, or when the runner's
    requests in flight end."""
    async with emulator(ollama(model_load_times={"llama3.2": 10})) as emu:
        started = time.monotonic()
        await emu.load("llama3.2")
        assert (time.monotonic() - started) * emu.scale >= 10
        assert [m["name"] for m in await emu.ps()] == ["llama3.2:latest"]

        emu.app.state.knobs.first_token_delay = 10
        busy = asyncio.ensure_future(emu.ok("llama3.2"))
        await emu.sleep(2)
        unload = (await emu.generate("llama3.2", "", keep_alive=0)).json()
        assert unload["done_reason"] == "unload"
        assert [m["name"] for m in await emu.ps()] == ["llama3.2:latest"]  # still in use
        await busy
        assert await emu.ps() == []

        chat = {"model": "llama3.2:1b", "messages": []}
        assert (await emu.client.post("/api/chat", json=chat)).json()["done_reason"] == "load"
        embed = await emu.client.post("/api/embed", json={"model": "all-minilm", "input": []})
        assert embed.json() == {"model": "all-minilm", "embeddings": []}
        assert {m["name"] for m in await emu.ps()} == {"llama3.2:1b", "all-minilm:latest"}
        unload = await emu.client.post("/api/chat", json={**chat, "keep_alive": 0})
        assert unload.json()["done_reason"] == "unload"
        assert [m["name"] for m in await emu.ps()] == ["all-minilm:latest"]


async def test_ps_shows_size_vram_context_and_nothing_else() -> None:
    """/api/ps: size is weights + KV cache for num_ctx x num_parallel (llama-server's
    buffers), size_vram what is on the GPU, context_length num_ctx capped at the trained
    context, num_ctx by VRAM tier when unset (32768 on a 24 GB card)."""
    async with emulator(ollama(num_parallel=4)) as emu:
        catalog = emu.app.state.catalog
        await emu.load("llama3.2")
        await emu.client.post("/api/embed", json={"model": "all-minilm", "input": "x"})
        ps = {m["name"]: m for m in await emu.ps()}
    llama = catalog.lookup("llama3.2").spec
    minilm = catalog.lookup("all-minilm").spec
    assert ps["llama3.2:latest"]["context_length"] == 32768
    assert ps["llama3.2:latest"]["size"] == llama.size + llama.kv_bytes_per_token * 32768 * 4
    assert ps["llama3.2:latest"]["size_vram"] == ps["llama3.2:latest"]["size"]
    # Embedding models run one slot; all-minilm was trained on 512 tokens.
    assert ps["all-minilm:latest"]["context_length"] == 512
    assert ps["all-minilm:latest"]["size"] == minilm.size + minilm.kv_bytes_per_token * 512
    assert all(
        list(m) == ["name", "model", "size", "digest", "details", "expires_at", "size_vram",
                    "context_length"]
        for m in ps.values()
    )  # fmt: skip


async def test_a_model_loads_beside_others_only_in_80_percent_of_free_vram() -> None:
    """sched.go load(): with other models loaded, a model needing more than 80% of the
    free VRAM evicts (idle first, then by keep-alive and name) until it fits."""
    models = ("gemma2:27b", "mistral-small:24b", "llama3.2")
    async with emulator(ollama(context_length=4096), models=models) as emu:
        await emu.load("gemma2:27b")  # 15.6 GB + 1.5 GB of KV cache on 24 GiB
        await emu.load("llama3.2")  # 2.5 GB: fits in 80% of the 8.6 GB left
        assert set(emu.loaded()) == {"gemma2:27b", "llama3.2:latest"}
        await emu.load("mistral-small:24b")  # 15 GB: gemma2 must go, both are idle
        assert set(emu.loaded()) == {"mistral-small:24b", "llama3.2:latest"}
        view = emu.view()
    assert view["counters"]["evictions"] == {"gemma2:27b": 1}
    assert view["vram"]["used"] <= view["vram"]["total"]


async def test_a_lone_model_too_big_for_vram_runs_partly_on_cpu() -> None:
    """With nothing else loaded, processPending loads a model that does not fit anyway:
    llama-server keeps what fits on the GPU (size_vram < size) and the rest in system
    RAM, which makes it slower."""
    speeds = {"decode_speed": 100.0, "prompt_speed": 0.0}
    async with emulator(ollama(vram_gib=8, context_length=4096, **speeds), scale=10) as emu:
        small = await emu.ok("llama3.2", options={"num_predict": 20})
        big = await emu.ok("llama3.1:8b", options={"num_predict": 20, "num_gpu": 0})
        ps = {m["name"]: m for m in await emu.ps()}
    # num_gpu 0 keeps it all in system RAM: 10x slower than on the GPU.
    assert ps["llama3.1:8b"]["size_vram"] == 0
    assert seconds(big["eval_duration"]) >= 5 * seconds(small["eval_duration"])
    async with emulator(ollama(vram_gib=4, context_length=4096)) as emu:
        await emu.load("llama3.1:8b")
        ps = (await emu.ps())[0]
    assert ps["size_vram"] == 4 * 2**30 < ps["size"]


async def test_a_client_leaving_during_its_load_aborts_it() -> None:
    """llama.Load gives up when the request's context ends (client gone): the model is
    not loaded, and the next request for it loads it again."""
    async with emulator(ollama(model_load_times={"llama3.2": 10})) as emu:
        leaving = asyncio.ensure_future(emu.ok("llama3.2"))
        await emu.sleep(3)
        leaving.cancel()
        await asyncio.sleep(0.01)
        assert emu.counters()["aborted_loads"] == 1
        assert emu.view()["scheduling"] is None
        assert await emu.ps() == []
        reply = await emu.ok("llama3.2")
    assert 10 <= load_s(reply) < 20
    assert emu.counters()["loads"] == {"llama3.2:latest": 1}


async def test_scheduler_view_over_http_and_reset() -> None:
    """/_emulator/scheduler (emulator only) shows the true state; reset unloads all."""
    async with emulator(ollama()) as emu:
        await emu.load("llama3.2")
        view = (await emu.client.get("/_emulator/scheduler")).json()
        assert view["settings"]["num_parallel"] == 1
        assert view["settings"]["time_scale"] == emu.scale
        assert [r["model"] for r in view["loaded"]] == ["llama3.2:latest"]
        assert view["counters"]["loads"] == {"llama3.2:latest": 1}
        await emu.client.post("/_emulator/reset")
        assert await emu.ps() == []
        assert emu.counters()["loads"] == {}


async def test_a_re_pulled_model_loads_anew() -> None:
    """The scheduler keys runners by model file: a new digest is another model."""
    async with emulator(ollama()) as emu:
        await emu.ok("llama3.2")
        emu.app.state.catalog.set_digest("llama3.2", "0f" * 32)
        await emu.ok("llama3.2")
        ps = await emu.ps()
    assert [m["digest"] for m in ps] == ["0f" * 32]
    assert emu.counters()["loads"] == {"llama3.2:latest": 2}


async def test_reset_answers_waiting_requests_503() -> None:
    async with emulator(ollama(model_load_times={"llama3.2": 10})) as emu:
        loading = asyncio.ensure_future(emu.generate("llama3.2"))
        queued = emu.later(1, emu.generate("llama3.2:1b"))
        await emu.sleep(3)
        await emu.client.post("/_emulator/reset")
        replies = await asyncio.gather(loading, queued)
    assert [r.status_code for r in replies] == [503, 503]
    assert replies[1].json() == {"error": "the emulator was reset"}
