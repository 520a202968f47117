"""De-duplication of webhook deliveries: the :class:`Deduplicator` protocol and the in-memory store.

The platform documents no delivery id, so the default key is a non-empty ``data.messageId``
(``sendMessage`` events); requests (``isTeamOnline``, ``escalate``, actions) carry none and are
never treated as duplicates.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

__all__ = ["DedupKey", "Deduplicator", "MemoryDeduplicator", "default_dedup_key"]

#: Turns a parsed webhook body into its de-duplication key, or ``None`` for "never a duplicate".
DedupKey = Callable[[Mapping[str, Any]], "str | None"]


def default_dedup_key(raw: Mapping[str, Any]) -> str | None:
    """A non-empty ``messageId`` (in ``data`` for chat events, or at the top level), else None."""
    data = raw.get("data")
    if isinstance(data, Mapping):
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
    """Keys remembered in this process for ``ttl`` seconds, at most ``max_size`` of them.

    When full, the oldest keys are forgotten first, so memory stays bounded however many
    deliveries arrive.
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
        self.ttl = ttl
        self.max_size = max_size
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def __repr__(self) -> str:
        return f"MemoryDeduplicator(ttl={self.ttl!r}, max_size={self.max_size!r}, size={len(self)})"

    def _expire(self, now: float) -> None:
        seen = self._seen
        while seen:
            oldest_key, expires = next(iter(seen.items()))
            if expires > now and len(seen) < self.max_size:
                break
            del seen[oldest_key]

    async def claim(self, key: str) -> bool:
        now = self._clock()
        expires = self._seen.get(key)
        if expires is not None and expires > now:
            return False
        self._expire(now)
        self._seen[key] = now + self.ttl
        self._seen.move_to_end(key)
        return True

    async def forget(self, key: str) -> None:
        self._seen.pop(key, None)

    async def aclose(self) -> None:
        self._seen.clear()
