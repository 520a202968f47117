"""Durable delivery: the :class:`Inbox` contract and its in-process implementations.

``MemoryInbox`` (the default: bounded, lost with the process), ``SqliteInbox`` (one replica, on
disk) and ``HandlerRetry`` (how a failing handler is retried).  ``RedisInbox`` lives in
:mod:`ultimate_async.redis`.
"""

from __future__ import annotations

from .base import DeadLetter, Inbox, InboxEntry, InboxStats
from .memory import MemoryInbox
from .retry import HandlerRetry
from .sqlite import SqliteInbox

__all__ = [
    "DeadLetter",
    "HandlerRetry",
    "Inbox",
    "InboxEntry",
    "InboxStats",
    "MemoryInbox",
    "SqliteInbox",
]
