"""When to run a failed handler again, and how long to wait first.

A handler that raises or times out has usually met a transient failure (the CRM was down for a
second), so the dispatcher tries it again after a capped exponential backoff.  Its
conversation's later events wait behind it, so order is never broken; other conversations go
on.  After ``max_attempts`` the entry becomes a dead letter and the conversation continues.

This module is pure policy (like :class:`~ultimate_async.RetryPolicy` for the sending side): it
decides, the dispatcher acts.  ``sleep`` and ``random`` are injectable so tests run instantly
and deterministically.
"""

from __future__ import annotations

import asyncio
import math
import random as _random
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from .._retry import jittered_backoff
from ..errors import ConfigurationError

__all__ = ["HandlerRetry"]


def _at_least_one(instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{attribute.name} must be an int >= 1, got {value!r}")


def _non_negative(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ConfigurationError(f"{attribute.name} must be a finite number >= 0, got {value!r}")


@attrs.frozen
class HandlerRetry:
    """How the dispatcher retries a handler that raised or timed out.

    ``max_attempts`` counts *attempts*: ``1`` means never retry.  After the ``attempt``-th
    attempt (1-based) failed, the next one waits ``min(backoff_max, backoff_base *
    2**(attempt - 1))`` seconds scaled by a jitter factor in ``[0.5, 1.0)``, so that many
    conversations failing on the same outage do not retry in lockstep.
    """

    max_attempts: int = attrs.field(default=5, validator=_at_least_one)
    backoff_base: float = attrs.field(default=1.0, validator=_non_negative)
    backoff_max: float = attrs.field(default=300.0, validator=_non_negative)
    sleep: Callable[[float], Awaitable[object]] = attrs.field(default=asyncio.sleep, repr=False)
    random: Callable[[], float] = attrs.field(default=_random.random, repr=False)

    @classmethod
    def none(cls) -> HandlerRetry:
        """A policy that never retries: a failing handler's entry is dead at once."""
        return cls(max_attempts=1)

    def should_retry(self, attempt: int) -> bool:
        """Whether a failure of attempt number ``attempt`` (1-based) is tried again.

        ``False`` means the entry becomes a dead letter.
        """
        return attempt < self.max_attempts

    def delay(self, attempt: int) -> float:
        """Seconds to wait after attempt number ``attempt`` (1-based) failed, before the next."""
        return jittered_backoff(attempt - 1, self.backoff_base, self.backoff_max, self.random)
