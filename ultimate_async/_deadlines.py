"""Deadlines for many short waits, with one periodic check instead of a loop timer per wait.

``asyncio.timeout`` schedules (and cancels) a timer for every use; around each webhook body
read that is a large share of an adapter's cost (``benchmarks/README.md``).  A body read that
outlives its deadline is rare, so :class:`Deadlines` only notes when each waiting task started
(a dict store, removed again when it stops waiting) and, while any task waits, checks once a
second for the late ones and cancels them.  Deadlines are thus up to one second late, which is
fine for a timeout meant for stuck clients.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final

__all__ = ["Deadlines"]

#: Seconds between two checks for late tasks (so: how late a deadline may be).
_PERIOD: Final = 1.0
_monotonic: Final = time.monotonic


class Deadlines:
    """Cancel a task still waiting ``timeout`` seconds after :meth:`enter` (up to a second later).

    ::

        deadlines.enter(task)
        try:
            await something()
        except asyncio.CancelledError:
            if not deadlines.expired(task):
                raise  # cancelled by someone else
            ...  # timed out
        finally:
            deadlines.leave(task)
    """

    __slots__ = ("_checking", "_expired", "_since", "timeout")

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        #: Waiting tasks and when they started waiting (``time.monotonic()``).
        self._since: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        #: Loops with a check scheduled (tasks of several loops may wait, e.g. across tests).
        self._checking: set[asyncio.AbstractEventLoop] = set()

    def enter(self, task: asyncio.Task[Any]) -> None:
        if self.timeout is None:
            return
        self._since[task] = _monotonic()
        loop = task.get_loop()
        if loop not in self._checking:
            self._checking.add(loop)
            loop.call_later(_PERIOD, self._check, loop)

    def leave(self, task: asyncio.Task[Any]) -> None:
        self._since.pop(task, None)

    def expired(self, task: asyncio.Task[Any]) -> bool:
        """Whether ``task``'s cancellation was its deadline (and then only that): un-cancels it."""
        if task not in self._expired:
            return False
        self._expired.discard(task)
        return task.uncancel() == 0

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        """Cancel ``loop``'s late tasks; check again in a second while some still wait."""
        timeout = self.timeout
        late = _monotonic() - (timeout if timeout is not None else 0.0)
        waiting = False
        for task, since in list(self._since.items()):
            if task.get_loop() is not loop:
                continue
            if since <= late:
                del self._since[task]
                self._expired.add(task)
                task.cancel()
            else:
                waiting = True
        if waiting:
            loop.call_later(_PERIOD, self._check, loop)
        else:
            self._checking.discard(loop)
