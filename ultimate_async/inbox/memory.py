"""The default inbox: entries in process memory, bounded, lost with the process.

This is today's behaviour (acknowledge, queue, handle) given the inbox contract, so that the
dispatcher's retries and dead letters work the same on every inbox.  It is the hot path of
every receiver that did not choose a durable inbox, so a put is a few dict and deque operations
and no await unless a shared :class:`~ultimate_async.webhook.dedup.Deduplicator` is given.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Any

import attrs

from ..errors import BackendUnavailableError, ConfigurationError
from ..webhook.dedup import Deduplicator, MemoryDeduplicator
from ._handout import hand_over
from .base import DeadLetter, InboxEntry, InboxStats

__all__ = ["MemoryInbox"]

logger = logging.getLogger("ultimate_async.inbox")


class MemoryInbox:
    """Acknowledged notifications held in this process until their handler is done.

    ``max_pending`` bounds the entries stored and not done (running ones included): past it a
    :meth:`put` raises :class:`~ultimate_async.errors.BackendUnavailableError` (the receiver
    answers ``503`` and the platform may try again later) instead of growing without limit.
    ``max_dead`` bounds the dead letters kept; past it the oldest is dropped (logged).

    De-duplication: ``dedup`` (for example a ``RedisDeduplicator`` shared by replicas) decides
    which keys were seen; without it the inbox keeps its own keys in memory for ``dedup_ttl``
    seconds (at most ``dedup_max_keys``).  A key claimed for a put that is then refused is
    forgotten again, so a redelivery is stored.

    Entries survive :meth:`aclose` / :meth:`start` (a receiver reopened in the same process
    hands out what it had not finished, first), but not the process.
    """

    def __init__(
        self,
        *,
        max_pending: int = 100_000,
        max_dead: int = 10_000,
        dedup: Deduplicator | None = None,
        dedup_ttl: float = 600.0,
        dedup_max_keys: int = 100_000,
    ) -> None:
        if max_pending < 1:
            raise ConfigurationError(f"max_pending must be >= 1, got {max_pending!r}")
        if max_dead < 0:
            raise ConfigurationError(f"max_dead must be >= 0, got {max_dead!r}")
        if dedup is None:
            if dedup_ttl <= 0 or dedup_max_keys < 1:
                raise ConfigurationError("dedup_ttl and dedup_max_keys must be positive")
            dedup = MemoryDeduplicator(ttl=dedup_ttl, max_size=dedup_max_keys)
        self.max_pending = max_pending
        self.max_dead = max_dead
        self._dedup = dedup
        # delivery ids are unique across processes too (handlers may store them to stay
        # idempotent): a random prefix per inbox, then a counter.
        self._prefix = uuid.uuid4().hex[:12] + "-"
        self._counter = itertools.count(1)
        # Every entry stored and not done, in put order (a replayed entry is re-inserted at the
        # end); the value is the entry as it is handed out next (its attempt number).
        self._pending: dict[str, InboxEntry] = {}
        self._dead: dict[str, DeadLetter] = {}
        self._ready: deque[InboxEntry] = deque()
        self._getters: deque[asyncio.Future[InboxEntry]] = deque()
        self._open = False
        self._stale = False  # entries were handed out before the last aclose()

    def __repr__(self) -> str:
        return (
            f"MemoryInbox(max_pending={self.max_pending!r}, pending={len(self._pending)}, "
            f"dead={len(self._dead)})"
        )

    async def start(self) -> None:
        if self._open:
            return
        if self._stale:
            # Whatever was handed out and not done comes back first, in put order.
            self._ready = deque(self._pending.values())
            self._stale = False
        self._open = True
        self._wake()

    async def aclose(self) -> None:
        if not self._open:
            return
        self._open = False
        self._stale = True

    async def put(
        self,
        *,
        conversation_id: str | None,
        kind: str,
        raw: Mapping[str, Any],
        dedup_key: str | None,
    ) -> str | None:
        stored = await self.put_and_take(
            conversation_id=conversation_id, kind=kind, raw=raw, dedup_key=dedup_key
        )
        if isinstance(stored, InboxEntry):  # not taken after all: queued for get()
            self._offer(stored)
            return stored.delivery_id
        return stored

    async def put_and_take(
        self,
        *,
        conversation_id: str | None,
        kind: str,
        raw: Mapping[str, Any],
        dedup_key: str | None,
    ) -> InboxEntry | str | None:
        """:meth:`put`, handing the entry straight back to the caller (the receiver's own
        dispatcher) instead of through :meth:`get`: no queue and no task switch per delivery.

        The entry is queued as by :meth:`put` (its delivery id returned) while the inbox is
        closed or earlier entries still wait for :meth:`get`: it must not overtake them.
        """
        if len(self._pending) >= self.max_pending:
            raise BackendUnavailableError(f"inbox full ({self.max_pending} pending entries)")
        if dedup_key is not None:
            if not await self._dedup.claim(dedup_key):
                return None
            if len(self._pending) >= self.max_pending:  # filled while the claim was awaited
                await self._dedup.forget(dedup_key)
                raise BackendUnavailableError(f"inbox full ({self.max_pending} pending entries)")
        delivery_id = self._prefix + str(next(self._counter))
        entry = InboxEntry(delivery_id, conversation_id, kind, raw, 1, time.time(), dedup_key)
        self._pending[delivery_id] = entry
        if self._ready or not self._open:
            self._offer(entry)
            return delivery_id
        return entry

    def _offer(self, entry: InboxEntry) -> None:
        """Hand ``entry`` to a waiting :meth:`get`, or queue it (getters wait only on empty)."""
        if not (self._open and hand_over(self._getters, entry)):
            self._ready.append(entry)

    def _wake(self) -> None:
        while self._ready and self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(self._ready.popleft())

    async def get(self) -> InboxEntry:
        if self._open and self._ready:
            return self._ready.popleft()
        getter: asyncio.Future[InboxEntry] = asyncio.get_running_loop().create_future()
        self._getters.append(getter)
        return await getter

    async def done(self, entry: InboxEntry) -> None:
        self._pending.pop(entry.delivery_id, None)

    async def failed(self, entry: InboxEntry, error: str, *, dead: bool) -> None:
        stored = self._pending.get(entry.delivery_id)
        if stored is None:
            return
        if not dead:
            self._pending[entry.delivery_id] = attrs.evolve(stored, attempt=entry.attempt + 1)
            return
        del self._pending[entry.delivery_id]
        if self.max_dead == 0:
            logger.error("dead letter %s dropped (max_dead=0)", entry.delivery_id)
            return
        if len(self._dead) >= self.max_dead:
            oldest = next(iter(self._dead))
            del self._dead[oldest]
            logger.error("dead letter %s dropped: more than max_dead=%d", oldest, self.max_dead)
        self._dead[entry.delivery_id] = DeadLetter(
            delivery_id=entry.delivery_id,
            conversation_id=entry.conversation_id,
            kind=entry.kind,
            attempts=entry.attempt,
            last_error=error,
            raw=entry.raw,
            stored_at=entry.stored_at,
        )

    async def stats(self) -> InboxStats:
        return InboxStats(pending=len(self._pending), dead=len(self._dead))

    async def dead_letters(self) -> AsyncIterator[DeadLetter]:
        for letter in list(self._dead.values()):
            yield letter

    async def replay(self, delivery_id: str) -> None:
        letter = self._dead.pop(delivery_id, None)
        if letter is None:
            raise LookupError(f"no dead letter {delivery_id!r}")
        entry = InboxEntry(
            letter.delivery_id,
            letter.conversation_id,
            letter.kind,
            letter.raw,
            1,
            letter.stored_at,
            None,
        )
        self._pending[delivery_id] = entry
        self._offer(entry)

    async def purge(self, delivery_id: str) -> None:
        if self._dead.pop(delivery_id, None) is None:
            raise LookupError(f"no dead letter {delivery_id!r}")
