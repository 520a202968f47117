"""Memory of the SDK receiver, driven in-process through ``receiver.handle(body, headers)``.

``python -m benchmarks.memory register --conversations 100000`` measures the resident memory one
``receiver.register(cid, handler)`` of an idle conversation costs.
``python -m benchmarks.memory deliver --conversations 100000 --deliveries 1000000`` pushes
deliveries round-robin over that many conversations (64 concurrent "connections", unique
messageIds) to a no-op ``on_message`` handler and reports RSS at the start, after the first pass
over all conversations and at the end, once every handler has run (``--no-dedup`` runs the
same without de-duplication, to separate the bounded dedup store from per-conversation state).
Each prints one JSON line.
``--profile FILE`` writes a cProfile of the delivery loop (for hot-path hunting).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from benchmarks.payloads import SECRET
from benchmarks.servers._common import parse_loop_args, run_coroutine

if TYPE_CHECKING:
    from ultimate_async.webhook import WebhookReceiver

_PAGE = os.sysconf("SC_PAGE_SIZE")
_TEMPLATE = (
    '{"botId":"618a30beee4e8e87d2f94015","channel":"chat","data":{'
    '"eventType":"sendMessage","platformConversationId":"conv-%d","type":"text",'
    '"replyId":"618a30be1c2ffe001ab1078f","messageId":"m-%d","confidence":0.93,'
    '"text":"Hello, this is a bot text message","buttons":[],"carouselCards":[]}}'
)


def rss_bytes() -> int:
    """Current resident set size (not the peak), from /proc/self/statm."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


class Deliveries:
    """Signed ``sendMessage`` deliveries through ``receiver.handle()``, in-process.

    ``concurrency`` callers post one after another (each yields once per delivery, as a socket
    read would), over ``conversations`` conversations with unique message ids; a no-op
    ``on_message`` counts what was handled.
    """

    def __init__(self, receiver: WebhookReceiver, conversations: int, concurrency: int) -> None:
        self.receiver = receiver
        self.conversations = conversations
        self.concurrency = concurrency
        self.sent = 0
        self.handled = 0
        self.statuses: dict[int, int] = {}
        self.headers = {"Authorization": SECRET, "Content-Type": "application/json"}

        @receiver.on_message()
        async def on_message(msg: Any, ctx: Any) -> None:
            self.handled += 1

    async def drive(self, total: int) -> None:
        end = self.sent + total
        handle, headers, statuses = self.receiver.handle, self.headers, self.statuses

        async def connection() -> None:
            while self.sent < end:
                i = self.sent
                self.sent += 1
                body = (_TEMPLATE % (i % self.conversations, i)).encode()
                response = await handle(body, headers)
                statuses[response.status] = statuses.get(response.status, 0) + 1
                await asyncio.sleep(0)  # a socket read would yield here

        await asyncio.gather(*(connection() for _ in range(self.concurrency)))


def _settled_rss() -> int:
    gc.collect()
    return rss_bytes()


async def measure_register(conversations: int) -> dict[str, Any]:
    from ultimate_async.webhook import SharedSecretHeader, WebhookReceiver

    receiver = WebhookReceiver(SharedSecretHeader(SECRET))

    async def handler(event: Any, ctx: Any) -> None:
        return None

    # The ids exist in the user's program anyway; only what registering adds is measured.
    cids = [f"conv-{i:08d}" for i in range(conversations)]
    for _ in range(3):
        await asyncio.sleep(0)
    before = _settled_rss()
    started = time.perf_counter()
    registrations = [receiver.register(cid, handler) for cid in cids]
    for _ in range(3):
        await asyncio.sleep(0)
    seconds = time.perf_counter() - started
    after = _settled_rss()
    held = len(receiver._registrations)  # what was measured really was registered
    for registration in registrations:
        registration.remove()
    for _ in range(3):
        await asyncio.sleep(0)
    left = len(receiver._registrations)
    await receiver.aclose()
    return {
        "conversations": conversations,
        "held": held,
        "left_after_remove": left,
        "rss_before": before,
        "rss_after": after,
        "bytes_per_conversation": (after - before) / conversations,
        "register_us": seconds / conversations * 1e6,
    }


async def measure_deliver(
    conversations: int,
    deliveries: int,
    concurrency: int,
    profile: str | None,
    dedup: bool = True,
) -> dict[str, Any]:
    from ultimate_async.webhook import SharedSecretHeader, WebhookReceiver

    if dedup:
        receiver = WebhookReceiver(SharedSecretHeader(SECRET))
    else:
        receiver = WebhookReceiver(SharedSecretHeader(SECRET), dedup=None)
    load = Deliveries(receiver, conversations, concurrency)
    drive = load.drive

    async def drained(limit: float = 120.0) -> bool:
        deadline = time.perf_counter() + limit
        while load.handled < load.sent:
            if time.perf_counter() > deadline:
                return False
            await asyncio.sleep(0.001)
        return True

    warmup = min(1000, deliveries)
    await drive(warmup)
    await drained()
    start_rss = _settled_rss()

    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    started = time.perf_counter()
    first_pass = min(conversations, deliveries)
    await drive(first_pass)
    await drained()
    first_pass_rss = _settled_rss()
    await drive(deliveries - first_pass)
    all_drained = await drained()
    seconds = time.perf_counter() - started
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(str(profile))
    end_rss = _settled_rss()
    dedup_keys = len(receiver.dedup) if receiver.dedup is not None else 0  # type: ignore[arg-type]
    await receiver.aclose()
    return {
        "dedup": dedup,
        "dedup_keys": dedup_keys,
        "conversations": conversations,
        "deliveries": deliveries,
        "handled": load.handled - warmup,
        "drained": all_drained,
        "statuses": {str(k): v for k, v in sorted(load.statuses.items())},
        "rss_start": start_rss,
        "rss_first_pass": first_pass_rss,
        "rss_end": end_rss,
        "growth": end_rss - start_rss,
        "growth_after_first_pass": end_rss - first_pass_rss,
        "handle_us": seconds / deliveries * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("phase", choices=["register", "deliver"])
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--deliveries", type=int, default=1_000_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--profile", default=None, help="write a cProfile of the delivery loop")
    parser.add_argument(
        "--no-dedup", action="store_true", help="dedup=None: isolate per-conversation state"
    )
    args = parse_loop_args(parser)
    if args.phase == "register":
        coro = measure_register(args.conversations)
    else:
        coro = measure_deliver(
            args.conversations,
            args.deliveries,
            args.concurrency,
            args.profile,
            dedup=not args.no_dedup,
        )
    result = run_coroutine(coro, use_uvloop=args.uvloop)
    result["orjson"] = sys.modules.get("orjson") is not None
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
