"""``MemoryInbox``'s bound and shared de-duplication, and the ``HandlerRetry`` policy."""

from __future__ import annotations

import asyncio

import pytest
from _inbox_cases import putter

from ultimate_async.errors import BackendUnavailableError, ConfigurationError
from ultimate_async.inbox import HandlerRetry, InboxStats, MemoryInbox
from ultimate_async.webhook.dedup import MemoryDeduplicator


async def test_over_the_bound_a_put_is_refused_and_its_key_not_marked() -> None:
    inbox = MemoryInbox(max_pending=3)
    await inbox.start()
    put = putter(inbox)
    for i in range(3):
        await put("c", f"m{i}", key=f"k{i}")
    with pytest.raises(BackendUnavailableError):
        await put("c", "m3", key="k3")
    entry = await inbox.get()
    await inbox.done(entry)
    assert await put("c", "m3", key="k3") is not None  # the platform's retry is stored
    assert await inbox.stats() == InboxStats(pending=3, dead=0)


class SlowDeduplicator(MemoryDeduplicator):
    """A shared store whose claim suspends (as Redis does)."""

    async def claim(self, key: str) -> bool:
        await asyncio.sleep(0.01)
        return await super().claim(key)


async def test_a_shared_deduplicator_decides_and_forgets_refused_keys() -> None:
    shared = SlowDeduplicator()
    inbox = MemoryInbox(max_pending=1, dedup=shared)
    await inbox.start()
    put = putter(inbox)
    first, second = await asyncio.gather(
        put("c", "a", key="a"), put("c", "b", key="b"), return_exceptions=True
    )
    assert isinstance(first, str)
    assert isinstance(second, BackendUnavailableError)  # filled while its claim was awaited
    assert await shared.claim("b")  # forgotten: a redelivery is not a duplicate
    assert not await shared.claim("a")


async def test_the_oldest_dead_letter_goes_past_max_dead() -> None:
    inbox = MemoryInbox(max_dead=2)
    await inbox.start()
    put = putter(inbox)
    for i in range(3):
        await put("c", f"m{i}")
    for _ in range(3):
        await inbox.failed(await inbox.get(), "boom", dead=True)
    letters = [d.raw["data"]["text"] async for d in inbox.dead_letters()]
    assert letters == ["m1", "m2"]


def test_memory_arguments_are_validated() -> None:
    with pytest.raises(ConfigurationError):
        MemoryInbox(max_pending=0)
    with pytest.raises(ConfigurationError):
        MemoryInbox(dedup_ttl=0)


def test_delay_is_capped_exponential_with_jitter() -> None:
    low = HandlerRetry(backoff_base=1.0, backoff_max=10.0, random=lambda: 0.0)
    high = HandlerRetry(backoff_base=1.0, backoff_max=10.0, random=lambda: 0.999999)
    assert [low.delay(a) for a in (1, 2, 3, 4, 5, 6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert [round(high.delay(a), 3) for a in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 8.0, 10.0]
    assert high.delay(10_000) == pytest.approx(10.0, rel=1e-3)  # no overflow far out


def test_should_retry_counts_attempts() -> None:
    retry = HandlerRetry(max_attempts=3)
    assert [retry.should_retry(a) for a in (1, 2, 3, 4)] == [True, True, False, False]
    assert not HandlerRetry.none().should_retry(1)
    assert HandlerRetry().max_attempts == 5


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"max_attempts": 2.5},
        {"backoff_base": -1.0},
        {"backoff_max": float("inf")},
        {"backoff_max": float("nan")},
    ],
)
def test_retry_arguments_are_validated(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        HandlerRetry(**kwargs)  # type: ignore[arg-type]
