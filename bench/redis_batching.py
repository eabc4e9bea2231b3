"""What batching the gateway's Redis commands per event-loop turn saves (redis_batch.py).

`uv run python -m bench.redis_batching`: a real redis-server on loopback; N concurrent
callers each run the admission script's shape (EVALSHA of a GET) one after another,
through redis-py's `execute_command` one by one and through `BatchingClient`. Prints
CPU µs per call (this process's user+system time / calls) and calls per second.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from pathlib import Path

import redis.asyncio as redis
import uvloop
from llm_gateway.redis_batch import BatchingClient
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tests.support.redis_server import RedisServer

SCRIPT = "return redis.call('GET', KEYS[1])"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(url: str, batched: bool, callers: int, calls: int) -> tuple[float, float]:
    client = redis.Redis.from_url(url, socket_timeout=1, retry=Retry(NoBackoff(), 0))
    batch = BatchingClient(client)
    sha = await client.script_load(SCRIPT)
    await client.set("key", "v" * 100)

    async def caller() -> None:
        for _ in range(calls):
            if batched:
                await batch.execute("EVALSHA", sha, 1, "key")
            else:
                await client.evalsha(sha, 1, "key")

    cpu, wall = cpu_seconds(), time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    cpu, wall = cpu_seconds() - cpu, time.perf_counter() - wall
    await client.aclose()
    total = callers * calls
    return cpu / total * 1e6, total / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=600, help="calls per caller")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        server = RedisServer(Path(workdir)).start()
        try:
            print(f"{'callers':>8} {'mode':>10} {'CPU µs/call':>12} {'calls/s':>10}")
            for callers in (1, 16, 32):
                for batched in (False, True):
                    calls = args.calls * 5 if callers == 1 else args.calls
                    cpu, rate = uvloop.run(measure(server.url, batched, callers, calls))
                    mode = "batched" if batched else "one by one"
                    print(f"{callers:>8} {mode:>10} {cpu:>12.1f} {rate:>10.0f}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
