"""Deliveries the receiver turned away, kept for whoever waits on them: :class:`Refusal`.

A bot reply that never comes looks the same whether the webhook URL is wrong or every delivery
was refused (a missing signature header, a body too large, the inbox down).  The receiver keeps
its recent refusals in ``receiver.refusals`` so that ``Conversation.ask`` can say which it was
in its ``ReplyTimeout``; each one is also logged at WARNING with the same reason.
"""

from __future__ import annotations

from collections import deque
from typing import Final

import attrs

__all__ = ["MAX_REFUSALS", "Refusal", "new_refusals"]

#: How many refusals ``receiver.refusals`` keeps (the oldest go first).
MAX_REFUSALS: Final = 100


@attrs.frozen
class Refusal:
    """One refused delivery: the HTTP ``status`` answered (401, 400, 413, 503), a one-line
    ``reason`` that never quotes the body or a secret, and ``at``, ``time.monotonic()`` when it
    happened (compare it with a monotonic start time, not the wall clock)."""

    status: int
    reason: str
    at: float


def new_refusals() -> deque[Refusal]:
    """The bounded record a receiver starts with."""
    return deque(maxlen=MAX_REFUSALS)
