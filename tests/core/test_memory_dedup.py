"""The in-process de-duplication store: a duplicate is recognised, memory stays bounded."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ultimate_async.webhook import dedup as dedup_module
from ultimate_async.webhook.dedup import MemoryDeduplicator, default_dedup_key


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_second_claim_of_a_key_is_a_duplicate_until_ttl_passes() -> None:
    clock = FakeClock()
    dedup = MemoryDeduplicator(ttl=10, clock=clock)
    assert await dedup.claim("m1") is True
    assert await dedup.claim("m1") is False
    clock.now += 11
    assert await dedup.claim("m1") is True


async def test_forget_lets_a_redelivery_through() -> None:
    dedup = MemoryDeduplicator()
    assert await dedup.claim("m1")
    await dedup.forget("m1")
    assert await dedup.claim("m1")


async def test_size_is_bounded_oldest_forgotten_first() -> None:
    dedup = MemoryDeduplicator(max_size=100)
    for i in range(1000):
        assert await dedup.claim(f"m{i}")
    assert len(dedup) <= 100
    assert await dedup.claim("m999") is False  # recent keys are kept
    assert await dedup.claim("m0") is True  # old ones were evicted


async def test_expired_keys_are_dropped_so_memory_does_not_grow() -> None:
    clock = FakeClock()
    dedup = MemoryDeduplicator(ttl=1, clock=clock)
    for i in range(50):
        await dedup.claim(f"a{i}")
    clock.now += 2
    await dedup.claim("b")
    assert len(dedup) == 1


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"data": {"eventType": "sendMessage", "messageId": "abc"}}, "abc"),
        ({"data": {"eventType": "sendMessage", "messageId": ""}}, None),
        ({"data": {"eventType": "isTeamOnline"}}, None),
        ({"name": "action", "data": [{"key": "k", "value": ["v"]}]}, None),
        ({"messageId": "top"}, "top"),
        ({"data": {"messageId": 42}}, None),
    ],
)
def test_default_key_is_a_non_empty_message_id(raw: dict[str, object], key: str | None) -> None:
    assert default_dedup_key(raw) == key


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="ttl"):
        MemoryDeduplicator(ttl=0)
    with pytest.raises(ValueError, match="max_size"):
        MemoryDeduplicator(max_size=0)


class ReferenceDeduplicator:
    """The obvious store (the first implementation): key -> expiry, oldest evicted first."""

    def __init__(self, ttl: float, max_size: int, clock: FakeClock) -> None:
        self.ttl, self.max_size, self.clock = ttl, max_size, clock
        self.seen: OrderedDict[str, float] = OrderedDict()

    def claim(self, key: str) -> bool:
        now = self.clock()
        for old in [k for k, expires in self.seen.items() if expires <= now]:
            del self.seen[old]
        if key in self.seen:
            return False
        while len(self.seen) >= self.max_size:
            self.seen.popitem(last=False)
        self.seen[key] = now + self.ttl
        return True

    def forget(self, key: str) -> None:
        self.seen.pop(key, None)


operations = st.lists(
    st.one_of(
        st.tuples(st.just("claim"), st.integers(0, 12)),
        st.tuples(st.just("forget"), st.integers(0, 12)),
        st.tuples(st.just("tick"), st.sampled_from([0.0, 0.4, 1.0, 2.5])),
    ),
    max_size=300,
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    ops=operations,
    max_size=st.integers(1, 6),
    ttl=st.sampled_from([1.0, 3.0]),
    ring_start=st.sampled_from([2, 1024]),  # 2: the ring grows (wrapping) within a few claims
)
def test_compact_store_answers_exactly_like_the_obvious_one(
    ops: list[tuple[str, Any]], max_size: int, ttl: float, ring_start: int
) -> None:
    """The ring/stale bookkeeping (growth, forget, compaction) never changes an answer."""
    clock = FakeClock()
    saved, dedup_module._RING_START = dedup_module._RING_START, ring_start
    try:
        store = MemoryDeduplicator(ttl=ttl, max_size=max_size, clock=clock)
    finally:
        dedup_module._RING_START = saved
    reference = ReferenceDeduplicator(ttl, max_size, clock)
    for op, arg in ops:
        if op == "tick":
            clock.now += arg
        elif op == "claim":
            assert asyncio.run(store.claim(f"k{arg}")) == reference.claim(f"k{arg}")
        else:
            asyncio.run(store.forget(f"k{arg}"))
            reference.forget(f"k{arg}")
        assert len(store) <= max_size


async def test_growing_a_wrapped_ring_keeps_each_key_with_its_own_expiry() -> None:
    """The ring wraps (a claim expired at the front) and then doubles: keys keep their TTLs."""
    clock = FakeClock()
    saved, dedup_module._RING_START = dedup_module._RING_START, 2
    try:
        store = MemoryDeduplicator(ttl=10, max_size=10, clock=clock)
    finally:
        dedup_module._RING_START = saved
    assert await store.claim("a")  # t=1000, expires 1010
    clock.now += 1
    assert await store.claim("b")  # expires 1011
    clock.now = 1010.5  # "a" expired: the front moves, the next claim wraps around
    assert await store.claim("c")  # expires 1020.5
    assert await store.claim("d")  # the ring is full: it doubles here
    clock.now = 1011.5  # only "b" has expired
    assert await store.claim("b") is True
    assert await store.claim("c") is False
    assert await store.claim("d") is False
