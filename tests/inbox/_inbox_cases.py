"""Shared by the inbox tests: how to open a case's storage, and a put helper."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ultimate_async.inbox import Inbox


class InboxCase:
    """How to open (and reopen) one implementation's storage.

    ``durable``: entries survive a new object on the same storage (a process restart).
    """

    def __init__(self, make: Callable[[], Inbox], *, durable: bool) -> None:
        self._make = make
        self.durable = durable
        self._memory: Inbox | None = None
        self.opened: list[Inbox] = []

    async def open(self) -> Inbox:
        """A started inbox on this case's storage (after a restart when called again)."""
        if self.durable or self._memory is None:
            inbox = self._make()
            self._memory = inbox
        else:
            inbox = self._memory
        await inbox.start()
        self.opened.append(inbox)
        return inbox

    async def close_all(self) -> None:
        for inbox in self.opened:
            await inbox.aclose()


Put = Callable[..., Awaitable["str | None"]]


def putter(inbox: Inbox) -> Put:
    """``put(conversation, text, key=None)``: a sendMessage-like entry carrying ``text``."""

    async def put(conversation: str | None, text: str, key: str | None = None) -> str | None:
        raw: dict[str, Any] = {
            "eventType": "sendMessage",
            "platformConversationId": conversation,
            "data": {"text": text, "messageId": key},
        }
        return await inbox.put(
            conversation_id=conversation, kind="sendMessage", raw=raw, dedup_key=key
        )

    return put
