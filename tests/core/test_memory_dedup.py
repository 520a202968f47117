"""The in-process de-duplication store: a duplicate is recognised, memory stays bounded."""

from __future__ import annotations

import pytest

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
