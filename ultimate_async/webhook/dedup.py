"""De-duplication of webhook deliveries: the :class:`Deduplicator` protocol and the in-memory store.

The platform documents no delivery id, so the default key is a non-empty ``data.messageId``
(``sendMessage`` events); requests (``isTeamOnline``, ``escalate``, actions) carry none and are
never treated as duplicates.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

__all__ = ["DedupKey", "Deduplicator", "MemoryDeduplicator", "default_dedup_key"]

#: Turns a parsed webhook body into its de-duplication key, or ``None`` for "never a duplicate".
DedupKey = Callable[[Mapping[str, Any]], "str | None"]


def default_dedup_key(raw: Mapping[str, Any]) -> str | None:
    """A non-empty ``messageId`` (in ``data`` for chat events, or at the top level), else None."""
    data = raw.get("data")
    if type(data) is dict or isinstance(data, Mapping):  # (a parsed body holds dicts)
        key = data.get("messageId")
        if isinstance(key, str) and key:
            return key
    key = raw.get("messageId")
    if isinstance(key, str) and key:
        return key
    return None


@runtime_checkable
class Deduplicator(Protocol):
    """A shared memory of delivery keys already seen."""

    async def claim(self, key: str) -> bool:
        """Atomically record ``key``; ``True`` when it was new, ``False`` for a duplicate."""

    async def forget(self, key: str) -> None:
        """Drop a claim, so a redelivery is handled (used when a claimed delivery was refused)."""

    async def aclose(self) -> None:
        """Release resources. Idempotent."""


class MemoryDeduplicator:
    """Keys claimed in this process, remembered for ``ttl`` seconds, at most ``max_size`` of them.

    Exact: a claim is a duplicate only when that very key was claimed less than ``ttl`` seconds
    ago and not forgotten since.  Memory stays bounded however many deliveries arrive: keys are
    kept in two generations of up to ``max_size // 2`` each; when the newer one is full, or
    ``ttl`` after it was started, it becomes the older one and the older one is dropped whole.
    So the oldest keys are forgotten first and at least the last ``max_size // 2`` claims of
    the ``ttl`` window are remembered; a redelivery of a forgotten key is handled again, a new
    delivery is never taken for a duplicate.  ``clock`` must not go backwards (the default is
    ``time.monotonic``).

    Why generations rather than one insertion-ordered map evicting its oldest key: dropping a
    whole dict leaves no holes, so memory per key stays that of a plain dict, and dicts of
    strings and floats are not tracked by the garbage collector.
    """

    def __init__(
        self,
        *,
        ttl: float = 600.0,
        max_size: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        if max_size <= 0:
            raise ValueError("max_size must be positive")
        self._ttl = ttl
        self._max_size = max_size
        self._generation_size = max(1, max_size // 2)
        self._clock = clock
        # key -> expiry.  Every claim of the newer generation was made in [started, started+ttl).
        self._newer: dict[str, float] = {}
        self._older: dict[str, float] = {}
        self._started = clock()

    @property
    def ttl(self) -> float:
        """Seconds a claimed key is remembered."""
        return self._ttl

    @property
    def max_size(self) -> int:
        """The most keys held at once."""
        return self._max_size

    def __len__(self) -> int:
        return len(self._newer) + len(self._older)

    def __repr__(self) -> str:
        return f"MemoryDeduplicator(ttl={self.ttl!r}, max_size={self.max_size!r}, size={len(self)})"

    async def claim(self, key: str) -> bool:
        now = self._clock()
        if now >= self._started + self._ttl:
            self._start_generation(now)
        expires = self._newer.get(key)
        if expires is None:
            expires = self._older.get(key)
        if expires is not None and now < expires:
            return False
        if len(self._newer) >= self._generation_size:
            self._start_generation(now)
        self._newer[key] = now + self._ttl
        return True

    def _start_generation(self, now: float) -> None:
        if now >= self._started + 2 * self._ttl:  # every claim held has expired
            self._older = {}
        elif 2 * self._generation_size <= self._max_size:
            self._older = self._newer
        else:  # max_size 1: no room for an older generation
            self._older = {}
        self._newer = {}
        self._started = now

    async def forget(self, key: str) -> None:
        self._newer.pop(key, None)
        self._older.pop(key, None)

    async def aclose(self) -> None:
        self._newer = {}
        self._older = {}
