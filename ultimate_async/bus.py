"""How receiver replicas share events: the :class:`EventBus` protocol and the in-process bus.

A receiver *holds* a conversation while it has a handler registered for it or a
``Conversation`` waiting on it.  With several replicas behind a load balancer, a webhook can land
on any of them; the bus forwards it to the replica that holds the conversation.  The default
:class:`LocalEventBus` is a single process, so there is never anyone to forward to.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from .errors import BackendUnavailableError

__all__ = ["BackendUnavailableError", "Deliver", "EventBus", "LocalEventBus"]

#: Called by the bus on the holding replica with ``(conversation_id, raw_body)``; the receiver
#: feeds the event into its own per-conversation queue.
Deliver = Callable[[str, Mapping[str, Any]], Awaitable[None]]


@runtime_checkable
class EventBus(Protocol):
    """Routes events between receiver replicas.

    The receiver calls :meth:`start` once with its local delivery callback, :meth:`hold` /
    :meth:`release` as conversations gain and lose their last local handler or waiter, and
    :meth:`forward` for each event of a conversation it does not hold itself.

    A bus may declare ``forwards = False`` (a class attribute) when :meth:`forward` can never
    return ``True``, as :class:`LocalEventBus` does: the receiver then skips the call on its hot
    path.  Without the attribute a bus is asked for every event.
    """

    async def start(self, deliver: Deliver) -> None:
        """Begin receiving events forwarded by other replicas."""

    async def aclose(self) -> None:
        """Stop receiving, withdraw every announcement, release connections. Idempotent."""

    async def hold(self, conversation_id: str) -> None:
        """Announce that this replica holds ``conversation_id``; returns once others can route."""

    async def release(self, conversation_id: str) -> None:
        """Withdraw the announcement for ``conversation_id``."""

    async def forward(self, conversation_id: str, raw: Mapping[str, Any]) -> bool:
        """Send ``raw`` to the replica holding ``conversation_id``.

        Returns ``False`` when no *other* replica holds it (the caller then dispatches locally).
        Raises :class:`BackendUnavailableError` when the bus cannot be reached.
        """


class LocalEventBus:
    """The single-process bus: every conversation is local, nothing is ever forwarded.

    It is the receiver's default, so one code path serves one process and many replicas.
    """

    #: :meth:`forward` never forwards (see :class:`EventBus`).
    forwards = False

    async def start(self, deliver: Deliver) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def hold(self, conversation_id: str) -> None:
        return None

    async def release(self, conversation_id: str) -> None:
        return None

    async def forward(self, conversation_id: str, raw: Mapping[str, Any]) -> bool:
        return False
