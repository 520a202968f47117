"""Baseline: hand-written aiohttp + orjson + attrs/cattrs models (same dispatch as handwritten)."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable, Coroutine
from typing import Any

import attrs
import cattrs
import orjson
from aiohttp import web

from benchmarks.payloads import PATH, SECRET
from benchmarks.servers._common import Stats, parse_args, run, serve_aiohttp, stats_route


@attrs.frozen
class Button:
    type: str | None = None
    text: str | None = None


@attrs.frozen
class BotMessage:
    platformConversationId: str
    eventType: str
    type: str | None = None
    text: str | None = None
    replyId: str | None = None
    messageId: str | None = None
    confidence: float | None = None
    buttons: list[Button] = attrs.field(factory=list)


@attrs.frozen
class Envelope:
    botId: str
    data: BotMessage
    channel: str | None = None


Handler = Callable[[BotMessage], Coroutine[Any, Any, None]]


def make_app(stats: Stats) -> web.Application:
    secret = SECRET.encode()
    converter = cattrs.Converter()
    handlers: dict[str, Handler] = {}
    tasks: set[asyncio.Task[None]] = set()

    async def default_handler(msg: BotMessage) -> None:
        stats.handled += 1

    async def webhook(request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(token, secret):
            return web.Response(status=401)
        body = await request.read()
        try:
            envelope = converter.structure(orjson.loads(body), Envelope)
        except (orjson.JSONDecodeError, cattrs.BaseValidationError, KeyError, TypeError):
            return web.Response(status=400)
        msg = envelope.data
        handler = handlers.get(msg.platformConversationId, default_handler)
        task = asyncio.get_running_loop().create_task(handler(msg))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        stats.acked += 1
        return web.Response()

    app = web.Application()
    app.router.add_post(PATH, webhook)
    app.router.add_get("/stats", stats_route(stats))
    return app


def main() -> None:
    args = parse_args(__doc__ or "")
    stats = Stats()

    async def serve() -> None:
        await serve_aiohttp(make_app(stats), args.host, args.port)

    run(serve, use_uvloop=args.uvloop)


if __name__ == "__main__":
    main()
