"""Bring your own web framework: the receiver is one framework-neutral call.

``await receiver.handle(body, headers)`` takes the raw body bytes and the request headers and
returns a ``WebhookResponse(status, body, content_type)`` to copy onto your framework's
response.  That is the whole integration; here it is a Starlette route::

    async def webhook(request: Request) -> Response:
        answer = await receiver.handle(await request.body(), request.headers)
        return Response(answer.body, answer.status, media_type=answer.content_type)

For FastAPI and Starlette, ``ultimate_async.asgi.WebhookApp`` does this and more (body cap
while reading, health, lifespan; see ``fastapi_app.py``); write the route yourself only where
no adapter fits.  Start the receiver with your app and ``await receiver.aclose()`` when it
shuts down, so queued handlers finish.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from _platform import platform
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ultimate_async import Conversation, WebhookReceiver


def make_app(receiver: WebhookReceiver) -> Starlette:
    async def webhook(request: Request) -> Response:
        answer = await receiver.handle(await request.body(), request.headers)  # <- the call
        return Response(answer.body, answer.status, media_type=answer.content_type)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await receiver.start()
        try:
            yield
        finally:
            await receiver.aclose()  # drain queued handlers, then stop accepting

    return Starlette(routes=[Route("/webhook", webhook, methods=["POST"])], lifespan=lifespan)


async def main() -> None:
    async with platform() as target, target.session() as session:
        receiver = WebhookReceiver(target.verifier)
        config = uvicorn.Config(
            make_app(receiver), host=target.host, port=target.port, log_level="warning"
        )
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
            await asyncio.sleep(0.01)
        host, port = server.servers[0].sockets[0].getsockname()[:2]
        target.webhook_is(f"http://{host}:{port}/webhook")
        try:
            async with Conversation(session, receiver) as conv:
                welcome = await conv.start()
                print(f"bot> {welcome.text}")
                print("visitor> Where is my order?")
                reply = await conv.ask("Where is my order?")
                print(f"bot> {reply.text}")
        finally:
            server.should_exit = True
            await serving
    print("done: every delivery went through receiver.handle()")


if __name__ == "__main__":
    asyncio.run(main())
