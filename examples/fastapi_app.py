"""A FastAPI service with a ``/chat`` endpoint: the webhook receiver mounted beside your routes.

The receiver goes into FastAPI in three lines::

    webhooks = WebhookApp(receiver, path="/webhook")
    app = FastAPI(lifespan=webhooks.lifespan)   # starts the receiver, drains it on shutdown
    app.mount("/ultimate", webhooks)            # deliveries: POST /ultimate/webhook

Your frontend posts what the visitor typed to ``/chat`` and gets the bot's answer in the HTTP
response (``Conversation.ask``).  Run with uvicorn as usual (``uvicorn module:app``); here the
script starts uvicorn itself, calls its own ``/chat`` once like a frontend would, and stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import uvicorn
from _platform import Platform, platform
from fastapi import FastAPI
from pydantic import BaseModel

from ultimate_async import Conversation, WebhookReceiver
from ultimate_async.asgi import WebhookApp


class ChatIn(BaseModel):
    conversation: str
    text: str


class ChatOut(BaseModel):
    text: str
    buttons: list[str]


def make_app(target: Platform) -> FastAPI:
    receiver = WebhookReceiver(target.verifier)
    webhooks = WebhookApp(receiver, path="/webhook")
    conversations: dict[str, Conversation] = {}
    session = target.session()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with session, webhooks.lifespan(app):  # the receiver, started and drained
            yield
            for conv in conversations.values():
                await conv.end()  # endSession for every visitor still chatting

    app = FastAPI(lifespan=lifespan)
    app.mount("/ultimate", webhooks)

    @app.post("/chat")
    async def chat(message: ChatIn) -> ChatOut:
        conv = conversations.get(message.conversation)
        if conv is None:
            conv = conversations[message.conversation] = Conversation(
                session, receiver, message.conversation
            )
        reply = await conv.ask(message.text, timeout=10)
        return ChatOut(text=reply.text, buttons=[button.text for button in reply.buttons])

    return app


async def main() -> None:
    async with platform() as target:
        config = uvicorn.Config(
            make_app(target), host=target.host, port=target.port, log_level="warning"
        )
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
            await asyncio.sleep(0.01)
        host, port = server.servers[0].sockets[0].getsockname()[:2]
        base = f"http://{host}:{port}"
        target.webhook_is(f"{base}/ultimate/webhook")
        try:
            async with aiohttp.ClientSession(base) as frontend:  # what your frontend does
                for text in ("Where is my order?", "Yes"):
                    async with frontend.post(
                        "/chat", json={"conversation": "c1", "text": text}
                    ) as r:
                        answer = await r.json()
                    print(f"visitor> {text}\nbot> {answer['text']}  {answer['buttons']}")
                async with frontend.get("/ultimate/webhook") as r:
                    print("webhook health:", await r.json())
        finally:
            server.should_exit = True
            await serving


if __name__ == "__main__":
    asyncio.run(main())
