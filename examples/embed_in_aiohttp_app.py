"""Add the webhook to an aiohttp app you already have, next to your own routes.

``setup_webhook(app, receiver, path=...)`` mounts the receiver on your app; its shutdown drains
the receiver.  Here the app also offers ``POST /ask``: your frontend posts what the visitor typed
and gets the bot's answer in the HTTP response, thanks to ``Conversation``.  At the end the
script calls its own API once, like a frontend would, and stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
from _platform import Platform, platform
from aiohttp import web

from ultimate_async import Conversation, Session, WebhookReceiver, setup_webhook

SESSION = web.AppKey("session", Session)
RECEIVER = web.AppKey("receiver", WebhookReceiver)
CONVERSATIONS = web.AppKey("conversations", dict[str, Conversation])


async def ask(request: web.Request) -> web.Response:
    """``{"conversation": id, "text": ...}`` -> the bot's answer."""
    body = await request.json()
    conversations = request.app[CONVERSATIONS]
    conv = conversations.get(body["conversation"])
    if conv is None:
        conv = Conversation(request.app[SESSION], request.app[RECEIVER], body["conversation"])
        conversations[conv.conversation_id] = conv
    reply = await conv.ask(body["text"], timeout=10)
    return web.json_response({"text": reply.text, "buttons": [b.text for b in reply.buttons]})


async def health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def make_app(target: Platform) -> web.Application:
    app = web.Application()
    app[RECEIVER] = receiver = WebhookReceiver(target.verifier)
    app[CONVERSATIONS] = {}
    setup_webhook(app, receiver, path="/ultimate/webhook")
    app.router.add_post("/ask", ask)
    app.router.add_get("/health", health)

    async def api_session(app: web.Application) -> AsyncIterator[None]:
        async with target.session() as app[SESSION]:
            yield
            for conv in app[CONVERSATIONS].values():
                await conv.end()  # endSession for every visitor still chatting

    app.cleanup_ctx.append(api_session)
    return app


async def main() -> None:
    async with platform() as target:
        runner = web.AppRunner(make_app(target))
        await runner.setup()
        site = web.TCPSite(runner, target.host, target.port)
        await site.start()
        host, port = runner.addresses[0][:2]
        base = f"http://{host}:{port}"
        target.webhook_is(f"{base}/ultimate/webhook")
        try:
            async with aiohttp.ClientSession(base) as frontend:  # what your frontend does
                for text in ("Where is my order?", "Yes"):
                    async with frontend.post(
                        "/ask", json={"conversation": "c1", "text": text}
                    ) as r:
                        answer = await r.json()
                    print(f"visitor> {text}\nbot> {answer['text']}  {answer['buttons']}")
                async with frontend.get("/health") as r:
                    print("own route /health:", await r.json())
        finally:
            await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
