"""What a handler learns about a delivery besides the event itself: :class:`EventContext`."""

from __future__ import annotations

from collections.abc import Coroutine, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import attrs

from ..errors import ConfigurationError, PayloadError

if TYPE_CHECKING:  # the receiver never imports the sending half at runtime
    import asyncio

    from ..session import Session

__all__ = ["EventContext"]

_R = TypeVar("_R")


class _Spawner(Protocol):
    def spawn(
        self, coro: Coroutine[Any, Any, _R], *, ctx: EventContext | None = ...
    ) -> asyncio.Task[_R]: ...


# Not slotted: attrs then fills a frozen instance's ``__dict__`` directly instead of calling
# ``object.__setattr__`` once per field, and one context is made per delivery.
@attrs.frozen(slots=False)
class EventContext:
    """Facts about one delivery, passed to every handler next to the event.

    ``platform_conversation_id`` is the conversation's id as *your* side created it (the one
    every chat API call takes; :attr:`conversation_id` is the same, never ``None``).  It is not
    ``ActionCall.conversation_id`` / ``TicketReply.conversation_id``, which are the platform's
    internal ids and can be ignored.  ``headers`` is a read-only, case-insensitive view of the
    request headers (empty for events forwarded from another replica); ``raw`` is the whole
    parsed body; ``dedup_key`` is ``None`` when the delivery is never treated as a duplicate;
    ``session`` is the receiver's ``Session`` (``None`` when it has none; :attr:`api` raises
    instead).

    ``delivery_id`` names the stored notification (stable across retries and restarts; ``None``
    for requests and ``ack="after_handler"`` deliveries, which are not stored) and ``attempt``
    counts the runs of its handler, 1 the first time: together they let a handler that must not
    act twice (charge a card, open a ticket) remember what it already did.
    """

    platform_conversation_id: str | None
    bot_id: str | None
    received_at: datetime
    dedup_key: str | None
    headers: Mapping[str, str] = attrs.field(repr=False)
    raw: Mapping[str, Any] = attrs.field(repr=False)
    session: Session | None = attrs.field(default=None, repr=False)
    kind: str = "unknown"
    forwarded: bool = False
    delivery_id: str | None = None
    attempt: int = 1
    _spawner: _Spawner | None = attrs.field(default=None, repr=False, eq=False, alias="spawner")

    @property
    def api(self) -> Session:
        """The receiver's :class:`~ultimate_async.Session`, to answer through the API.

        Raises :class:`~ultimate_async.errors.ConfigurationError` when the receiver was built
        without ``session=``, so a handler needs no ``assert ctx.session is not None``.
        """
        session = self.session
        if session is None:
            raise ConfigurationError(
                "this handler needs a Session: pass WebhookReceiver(..., session=Session(...))"
            )
        return session

    @property
    def conversation_id(self) -> str:
        """``platform_conversation_id``, for events that always name their conversation.

        Raises :class:`~ultimate_async.errors.PayloadError` when this event carries none
        (alerts and unknown bodies may not); the receiver reports it like any handler error.
        """
        conversation_id = self.platform_conversation_id
        if conversation_id is None:
            raise PayloadError([f"this {self.kind} event has no platformConversationId"])
        return conversation_id

    def spawn(self, coro: Coroutine[Any, Any, _R]) -> asyncio.Task[_R]:
        """Run ``coro`` in the background, after this handler returns (its HTTP answer too).

        Unlike a bare ``asyncio.create_task``, the task is tracked by the receiver: shutdown
        drains it like a handler (cancelling it after ``drain_timeout``), and an exception is
        logged and passed to ``on_error`` with this event.  Use it for work a request must not
        wait for, e.g. joining as an agent after accepting an ``escalate``.
        """
        spawner = self._spawner
        if spawner is None:
            coro.close()
            raise ConfigurationError("this EventContext was not made by a receiver: cannot spawn")
        return spawner.spawn(coro, ctx=self)
