"""Per-conversation FIFO execution with a global concurrency cap.

Events of one conversation run strictly one after another, in arrival order; different
conversations run concurrently, at most ``max_concurrency`` jobs at a time.  A worker task
exists only while its conversation has queued work: when the queue empties, the worker removes
its entry and ends, so nothing per conversation outlives its queue (a million conversations
leave an empty table behind).

Jobs without a conversation (``key=None``: alerts or unknown bodies that name none) have nothing
to be ordered against, so each runs in its own task, still under the concurrency cap.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["KeyedExecutor"]

log = logging.getLogger("ultimate_async.webhook")

T = TypeVar("T")

#: A queued item and, for ``ack="after_handler"``, the future its delivery waits on.
_Entry = tuple[T, "asyncio.Future[bool] | None"]


class KeyedExecutor(Generic[T]):
    """Runs ``runner(item)`` for submitted items, FIFO per key, concurrently across keys.

    ``runner`` returns ``True`` on success; it is expected to handle its own errors (the
    receiver logs them and calls ``on_error``).  Anything it lets escape is logged here.
    """

    def __init__(self, runner: Callable[[T], Awaitable[bool]], max_concurrency: int) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self._runner = runner
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self.max_concurrency = max_concurrency
        self._queues: dict[str, deque[_Entry[T]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loose_waiters: set[asyncio.Future[bool]] = set()
        self._pending = 0
        self._idle: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def pending(self) -> int:
        """Jobs queued or running."""
        return self._pending

    @property
    def active_keys(self) -> int:
        """Conversations with queued or running work (0 once everything has drained)."""
        return len(self._queues)

    def submit(self, key: str | None, item: T, waiter: asyncio.Future[bool] | None = None) -> None:
        """Queue ``item`` behind earlier items of ``key``; never blocks."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._rebind(loop)
        self._pending += 1
        if key is None:
            if waiter is not None:
                self._loose_waiters.add(waiter)
                waiter.add_done_callback(self._loose_waiters.discard)
            self._spawn(self._run_one(item, waiter))
            return
        queue = self._queues.get(key)
        if queue is not None:
            queue.append((item, waiter))
            return
        queue = deque(((item, waiter),))
        self._queues[key] = queue
        self._spawn(self._work(key, queue))

    def _rebind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Asyncio primitives belong to one loop; start fresh when an idle executor moves."""
        if self._pending:
            raise RuntimeError("a webhook receiver cannot serve two event loops at once")
        self._loop = loop
        self._semaphore = asyncio.Semaphore(self.max_concurrency)
        self._idle = None

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_one(self, item: T, waiter: asyncio.Future[bool] | None) -> None:
        ok = False
        try:
            async with self._semaphore:
                ok = await self._runner(item)
        except asyncio.CancelledError:
            if waiter is not None and not waiter.done():
                waiter.cancel()
            raise
        except Exception:
            log.exception("webhook job failed outside its handler")
        finally:
            self._pending -= 1
            if self._pending == 0 and self._idle is not None:
                self._idle.set()
        if waiter is not None and not waiter.done():
            waiter.set_result(ok)

    async def _work(self, key: str, queue: deque[_Entry[T]]) -> None:
        try:
            while queue:
                item, waiter = queue[0]
                await self._run_one(item, waiter)
                queue.popleft()
        finally:
            # No await between the empty check and this delete: a later submit() for the key
            # either found the queue (and was run above) or will start a fresh worker.
            if self._queues.get(key) is queue:
                del self._queues[key]
            if queue:  # cancelled: the rest will never run
                self._discard(queue)

    def _discard(self, queue: deque[_Entry[T]]) -> None:
        # The head entry was already accounted for by _run_one's finally.
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
        """Cancel every queued and running job; returns how many there were."""
        left = self._pending
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        # Tasks cancelled before their first step never ran their cleanup: finish it here.
        waiters = [w for queue in self._queues.values() for _, w in queue if w is not None]
        waiters.extend(self._loose_waiters)
        for waiter in waiters:
            if not waiter.done():
                waiter.cancel()
        self._queues.clear()
        self._pending = 0
        if self._idle is not None:
            self._idle.set()
        return left
