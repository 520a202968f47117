"""De-duplication of webhook deliveries: the :class:`Deduplicator` protocol and the in-memory store.

The platform documents no delivery id, so the default key is a non-empty ``data.messageId``
(``sendMessage`` events); requests (``isTeamOnline``, ``escalate``, actions) carry none and are
never treated as duplicates.
"""

from __future__ import annotations

import hashlib
import sys
import time
from array import array
from collections.abc import Callable, Iterator, Mapping
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
    deliveries arrive.  ``clock`` must not go backwards (the default is ``time.monotonic``).

    The store is compact (about 100 bytes a key, whatever the key's length): it holds a 60-bit
    hash of each key (the interpreter's ``hash()``, SipHash keyed randomly per process) rather
    than the key.  Two live keys sharing a hash would make the second look like a duplicate;
    with 100,000 keys held that chance is about 1 in 10**13 per delivery.
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
        # Hashes of the keys held now, and every claim (hash, expiry) oldest first in a ring of
        # two parallel arrays: with a monotonic clock claim order is expiry order, so expiring
        # and evicting only ever look at the front.  (A plain insertion-ordered dict would not
        # do: popping its first item costs O(items deleted since its last resize).)  The arrays
        # hold raw machine values and only grow (by doubling): no churn for the allocator.
        # (A set: a dict of ints would escape the garbage collector's full passes, which walk
        # this set in ~3 ms at 100,000 keys, but with churn it held 300 B/key against 136 B.
        # WebhookServer.run()'s gc.freeze() takes the set out of those passes anyway.)
        self._live: set[int] = set()
        # forget() leaves its claim in the ring (removing it would be O(n)): these count, per
        # hash, its oldest claims still there that no longer stand for a live key.
        self._stale: dict[int, int] = {}
        self._order: array[int] = array("q")  # both set by _rebuild()
        self._expiries: array[float] = array("d")
        self._mask = self._head = self._count = 0
        self._rebuild([], _RING_START)

    def __len__(self) -> int:
        return len(self._live)

    def __repr__(self) -> str:
        return f"MemoryDeduplicator(ttl={self.ttl!r}, max_size={self.max_size!r}, size={len(self)})"

    def _pop_oldest(self) -> bool:
        """Drop the oldest claim; ``True`` when it stood for a live key (now forgotten)."""
        head = self._head
        digest = self._order[head]
        self._head = (head + 1) & self._mask
        self._count -= 1
        stale = self._stale
        if stale:
            count = stale.get(digest)
            if count is not None:
                if count > 1:
                    stale[digest] = count - 1
                else:
                    del stale[digest]
                return False
        self._live.discard(digest)
        return True

    async def claim(self, key: str) -> bool:
        now = self._clock()
        expiries = self._expiries
        while self._count and expiries[self._head] <= now:
            self._pop_oldest()
        digest = _digest(key)
        live = self._live
        if digest in live:
            return False
        if len(live) >= self.max_size:
            while not self._pop_oldest():
                pass
        live.add(digest)
        count = self._count
        if count > self._mask:
            self._grow()
        tail = (self._head + count) & self._mask
        self._order[tail] = digest
        self._expiries[tail] = now + self.ttl
        self._count = count + 1
        return True

    async def forget(self, key: str) -> None:
        digest = _digest(key)
        live = self._live
        if digest not in live:
            return
        live.remove(digest)
        self._stale[digest] = self._stale.get(digest, 0) + 1
        if self._count - len(live) > self.max_size:
            self._compact()

    def _claims(self) -> Iterator[tuple[int, float]]:
        """Every claim in the ring, oldest first."""
        order, expiries, mask, head = self._order, self._expiries, self._mask, self._head
        for i in range(self._count):
            index = (head + i) & mask
            yield order[index], expiries[index]

    def _rebuild(self, claims: list[tuple[int, float]], capacity: int) -> None:
        """A fresh ring of at least ``capacity`` slots (a power of two) holding ``claims``."""
        size = _RING_START
        while size < capacity:
            size *= 2
        order = array("q", bytes(8 * size))
        expiries = array("d", bytes(8 * size))
        for index, (digest, expires) in enumerate(claims):
            order[index] = digest
            expiries[index] = expires
        self._order, self._expiries = order, expiries
        self._mask = size - 1
        self._head = 0
        self._count = len(claims)

    def _grow(self) -> None:
        """Double the ring, oldest claim first (array slices: no object per claim)."""
        head, size = self._head, self._mask + 1
        order = self._order[head:] + self._order[:head]
        expiries = self._expiries[head:] + self._expiries[:head]
        order.extend(array("q", bytes(8 * size)))
        expiries.extend(array("d", bytes(8 * size)))
        self._order, self._expiries = order, expiries
        self._mask = 2 * size - 1
        self._head = 0

    def _compact(self) -> None:
        """Drop the claims forget() left behind (amortised: runs every ``max_size`` forgets)."""
        stale = self._stale
        kept: list[tuple[int, float]] = []
        for digest, expires in self._claims():
            count = stale.get(digest)
            if count is None:
                kept.append((digest, expires))
            elif count > 1:
                stale[digest] = count - 1
            else:
                del stale[digest]
        self._rebuild(kept, self._mask + 1)  # same capacity: no regrowth

    async def aclose(self) -> None:
        self._live.clear()
        self._stale.clear()
        self._rebuild([], _RING_START)


#: Initial ring capacity (a power of two); it doubles when full, to at most ~4x ``max_size``.
_RING_START = 1024
_MASK = (1 << 60) - 1  # a 60-bit int is a 32-byte object; a 64-bit one takes 40


def _wide_hash(key: str) -> int:
    return hash(key) & _MASK


def _blake_hash(key: str) -> int:
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little") & _MASK


#: Keys are held as a 60-bit hash: the interpreter's where ``hash()`` is 64 bits wide.
_digest: Callable[[str], int] = _wide_hash if sys.hash_info.width >= 64 else _blake_hash
