"""When to try a request again, and how long to wait first.

Ultimate has no idempotency key: a retried ``message`` that had already reached the bot is a
duplicate visitor message.  So the default policy retries only what cannot have reached the bot
(a connection that never opened) and what the server explicitly asks us to repeat (429, 503).
Everything else that may have been processed (other 5xx, read timeouts, a connection dropped
after the request was written) is retried only with ``retry_unsafe=True``.
"""

from __future__ import annotations

import asyncio
import random as _random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from .errors import APIConnectionError, APIError, APIStatusError

__all__ = ["RetryPolicy", "jittered_backoff"]

#: Statuses the server uses to say "not processed, try again later".
_SAFE_STATUSES = frozenset({429, 503})


def jittered_backoff(n: int, base: float, cap: float, random: Callable[[], float]) -> float:
    """``min(cap, base * 2**n)`` scaled by a jitter factor in ``[0.5, 1.0)``.

    The one backoff formula of the package: API retries (:class:`RetryPolicy`) and handler
    retries (:class:`~ultimate_async.inbox.HandlerRetry`) both wait this long, so that many
    clients or conversations failing on the same outage do not retry in lockstep.  The exponent
    is capped: ``2.0**n`` overflows a float past ``n = 1023``, and the cap applies anyway.
    """
    ceiling = min(cap, base * (2.0 ** min(max(n, 0), 64)))
    return ceiling * (0.5 + random() / 2.0)


def _non_negative(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


@attrs.frozen
class RetryPolicy:
    """How :class:`~ultimate_async.Session` and ``LegacyClient`` retry failed requests.

    ``max_retries`` counts *retries*: at most ``1 + max_retries`` attempts.  The n-th retry
    (0-based) waits ``min(backoff_max, backoff_base * 2**n)``, scaled by a jitter factor in
    ``[0.5, 1.0)`` so that many clients do not retry in lockstep.  A ``Retry-After`` from the
    server replaces the backoff (capped at ``retry_after_max``).  A 429's ``Retry-After`` also
    holds back every other call of the same ``Session`` until then (the platform's rate limit
    is account-wide, so they would only collect 429s too).  ``sleep``, ``random`` and ``clock``
    (monotonic seconds, for that shared cool-down) are injectable so tests run instantly and
    deterministically.
    """

    max_retries: int = attrs.field(default=2, validator=_non_negative)
    backoff_base: float = attrs.field(default=0.5, validator=_non_negative)
    backoff_max: float = attrs.field(default=8.0, validator=_non_negative)
    retry_after_max: float = attrs.field(default=60.0, validator=_non_negative)
    retry_unsafe: bool = False
    sleep: Callable[[float], Awaitable[object]] = attrs.field(default=asyncio.sleep, repr=False)
    random: Callable[[], float] = attrs.field(default=_random.random, repr=False)
    clock: Callable[[], float] = attrs.field(default=time.monotonic, repr=False)

    @classmethod
    def none(cls) -> RetryPolicy:
        """A policy that never retries."""
        return cls(max_retries=0)

    def backoff(self, retry: int) -> float:
        """Seconds to wait before the ``retry``-th retry (0-based) when the server gave no hint."""
        return jittered_backoff(retry, self.backoff_base, self.backoff_max, self.random)

    def is_retryable(self, error: APIError, *, request_sent: bool) -> bool:
        """Whether ``error`` may be retried at all under this policy.

        ``request_sent`` is ``False`` only when the failure happened before any byte of the
        request could have reached the server (connection refused, DNS, connect timeout).
        """
        if isinstance(error, APIStatusError):
            if error.status in _SAFE_STATUSES:
                return True
            return self.retry_unsafe and error.status >= 500
        if isinstance(error, APIConnectionError):
            return not request_sent or self.retry_unsafe
        return False

    def delay(
        self,
        retry: int,
        error: APIError,
        *,
        request_sent: bool,
        retry_after: float | None = None,
    ) -> float | None:
        """Seconds to wait before retry number ``retry`` (0-based), or ``None`` to give up.

        ``retry_after`` is the server's ``Retry-After`` in seconds (429/503), if it sent one.
        """
        if retry >= self.max_retries or not self.is_retryable(error, request_sent=request_sent):
            return None
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_max)
        return self.backoff(retry)
