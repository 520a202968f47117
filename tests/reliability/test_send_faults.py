"""Sending under network faults: the retry policy does what DESIGN §2 promises.

A real local server (raw asyncio, so it can misbehave at any byte) counts every request that
reached it.  The platform has no idempotency key, so a request that may have reached the bot
(reset after it was sent, stalled answer, 500) must never be sent twice by default; what the
server refused before processing (429/503) is retried, honouring ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from ultimate_async import RetryPolicy
from ultimate_async.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    RateLimitError,
    ServerError,
)
from ultimate_async.session import Session

#: What the server does with the n-th request (0-based): ("reset" | "stall" | status, headers)
Script = Callable[[int], tuple[Any, dict[str, str]]]


class FaultyServer:
    """Reads each request fully, counts it, then answers, resets or stalls per ``script``."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.hits = 0
        self.hit_times: list[float] = []
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._stalled: list[asyncio.Event] = []
        self.url = ""

    async def __aenter__(self) -> FaultyServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        for gate in self._stalled:
            gate.set()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                index = self.hits
                self.hits += 1
                self.hit_times.append(time.monotonic())
                action, headers = self.script(index)
                if action == "reset":
                    writer.transport.abort()
                    return
                if action == "stall":
                    gate = asyncio.Event()
                    self._stalled.append(gate)
                    await gate.wait()
                    return
                if action == "half":  # status line and headers, then the body never comes
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{")
                    await writer.drain()
                    gate = asyncio.Event()
                    self._stalled.append(gate)
                    await gate.wait()
                    return
                body = b'{"error":"injected"}' if action >= 300 else b""
                extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                writer.write(
                    f"HTTP/1.1 {action} X\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode()
                    + body
                )
                await writer.drain()
        finally:
            writer.close()


@pytest.fixture
async def make_session() -> AsyncIterator[Callable[..., Session]]:
    sessions: list[Session] = []

    def make(server: FaultyServer, *, timeout: float = 1.0, **retry: Any) -> Session:
        policy = RetryPolicy(**{"backoff_base": 0.01, "backoff_max": 0.05, **retry})
        session = Session("key", "bot", base_url=server.url, retry=policy, timeout=timeout)
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        await session.aclose()


# --------------------------------------------------------------------------- never twice


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 500, 502, 504])
async def test_non_retryable_status_is_sent_once(
    make_session: Callable[..., Session], status: int
) -> None:
    async with FaultyServer(lambda n: (status, {"Retry-After": "0"})) as server:
        session = make_session(server)
        with pytest.raises(APIStatusError) as caught:
            await session.chat.send_message("c1", "hello")
        assert caught.value.status == status
        assert server.hits == 1


async def test_reset_after_the_request_was_sent_is_not_retried(
    make_session: Callable[..., Session],
) -> None:
    """The bot may have got the message: a reset after sending is reported, not repeated."""
    async with FaultyServer(lambda n: ("reset", {})) as server:
        session = make_session(server, max_retries=5)
        with pytest.raises(APIConnectionError):
            await session.chat.send_message("c1", "hello")
        assert server.hits == 1


async def test_stalled_answer_times_out_and_is_not_retried(
    make_session: Callable[..., Session],
) -> None:
    async with FaultyServer(lambda n: ("stall", {})) as server:
        session = make_session(server, timeout=0.3, max_retries=5)
        started = time.monotonic()
        with pytest.raises(APITimeoutError):
            await session.chat.send_message("c1", "hello")
        assert time.monotonic() - started < 3
        assert server.hits == 1


async def test_stalled_body_of_a_2xx_is_not_retried(
    make_session: Callable[..., Session],
) -> None:
    """The server accepted the request (2xx) and then stalled: never send it again."""
    async with FaultyServer(lambda n: ("half", {})) as server:
        session = make_session(server, timeout=0.3, max_retries=5)
        try:
            await session.chat.send_message("c1", "hello")
        except APIConnectionError:
            pass  # reporting the broken answer is fine; sending twice is not
        assert server.hits == 1


