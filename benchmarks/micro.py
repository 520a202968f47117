"""Per-stage cost of the SDK receiver pipeline, in-process, without HTTP (for hot-path hunting).

``python -m benchmarks.micro [--no-speed] [--uvloop]`` prints microseconds per delivery for each
stage the receiver runs (verify, JSON decode, cattrs structure, dedup, context, dispatch) next
to the whole ``receiver.handle()`` and a hand-written equivalent, so a regression can be pinned
to one stage. Figures are process CPU time (steady on a busy machine); compare lines of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from benchmarks.payloads import SECRET
from benchmarks.servers._common import parse_loop_args, run_coroutine

_TEMPLATE = (
    '{"botId":"618a30beee4e8e87d2f94015","channel":"chat","data":{'
    '"eventType":"sendMessage","platformConversationId":"conv-%d","type":"text",'
    '"replyId":"618a30be1c2ffe001ab1078f","messageId":"m-%d","confidence":0.93,'
    '"text":"Hello, this is a bot text message","buttons":[],"carouselCards":[]}}'
)


def bodies(n: int, conversations: int = 1000, offset: int = 0) -> list[bytes]:
    return [(_TEMPLATE % (i % conversations, offset + i)).encode() for i in range(n)]


def per_call_us(fn: Callable[[], object], n: int) -> float:
    start = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - start) / n * 1e6


def run_coro(coro: Coroutine[Any, Any, Any]) -> Any:
    """Drive a coroutine that never really suspends (an in-memory store's claim())."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    raise RuntimeError("coroutine suspended")


async def pipeline_us(
    handle: Callable[[bytes], Awaitable[object]], batch: list[bytes], done: Callable[[], int]
) -> float:
    """Per-delivery cost of ``handle`` with 64 in flight, including every handler's completion."""
    start = time.process_time()
    target = done() + len(batch)
    for i in range(0, len(batch), 64):
        await asyncio.gather(*(handle(b) for b in batch[i : i + 64]))
        await asyncio.sleep(0)
    while done() < target:  # noqa: ASYNC110 - polling is the measurement
        await asyncio.sleep(0)
    return (time.process_time() - start) / len(batch) * 1e6


async def measure(n: int) -> list[tuple[str, float]]:
    from multidict import CIMultiDict, CIMultiDictProxy

    from ultimate_async._json import loads
    from ultimate_async.converter import parse_webhook, parse_webhook_body
    from ultimate_async.webhook import SharedSecretHeader, WebhookReceiver
    from ultimate_async.webhook.dedup import MemoryDeduplicator, default_dedup_key

    rows: list[tuple[str, float]] = []
    body = bodies(1)[0]
    headers = CIMultiDictProxy(CIMultiDict({"Authorization": SECRET, "Content-Type": "json"}))
    verifier = SharedSecretHeader(SECRET)
    rows.append(
        ("verify (SharedSecretHeader)", per_call_us(lambda: verifier.verify(body, headers), n))
    )
    rows.append(("JSON decode (_json.loads)", per_call_us(lambda: loads(body), n)))
    raw = loads(body)
    rows.append(("structure (parse_webhook)", per_call_us(lambda: parse_webhook(raw), n)))
    rows.append(
        (
            "decode + structure (parse_webhook_body)",
            per_call_us(lambda: parse_webhook_body(body), n),
        )
    )
    rows.append(("dedup key (default_dedup_key)", per_call_us(lambda: default_dedup_key(raw), n)))
    dedup = MemoryDeduplicator()
    keys = iter([f"k{i}" for i in range(n)])
    rows.append(
        (
            "dedup claim (MemoryDeduplicator, new keys)",
            per_call_us(lambda: run_coro(dedup.claim(next(keys))), n),
        )
    )

    from datetime import UTC, datetime

    from ultimate_async.webhook.context import EventContext

    rows.append(("datetime.now(UTC)", per_call_us(lambda: datetime.now(UTC), n)))
    rows.append(
        (
            "EventContext(...) incl. datetime.now",
            per_call_us(
                lambda: EventContext(
                    "c", "b", datetime.now(UTC), "k", headers, raw, None, "message"
                ),
                n,
            ),
        )
    )

    handled = 0
    receiver = WebhookReceiver(SharedSecretHeader(SECRET))

    @receiver.on_message()
    async def on_message(msg: Any, ctx: Any) -> None:
        nonlocal handled
        handled += 1

    await pipeline_us(
        lambda b: receiver.handle(b, headers), bodies(2000, offset=10**9), lambda: handled
    )
    rows.append(
        (
            "receiver.handle() + FIFO dispatch + no-op handler",
            await pipeline_us(lambda b: receiver.handle(b, headers), bodies(n), lambda: handled),
        )
    )
    await receiver.aclose()

    # The hand-written equivalent of benchmarks/servers/handwritten.py, minus HTTP.
    secret = SECRET.encode()
    tasks: set[asyncio.Task[None]] = set()
    done_hand = 0

    async def default_handler(data: dict[str, Any]) -> None:
        nonlocal done_hand
        done_hand += 1

    handlers: dict[str, Callable[[dict[str, Any]], Coroutine[Any, Any, None]]] = {}

    async def hand(b: bytes) -> None:
        if not hmac.compare_digest(headers.get("Authorization", "").encode(), secret):
            return
        data = json.loads(b)["data"]
        task = asyncio.get_running_loop().create_task(
            handlers.get(data["platformConversationId"], default_handler)(data)
        )
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    rows.append(
        (
            "hand-written: compare + json.loads + create_task + handler",
            await pipeline_us(hand, bodies(n), lambda: done_hand),
        )
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=50_000)
    args = parse_loop_args(parser)
    rows = run_coroutine(measure(args.n), use_uvloop=args.uvloop)
    width = max(len(name) for name, _ in rows)
    for name, us in rows:
        print(f"{name:<{width}}  {us:7.2f} us")


if __name__ == "__main__":
    main()
