"""A 429 with Retry-After holds back every call of that Session, not only the one that got it.

The platform's rate limit is account-wide: the other calls in flight would only collect 429s of
their own (and count against the limit) if they went ahead.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from ultimate_async._retry import RetryPolicy
from ultimate_async.errors import RateLimitError
from ultimate_async.session import Session

if TYPE_CHECKING:
    from conftest import FakeClock, FakePlatform, Otel, Prometheus


async def test_the_next_call_waits_out_another_calls_retry_after(
    platform: FakePlatform, clock: FakeClock
) -> None:
    policy = RetryPolicy(max_retries=0, sleep=clock.sleep, clock=clock)
    platform.answer(429, "slow down", Retry_After="5")
    async with Session("key", "bot", base_url=platform.url, retry=policy) as session:
        with pytest.raises(RateLimitError):
            await session.chat.send_message("c1", "first")
        assert clock.sleeps == []  # no retries allowed: the 429 call itself did not wait
        clock.now += 2.0  # two of the five seconds pass
        await session.chat.send_message("c2", "second")
    assert clock.sleeps == [pytest.approx(3.0)]  # the rest of the cool-down, then the call
    assert platform.script == [] and len(platform.arrivals) == 2


async def test_no_wait_once_the_cool_down_is_over(platform: FakePlatform, clock: FakeClock) -> None:
    policy = RetryPolicy(max_retries=0, sleep=clock.sleep, clock=clock)
    platform.answer(429, Retry_After="5")
    async with Session("key", "bot", base_url=platform.url, retry=policy) as session:
        with pytest.raises(RateLimitError):
            await session.chat.end_session("c1")
        clock.now += 5.0
        await session.chat.end_session("c2")
    assert clock.sleeps == []


async def test_the_cool_down_belongs_to_one_session(
    platform: FakePlatform, clock: FakeClock
) -> None:
    policy = RetryPolicy(max_retries=0, sleep=clock.sleep, clock=clock)
    platform.answer(429, Retry_After="30")
    async with (
        Session("key", "bot", base_url=platform.url, retry=policy) as limited,
        Session("other-key", "bot", base_url=platform.url, retry=policy) as other,
    ):
        with pytest.raises(RateLimitError):
            await limited.chat.end_session("c1")
        await other.chat.end_session("c2")
    assert clock.sleeps == []


async def test_the_call_that_got_the_429_waits_only_once(
    platform: FakePlatform, clock: FakeClock
) -> None:
    policy = RetryPolicy(sleep=clock.sleep, clock=clock)
    platform.answer(429, Retry_After="4")
    async with Session("key", "bot", base_url=platform.url, retry=policy) as session:
        await session.chat.send_message("c1", "hi")
    assert clock.sleeps == [4.0]
    assert len(platform.arrivals) == 2


async def test_retry_after_is_capped_for_the_other_calls_too(
    platform: FakePlatform, clock: FakeClock
) -> None:
    policy = RetryPolicy(max_retries=0, retry_after_max=10.0, sleep=clock.sleep, clock=clock)
    platform.answer(429, Retry_After="3600")
    async with Session("key", "bot", base_url=platform.url, retry=policy) as session:
        with pytest.raises(RateLimitError):
            await session.chat.end_session("c1")
        await session.chat.end_session("c2")
    assert clock.sleeps == [10.0]


async def test_a_503_retry_after_does_not_hold_other_calls(
    platform: FakePlatform, clock: FakeClock
) -> None:
    """Only the rate limit is account-wide; a 503 concerns the request that got it."""
    policy = RetryPolicy(max_retries=0, sleep=clock.sleep, clock=clock)
    platform.answer(503, Retry_After="30")
    async with Session("key", "bot", base_url=platform.url, retry=policy) as session:
        with pytest.raises(Exception, match="503"):
            await session.chat.end_session("c1")
        await session.chat.end_session("c2")
    assert clock.sleeps == []


async def test_concurrent_calls_pause_in_real_time(platform: FakePlatform) -> None:
    """With the real clock: calls started while a 429's Retry-After runs reach the server only
    once it is over, and all of them succeed."""
    platform.answer(429, "slow down", Retry_After="0.4")
    async with Session("key", "bot", base_url=platform.url) as session:
        first = asyncio.create_task(session.chat.send_message("c0", "first"))
        await asyncio.wait_for(platform.arrived.wait(), 5)  # the 429 is on its way back
        await asyncio.sleep(0.05)
        limited_at = platform.arrivals[0]
        others = [session.chat.send_message(f"c{i}", "next") for i in range(1, 4)]
        await asyncio.gather(first, *others)
    assert len(platform.arrivals) == 5  # the 429, its retry, three others: no second 429
    assert min(platform.arrivals[1:]) >= limited_at + 0.39


async def test_throttled_calls_and_429s_are_counted(
    platform: FakePlatform, clock: FakeClock, otel: Otel, prometheus: Prometheus
) -> None:
    policy = RetryPolicy(max_retries=0, sleep=clock.sleep, clock=clock)
    platform.answer(429, Retry_After="5")
    async with Session("key", "bot", base_url=platform.url, retry=policy) as session:
        with pytest.raises(RateLimitError):
            await session.chat.send_message("c1", "hi")
        await session.chat.send_message("c2", "hi")
        await session.widget.agent_disconnect("c3")
    samples = prometheus.scrape()
    call = ("call", "chat.send_message")
    assert samples[("ultimate_api_requests_total", (call, ("status", "429")))] == 1
    assert samples[("ultimate_api_requests_total", (call, ("status", "200")))] == 1
    assert samples[("ultimate_api_throttled_total", (call,))] == 1
    assert ("ultimate_api_throttled_total", (("call", "widget.agent_disconnect"),)) not in samples
    throttled = otel.values("ultimate.api.throttled")
    assert throttled == {(call,): 1}
