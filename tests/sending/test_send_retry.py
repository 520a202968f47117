"""Retry decisions: safe by default (nothing the bot may have seen is sent twice), opt-in unsafe."""

from __future__ import annotations

import email.utils
import ssl
import time
from typing import Any

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey
from yarl import URL

from ultimate_async._http import parse_retry_after
from ultimate_async._retry import RetryPolicy
from ultimate_async.errors import (
    APIConnectionError,
    APITimeoutError,
    BadRequestError,
    RateLimitError,
    ServerError,
)
from ultimate_async.legacy import LegacyClient
from ultimate_async.session import Session

BASE = "https://api.test"
CHAT = f"{BASE}/converse/chat"


# --- the policy on its own -------------------------------------------------------------------


def test_backoff_is_exponential_capped_and_jittered() -> None:
    low = RetryPolicy(backoff_base=0.5, backoff_max=3.0, random=lambda: 0.0)
    high = RetryPolicy(backoff_base=0.5, backoff_max=3.0, random=lambda: 0.999999)
    assert [low.backoff(n) for n in range(5)] == [0.25, 0.5, 1.0, 1.5, 1.5]
    assert [round(high.backoff(n), 3) for n in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert high.backoff(10_000) == pytest.approx(3.0, rel=1e-3)  # no overflow far out


def test_defaults_match_the_contract() -> None:
    policy = RetryPolicy()
    assert (policy.max_retries, policy.backoff_base, policy.backoff_max) == (2, 0.5, 8.0)
    assert (policy.retry_after_max, policy.retry_unsafe) == (60.0, False)


def test_negative_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy(max_retries=-1)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3", 3.0), ("0.5", 0.5), ("-4", 0.0), ("", None), (None, None), ("soon", None)],
)
def test_parse_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    header = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(header, now=lambda: now) == pytest.approx(30.0)
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after(past, now=lambda: now) == 0.0


# --- against a real local server ---------------------------------------------------------------


async def test_429_honours_retry_after_seconds(platform: Any, instant_retry: RetryPolicy) -> None:
    platform.answer(429, "slow down", Retry_After="3")
    platform.answer(429, "slow down", Retry_After="1.5")
    async with Session("k", "b", base_url=platform.url, retry=instant_retry) as session:
        await session.chat.send_message("c1", "hi")
    assert platform.hits == 3
    assert instant_retry.sleep.delays == [3.0, 1.5]  # type: ignore[attr-defined]


async def test_retry_after_http_date_is_honoured(platform: Any, instant_retry: RetryPolicy) -> None:
    platform.answer(503, Retry_After=email.utils.formatdate(time.time() + 20, usegmt=True))
    async with Session("k", "b", base_url=platform.url, retry=instant_retry) as session:
        await session.chat.end_session("c1")
    [delay] = instant_retry.sleep.delays  # type: ignore[attr-defined]
    assert 17.0 <= delay <= 20.0


async def test_retry_after_is_capped(platform: Any, sleeps: Any) -> None:
    policy = RetryPolicy(retry_after_max=10.0, sleep=sleeps)
    platform.answer(429, Retry_After="3600")
    async with Session("k", "b", base_url=platform.url, retry=policy) as session:
        await session.chat.end_session("c1")
    assert sleeps.delays == [10.0]


async def test_503_then_200_succeeds_with_backoff(
    platform: Any, instant_retry: RetryPolicy
) -> None:
    platform.answer(503, "maintenance")
    platform.answer(503, "maintenance")
    async with Session("k", "b", base_url=platform.url, retry=instant_retry) as session:
        await session.chat.send_message("c1", "hi")
    assert platform.hits == 3
    # 0.5 * 2**n, times the jitter factor 0.5 + random()/2 = 0.75
    assert instant_retry.sleep.delays == [0.375, 0.75]  # type: ignore[attr-defined]
    assert all(r.json()["text"] == "hi" for r in platform.requests)


async def test_500_is_not_retried_by_default(platform: Any, instant_retry: RetryPolicy) -> None:
    platform.answer(500, "oops")
    async with Session("k", "b", base_url=platform.url, retry=instant_retry) as session:
        with pytest.raises(ServerError):
            await session.chat.send_message("c1", "hi")
    assert platform.hits == 1
    assert instant_retry.sleep.delays == []  # type: ignore[attr-defined]


async def test_500_is_retried_when_unsafe_allowed(platform: Any, sleeps: Any) -> None:
    policy = RetryPolicy(retry_unsafe=True, sleep=sleeps, random=lambda: 0.5)
    platform.answer(500, "oops")
    platform.answer(502, "bad gateway")
    async with Session("k", "b", base_url=platform.url, retry=policy) as session:
        await session.chat.send_message("c1", "hi")
    assert platform.hits == 3
    assert len(sleeps.delays) == 2


@pytest.mark.parametrize("unsafe", [False, True])
async def test_400_is_never_retried(platform: Any, sleeps: Any, unsafe: bool) -> None:
    policy = RetryPolicy(retry_unsafe=unsafe, sleep=sleeps)
    platform.answer(400, "bad")
    async with Session("k", "b", base_url=platform.url, retry=policy) as session:
        with pytest.raises(BadRequestError):
            await session.chat.send_message("c1", "hi")
    assert platform.hits == 1
    assert sleeps.delays == []


async def test_exhausted_retries_raise_the_last_error(
    platform: Any, instant_retry: RetryPolicy
) -> None:
    platform.answer(503, "first")
    platform.answer(503, "second")
    platform.answer(429, "third", Retry_After="1")
    platform.answer(200)  # never reached: max_retries=2 means 3 attempts
    async with Session("k", "b", base_url=platform.url, retry=instant_retry) as session:
        with pytest.raises(RateLimitError, match="third") as info:
            await session.chat.send_message("c1", "hi")
    assert info.value.retry_after == 1.0
    assert platform.hits == 3
    assert len(instant_retry.sleep.delays) == 2  # type: ignore[attr-defined]


