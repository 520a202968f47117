"""``drain()`` and ``aclose()`` right after ``start()`` cover what the inbox kept from before.

A durable inbox hands its unfinished entries out first after a restart; they are not queued on
the executor until the pump takes them, so a drain that only looked at the executor returned at
once, and a deploy's ``aclose()`` right after start left them for the next restart again.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ultimate_async.inbox import SqliteInbox
from ultimate_async.webhook import EventContext, NoVerification, WebhookReceiver


def message(cid: str, text: str) -> dict[str, Any]:
    data = {"eventType": "sendMessage", "platformConversationId": cid, "type": "text"}
    return {"botId": "618a30beee4e8e87d2f94015", "channel": "chat", "data": {**data, "text": text}}


async def store_left_over(path: Path, texts: list[str]) -> None:
    """What a process killed before handling them left in the file."""
    inbox = SqliteInbox(path)
    await inbox.start()
    for text in texts:
        await inbox.put(
            conversation_id="c1", kind="message", raw=message("c1", text), dedup_key=None
        )
    await inbox.aclose()


def receiver_on(
    path: Path, handled: list[str], gate: asyncio.Event | None = None
) -> WebhookReceiver:
    receiver = WebhookReceiver(NoVerification(), inbox=SqliteInbox(path), drain_timeout=5.0)

    @receiver.on_message()
    async def record(event: Any, ctx: EventContext) -> None:
        if gate is not None:
            await gate.wait()
        handled.append(event.text)

    return receiver


async def test_drain_right_after_start_waits_for_recovered_entries(tmp_path: Path) -> None:
    path = tmp_path / "inbox.sqlite3"
    await store_left_over(path, ["one", "two"])
    handled: list[str] = []
    gate = asyncio.Event()
    receiver = receiver_on(path, handled, gate)
    await receiver.start()
    try:
        assert receiver.pending == 2  # not queued yet, but this replica's work
        assert not await receiver.drain(0.2)  # the handler is held: not drained
        gate.set()
        assert await receiver.drain(5)
        assert handled == ["one", "two"]
        assert receiver.pending == 0
        assert (await receiver.inbox.stats()).pending == 0
    finally:
        await receiver.aclose()


async def test_aclose_right_after_start_handles_recovered_entries(tmp_path: Path) -> None:
    path = tmp_path / "inbox.sqlite3"
    await store_left_over(path, ["left over"])
    handled: list[str] = []
    receiver = receiver_on(path, handled)
    await receiver.start()
    await receiver.aclose()
    assert handled == ["left over"]
    assert receiver.cancelled_on_close == 0
    inbox = SqliteInbox(path)
    await inbox.start()
    try:
        assert (await inbox.stats()).pending == 0  # done, not left for the next start again
    finally:
        await inbox.aclose()


async def test_drain_with_an_empty_inbox_returns_at_once(tmp_path: Path) -> None:
    receiver = receiver_on(tmp_path / "inbox.sqlite3", [])
    await receiver.start()
    try:
        assert receiver.pending == 0
        async with asyncio.timeout(1):
            assert await receiver.drain(5)
    finally:
        await receiver.aclose()
