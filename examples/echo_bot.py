"""Talk to your bot: every line you type goes to the bot, every answer comes back.

Run it in a terminal to chat interactively (an empty line ends the chat); without a terminal it
plays a short script.  Runs against a local simulator unless ULTIMATE_API_KEY is set (see
``_platform.py``).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

from _platform import platform

from ultimate_async import Conversation, Reply, WebhookReceiver, WebhookServer

SCRIPT = ["Where is my order?", "Yes"]


def show(reply: Reply) -> None:
    for message in reply.messages:
        buttons = "".join(f" [{b.text}]" for b in message.buttons)
        print(f"bot> {message.text}{buttons}")


async def visitor_lines() -> AsyncIterator[str]:
    """What the visitor says: typed lines, or the script when stdin is not a terminal."""
    if not sys.stdin.isatty():
        for text in SCRIPT:
            print(f"you> {text}")
            yield text
        return
    while True:
        try:
            text = (await asyncio.to_thread(input, "you> ")).strip()
        except EOFError:
            return
        if not text:
            return
        yield text


async def main() -> None:
    async with platform() as target:
        receiver = WebhookReceiver(target.verifier)
        async with (
            WebhookServer(receiver, host=target.host, port=target.port) as server,
            target.session() as session,
        ):
            target.webhook_is(server.url)
            async with Conversation(session, receiver) as conv:
                show(await conv.start())
                async for text in visitor_lines():
                    show(await conv.ask(text))
    print("bye")


if __name__ == "__main__":
    asyncio.run(main())