async def test_max_retries_zero_makes_one_attempt(platform: Any, sleeps: Any) -> None:
    platform.answer(503)
    async with Session(
        "k", "b", base_url=platform.url, retry=RetryPolicy(max_retries=0, sleep=sleeps)
    ) as session:
        with pytest.raises(ServerError):
            await session.chat.end_session("c1")
    assert platform.hits == 1
    assert sleeps.delays == []


async def test_refused_connection_is_retried_by_default(
    refused_url: str, instant_retry: RetryPolicy
) -> None:
    async with Session("k", "b", base_url=refused_url, retry=instant_retry) as session:
        with pytest.raises(APIConnectionError):
            await session.chat.end_session("c1")
    assert len(instant_retry.sleep.delays) == 2  # type: ignore[attr-defined]


async def test_read_timeout_is_not_retried_by_default(
    platform: Any, instant_retry: RetryPolicy
) -> None:
    platform.answer("stall")
    async with Session(
        "k", "b", base_url=platform.url, timeout=0.2, retry=instant_retry
    ) as session:
        with pytest.raises(APITimeoutError):
            await session.chat.send_message("c1", "maybe delivered")
    assert platform.hits == 1


async def test_read_timeout_is_retried_when_unsafe_allowed(platform: Any, sleeps: Any) -> None:
    platform.answer("stall")
    policy = RetryPolicy(retry_unsafe=True, sleep=sleeps)
    async with Session("k", "b", base_url=platform.url, timeout=0.5, retry=policy) as session:
        await session.chat.send_message("c1", "hi")
    assert platform.hits == 2
    assert len(sleeps.delays) == 1


# --- the same decisions through aioresponses ---------------------------------------------------


async def test_mocked_connect_timeout_is_retried_by_default(
    mock_api: Any, instant_retry: RetryPolicy
) -> None:
    mock_api.post(CHAT, exception=aiohttp.ConnectionTimeoutError("connect"))
    mock_api.post(CHAT, status=200)
    async with Session("k", "b", base_url=BASE, retry=instant_retry) as session:
        await session.chat.end_session("c1")
    assert instant_retry.sleep.delays == [0.375]  # type: ignore[attr-defined]


async def test_mocked_disconnect_is_retried_only_when_unsafe(mock_api: Any, sleeps: Any) -> None:
    mock_api.post(CHAT, exception=aiohttp.ServerDisconnectedError(), repeat=True)
    async with Session("k", "b", base_url=BASE, retry=RetryPolicy(sleep=sleeps)) as session:
        with pytest.raises(APIConnectionError):
            await session.chat.end_session("c1")
    assert sleeps.delays == []
    async with Session(
        "k", "b", base_url=BASE, retry=RetryPolicy(retry_unsafe=True, sleep=sleeps)
    ) as session:
        with pytest.raises(APIConnectionError):
            await session.chat.end_session("c1")
    assert len(sleeps.delays) == 2


async def test_mocked_429_then_success(mock_api: Any, instant_retry: RetryPolicy) -> None:
    mock_api.post(CHAT, status=429, headers={"Retry-After": "2"})
    mock_api.post(CHAT, status=200)
    async with Session("k", "b", base_url=BASE, retry=instant_retry) as session:
        await session.chat.send_message("c1", "hi")
    assert instant_retry.sleep.delays == [2.0]  # type: ignore[attr-defined]
    assert len(mock_api.requests[("POST", URL(CHAT))]) == 2


async def test_tls_failure_is_never_retried(mock_api: Any, sleeps: Any) -> None:
    key = ConnectionKey("api.test", 443, True, True, None, None, None)
    error = aiohttp.ClientConnectorCertificateError(key, ssl.SSLCertVerificationError("bad cert"))
    mock_api.post(CHAT, exception=error, repeat=True)
    policy = RetryPolicy(retry_unsafe=True, sleep=sleeps)
    async with Session("k", "b", base_url=BASE, retry=policy) as session:
        with pytest.raises(APIConnectionError, match="TLS failure"):
            await session.chat.end_session("c1")
    assert sleeps.delays == []


async def test_mock_api_passes_local_servers_through(mock_api: Any, platform: Any) -> None:
    """The shared ``mock_api`` fixture must not swallow calls to real 127.0.0.1 test servers."""
    mock_api.post(CHAT, status=200)
    async with Session("k", "b", base_url=platform.url) as local:
        await local.chat.end_session("real")
    async with Session("k", "b", base_url=BASE) as mocked:
        await mocked.chat.end_session("mocked")
    assert [r.json()["platformConversationId"] for r in platform.requests] == ["real"]


async def test_a_2xx_is_never_retried_even_if_its_body_breaks(platform: Any, sleeps: Any) -> None:
    """Once the server said 2xx the request was processed: resending would duplicate it."""
    policy = RetryPolicy(retry_unsafe=True, sleep=sleeps)
    platform.answer("truncate")
    async with LegacyClient(basic_token="dG9rZW4=", base_url=platform.url, retry=policy) as c:
        with pytest.raises(APIConnectionError, match="HTTP 200 but reading the body failed"):
            await c.automation("bot", "conv", "startSession")
    platform.answer("truncate")
    async with Session("k", "b", base_url=platform.url, retry=policy) as session:
        await session.chat.end_session("c1")  # nothing to read: accepted is accepted
    assert platform.hits == 2
    assert sleeps.delays == []
