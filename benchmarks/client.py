"""Client throughput: N chat messages at a fixed concurrency to the local sink.

``python -m benchmarks.client --variant raw|raw_orjson|sdk --url URL --n 20000 --concurrency 64
[--uvloop] [--no-speed]`` prints one JSON line ``{"n", "seconds", "rps", "cpu_us", "errors"}``
(``cpu_us``: process CPU time per message, robust against noisy neighbours). Each
variant first sends one warm-up round (``concurrency`` requests) so connection set-up is not timed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

from benchmarks.payloads import BOT_ID, CLIENT_TEXT
from benchmarks.servers._common import parse_loop_args, run_coroutine

API_KEY = "bench-api-key"
CHAT_PATH = "/converse/chat"

Send = Callable[[int], Awaitable[None]]


async def _run_workers(send: Send, n: int, concurrency: int) -> tuple[float, float, int]:
    counter = 0
    errors = 0

    async def worker() -> None:
        nonlocal counter, errors
        while counter < n:
            counter += 1
            try:
                await send(counter)
            except Exception:
                errors += 1

    start, cpu_start = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start, time.process_time() - cpu_start, errors


async def _raw_sender(stack: AsyncExitStack, url: str, *, use_orjson: bool) -> Send:
    import aiohttp

    kwargs: dict[str, Any] = {}
    if use_orjson:
        import orjson

        kwargs["json_serialize"] = lambda obj: orjson.dumps(obj).decode()
    session = await stack.enter_async_context(aiohttp.ClientSession(**kwargs))
    headers = {"Authorization": API_KEY, "botid": BOT_ID}
    endpoint = url + CHAT_PATH

    async def send(i: int) -> None:
        payload = {
            "platformConversationId": f"conv-{i % 1000}",
            "eventType": "message",
            "text": CLIENT_TEXT,
        }
        async with session.post(endpoint, json=payload, headers=headers) as resp:
            await resp.read()
            resp.raise_for_status()

    return send


async def _sdk_sender(stack: AsyncExitStack, url: str) -> Send:
    from ultimate_async.session import Session

    session = await stack.enter_async_context(Session(API_KEY, BOT_ID, base_url=url))
    chat = session.chat

    async def send(i: int) -> None:
        await chat.send_message(f"conv-{i % 1000}", CLIENT_TEXT)

    return send


async def measure(
    variant: str, url: str, *, n: int, concurrency: int
) -> dict[str, float | int | str | bool]:
    async with AsyncExitStack() as stack:
        if variant == "raw":
            send = await _raw_sender(stack, url, use_orjson=False)
        elif variant == "raw_orjson":
            send = await _raw_sender(stack, url, use_orjson=True)
        elif variant == "sdk":
            send = await _sdk_sender(stack, url)
        else:
            raise ValueError(f"unknown variant {variant!r}")
        await _run_workers(send, concurrency, concurrency)  # warm-up: open the connections
        seconds, cpu, errors = await _run_workers(send, n, concurrency)
    loop = asyncio.get_running_loop()
    return {
        "n": n,
        "seconds": seconds,
        "rps": n / seconds if seconds > 0 else 0.0,
        "cpu_us": cpu / n * 1e6,
        "errors": errors,
        "loop": type(loop).__module__,
        "orjson": sys.modules.get("orjson") is not None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variant", required=True, choices=["raw", "raw_orjson", "sdk"])
    parser.add_argument("--url", required=True, help="base URL of the sink")
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parse_loop_args(parser)
    coro = measure(args.variant, args.url.rstrip("/"), n=args.n, concurrency=args.concurrency)
    result = run_coroutine(coro, use_uvloop=args.uvloop)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
