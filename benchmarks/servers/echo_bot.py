"""A minimal local bot for the ``ask()`` round-trip benchmark.

``POST /{port}/converse/chat`` answers 200 at once and, for a ``message`` event, then delivers one
``sendMessage`` webhook (with the shared-secret header) to ``http://127.0.0.1:{port}/webhook``.
The target port rides in the base URL's path, so one bot serves every variant. Both the SDK and
the hand-written round trip talk to this same bot, so its cost cancels out of the ratio.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from benchmarks.payloads import PATH, SECRET, send_message_body
from benchmarks.servers._common import Stats, serve_main


def make_app(stats: Stats) -> web.Application:
    app = web.Application()
    tasks: set[asyncio.Task[None]] = set()
    ids = itertools.count()
    headers = {"Authorization": SECRET, "Content-Type": "application/json"}

    async def client_ctx(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession() as session:
            app["session"] = session
            yield

    async def deliver(port: str, conversation_id: str) -> None:
        body = send_message_body(conversation_id, f"echo-{next(ids)}")
        url = f"http://127.0.0.1:{port}{PATH}"
        async with app["session"].post(url, data=body, headers=headers) as resp:
            await resp.read()
        stats.handled += 1

    async def converse(request: web.Request) -> web.Response:
        payload = await request.json()
        stats.acked += 1
        if payload.get("eventType") == "message":
            task = asyncio.get_running_loop().create_task(
                deliver(request.match_info["port"], payload["platformConversationId"])
            )
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        return web.Response()

    app.cleanup_ctx.append(client_ctx)
    app.router.add_post("/{port}/converse/chat", converse)
    return app


if __name__ == "__main__":
    serve_main(make_app, __doc__)
