"""Baseline: what a user writes by hand as a raw ASGI app (no framework) on uvicorn.

The ASGI counterpart of ``handwritten``: checks the shared-secret header, reads the body,
``json.loads`` it, looks the conversation up in a dict of handlers and runs the handler in a
task after answering 200.  No models, no de-duplication, no per-conversation ordering.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from benchmarks.payloads import PATH, SECRET
from benchmarks.servers._common import Stats, parse_args, serve_asgi

Handler = Callable[[dict[str, Any]], Coroutine[Any, Any, None]]


def make_app(stats: Stats) -> Callable[..., Awaitable[None]]:
    secret = SECRET.encode()
    handlers: dict[str, Handler] = {}
    tasks: set[asyncio.Task[None]] = set()

    async def default_handler(data: dict[str, Any]) -> None:
        stats.handled += 1

    async def answer(send: Any, status: int) -> None:
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"0")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["path"] != PATH or scope["method"] != "POST":
            await answer(send, 404)
            return
        token = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        if not hmac.compare_digest(token, secret):
            await answer(send, 401)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        try:
            data = json.loads(body)["data"]
            cid = data["platformConversationId"]
        except (ValueError, KeyError, TypeError):
            await answer(send, 400)
            return
        handler = handlers.get(cid, default_handler)
        task = asyncio.get_running_loop().create_task(handler(data))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        stats.acked += 1
        await answer(send, 200)

    return app


def main() -> None:
    args = parse_args(__doc__ or "")
    stats = Stats()
    serve_asgi(make_app(stats), args, stats)


if __name__ == "__main__":
    main()
