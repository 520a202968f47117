"""Deadlines for many short waits, with one loop timer per second instead of one per wait.

``asyncio.timeout`` schedules (and cancels) a timer for every use; around each webhook body
read that is a large share of an adapter's cost (``benchmarks/README.md``).  A body read that
outlives its deadline is rare, so :class:`Deadlines` files each waiting task under the second
its deadline falls in, keeps one timer per such second, and cancels what is still filed there
when it fires.  Deadlines are thus up to one second late, which is fine for a timeout meant
for stuck clients.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

__all__ = ["Deadlines"]


Key = tuple[asyncio.AbstractEventLoop, int]


class Deadlines:
    """Cancel a waiting task ``timeout`` seconds (rounded up to a whole second) after ``enter``.

    ::

        key = deadlines.enter(task)
        try:
            await something()
        except asyncio.CancelledError:
            if not deadlines.expired(task):
                raise  # cancelled by someone else
            ...  # timed out
        finally:
            deadlines.leave(key, task)
    """

    __slots__ = ("_buckets", "_expired", "timeout")

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self._buckets: dict[Key, set[asyncio.Task[Any]]] = {}
        self._expired: set[asyncio.Task[Any]] = set()

    def enter(self, task: asyncio.Task[Any]) -> Key | None:
        if self.timeout is None:
            return None
        loop = task.get_loop()
        key = (loop, math.ceil(loop.time() + self.timeout))
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = set()
            loop.call_at(key[1], self._expire, key)
        bucket.add(task)
        return key

    def leave(self, key: Key | None, task: asyncio.Task[Any]) -> None:
        if key is not None and (bucket := self._buckets.get(key)) is not None:
            bucket.discard(task)

    def expired(self, task: asyncio.Task[Any]) -> bool:
        """Whether ``task``'s cancellation was its deadline (and then only that): un-cancels it."""
        if task not in self._expired:
            return False
        self._expired.discard(task)
        return task.uncancel() == 0

    def _expire(self, key: Key) -> None:
        for task in self._buckets.pop(key, ()):
            self._expired.add(task)
            task.cancel()
