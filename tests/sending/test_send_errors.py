"""Non-2xx answers and transport failures become the documented exceptions, with useful text."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from ultimate_async._retry import RetryPolicy
from ultimate_async.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
)
from ultimate_async.models.outbound import MetaData
from ultimate_async.session import Session

API_KEY = "sk-live-TOPSECRET-42"
BASE = "https://api.test"
CHAT = f"{BASE}/converse/chat"
NO_RETRY = RetryPolicy.none()


@pytest.mark.parametrize(
    ("status", "exc_type"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, APIStatusError),
        (422, APIStatusError),
        (429, RateLimitError),
        (500, ServerError),
        (502, ServerError),
        (503, ServerError),
        (504, ServerError),
        (302, APIStatusError),
    ],
)
async def test_status_maps_to_exception(
    mock_api: Any, status: int, exc_type: type[APIStatusError]
) -> None:
    mock_api.post(CHAT, status=status, body=f"platform says no ({status})")
    async with Session(API_KEY, "bot", base_url=BASE, retry=NO_RETRY) as session:
        with pytest.raises(exc_type) as info:
            await session.chat.send_message("c1", "hello")
    error = info.value
    assert type(error) is exc_type
    assert error.status == status
    assert error.method == "POST"
    assert error.url == CHAT
    assert error.body == f"platform says no ({status})"
    message = str(error)
    assert "POST" in message and "/converse/chat" in message
    assert str(status) in message
    assert f"platform says no ({status})" in message
    assert API_KEY not in message and API_KEY not in repr(error)


async def test_request_id_header_is_kept(mock_api: Any) -> None:
    mock_api.post(CHAT, status=500, body="boom", headers={"X-Request-Id": "req-123"})
    async with Session(API_KEY, "bot", base_url=BASE, retry=NO_RETRY) as session:
        with pytest.raises(ServerError) as info:
            await session.chat.end_session("c1")
    assert info.value.request_id == "req-123"
    assert "req-123" in str(info.value)


async def test_long_body_is_excerpted_and_echoed_key_redacted(mock_api: Any) -> None:
    body = f"bad key {API_KEY} " + "x" * 5000
    mock_api.post(CHAT, status=401, body=body)
    async with Session(API_KEY, "bot", base_url=BASE, retry=NO_RETRY) as session:
        with pytest.raises(AuthenticationError) as info:
            await session.chat.end_session("c1")
    assert API_KEY not in str(info.value)
    assert API_KEY not in info.value.body
    assert "bad key ***" in info.value.body
    assert len(info.value.body) <= 500


async def test_rate_limit_carries_retry_after(mock_api: Any) -> None:
    mock_api.post(CHAT, status=429, headers={"Retry-After": "7"})
    async with Session(API_KEY, "bot", base_url=BASE, retry=NO_RETRY) as session:
        with pytest.raises(RateLimitError) as info:
            await session.chat.end_session("c1")
    assert info.value.retry_after == 7.0


async def test_empty_error_body_is_said_so(platform: Any) -> None:
    platform.answer(404)
    async with Session(API_KEY, "bot", base_url=platform.url, retry=NO_RETRY) as session:
        with pytest.raises(NotFoundError) as info:
            await session.chat.end_session("c1")
    assert "<empty body>" in str(info.value)
    assert f"{platform.url}/converse/chat" in str(info.value)


async def test_real_server_statuses(platform: Any) -> None:
    platform.answer(403, "key not allowed for this bot")
    platform.answer(400, '{"error":"missing platformConversationId"}')
    async with Session(API_KEY, "bot", base_url=platform.url, retry=NO_RETRY) as session:
        with pytest.raises(PermissionDeniedError, match="key not allowed"):
            await session.chat.end_session("c1")
        with pytest.raises(BadRequestError, match="missing platformConversationId"):
            await session.chat.end_session("c1")


async def test_refused_connection_is_api_connection_error(refused_url: str) -> None:
    async with Session(API_KEY, "bot", base_url=refused_url, retry=NO_RETRY) as session:
        with pytest.raises(APIConnectionError) as info:
            await session.chat.end_session("c1")
    assert not isinstance(info.value, APITimeoutError)
    assert isinstance(info.value.__cause__, aiohttp.ClientConnectorError)
    assert refused_url in str(info.value)
    assert API_KEY not in str(info.value)


async def test_stalled_server_is_a_timeout(platform: Any) -> None:
    platform.answer("stall")
    async with Session(
        API_KEY, "bot", base_url=platform.url, timeout=0.2, retry=NO_RETRY
    ) as session:
        with pytest.raises(APITimeoutError, match="timed out"):
            await session.chat.end_session("c1")
    assert platform.hits == 1


async def test_connect_timeout_is_a_timeout(mock_api: Any) -> None:
    mock_api.post(CHAT, exception=aiohttp.ConnectionTimeoutError("connect"))
    async with Session(API_KEY, "bot", base_url=BASE, retry=NO_RETRY) as session:
        with pytest.raises(APITimeoutError, match="connect timed out"):
            await session.chat.end_session("c1")


async def test_disconnect_after_sending_is_a_connection_error(mock_api: Any) -> None:
    mock_api.post(CHAT, exception=aiohttp.ServerDisconnectedError())
    async with Session(API_KEY, "bot", base_url=BASE, retry=NO_RETRY) as session:
        with pytest.raises(APIConnectionError, match="disconnected"):
            await session.chat.end_session("c1")


def _echo_body(url: Any, **kwargs: Any) -> Any:
    """An aioresponses callback answering 400 with the request body echoed back twice: as sent,
    and re-encoded the way an ASCII-only JSON server would quote it."""
    from aioresponses import CallbackResult

    sent = kwargs["data"].decode()
    ascii_echo = json.dumps(json.loads(sent))  # non-ASCII as \\u escapes
    return CallbackResult(status=400, body=f"invalid request {sent} parsed as {ascii_echo}")


async def test_sanitized_metadata_never_reaches_an_api_error(mock_api: Any) -> None:
    secret = 'Jürgen "J" Müller'
    mock_api.post(CHAT, callback=_echo_body, repeat=True)
    async with Session(API_KEY, "bot", base_url=BASE, retry=NO_RETRY) as session:
        calls = [
            session.chat.start_session("c1", metadata=[MetaData("name", secret, sanitize=True)]),
            session.chat.send_message(
                "c1", "hi", metadata=[MetaData("name", secret, sanitize=True), MetaData("k", "v")]
            ),
            session.chat.send_metadata("c1", [MetaData("name", secret, sanitize=True)]),
        ]
        for call in calls:
            with pytest.raises(BadRequestError) as info:
                await call
            shown = f"{info.value} {info.value!r} {info.value.body}"
            assert "J\\u00fcrgen" not in shown and "Jürgen" not in shown
            assert "***" in shown
            assert "platformConversationId" in shown  # the rest of the echo stays readable


async def test_plain_metadata_values_stay_readable_in_errors(mock_api: Any) -> None:
    mock_api.post(CHAT, callback=_echo_body)
    async with Session(API_KEY, "bot", base_url=BASE, retry=NO_RETRY) as session:
        with pytest.raises(BadRequestError) as info:
            await session.chat.send_metadata("c1", {"plan": "gold-tier"})
    assert "gold-tier" in str(info.value)
