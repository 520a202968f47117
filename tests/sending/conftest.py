"""Fixtures for the sending tests: a real local "platform" server and an instant retry policy."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from ultimate_async._retry import RetryPolicy


class Recorded:
    """One request the fake platform received."""

    def __init__(self, path: str, headers: dict[str, str], body: bytes) -> None:
        self.path = path
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


class FakePlatform:
    """A real aiohttp server on 127.0.0.1 that records requests and plays scripted answers.

    ``script`` is a list of ``(status, body, headers)`` answers used in order; when it runs
    out, the server answers an empty 200.  The status ``"stall"`` never answers (until the test
    ends), to exercise timeouts; ``"truncate"`` sends a 200 and hangs up mid-body.
    """

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.script: list[tuple[int | str, str, dict[str, str]]] = []
        self.release = asyncio.Event()
        self.url = ""

    def answer(self, status: int | str, body: str = "", **headers: str) -> None:
        self.script.append((status, body, {k.replace("_", "-"): v for k, v in headers.items()}))

    @property
    def hits(self) -> int:
        return len(self.requests)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(Recorded(request.path_qs, dict(request.headers), await request.read()))
        status, body, headers = self.script.pop(0) if self.script else (200, "", {})
        if status == "stall":
            try:
                await asyncio.wait_for(self.release.wait(), 5)
            except TimeoutError:
                pass
            return web.Response(status=200)
        if status == "truncate":  # promise 1000 bytes, send a few, hang up
            resp = web.StreamResponse(status=200, headers={"Content-Length": "1000"})
            await resp.prepare(request)
            await resp.write(b'{"messages": [')
            assert request.transport is not None
            request.transport.close()
            return resp
        assert isinstance(status, int)
        return web.Response(status=status, text=body, headers=headers)


@pytest.fixture
async def platform(aiohttp_server: AiohttpServer) -> AsyncIterator[FakePlatform]:
    fake = FakePlatform()
    app = web.Application()
    app.router.add_post("/{tail:.*}", fake.handle)
    server = await aiohttp_server(app)
    fake.url = str(server.make_url("")).rstrip("/")
    yield fake
    fake.release.set()  # let stalled handlers finish so the server shuts down promptly


class SleepRecorder:
    """An injectable ``sleep`` that records the requested delays and returns at once.

    It also keeps a fake monotonic clock (``clock``) that each sleep moves forward, so a policy
    given both sees time pass exactly as the delays say (the shared 429 cool-down reads it).
    """

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        self.now += delay


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def instant_retry(sleeps: SleepRecorder) -> RetryPolicy:
    """The default policy, but sleeping instantly and with a fixed jitter factor (0.75)."""
    return RetryPolicy(sleep=sleeps, random=lambda: 0.5, clock=sleeps.clock)
