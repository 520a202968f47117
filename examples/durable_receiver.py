"""A receiver that keeps every acknowledged webhook until its handler succeeded.

``SqliteInbox`` stores each notification (one commit shared by concurrent deliveries) before
the receiver answers ``200``; a handler that raises is retried with backoff, in order; what was
not finished when the process stopped (a deploy, an OOM kill, ``kill -9``) is handled first at
the next start.  So a handler may run twice for one delivery: ``ctx.delivery_id`` (the same
across retries and restarts) makes it idempotent.  Inspect the file with
``ultimate-async inbox PATH stats | dead | replay ID | purge ID``.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from _platform import platform

from ultimate_async import BotMessage, Conversation, EventContext, WebhookReceiver, WebhookServer
from ultimate_async.inbox import HandlerRetry, SqliteInbox


class Crm:
    """Stands for your database: remembers which deliveries it already recorded."""

    def __init__(self) -> None:
        self.recorded: dict[str, str] = {}  # delivery id -> text; a table with a unique key
        self.down_once = True  # the first call fails, as a real CRM sometimes does

    async def record(self, delivery_id: str, text: str) -> None:
        if self.down_once:
            self.down_once = False
            raise ConnectionError("CRM unavailable")
        self.recorded.setdefault(delivery_id, text)


async def main(inbox_path: Path) -> None:
    crm = Crm()
    inbox = SqliteInbox(inbox_path)  # in production: a path on a persistent volume
    async with platform() as target, target.session() as session:
        receiver = WebhookReceiver(
            target.verifier,
            inbox=inbox,
            retry=HandlerRetry(max_attempts=5, backoff_base=0.1, backoff_max=5.0),
        )

        @receiver.on_message()
        async def record(message: BotMessage, ctx: EventContext) -> None:
            assert ctx.delivery_id is not None  # notifications are stored, so they have one
            if ctx.delivery_id in crm.recorded:
                return  # a re-run after a restart: already done
            try:
                await crm.record(ctx.delivery_id, message.text or "")
            except ConnectionError as error:
                print(f"crm> {error} on attempt {ctx.attempt}: the inbox will retry")
                raise
            print(f"crm> recorded on attempt {ctx.attempt}: {message.text}")

        async with WebhookServer(receiver, host=target.host, port=target.port) as server:
            target.webhook_is(server.url)
            async with Conversation(session, receiver) as conv:
                await conv.start()
                await conv.ask("Where is my order?")
            await receiver.drain(timeout=10)
            stats = await inbox.stats()
    print(f"inbox: {stats.pending} pending, {stats.dead} dead letters")
    print(f"done: {len(crm.recorded)} bot messages recorded once each")


if __name__ == "__main__":
    configured = os.environ.get("INBOX_PATH")
    if configured:
        asyncio.run(main(Path(configured)))
    else:
        with tempfile.TemporaryDirectory() as folder:
            asyncio.run(main(Path(folder) / "inbox.sqlite3"))
