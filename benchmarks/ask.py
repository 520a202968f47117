"""``Conversation.ask()`` round trip versus the minimal hand-written equivalent.

``python -m benchmarks.ask --variant hand|sdk --bot URL --n 300 [--uvloop] [--no-speed]`` serves
a webhook receiver on a free port, then asks ``n`` questions one after another in one
conversation through the echo bot (``benchmarks.servers.echo_bot``) and prints one JSON line
``{"n", "p50_ms", "p99_ms", "cpu_us"}``. The hand-written side POSTs with aiohttp and awaits an
``asyncio.Future`` that its bare aiohttp webhook handler resolves; the SDK side is
``Conversation(session, receiver).ask(text, settle=0)`` over ``setup_webhook``.

``python -m benchmarks.ask --variant sim-settle|sim-until --n 20`` measures what a test (or a
``/chat`` endpoint) pays per ``ask()`` on the simulator: the demo bot answers "Where is my
order?" with two messages; ``sim-settle`` ends each turn the default way (0.5 s of quiet),
``sim-until`` with ``until=sim.turn_complete`` (what the pytest fixtures do).  No ``--bot``.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

from aiohttp import web

from benchmarks.payloads import BOT_ID, CLIENT_TEXT, PATH, SECRET
from benchmarks.servers._common import parse_loop_args, run_coroutine

API_KEY = "bench-api-key"
WARMUP = 20

Ask = Callable[[], Awaitable[None]]


async def _serve(stack: AsyncExitStack, app: web.Application) -> int:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return int(runner.addresses[0][1])


async def _hand(stack: AsyncExitStack, bot: str) -> Ask:
    import aiohttp

    secret = SECRET.encode()
    waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}

    async def webhook(request: web.Request) -> web.Response:
        if not hmac.compare_digest(request.headers.get("Authorization", "").encode(), secret):
            return web.Response(status=401)
        data = json.loads(await request.read())["data"]
        waiter = waiters.pop(data["platformConversationId"], None)
        if waiter is not None and not waiter.done():
            waiter.set_result(data)
        return web.Response()

    app = web.Application()
    app.router.add_post(PATH, webhook)
    port = await _serve(stack, app)
    session = await stack.enter_async_context(aiohttp.ClientSession())
    url = f"{bot}/{port}/converse/chat"
    headers = {"Authorization": API_KEY, "botid": BOT_ID}
    conversation_id = "ask-hand"
    payload = {
        "platformConversationId": conversation_id,
        "eventType": "message",
        "text": CLIENT_TEXT,
    }
    loop = asyncio.get_running_loop()

    async def ask() -> None:
        waiter = loop.create_future()
        waiters[conversation_id] = waiter
        async with session.post(url, json=payload, headers=headers) as resp:
            await resp.read()
            resp.raise_for_status()
        await asyncio.wait_for(waiter, 10)

    return ask


async def _sdk(stack: AsyncExitStack, bot: str) -> Ask:
    from ultimate_async.conversation import Conversation
    from ultimate_async.session import Session
    from ultimate_async.webhook import SharedSecretHeader, WebhookReceiver, setup_webhook

    receiver = WebhookReceiver(SharedSecretHeader(SECRET))
    app = web.Application()
    setup_webhook(app, receiver, path=PATH)
    port = await _serve(stack, app)
    session = await stack.enter_async_context(Session(API_KEY, BOT_ID, base_url=f"{bot}/{port}"))
    conversation = await stack.enter_async_context(
        Conversation(session, receiver, conversation_id="ask-sdk")
    )

    async def ask() -> None:
        await conversation.ask(CLIENT_TEXT, timeout=10, settle=0)

    return ask


async def _simulated(stack: AsyncExitStack, variant: str) -> Ask:
    from ultimate_async.conversation import Conversation
    from ultimate_async.session import Session
    from ultimate_async.simulator import Simulator
    from ultimate_async.webhook import SharedSecretHeader, WebhookReceiver, WebhookServer

    verifier = SharedSecretHeader(SECRET)
    receiver = WebhookReceiver(verifier)
    server = await stack.enter_async_context(WebhookServer(receiver, host="127.0.0.1", port=0))
    sim = await stack.enter_async_context(Simulator(webhook_url=server.url, verifier=verifier))
    session = await stack.enter_async_context(
        Session(sim.api_key, sim.bot_id, base_url=sim.base_url)
    )
    until = sim.turn_complete if variant == "sim-until" else None
    conversation = await stack.enter_async_context(Conversation(session, receiver, until=until))

    async def ask() -> None:
        reply = await conversation.ask("Where is my order?", timeout=10)
        if len(reply.messages) != 2:
            raise AssertionError(f"expected the demo bot's two messages, got {reply.events}")

    return ask


async def measure(variant: str, bot: str, n: int) -> dict[str, Any]:
    async with AsyncExitStack() as stack:
        if variant.startswith("sim-"):
            ask = await _simulated(stack, variant)
        else:
            ask = await (_hand(stack, bot) if variant == "hand" else _sdk(stack, bot))
        for _ in range(WARMUP if not variant.startswith("sim-") else 2):
            await ask()
        latencies = []
        cpu_start = time.process_time()
        for _ in range(n):
            start = time.perf_counter()
            await ask()
            latencies.append(time.perf_counter() - start)
        cpu = time.process_time() - cpu_start
    latencies.sort()
    return {
        "n": n,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "cpu_us": cpu / n * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--variant", required=True, choices=["hand", "sdk", "sim-settle", "sim-until"]
    )
    parser.add_argument("--bot", help="base URL of the echo bot (hand and sdk)")
    parser.add_argument("--n", type=int, default=300)
    args = parse_loop_args(parser)
    if args.bot is None and not args.variant.startswith("sim-"):
        parser.error(f"--variant {args.variant} needs --bot")
    coro = measure(args.variant, (args.bot or "").rstrip("/"), args.n)
    result = run_coroutine(coro, use_uvloop=args.uvloop)
    result["orjson"] = sys.modules.get("orjson") is not None
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
