"""Baseline: what a user writes by hand with aiohttp + stdlib json.

Checks the shared-secret header, ``json.loads`` the body, looks the conversation up in a dict of
handlers (falling back to a default) and runs the handler in a task after answering 200. No
models, no de-duplication, no per-conversation ordering: cheaper than the SDK by construction.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web

from benchmarks.payloads import PATH, SECRET
from benchmarks.servers._common import Stats, post_app, serve_main

Handler = Callable[[dict[str, Any]], Coroutine[Any, Any, None]]


def make_app(stats: Stats) -> web.Application:
    secret = SECRET.encode()
    handlers: dict[str, Handler] = {}
    tasks: set[asyncio.Task[None]] = set()

    async def default_handler(data: dict[str, Any]) -> None:
        stats.handled += 1

    async def webhook(request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(token, secret):
            return web.Response(status=401)
        body = await request.read()
        try:
            payload = json.loads(body)
            data = payload["data"]
            cid = data["platformConversationId"]
        except (ValueError, KeyError, TypeError):
            return web.Response(status=400)
        handler = handlers.get(cid, default_handler)
        task = asyncio.get_running_loop().create_task(handler(data))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        stats.acked += 1
        return web.Response()

    return post_app(PATH, webhook)


if __name__ == "__main__":
    serve_main(make_app, __doc__)
