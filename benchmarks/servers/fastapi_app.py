"""Baseline: the same webhook on FastAPI + uvicorn + pydantic v2 (a common alternative stack).

Same work as ``handwritten``: check the shared secret, validate into pydantic models, pick the
conversation's handler from a dict and run it in a task. uvicorn runs with its defaults for the
installed packages (``loop="auto"`` picks uvloop when installed, ``http="auto"`` picks httptools
when installed, else h11), access log off; ``--uvloop``/``--asyncio-loop`` force the loop.
"""

from __future__ import annotations

import asyncio
import hmac
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Header, HTTPException, Response
from pydantic import BaseModel, Field

from benchmarks.payloads import PATH, SECRET
from benchmarks.servers._common import Stats, ready


# Module level: FastAPI resolves the (string) annotations of the route against module globals.
class Button(BaseModel):
    type: str | None = None
    text: str | None = None


class BotMessage(BaseModel):
    platformConversationId: str
    eventType: str
    type: str | None = None
    text: str | None = None
    replyId: str | None = None
    messageId: str | None = None
    confidence: float | None = None
    buttons: list[Button] = Field(default_factory=list)


class Envelope(BaseModel):
    botId: str
    data: BotMessage
    channel: str | None = None


def make_app(stats: Stats) -> FastAPI:
    secret = SECRET.encode()
    handlers: dict[str, Callable[[BotMessage], Coroutine[Any, Any, None]]] = {}
    tasks: set[asyncio.Task[None]] = set()

    async def default_handler(msg: BotMessage) -> None:
        stats.handled += 1

    app = FastAPI()

    @app.post(PATH)
    async def webhook(envelope: Envelope, authorization: str = Header("")) -> Response:
        if not hmac.compare_digest(authorization.encode(), secret):
            raise HTTPException(status_code=401)
        msg = envelope.data
        handler = handlers.get(msg.platformConversationId, default_handler)
        task = asyncio.get_running_loop().create_task(handler(msg))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        stats.acked += 1
        return Response(status_code=200)

    @app.get("/stats")
    async def get_stats() -> dict[str, Any]:
        return stats.as_dict()

    return app


def main() -> None:
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--uvloop", action="store_true")
    group.add_argument("--asyncio-loop", action="store_true")
    args = parser.parse_args()
    loop = "uvloop" if args.uvloop else "asyncio" if args.asyncio_loop else "auto"

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            ready(self.servers[0].sockets[0].getsockname()[1])

    config = uvicorn.Config(
        make_app(Stats()),
        host=args.host,
        port=args.port,
        loop=loop,
        log_level="warning",
        access_log=False,
        backlog=1024,
    )
    Server(config).run()
    sys.exit(0)


if __name__ == "__main__":
    main()
