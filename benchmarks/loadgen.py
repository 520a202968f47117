"""A Python load generator for when ``wrk`` is unavailable (and for the smoke test).

Runs in its own process (pinned to its own core by the harness) and prints one JSON line:
``{"requests", "seconds", "rps", "p50_ms", "p99_ms", "errors", "non_2xx"}``. It is much slower
than wrk, so absolute figures are lower and ratios are compressed; the harness labels them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from benchmarks.payloads import CONVERSATIONS, SECRET, send_message_body
from benchmarks.servers._common import run_coroutine


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


async def generate(
    url: str,
    *,
    seconds: float | None,
    requests: int | None,
    connections: int,
    secret: str,
    conversations: int,
    run_id: str,
) -> dict[str, float | int]:
    import aiohttp

    headers = {"Authorization": secret, "Content-Type": "application/json"}
    latencies: list[float] = []
    counter = 0
    errors = 0
    non_2xx = 0
    deadline = time.perf_counter() + seconds if seconds is not None else float("inf")

    def next_body() -> bytes | None:
        nonlocal counter
        if requests is not None and counter >= requests:
            return None
        if time.perf_counter() >= deadline:
            return None
        counter += 1
        return send_message_body(f"conv-{counter % conversations}", f"{run_id}-{counter}")

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors, non_2xx
        while (body := next_body()) is not None:
            start = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    if not 200 <= resp.status < 300:
                        non_2xx += 1
            except aiohttp.ClientError:
                errors += 1
                continue
            latencies.append(time.perf_counter() - start)

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(connections)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "rps": len(latencies) / elapsed if elapsed > 0 else 0.0,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "errors": errors,
        "non_2xx": non_2xx,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--requests", type=int, default=None)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--secret", default=SECRET)
    parser.add_argument("--conversations", type=int, default=CONVERSATIONS)
    parser.add_argument("--run-id", default="r")
    parser.add_argument("--uvloop", action="store_true", help="generate load from uvloop")
    args = parser.parse_args()
    if args.seconds is None and args.requests is None:
        parser.error("give --seconds or --requests")
    coro = generate(
        args.url,
        seconds=args.seconds,
        requests=args.requests,
        connections=args.connections,
        secret=args.secret,
        conversations=args.conversations,
        run_id=args.run_id,
    )
    result = run_coroutine(coro, use_uvloop=args.uvloop)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
