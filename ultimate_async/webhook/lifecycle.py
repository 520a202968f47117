"""The receiver's life: closed → open → closing → closed, and open again.

Every front end calls :meth:`Lifecycle.start` when it starts serving and :meth:`Lifecycle.aclose`
on shutdown; a receiver used without one starts on its first delivery.  A closed receiver is not
dead: the next ``start()`` opens it again with empty queues and the same handlers, so a
module-level receiver serves one application lifespan after another (tests do exactly that).

Start: the bus (this replica becomes routable for the conversations it holds), then the inbox
(entries stored and not done are handed out first) and the dispatcher.  Shutdown: refuse new
deliveries (503), leave the bus (whatever other replicas forwarded is delivered here first),
drain handlers, requests and background tasks up to ``drain_timeout``, cancel and count the
rest (a durable inbox keeps their entries for the next start), close the inbox, the
de-duplicator, and the session when the receiver owns it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .answers import RequestAnswers
    from .dispatch import Background, Dispatcher
    from .membership import Membership

__all__ = ["Lifecycle"]

log = logging.getLogger("ultimate_async.webhook")


class _Closable(Protocol):
    async def aclose(self) -> None: ...


class Lifecycle:
    """Start, drain and shutdown of one receiver's parts, and the state between them.

    ``deliver`` is the bus callback for forwarded events; ``closables`` returns, at shutdown,
    the resources to close after draining (name, resource), in order.
    """

    def __init__(
        self,
        *,
        membership: Membership,
        dispatcher: Dispatcher,
        answers: RequestAnswers,
        background: Background,
        deliver: Callable[..., Awaitable[None]],
        drain_timeout: Callable[[], float],
        closables: Callable[[], list[tuple[str, _Closable | None]]],
    ) -> None:
        self._membership = membership
        self._dispatcher = dispatcher
        self._answers = answers
        self._background = background
        self._deliver = deliver
        self._drain_timeout = drain_timeout
        self._closables = closables
        #: True between a successful start and the beginning of the next shutdown.
        self.open = False
        #: True from the beginning of a shutdown until the next start.
        self.closing = False
        self.cancelled_on_close = 0
        self._lock: asyncio.Lock | None = None
        self._close_task: asyncio.Task[None] | None = None

    @property
    def closed(self) -> bool:
        """True once a shutdown finished (until the next start)."""
        task = self._close_task
        return self.closing and task is not None and task.done()

    def restart_needed(self) -> None:
        """Something must be announced again: the next delivery calls :meth:`start`."""
        self.open = False

    async def start(self) -> None:
        if self.open:
            return
        if self._close_task is not None and not self._close_task.done():
            await asyncio.shield(self._close_task)  # a shutdown in progress finishes first
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.open:
                return
            if self.closing:  # reopen after aclose(): same handlers, empty queues
                self.closing = False
                self._close_task = None
            await self._membership.start(self._deliver)
            await self._dispatcher.start()
            self.open = True

    async def drain(self, timeout: float | None) -> bool:  # noqa: ASYNC109
        """Wait until handlers, requests, background tasks and announcements all settled.

        Handlers include those of entries the inbox kept from before :meth:`start`: right
        after a restart they are not queued yet, but they are this replica's work to finish.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout

        def remaining() -> float | None:
            return None if deadline is None else max(0.0, deadline - loop.time())

        dispatcher = self._dispatcher
        while True:
            if not await dispatcher.wait_pumped(remaining()):
                return False
            if not await dispatcher.executor.wait_idle(remaining()):
                return False
            if not await self._answers.wait_idle(remaining()):
                return False
            if not await self._background.wait(remaining()):
                return False
            if not await self._membership.settle(remaining()):
                return False
            if (
                dispatcher.pending == 0
                and self._answers.in_flight == 0
                and not len(self._background)
            ):
                return True
            if deadline is not None and loop.time() >= deadline:
                return False

    async def aclose(self) -> None:
        """Idempotent; concurrent callers wait for the same shutdown."""
        if self._close_task is None:
            self._close_task = asyncio.ensure_future(self._shutdown())
        await asyncio.shield(self._close_task)

    async def _shutdown(self) -> None:
        self.closing = True
        self.open = False
        # Leave the bus before draining: other replicas stop routing here, and whatever they
        # already forwarded is delivered into our queues, so the drain below covers it.
        await self._membership.close()
        timeout = self._drain_timeout()
        left = 0
        if not await self.drain(timeout):
            left = await self._dispatcher.stop()
            left += await self._background.cancel_all()
            log.warning(
                "webhook receiver shutdown: cancelled %d unfinished handler(s) after %.1fs",
                left,
                timeout,
            )
        else:
            await self._dispatcher.stop()
        self.cancelled_on_close = left
        for name, resource in self._closables():
            if resource is None:
                continue
            try:
                await resource.aclose()
            except Exception:
                log.exception("closing the webhook %s failed", name)
