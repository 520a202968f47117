"""Client CPU of one Redis de-duplication claim and one forward, in-process (issue #6 follow-up).

``python -m benchmarks.redis_micro [--no-speed] [--n 6000] [--concurrency 32]`` starts a
throwaway ``redis-server`` (on the load core) and times ``RedisDeduplicator.claim`` with unique
keys and ``RedisEventBus.forward`` of a ``sendMessage`` webhook to another replica's inbox,
``concurrency`` callers at a time. Prints one JSON line of CPU microseconds per call: the part of
the replicas row's per-delivery cost that is the Redis client's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any


async def measure(url: str, n: int, concurrency: int) -> dict[str, Any]:
    from benchmarks.payloads import send_message
    from ultimate_async.redis import RedisDeduplicator, RedisEventBus

    dedup = RedisDeduplicator(url)
    bus = RedisEventBus(url)
    raw = send_message("conv-1", "m-1")
    await bus.client.set(bus.owner_key("conv-1"), "another-replica")

    async def timed(call: Any) -> float:
        async def worker(k: int) -> None:
            for i in range(n // concurrency):
                await call(f"{k}-{i}")

        started = time.process_time()
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        return (time.process_time() - started) / (n // concurrency * concurrency) * 1e6

    async def claim(key: str) -> None:
        assert await dedup.claim(key)

    async def forward(key: str) -> None:
        assert await bus.forward("conv-1", raw)

    try:
        await timed(claim)  # warm-up: connections, script load
        return {
            "claim_cpu_us": await timed(lambda key: claim("x" + key)),
            "forward_cpu_us": await timed(forward),
            "n": n,
            "concurrency": concurrency,
        }
    finally:
        await dedup.aclose()
        await bus.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--no-speed", action="store_true", help="hide orjson and uvloop")
    args = parser.parse_args()
    if args.no_speed:
        from benchmarks.servers._common import block_speed_extras

        block_speed_extras()
    from benchmarks import harness

    binary = harness.find_redis_server()
    if binary is None:
        sys.exit("redis-server not found")
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {harness.SERVER_CPU})
    with harness.redis_server(binary) as redis:
        result = asyncio.run(measure(redis.url, args.n, args.concurrency))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
