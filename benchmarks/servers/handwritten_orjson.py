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
from benchmarks.servers._common import Stats, post_app, serve_main


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

    return post_app(PATH, webhook)


if __name__ == "__main__":
    serve_main(make_app, __doc__)
