"""Handing an entry to a waiting ``get()``: shared by the in-process inboxes."""

from __future__ import annotations

import asyncio
from collections import deque

from .base import InboxEntry

__all__ = ["hand_over"]


def hand_over(getters: deque[asyncio.Future[InboxEntry]], entry: InboxEntry) -> bool:
    """Give ``entry`` to the oldest ``get()`` still waiting (skipping cancelled ones).

    Returns ``False`` when nobody waits: the caller queues the entry instead.
    """
    while getters:
        getter = getters.popleft()
        if not getter.done():
            getter.set_result(entry)
            return True
    return False