async def test_opt_in_retries_unsafe_failures(make_session: Callable[..., Session]) -> None:
    """``retry_unsafe=True`` retries resets and 5xx, bounded by ``max_retries``."""
    async with FaultyServer(lambda n: ("reset", {}) if n % 2 == 0 else (500, {})) as server:
        session = make_session(server, max_retries=3, retry_unsafe=True)
        with pytest.raises((APIConnectionError, ServerError)):
            await session.chat.send_message("c1", "hello")
        assert server.hits == 4


# --------------------------------------------------------------------------- retried


@pytest.mark.parametrize("status", [429, 503])
async def test_refused_before_processing_is_retried_honouring_retry_after(
    make_session: Callable[..., Session], status: int
) -> None:
    script: Script = lambda n: (status, {"Retry-After": "0.2"}) if n < 2 else (200, {})  # noqa: E731
    async with FaultyServer(script) as server:
        session = make_session(server, max_retries=2)
        await session.chat.send_message("c1", "hello")
        assert server.hits == 3
        gaps = [b - a for a, b in zip(server.hit_times, server.hit_times[1:], strict=False)]
        assert all(gap >= 0.18 for gap in gaps), gaps  # waited as the server asked


async def test_retry_after_is_capped(make_session: Callable[..., Session]) -> None:
    script: Script = lambda n: (429, {"Retry-After": "3600"}) if n == 0 else (200, {})  # noqa: E731
    async with FaultyServer(script) as server:
        session = make_session(server, retry_after_max=0.1)
        started = time.monotonic()
        await session.chat.send_message("c1", "hello")
        assert time.monotonic() - started < 2
        assert server.hits == 2


async def test_retry_after_as_http_date(make_session: Callable[..., Session]) -> None:
    script: Script = lambda n: (  # noqa: E731
        (503, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) if n == 0 else (200, {})
    )
    async with FaultyServer(script) as server:
        session = make_session(server)
        await session.chat.send_message("c1", "hello")  # a date in the past: retry at once
        assert server.hits == 2


async def test_persistent_429_gives_up_after_max_retries(
    make_session: Callable[..., Session],
) -> None:
    async with FaultyServer(lambda n: (429, {"Retry-After": "0.01"})) as server:
        session = make_session(server, max_retries=3)
        with pytest.raises(RateLimitError) as caught:
            await session.chat.send_message("c1", "hello")
        assert server.hits == 4
        assert caught.value.retry_after == pytest.approx(0.01)


async def test_connection_refused_is_retried(make_session: Callable[..., Session]) -> None:
    """Nothing listens: the request cannot have reached anyone, so it is retried."""
    async with FaultyServer(lambda n: (200, {})) as server:
        url = server.url
    sleeps: list[float] = []

    async def sleep(delay: float) -> None:
        sleeps.append(delay)

    policy = RetryPolicy(max_retries=3, sleep=sleep)
    async with Session("key", "bot", base_url=url, retry=policy, timeout=1.0) as session:
        with pytest.raises(APIConnectionError):
            await session.chat.send_message("c1", "hello")
    assert len(sleeps) == 3


async def test_many_concurrent_calls_through_429_storm(
    make_session: Callable[..., Session],
) -> None:
    """200 concurrent sends, every other attempt refused with 429: each arrives exactly once."""
    arrived: list[int] = []

    def script(n: int) -> tuple[Any, dict[str, str]]:
        if n % 2 == 0:
            return 429, {"Retry-After": "0.01"}
        arrived.append(n)
        return 200, {}

    async with FaultyServer(script) as server:
        session = make_session(server, max_retries=10)
        await asyncio.gather(*(session.chat.send_message(f"c{i}", "hi") for i in range(200)))
        assert len(arrived) == 200
        assert server.hits == 400
