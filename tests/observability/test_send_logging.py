"""Sending is visible at DEBUG: every API call and every retry, with no secret in sight."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

import pytest

from ultimate_async._retry import RetryPolicy
from ultimate_async.errors import RateLimitError, ServerError
from ultimate_async.legacy import LegacyClient
from ultimate_async.models.outbound import MetaData
from ultimate_async.session import Session

if TYPE_CHECKING:
    from conftest import FakeClock, FakePlatform

API_KEY = "sk-live-0123456789abcdef"
HIDDEN = "4111-1111-1111-1111"  # a sanitize=True metadata value


def api_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "ultimate_async.api"]


async def test_each_call_is_logged_with_call_status_attempt_and_elapsed(
    platform: FakePlatform, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ultimate_async.api")
    policy = RetryPolicy(sleep=clock.sleep, clock=clock, random=lambda: 0.5)
    platform.answer(503, "maintenance")
    async with Session(API_KEY, "bot", base_url=platform.url, retry=policy) as session:
        await session.chat.send_message("c1", "hi")
        await session.widget.agent_disconnect("c1")
    lines = [r.getMessage() for r in api_records(caplog)]
    assert all(r.levelno == logging.DEBUG for r in api_records(caplog))
    assert len(lines) == 3, lines
    assert re.fullmatch(
        r"chat\.send_message: 503 \(attempt 1, \d+\.\d{3}s\); retrying in 0\.38s: .*HTTP 503.*",
        lines[0],
    )
    assert re.fullmatch(r"chat\.send_message: 200 \(attempt 2, \d+\.\d{3}s\)", lines[1])
    assert re.fullmatch(r"widget\.agent_disconnect: 200 \(attempt 1, \d+\.\d{3}s\)", lines[2])


async def test_giving_up_and_connection_failures_are_logged(
    refused_url: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ultimate_async.api")
    policy = RetryPolicy(max_retries=1, sleep=clock.sleep, clock=clock, random=lambda: 0.5)
    async with Session(API_KEY, "bot", base_url=refused_url, retry=policy) as session:
        with pytest.raises(Exception, match="cannot connect"):
            await session.chat.end_session("c1")
    lines = [r.getMessage() for r in api_records(caplog)]
    assert len(lines) == 2, lines
    assert lines[0].startswith("chat.end_session: no answer (attempt 1, ")
    assert "retrying in" in lines[0] and "cannot connect" in lines[0]
    assert lines[1].startswith("chat.end_session: no answer (attempt 2, ")
    assert "giving up" in lines[1]


async def test_secrets_and_sanitized_values_never_reach_the_log(
    platform: FakePlatform, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that echoes the request (key, metadata) into its error bodies."""
    caplog.set_level(logging.DEBUG)
    policy = RetryPolicy(max_retries=1, sleep=clock.sleep, clock=clock)
    echo = f"bad key {API_KEY}, card {HIDDEN}"
    platform.answer(429, echo, Retry_After="1")
    platform.answer(500, echo)
    async with Session(API_KEY, "bot", base_url=platform.url, retry=policy) as session:
        with pytest.raises(ServerError) as raised:
            await session.chat.send_message(
                "c1", "hi", metadata=[MetaData("card", HIDDEN, sanitize=True)]
            )
    assert HIDDEN in platform.bodies[0].decode()  # it was really sent, and echoed back
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "chat.send_message: 429" in logged and "chat.send_message: 500" in logged
    assert API_KEY not in logged and HIDDEN not in logged
    assert "***" in logged
    assert API_KEY not in str(raised.value) and HIDDEN not in str(raised.value)


async def test_legacy_calls_are_named_too(
    platform: FakePlatform, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ultimate_async.api")
    platform.answer(200, '{"intents": [], "entities": []}')
    async with LegacyClient(base_url=platform.url, basic_token="dG9rZW4=") as client:
        await client.intents("bot", "hello")
    [line] = [r.getMessage() for r in api_records(caplog)]
    assert line.startswith("legacy.intents: 200 (attempt 1, ")


async def test_nothing_is_logged_above_debug_for_a_retried_call(
    platform: FakePlatform, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The caller gets the exception; the library does not log it a second time at WARNING."""
    caplog.set_level(logging.INFO)
    policy = RetryPolicy(max_retries=0, sleep=clock.sleep, clock=clock)
    platform.answer(429, "slow down", Retry_After="2")
    async with Session(API_KEY, "bot", base_url=platform.url, retry=policy) as session:
        with pytest.raises(RateLimitError):
            await session.chat.send_message("c1", "hi")
    assert api_records(caplog) == []
