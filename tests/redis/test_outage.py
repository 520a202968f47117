"""Redis going away and coming back: errors the receiver can turn into 503, one warning per
outage, and recovery without anyone's help."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis.asyncio as aioredis

from ultimate_async.errors import BackendUnavailableError
from ultimate_async.redis import RedisDeduplicator, RedisEventBus

if TYPE_CHECKING:
    from conftest import Eventually, MakeRedisServer, RedisServer

pytestmark = pytest.mark.redis

LOGGER = "ultimate_async.redis"


def records(caplog: pytest.LogCaptureFixture, level: int, needle: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == LOGGER and r.levelno == level and needle in r.getMessage()
    ]


async def test_dedup_outage_raises_logs_once_and_recovers(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    dedup = RedisDeduplicator(redis_server.url)
    try:
        assert await dedup.claim("before")
        for outage in range(2):  # each outage is logged once, and its end once
            await redis_server.stop()
            for n in range(5):
                with pytest.raises(BackendUnavailableError):
                    await dedup.claim(f"during-{outage}-{n}")
            await redis_server.start()
            assert await dedup.claim(f"after-{outage}")
            assert len(records(caplog, logging.WARNING, "unavailable")) == outage + 1
            assert len(records(caplog, logging.INFO, "recovered")) == outage + 1
    finally:
        await dedup.aclose()


async def test_a_claim_that_could_not_be_withdrawn_is_withdrawn_after_recovery(
    make_redis_server: MakeRedisServer, tmp_path: Path
) -> None:
    # This server keeps its data across a restart, so the claim outlives the outage.
    server = await make_redis_server("--save", "3600 1", "--dir", str(tmp_path))
    a = RedisDeduplicator(server.url)
    b = RedisDeduplicator(server.url)
    try:
        assert await a.claim("refused-delivery")
        await server.stop()
        await a.forget("refused-delivery")  # Redis is down: must not raise, must not be lost
        await server.start()
        # The platform retries the refused delivery: it must be handled, not called a duplicate.
        assert await a.claim("refused-delivery") is True
        assert await b.claim("refused-delivery") is False
    finally:
        await a.aclose()
        await b.aclose()


class Sink:
    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, conversation_id: str, raw: Mapping[str, Any]) -> None:
        self.received.append((conversation_id, dict(raw)))


async def test_bus_outage_raises_logs_once_per_replica_and_recovers_by_itself(
    redis_server: RedisServer,
    redis_client: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
    eventually: Eventually,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    options: dict[str, Any] = {"announce_ttl": 5.0, "max_backoff": 0.2, "block_timeout": 0.2}
    holder = RedisEventBus(redis_server.url, **options)
    sender = RedisEventBus(redis_server.url, **options)
    sink = Sink()
    try:
        await holder.start(sink)
        await sender.start(Sink())
        await holder.hold("conv-1")
        assert await sender.forward("conv-1", {"n": 1})
        await eventually(lambda: len(sink.received) == 1)

        await redis_server.stop()
        for n in range(5):
            with pytest.raises(BackendUnavailableError):
                await sender.forward("conv-1", {"n": 100 + n})
        # The holder notices on its own (its inbox consumer keeps polling).
        await eventually(lambda: records(caplog, logging.WARNING, holder.replica_id))
        await asyncio.sleep(0.5)  # several failed retries of consumer and renewer

        await redis_server.start()  # an empty Redis: every announcement is gone
        # Nobody calls the holder: it re-announces what it holds by itself...
        await eventually(lambda: redis_client.get("ultimate_async:owner:conv-1"))
        assert await redis_client.get("ultimate_async:owner:conv-1") == holder.replica_id
        # ...and consumes its inbox again.
        assert await sender.forward("conv-1", {"n": 2})
        await eventually(lambda: len(sink.received) == 2)
        assert [raw["n"] for _, raw in sink.received] == [1, 2]

        for bus in (holder, sender):
            assert len(records(caplog, logging.WARNING, bus.replica_id)) == 1
            assert len(records(caplog, logging.INFO, bus.replica_id)) == 1
    finally:
        await holder.aclose()
        await sender.aclose()


async def test_hold_during_an_outage_is_announced_once_redis_returns(
    redis_server: RedisServer, redis_client: aioredis.Redis, eventually: Eventually
) -> None:
    bus = RedisEventBus(redis_server.url, max_backoff=0.2, announce_ttl=3.0, renew_interval=0.2)
    try:
        await bus.start(Sink())
        await redis_server.stop()
        with pytest.raises(BackendUnavailableError):
            await bus.hold("conv-7")
        await redis_server.start()
        await eventually(lambda: redis_client.get("ultimate_async:owner:conv-7"))
        assert await redis_client.get("ultimate_async:owner:conv-7") == bus.replica_id
    finally:
        await bus.aclose()


async def test_aclose_during_an_outage_returns_promptly_without_warnings(
    redis_server: RedisServer,
) -> None:
    bus = RedisEventBus(redis_server.url, max_backoff=0.2)
    await bus.start(Sink())
    await bus.hold("conv-1")
    await redis_server.stop()
    async with asyncio.timeout(5):
        await bus.aclose()
    await bus.aclose()
