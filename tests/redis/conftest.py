"""A real ``redis-server`` per test, on a free local port, that a test may stop and restart.

Without the binary the Redis tests are skipped with a visible reason; with
``ULTIMATE_ASYNC_REQUIRE_REDIS=1`` (set by CI) they fail instead, so CI cannot go green silently.
``ULTIMATE_ASYNC_REDIS_SERVER`` names another binary (an empty value pretends there is none).

Fixtures: ``redis_server`` (started, empty; ``.url``, ``.stop()``, ``.start()`` on the same
port), ``make_redis_server(*extra_args)`` for servers with other options, ``redis_client`` (a
decoding client for inspecting keys) and ``eventually(predicate)`` (poll until true).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, RedisError


def _find_binary() -> str | None:
    override = os.environ.get("ULTIMATE_ASYNC_REDIS_SERVER")  # another build, or "" = none
    if override is not None:
        return shutil.which(override) if override else None
    found = shutil.which("redis-server")
    if found is None and os.path.exists("/usr/bin/redis-server"):
        found = "/usr/bin/redis-server"
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One ``redis-server`` process bound to 127.0.0.1; ``stop()``/``start()`` keep the port."""

    def __init__(self, binary: str, *args: str) -> None:
        self.binary = binary
        self.port = _free_port()
        self.args = args  # extra redis-server options, e.g. ("--requirepass", "x")
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self, within: float = 10.0) -> None:
        """Start the server and return once it answers."""
        assert self.process is None, "already running"
        self.process = await asyncio.create_subprocess_exec(
            self.binary,
            *("--port", str(self.port), "--bind", "127.0.0.1", "--protected-mode", "no"),
            *("--save", "", "--appendonly", "no"),
            *self.args,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        client = aioredis.Redis(
            host="127.0.0.1",
            port=self.port,
            socket_connect_timeout=0.5,
            retry=Retry(NoBackoff(), 0),
        )
        ready = False
        try:
            async with asyncio.timeout(within):
                while not ready:
                    if self.process.returncode is not None:
                        raise RuntimeError(f"redis-server exited (port {self.port} taken?)")
                    try:
                        ready = bool(await client.ping())
                    except AuthenticationError:
                        ready = True  # started with --requirepass: it answers, that is enough
                    except (RedisError, OSError):
                        await asyncio.sleep(0.01)
        finally:
            await client.aclose()
            if not ready:
                await self.stop()

    async def stop(self) -> None:
        """Stop the server (SIGTERM to the PID we started) and wait until it is gone."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(10.0):
                    await process.wait()
            except TimeoutError:
                process.kill()
        await process.wait()

    async def restart(self) -> None:
        await self.stop()
        await self.start()


@pytest.fixture
def redis_binary() -> str:
    binary = _find_binary()
    if binary is None:
        reason = "redis-server binary not found (apt-get install redis-server)"
        if os.environ.get("ULTIMATE_ASYNC_REQUIRE_REDIS") == "1":
            pytest.fail(f"{reason}; ULTIMATE_ASYNC_REQUIRE_REDIS=1 requires the Redis tests")
        pytest.skip(reason)
    return binary


MakeRedisServer = Callable[..., Awaitable[RedisServer]]


@pytest.fixture
async def make_redis_server(redis_binary: str) -> AsyncIterator[MakeRedisServer]:
    """Starts servers with extra options; every one is stopped at teardown."""
    servers: list[RedisServer] = []

    async def make(*args: str) -> RedisServer:
        for _attempt in range(3):  # the probed port may be taken before redis binds it
            server = RedisServer(redis_binary, *args)
            servers.append(server)
            try:
                await server.start()
            except RuntimeError:
                continue
            return server
        pytest.fail("could not start redis-server on a free port")

    yield make
    for server in servers:
        await server.stop()


@pytest.fixture
async def redis_server(make_redis_server: MakeRedisServer) -> RedisServer:
    """A fresh, empty server for this test; stopped at teardown whatever the test did."""
    return await make_redis_server()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A plain decoding client on the test server, for inspecting keys."""
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


Eventually = Callable[..., Awaitable[None]]


@pytest.fixture
def eventually() -> Eventually:
    """``await eventually(predicate, within=10)``: poll a (sync or async) predicate until true.

    For states only Redis can tell (a key expired, an announcement came back); ordering tests
    use events instead.
    """

    async def wait(predicate: Callable[[], Any], within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            while True:
                result = predicate()
                if asyncio.iscoroutine(result):
                    result = await result
                if result:
                    return
                await asyncio.sleep(0.02)

    return wait
