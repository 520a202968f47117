"""Client CPU of one Redis de-duplication claim and one forward, in-process (issue #6 follow-up).

``python -m benchmarks.redis_micro [--no-speed] [--n 6000] [--concurrency 32]`` starts a
throwaway ``redis-server`` (on the load core) and times ``RedisDeduplicator.claim`` with unique
keys and ``RedisEventBus.forward`` of a ``sendMessage`` webhook to another replica's inbox,
``concurrency`` callers at a time. Prints one JSON line of CPU microseconds per call: the part of
the replicas row's per-delivery cost that is the Redis client's.

``python -m benchmarks.redis_micro --inbox [--requests 6000] [--reps 3]`` (issue 13) compares one
SDK receiver (aiohttp front end, ``setup_webhook``) storing every delivery in ``RedisInbox``
with the same receiver on the default ``MemoryInbox``, alternating, on the same load: handled
deliveries per second from the start of the load to the last handler run, and server CPU
microseconds per delivery (less sensitive to neighbours on a shared machine).  The server side
of it is this module again, with ``--serve-inbox memory|redis``.
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


def make_inbox_app(stats: Any, args: argparse.Namespace) -> Any:
    """The receiver under test for ``--inbox``: one catch-all handler counting runs."""
    from aiohttp import web

    from benchmarks.payloads import PATH, SECRET
    from ultimate_async.webhook import SharedSecretHeader, WebhookReceiver, setup_webhook

    inbox: Any = None
    if args.serve_inbox == "redis":
        from ultimate_async.redis import RedisInbox

        inbox = RedisInbox(args.redis)
    receiver = WebhookReceiver(SharedSecretHeader(SECRET), inbox=inbox)

    @receiver.on_message()
    async def handle(event: Any, ctx: Any) -> None:
        stats.handled += 1

    app = web.Application()
    setup_webhook(app, receiver, path=PATH)
    return app


def serve_inbox() -> None:
    from benchmarks.servers._common import parse_args, serve

    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--serve-inbox", choices=("memory", "redis"), required=True)
        parser.add_argument("--redis", default=None)

    args = parse_args("a receiver on MemoryInbox or RedisInbox", options)
    serve(lambda stats: make_inbox_app(stats, args), args)


def bench_inbox(requests: int, reps: int, connections: int) -> dict[str, Any]:
    """Alternate MemoryInbox and RedisInbox receivers under the same load; medians of reps."""
    import statistics

    from benchmarks import harness

    binary = harness.find_redis_server()
    if binary is None:
        sys.exit("redis-server not found")
    speed = ["--uvloop"] if _has("uvloop") else []
    runs: dict[str, list[tuple[float, float]]] = {"memory": [], "redis": []}
    with harness.redis_server(binary) as redis:
        for rep in range(reps):
            for variant in ("memory", "redis"):
                redis.command("FLUSHALL")
                args = ["--serve-inbox", variant, "--redis", redis.url, *speed]
                with harness.server(MODULE, args) as server:
                    harness.run_loadgen(server.url, requests=200, connections=connections)
                    warm = server.settled_stats(200, timeout=30)["handled"]
                    cpu0, started = server.cpu_seconds(), time.monotonic()
                    load = harness.run_loadgen(
                        server.url, requests=requests, connections=connections, run_id=f"{rep}"
                    )
                    expected = warm + load.requests - load.errors
                    stats = server.settled_stats(expected, timeout=60)
                    elapsed = time.monotonic() - started
                    handled = stats["handled"] - warm
                    cpu = server.cpu_seconds() - cpu0
                if handled < load.requests - load.errors:
                    sys.exit(f"{variant}: handled {handled} of {load.requests - load.errors}")
                runs[variant].append((handled / elapsed, cpu / handled * 1e6))
                print(f"  rep {rep} {variant}: {runs[variant][-1]}", file=sys.stderr, flush=True)
    result: dict[str, Any] = {"requests": requests, "reps": reps, "connections": connections}
    for variant, values in runs.items():
        result[f"{variant}_rps"] = statistics.median(v[0] for v in values)
        result[f"{variant}_cpu_us"] = statistics.median(v[1] for v in values)
    result["ratio"] = statistics.median(
        r[0] / m[0] for r, m in zip(runs["redis"], runs["memory"], strict=True)
    )
    result["cpu_ratio"] = statistics.median(
        m[1] / r[1] for r, m in zip(runs["redis"], runs["memory"], strict=True)
    )
    return result


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


MODULE = "benchmarks.redis_micro"


def main() -> None:
    if "--serve-inbox" in sys.argv:
        serve_inbox()
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--no-speed", action="store_true", help="hide orjson and uvloop")
    parser.add_argument("--inbox", action="store_true", help="RedisInbox vs MemoryInbox")
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if args.inbox:
        print(json.dumps(bench_inbox(args.requests, args.reps, args.connections)), flush=True)
        return
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
