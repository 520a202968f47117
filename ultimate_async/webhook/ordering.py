"""Per-key FIFO execution with a global concurrency cap: the one ordering mechanism we have.

Items of one key (a conversation) run strictly one after another, in submission order;
different keys run concurrently, at most ``max_concurrency`` items at a time.  A worker task
exists only while its key has queued work: when the queue empties, the worker removes its entry
and ends, so nothing per key outlives its queue (a million conversations leave an empty table
behind).

Items without a key (``key=None``: alerts or unknown bodies that name no conversation) have
nothing to be ordered against, so each runs in its own task, still under the concurrency cap.

A runner may ask for its item to be run again later (a handler retry): it returns the delay in
seconds as a ``float``.  The worker gives its concurrency slot back while it waits, so a
conversation stuck in backoff never starves the others, and keeps its place at the head of its
key, so the key's later items wait behind it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["KeyedExecutor"]

log = logging.getLogger("ultimate_async.webhook")

T = TypeVar("T")

#: A queued item and, for ``ack="after_handler"``, the future its delivery waits on.
_Entry = tuple[T, "asyncio.Future[bool] | None"]

Sleep = Callable[[float], Awaitable[object]]


class KeyedExecutor(Generic[T]):
    """Runs ``runner(item)`` for submitted items, FIFO per key, concurrently across keys.

    ``runner`` returns ``True`` on success, ``False`` on a failure it has dealt with, or a
    ``float``: "run this item again after that many seconds" (waited with ``sleep``).  It is
    expected to handle its own errors; anything it lets escape is logged here and counts as a
    failure.  ``max_concurrency=None`` means no cap.
    """

    def __init__(
        self,
        runner: Callable[[T], Awaitable[bool | float]],
        max_concurrency: int | None,
        *,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self._runner = runner
        self._sleep = sleep
        self._cap = max_concurrency if max_concurrency is not None else 1 << 62
        self._queues: dict[Hashable, deque[_Entry[T]]] = {}
        # Worker tasks by id() of the queue they run (alive as long as its worker).
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._loose_waiters: set[asyncio.Future[bool]] = set()
        self._pending = 0
        self._idle: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # The concurrency cap: a counter, and the workers waiting for a slot (FIFO).  A freed
        # slot passes straight to the first waiter, so a newcomer can never overtake it.
        self._running = 0
        self._slot_waiters: deque[asyncio.Future[None]] = deque()

    @property
    def max_concurrency(self) -> int | None:
        return None if self._cap == 1 << 62 else self._cap

    @property
    def pending(self) -> int:
        """Items queued or running (waiting to be retried included)."""
        return self._pending

    @property
    def active_keys(self) -> int:
        """Keys with queued or running work (0 once everything has drained)."""
        return len(self._queues)

    def submit(
        self, key: Hashable | None, item: T, waiter: asyncio.Future[bool] | None = None
    ) -> None:
        """Queue ``item`` behind earlier items of ``key``; never blocks.

        ``waiter``, when given, gets the final outcome (``True``/``False``) or is cancelled.
        """
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._rebind(loop)
        self._pending += 1
        if key is None:
            if waiter is not None:
                self._loose_waiters.add(waiter)
                waiter.add_done_callback(self._loose_waiters.discard)
            queue: deque[_Entry[T]] = deque(((item, waiter),))
        else:
            queue_or_none = self._queues.get(key)
            if queue_or_none is not None:
                queue_or_none.append((item, waiter))
                return
            queue = deque(((item, waiter),))
            self._queues[key] = queue
        self._tasks[id(queue)] = loop.create_task(self._work(key, queue))

    def _rebind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Asyncio primitives belong to one loop; start fresh when an idle executor moves."""
        if self._pending:
            raise RuntimeError("a webhook receiver cannot serve two event loops at once")
        self._loop = loop
        self._running = 0
        self._slot_waiters.clear()
        self._idle = None

    async def _acquire(self) -> None:
        """Wait for a free slot (the caller found none)."""
        assert self._loop is not None
        slot = self._loop.create_future()
        self._slot_waiters.append(slot)
        try:
            await slot
        except asyncio.CancelledError:
            if slot.done() and not slot.cancelled():  # handed a slot, then cancelled
                self._free_slot()
            raise  # a cancelled waiter left in the queue is skipped by _free_slot()

    def _free_slot(self) -> None:
        waiters = self._slot_waiters
        while waiters:
            slot = waiters.popleft()
            if not slot.done():
                slot.set_result(None)  # the slot passes on: _running stays the same
                return
        self._running -= 1

    async def _work(self, key: Hashable | None, queue: deque[_Entry[T]]) -> None:
        """One worker per busy key (or per loose item): runs its queue to the end."""
        runner = self._runner
        try:
            while queue:
                item, waiter = queue[0]
                try:
                    while True:  # until a final outcome; retries sleep without a slot
                        if self._running < self._cap:
                            self._running += 1
                        else:
                            await self._acquire()
                        try:
                            outcome = await runner(item)
                        except Exception:
                            log.exception("webhook job failed outside its handler")
                            outcome = False
                        finally:
                            self._free_slot()
                        if type(outcome) is not float:
                            break
                        await self._sleep(outcome)
                    ok = bool(outcome)
                except asyncio.CancelledError:
                    if waiter is not None and not waiter.done():
                        waiter.cancel()
                    raise
                finally:
                    self._pending -= 1
                    if self._pending == 0 and self._idle is not None:
                        self._idle.set()
                if waiter is not None and not waiter.done():
                    waiter.set_result(ok)
                queue.popleft()
        finally:
            # No await between the empty check and this delete: a later submit() for the key
            # either found the queue (and was run above) or will start a fresh worker.
            if key is not None and self._queues.get(key) is queue:
                del self._queues[key]
            if queue:  # cancelled: the rest will never run
                self._discard(queue)
            # (not asyncio.current_task(): on 3.11 every lookup of the running loop is a getpid())
            self._tasks.pop(id(queue), None)

    def _discard(self, queue: deque[_Entry[T]]) -> None:
        # The head entry was already accounted for above.
        queue.popleft()
        for _, waiter in queue:
            self._pending -= 1
            if waiter is not None and not waiter.done():
                waiter.cancel()
        queue.clear()
        if self._pending == 0 and self._idle is not None:
            self._idle.set()

    async def wait_idle(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Wait until nothing is queued or running; ``False`` when ``timeout`` ran out first."""
        if self._pending == 0:
            return True
        if self._idle is None or self._idle.is_set():
            self._idle = asyncio.Event()
        idle = self._idle
        try:
            async with asyncio.timeout(timeout):
                await idle.wait()
        except TimeoutError:
            return self._pending == 0
        return True

    async def cancel_all(self) -> int:
        """Cancel every queued and running item; returns how many there were.

        The executor stays usable: later submissions start fresh workers.
        """
        left = self._pending
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
            # Those cancelled before their first step never removed themselves.
            for queue_id in [k for k, task in self._tasks.items() if task.done()]:
                del self._tasks[queue_id]
        # Tasks cancelled before their first step never ran their cleanup: finish it here.
        waiters = [w for queue in self._queues.values() for _, w in queue if w is not None]
        waiters.extend(self._loose_waiters)
        for waiter in waiters:
            if not waiter.done():
                waiter.cancel()
        self._queues.clear()
        self._pending = 0
        self._running = 0
        self._slot_waiters.clear()
        if self._idle is not None:
            self._idle.set()
        return left
