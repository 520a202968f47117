"""Replica membership: which conversations this receiver holds, told to the event bus.

A receiver *holds* a conversation while a ``register()``ed observer or a conversation-specific
handler exists for it; the bus routes events of held conversations to the replica holding them
(:mod:`ultimate_async.bus`).  This module keeps the count of holds per conversation, announces
the first hold and the last release to the bus in order (one task per conversation at a time,
so hold/release/hold never arrive reversed), and lets a caller wait until an announcement is
done (:meth:`Registration.ready`).  With the default :class:`~ultimate_async.bus.LocalEventBus`
every announcement is a no-op, and the code path is the same.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from ..bus import Deliver, EventBus
from ..errors import HandlerConflictError

if TYPE_CHECKING:
    from .router import EventHandler

__all__ = ["Membership", "Registration"]

log = logging.getLogger("ultimate_async.webhook")


class Registration:
    """A handler observing every event of one conversation (from ``WebhookReceiver.register``).

    It *observes*: the kind handlers (``on_message`` ...) still run for the same events, unless
    ``exclusive`` is true, which makes it take the catch-all handlers' place for this
    conversation's notifications.  ``remove()`` stops it (idempotent); ``await ready()`` returns
    once other replicas can route this conversation's events here.
    """

    def __init__(
        self,
        membership: Membership,
        conversation_id: str,
        handler: EventHandler,
        *,
        exclusive: bool = False,
    ) -> None:
        self.conversation_id = conversation_id
        self.handler = handler
        self.exclusive = exclusive
        self._membership = membership
        self._active = True

    def __repr__(self) -> str:
        state = "active" if self._active else "removed"
        how = ", exclusive" if self.exclusive else ""
        return f"Registration(conversation_id={self.conversation_id!r}{how}, {state})"

    @property
    def active(self) -> bool:
        return self._active

    def remove(self) -> None:
        """Stop observing; releases the conversation when nothing else holds it."""
        self._membership.unregister(self)

    async def ready(self) -> None:
        """Wait until the bus announced this conversation (raises if the bus is unreachable)."""
        await self._membership.ready(self.conversation_id)


class Membership:
    """Registrations and holds of one receiver, and their announcements on ``bus``.

    ``ensure_started`` is the receiver's ``start``: :meth:`ready` calls it, since a
    conversation can only be announced on a started bus.  ``restart_needed`` is called when a
    hold changed outside an event loop (sync code): the next start announces it.
    """

    def __init__(
        self,
        bus: EventBus,
        ensure_started: Callable[[], Awaitable[None]],
        restart_needed: Callable[[], None],
    ) -> None:
        self.bus = bus
        self.registrations: dict[str, Registration] = {}
        self.holds: dict[str, int] = {}
        self._ensure_started = ensure_started
        self._restart_needed = restart_needed
        self._tasks: dict[str, asyncio.Task[BaseException | None]] = {}
        self._bus_started = False

    # -- registrations ----------------------------------------------------------------------

    def register(
        self, conversation_id: str, handler: EventHandler, *, replace: bool, exclusive: bool
    ) -> Registration:
        existing = self.registrations.get(conversation_id)
        if existing is not None and not replace:
            raise HandlerConflictError(
                f"a handler is already registered for conversation {conversation_id!r}"
            )
        registration = Registration(self, conversation_id, handler, exclusive=exclusive)
        self.registrations[conversation_id] = registration
        if existing is not None:
            existing._active = False  # the hold passes to the new registration
        else:
            self.hold(conversation_id)
        return registration

    def unregister(self, registration: Registration) -> None:
        conversation_id = registration.conversation_id
        if self.registrations.get(conversation_id) is registration:
            del self.registrations[conversation_id]
            self.unhold(conversation_id)
        registration._active = False

    # -- holds and announcements ------------------------------------------------------------

    def hold(self, conversation_id: str) -> None:
        count = self.holds.get(conversation_id, 0)
        self.holds[conversation_id] = count + 1
        if count == 0:
            self._announce(conversation_id, hold=True)

    def unhold(self, conversation_id: str) -> None:
        count = self.holds[conversation_id] - 1
        if count:
            self.holds[conversation_id] = count
        else:
            del self.holds[conversation_id]
            self._announce(conversation_id, hold=False)

    def _announce(self, conversation_id: str, *, hold: bool) -> None:
        if not self._bus_started:
            return  # start() announces everything held when the bus starts
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # changed from sync code: announced again by the next start()
            self._restart_needed()
            return
        previous = self._tasks.get(conversation_id)
        task = asyncio.ensure_future(self._bus_call(conversation_id, hold, previous))
        self._tasks[conversation_id] = task

        def forget(done: asyncio.Task[BaseException | None]) -> None:
            if self._tasks.get(conversation_id) is done:
                del self._tasks[conversation_id]

        task.add_done_callback(forget)

    async def _bus_call(
        self,
        conversation_id: str,
        hold: bool,
        previous: asyncio.Task[BaseException | None] | None,
    ) -> BaseException | None:
        if previous is not None:  # keep hold/release of one conversation in order
            await asyncio.wait([previous])
        try:
            if hold:
                await self.bus.hold(conversation_id)
            else:
                await self.bus.release(conversation_id)
        except Exception as exc:
            log.debug("bus %s failed for a conversation", "hold" if hold else "release")
            return exc
        return None

    async def ready(self, conversation_id: str) -> None:
        await self._ensure_started()
        task = self._tasks.get(conversation_id)
        if task is not None:
            error = await asyncio.shield(task)
            if error is not None:
                raise error

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self, deliver: Deliver) -> None:
        """Start the bus (once) and announce every conversation held so far.

        Raises :class:`~ultimate_async.errors.BackendUnavailableError` when the bus is down;
        calling it again retries the announcements.
        """
        if not self._bus_started:
            await self.bus.start(deliver)
            self._bus_started = True
        for conversation_id in list(self.holds):
            if conversation_id in self.holds:  # not released while we announced
                await self.bus.hold(conversation_id)

    async def settle(self, timeout: float | None) -> bool:  # noqa: ASYNC109
        """Wait for pending announcements; ``False`` when ``timeout`` ran out first."""
        if not self._tasks:
            return True
        _, unfinished = await asyncio.wait(list(self._tasks.values()), timeout=timeout)
        return not unfinished

    async def close(self) -> None:
        """Finish pending announcements, then leave the bus (it withdraws every hold)."""
        if self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._bus_started = False
        try:
            await self.bus.aclose()
        except Exception:
            log.exception("closing the webhook bus failed")
