"""RedisDeduplicator: one claim per delivery key across every replica sharing a Redis."""

from __future__ import annotations

import asyncio
import importlib
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import pytest
import redis.asyncio as aioredis

from ultimate_async.errors import BackendUnavailableError
from ultimate_async.redis import RedisDeduplicator
from ultimate_async.webhook.dedup import Deduplicator

if TYPE_CHECKING:
    from conftest import Eventually, MakeRedisServer

pytestmark = pytest.mark.redis


@pytest.fixture
async def make_dedup(redis_url: str) -> AsyncIterator[Callable[..., RedisDeduplicator]]:
    """Builds deduplicators ("replicas") on the test server and closes them afterwards."""
    made: list[RedisDeduplicator] = []

    def make(**kwargs: object) -> RedisDeduplicator:
        kwargs.setdefault("url", redis_url)
        dedup = RedisDeduplicator(**kwargs)  # type: ignore[arg-type]
        made.append(dedup)
        return dedup

    yield make
    for dedup in made:
        await dedup.aclose()


async def test_implements_the_deduplicator_protocol(
    make_dedup: Callable[..., RedisDeduplicator],
) -> None:
    assert isinstance(make_dedup(), Deduplicator)


async def test_a_key_claimed_on_one_replica_is_a_duplicate_on_another(
    make_dedup: Callable[..., RedisDeduplicator],
) -> None:
    a, b = make_dedup(), make_dedup()
    assert await a.claim("msg-1") is True
    assert await b.claim("msg-1") is False
    assert await a.claim("msg-1") is False
    assert await b.claim("msg-2") is True


async def test_concurrent_claims_of_one_key_have_exactly_one_winner(
    make_dedup: Callable[..., RedisDeduplicator],
) -> None:
    replicas = [make_dedup() for _ in range(5)]
    results = await asyncio.gather(*(r.claim("same") for r in replicas for _ in range(10)))
    assert results.count(True) == 1


async def test_forget_lets_any_replica_claim_again(
    make_dedup: Callable[..., RedisDeduplicator],
) -> None:
    a, b = make_dedup(), make_dedup()
    assert await a.claim("msg-1")
    await a.forget("msg-1")
    assert await b.claim("msg-1") is True
    await a.forget("never-claimed")  # forgetting an unknown key is harmless


async def test_claims_expire_after_ttl(
    make_dedup: Callable[..., RedisDeduplicator],
    redis_client: aioredis.Redis,
    eventually: Eventually,
) -> None:
    a, b = make_dedup(ttl=0.2), make_dedup(ttl=0.2)
    assert await a.claim("msg-1")
    ttl_ms = await redis_client.pttl("ultimate_async:dedup:msg-1")
    assert 0 < ttl_ms <= 200
    await eventually(lambda: b.claim("msg-1"), within=5)


async def test_key_prefix_separates_two_bots_on_one_redis(
    make_dedup: Callable[..., RedisDeduplicator], redis_client: aioredis.Redis
) -> None:
    bot1, bot2 = make_dedup(key_prefix="bot1"), make_dedup(key_prefix="bot2")
    assert await bot1.claim("msg-1")
    assert await bot2.claim("msg-1")
    assert sorted(await redis_client.keys("*")) == ["bot1:dedup:msg-1", "bot2:dedup:msg-1"]


async def test_a_borrowed_client_is_not_closed(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        dedup = RedisDeduplicator(client=client, ttl=60)
        assert await dedup.claim("k")
        await dedup.aclose()
        await dedup.aclose()  # idempotent
        assert await client.exists("ultimate_async:dedup:k") == 1
    finally:
        await client.aclose()


def test_url_or_client_is_required() -> None:
    with pytest.raises(TypeError):
        RedisDeduplicator()
    with pytest.raises(ValueError):
        RedisDeduplicator("redis://127.0.0.1:1/0", ttl=0)


async def test_the_password_never_shows_in_logs_repr_or_errors(
    make_redis_server: MakeRedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    # The server wants another password, so every command fails: an unusable backend.
    server = await make_redis_server("--requirepass", "the-right-one")
    dedup = RedisDeduplicator(f"redis://:hunter2-secret@127.0.0.1:{server.port}/0")
    try:
        caplog.set_level(logging.DEBUG, logger="ultimate_async.redis")
        with pytest.raises(BackendUnavailableError) as info:
            await dedup.claim("k")
        assert "hunter2" not in str(info.value)
        assert "hunter2" not in repr(dedup)
        assert "127.0.0.1" in repr(dedup)
        assert caplog.records, "the outage must be logged"
        assert all("hunter2" not in r.getMessage() for r in caplog.records)
    finally:
        await dedup.aclose()


def test_importing_without_redis_py_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "ultimate_async.redis")
    for name in [m for m in sys.modules if m == "redis" or m.startswith("redis.")]:
        monkeypatch.setitem(sys.modules, name, None)  # type: ignore[arg-type]
    with pytest.raises(ImportError, match=r"pip install 'ultimate_async\[redis\]'"):
        importlib.import_module("ultimate_async.redis")


def test_the_rest_of_the_package_never_imports_redis() -> None:
    """Single-process users do not pay for (or need) redis-py."""
    code = """
import importlib, pkgutil, sys
import ultimate_async
imported = 0
for info in pkgutil.walk_packages(ultimate_async.__path__, "ultimate_async."):
    if info.name != "ultimate_async.redis":
        importlib.import_module(info.name)  # every module must import: none goes unchecked
        imported += 1
leaked = sorted(m for m in sys.modules if m == "redis" or m.startswith("redis.")
                or m == "ultimate_async.redis")
print(imported)
print(",".join(leaked))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    imported, leaked = out.stdout.split("\n")[:2]
    assert int(imported) > 30  # the whole package was walked
    assert leaked == ""
