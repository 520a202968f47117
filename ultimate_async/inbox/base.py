"""The :class:`Inbox` contract: where an acknowledged notification lives until it is handled.

Ultimate documents no webhook retries, so once the receiver answers ``200`` the event is ours to
keep.  The receiver *puts* every notification into the inbox before it answers (a storage failure
answers ``503`` so the platform tries again), and the dispatcher *gets* entries back out, runs
their handlers in per-conversation order, and marks each one *done* or *failed*.  An entry that
was stored but not done when the process stopped is handed out again by the next :meth:`start`,
before anything new: delivery is at-least-once.

Three implementations share this contract: :class:`~ultimate_async.inbox.MemoryInbox` (the
default, lost with the process), :class:`~ultimate_async.inbox.SqliteInbox` (one replica, on
disk) and :class:`~ultimate_async.redis.RedisInbox` (several replicas, Redis Streams).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol, runtime_checkable

import attrs

__all__ = ["DeadLetter", "Inbox", "InboxEntry", "InboxStats"]


# Not slotted: attrs then fills a frozen instance's ``__dict__`` directly instead of calling
# ``object.__setattr__`` once per field, and one entry is made per delivery.
@attrs.frozen(slots=False)
class InboxEntry:
    """One stored notification, as the dispatcher receives it.

    ``delivery_id`` is assigned by the inbox at :meth:`Inbox.put` and stays the same across
    retries and restarts (handlers see it as ``ctx.delivery_id``).  ``attempt`` is the attempt
    this hand-out represents: 1 the first time, one more after every recorded failure (also
    across restarts).  ``raw`` is the parsed webhook body, exactly as received.
    """

    delivery_id: str
    conversation_id: str | None
    kind: str
    raw: Mapping[str, Any] = attrs.field(repr=False)
    attempt: int = 1
    stored_at: float = 0.0
    dedup_key: str | None = None


@attrs.frozen
class InboxStats:
    """``pending``: stored and not yet done (running included); ``dead``: dead letters."""

    pending: int
    dead: int


@attrs.frozen
class DeadLetter:
    """An entry whose handler failed ``max_attempts`` times; kept until replayed or purged."""

    delivery_id: str
    conversation_id: str | None
    kind: str
    attempts: int
    last_error: str
    raw: Mapping[str, Any] = attrs.field(repr=False)
    stored_at: float


@runtime_checkable
class Inbox(Protocol):
    """Stores acknowledged notifications until a handler has finished with them.

    Ordering contract: for one conversation, :meth:`get` hands entries out in the order they
    were put (entries recovered at :meth:`start` first).  The dispatcher keeps that order while
    it runs and retries them; the inbox does not hold an entry back while an earlier one of the
    same conversation is still running.

    Optional class attribute ``shared = True``: entries this process puts may be handed out to
    another process (``RedisInbox``).  Without it the receiver assumes every entry it puts comes
    back from its own :meth:`get`, and ``drain()`` waits for that.

    Optional method ``put_and_take(*, conversation_id, kind, raw, dedup_key)`` (an in-process
    hand-off, ``MemoryInbox``): like :meth:`put`, but it may return the stored
    :class:`InboxEntry` itself, which is then handed out to the caller at once, as if
    :meth:`get` had returned it (the caller settles it with :meth:`done` / :meth:`failed`;
    :meth:`get` will not return it unless the inbox is restarted before that).  It returns the
    delivery id instead when the entry was queued for :meth:`get` (e.g. behind recovered
    entries it must not overtake), and ``None`` for a duplicate, as :meth:`put` does.
    """

    async def start(self) -> None:
        """Open the storage.  Entries stored but not done become the first :meth:`get` results.

        Idempotent; a closed inbox may be started again.
        """

    async def aclose(self) -> None:
        """Stop handing out entries and release the storage.  What is not done stays stored
        (durable inboxes) for the next :meth:`start`.  Idempotent."""

    async def put(
        self,
        *,
        conversation_id: str | None,
        kind: str,
        raw: Mapping[str, Any],
        dedup_key: str | None,
    ) -> str | None:
        """Store one notification and return its ``delivery_id``.

        Returns ``None`` (nothing stored) when ``dedup_key`` is not ``None`` and an entry with
        that key is stored, or was done within the inbox's ``dedup_ttl``.  The check and the
        store are one atomic step: a key is never marked seen without its event stored.
        Raises :class:`~ultimate_async.errors.BackendUnavailableError` when the storage failed;
        then nothing was stored and the key is not marked.  Returns only once the entry is
        durable (committed) for a durable inbox.
        """

    async def get(self) -> InboxEntry:
        """Wait for the next entry this replica should handle."""

    async def done(self, entry: InboxEntry) -> None:
        """The handler finished: remove the entry (its ``dedup_key`` stays seen for the TTL)."""

    async def failed(self, entry: InboxEntry, error: str, *, dead: bool) -> None:
        """Record a failed attempt (``error`` is a one-line description, no secrets).

        With ``dead=True`` the entry becomes a dead letter and is not handed out again until
        :meth:`replay`.  With ``dead=False`` the dispatcher retries it itself; the recorded
        attempt count is what a restart resumes from.
        """

    async def stats(self) -> InboxStats:
        """How many entries are pending and how many are dead letters."""

    def dead_letters(self) -> AsyncIterator[DeadLetter]:
        """Every dead letter, oldest first."""

    async def replay(self, delivery_id: str) -> None:
        """Put a dead letter back at the end of its conversation (attempts start again).

        Raises :class:`LookupError` when no dead letter has that id.
        """

    async def purge(self, delivery_id: str) -> None:
        """Drop one dead letter for good.  Raises :class:`LookupError` when there is none."""
