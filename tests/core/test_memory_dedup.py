"""The in-process de-duplication store: a duplicate is recognised, memory stays bounded."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


@pytest.mark.parametrize("max_size", [1, 2, 3, 10, 101])
async def test_the_latest_half_of_max_size_is_always_remembered(max_size: int) -> None:
    dedup = MemoryDeduplicator(max_size=max_size)
    for i in range(5 * max_size):
        assert await dedup.claim(f"m{i}")
        assert len(dedup) <= max_size
        recent = range(max(0, i + 1 - max(1, max_size // 2)), i + 1)
        assert [await dedup.claim(f"m{j}") for j in recent] == [False] * len(recent)


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


class SameHash(str):
    """Distinct keys the interpreter cannot tell apart by hash."""

    def __hash__(self) -> int:
        return 42


async def test_keys_sharing_a_hash_are_not_duplicates_of_each_other() -> None:
    """A store of hashes would drop the second (a lost bot reply); keys are compared exactly."""
    dedup = MemoryDeduplicator()
    assert await dedup.claim(SameHash("m1")) is True
    assert await dedup.claim(SameHash("m2")) is True
    assert await dedup.claim(SameHash("m1")) is False


async def test_many_distinct_keys_are_never_taken_for_duplicates() -> None:
    dedup = MemoryDeduplicator(max_size=1000)
    answers = [await dedup.claim(f"65a9f0c2e4b0a1b2c3{i:06d}") for i in range(20_000)]
    assert all(answers)


def test_settings_are_read_only() -> None:
    dedup = MemoryDeduplicator(ttl=5, max_size=7)
    assert (dedup.ttl, dedup.max_size) == (5, 7)
    with pytest.raises(AttributeError):
        dedup.ttl = 10  # type: ignore[misc]


operations = st.lists(
    st.one_of(
        st.tuples(st.just("claim"), st.integers(0, 12)),
        st.tuples(st.just("forget"), st.integers(0, 12)),
        st.tuples(st.just("tick"), st.sampled_from([0.0, 0.4, 1.0, 2.5])),
    ),
    max_size=300,
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(ops=operations, ttl=st.sampled_from([1.0, 3.0]))
def test_a_claim_is_a_duplicate_exactly_when_claimed_within_ttl(
    ops: list[tuple[str, Any]], ttl: float
) -> None:
    """With room for every key, the answer is the definition: claimed < ttl ago, not forgotten."""
    clock = FakeClock()
    store = MemoryDeduplicator(ttl=ttl, max_size=26, clock=clock)  # 13 keys per generation
    claimed_at: dict[str, float] = {}  # the last claim that answered True
    for op, arg in ops:
        key = f"k{arg}"
        if op == "tick":
            clock.now += arg
        elif op == "claim":
            expected = key not in claimed_at or clock.now >= claimed_at[key] + ttl
            assert asyncio.run(store.claim(key)) is expected
            if expected:
                claimed_at[key] = clock.now
        else:
            asyncio.run(store.forget(key))
            claimed_at.pop(key, None)
        assert len(store) <= 26
