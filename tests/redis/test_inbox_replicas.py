"""Issue 13's proof with real processes: two receiver replicas (real ``WebhookServer``,
``RedisInbox`` + ``RedisEventBus``) on a real redis-server, deliveries posted to both, one
SIGKILLed for good mid-load.  The survivor takes over its partitions: every delivery answered
``200`` is handled at least once, and each conversation's events are handled in order.  And
Redis itself SIGKILLed under a serving receiver: ``503`` while it is down, then recovery by
itself, nothing acknowledged lost.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from ultimate_async.inbox import HandlerRetry
from ultimate_async.redis import RedisInbox
from ultimate_async.testing import make_bot_message
from ultimate_async.webhook import (
    EventContext,
    SharedSecretHeader,
    WebhookReceiver,
    WebhookServer,
)

if TYPE_CHECKING:
    from conftest import Eventually, MakeRedisServer, RedisServer

pytestmark = pytest.mark.redis

RECEIVER_SCRIPT = Path(__file__).with_name("_inbox_receiver.py")
SECRET = "inbox-replicas-secret"
CONVERSATIONS = 16
MESSAGES = 30  # per conversation, posted in sequence (each after the previous one's 200)


class ReceiverProcess:
    def __init__(self, name: str, process: asyncio.subprocess.Process) -> None:
        self.name = name
        self.process = process
        self.url = ""
        self.replica_id = ""
        self.alive = True

    async def ready(self) -> None:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), 15)
        assert line.startswith(b"ready "), f"{self.name} did not start: {line!r}"
        _, self.url, self.replica_id = line.decode().split()

    async def kill(self) -> None:
        self.alive = False
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
        await self.process.wait()


@pytest.fixture
async def replicas(redis_server: RedisServer) -> AsyncIterator[list[ReceiverProcess]]:
    started: list[ReceiverProcess] = []
    for name in ("a", "b"):
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(RECEIVER_SCRIPT),
            redis_server.url,
            name,
            SECRET,
            stdout=asyncio.subprocess.PIPE,
        )
        started.append(ReceiverProcess(name, process))
    try:
        for replica in started:
            await replica.ready()
        yield started
    finally:
        for replica in started:
            await replica.kill()


def message(cid: str, text: str) -> bytes:
    return json.dumps(make_bot_message(cid, text, message_id=f"{cid}/{text}")).encode()


async def test_a_replica_killed_mid_load_loses_no_acknowledged_delivery(
    replicas: list[ReceiverProcess],
    redis_client: aioredis.Redis,
    eventually: Eventually,
) -> None:
    a, b = replicas
    lease_keys = [f"ultimate_async:durable:lease:{p}" for p in range(8)]

    async def both_hold_partitions() -> bool:
        return set(await redis_client.mget(lease_keys)) == {a.replica_id, b.replica_id}

    await eventually(both_hold_partitions, within=10)

    acked: list[tuple[str, str]] = []
    killed = asyncio.Event()

    async def post(session: aiohttp.ClientSession, target: ReceiverProcess, body: bytes) -> bool:
        try:
            async with session.post(
                target.url,
                data=body,
                headers={"Authorization": SECRET, "Content-Type": "application/json"},
            ) as response:
                return response.status == 200
        except aiohttp.ClientError:
            return False

    async def conversation(session: aiohttp.ClientSession, n: int) -> None:
        cid = f"conv-{n}"
        for i in range(MESSAGES):
            text = f"m{i:02d}"
            first = (a, b)[(n + i) % 2]  # alternate replicas, as a load balancer would
            while True:  # like the platform's retry, or the balancer's failover to b
                target = first if first.alive else b
                if await post(session, target, message(cid, text)):
                    break
                await asyncio.sleep(0.02)
            acked.append((cid, text))
            if len(acked) == CONVERSATIONS * MESSAGES // 3 and not killed.is_set():
                killed.set()
                await a.kill()  # for good, mid-load, with entries stored and running

    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(conversation(session, n) for n in range(CONVERSATIONS)))
    assert killed.is_set()
    assert len(acked) == CONVERSATIONS * MESSAGES

    records: list[dict[str, Any]] = []

    async def all_handled() -> bool:
        raw = await redis_client.lrange("handled", 0, -1)
        records[:] = [json.loads(r) for r in raw]
        return {(r["c"], r["t"]) for r in records} >= set(acked)

    await eventually(all_handled, within=20)
    elapsed = time.monotonic() - started

    handlers_of: dict[str, set[str]] = {}
    for r in records:
        handlers_of.setdefault(r["c"], set()).add(r["r"])
    taken_over = [cid for cid, names in handlers_of.items() if names == {"a", "b"}]
    assert taken_over, "no conversation of the killed replica was finished by the survivor"
    # b took a's partitions over: the conversations a held are finished by b.
    assert set(await redis_client.mget(lease_keys)) == {b.replica_id}
    for n in range(CONVERSATIONS):
        cid = f"conv-{n}"
        texts = [r["t"] for r in records if r["c"] == cid]
        first_seen = list(dict.fromkeys(texts))
        assert first_seen == [f"m{i:02d}" for i in range(MESSAGES)], f"{cid}: {texts}"
        # Each replica's own handling is in order; a repeat only re-runs what a held unfinished.
        for name in ("a", "b"):
            mine = [r["t"] for r in records if r["c"] == cid and r["r"] == name]
            assert mine == sorted(mine), f"{cid} on {name}: {mine}"
    duplicates = len(records) - len({(r["c"], r["t"]) for r in records})
    # At most what a had taken but not finished at the kill (bounded by its read-ahead).
    assert duplicates <= CONVERSATIONS * MESSAGES // 2
    print(
        f"\n{len(acked)} acknowledged, {len(records)} handled, {duplicates} duplicates, "
        f"0 lost, {elapsed:.2f} s"
    )


async def test_redis_killed_under_a_serving_receiver_answers_503_then_recovers(
    make_redis_server: MakeRedisServer, tmp_path: Path, eventually: Eventually
) -> None:
    # Every write on disk before Redis answers it, as a deployment relying on it would.
    server = await make_redis_server(
        "--appendonly", "yes", "--appendfsync", "always", "--dir", str(tmp_path)
    )
    receiver = WebhookReceiver(
        SharedSecretHeader(SECRET),
        inbox=RedisInbox(server.url, lease_ttl=0.5, max_backoff=0.2),
        retry=HandlerRetry(max_attempts=50, backoff_base=0.05, backoff_max=0.2),
    )
    handled: list[tuple[str, str]] = []

    @receiver.on_message()
    async def record(event: Any, ctx: EventContext) -> None:
        handled.append((ctx.platform_conversation_id or "", event.text))

    web = WebhookServer(receiver, port=0)
    await web.start()
    acked: list[tuple[str, str]] = []
    statuses: Counter[int] = Counter()
    redis_killed = asyncio.Event()

    async def conversation(session: aiohttp.ClientSession, n: int) -> None:
        cid = f"conv-{n}"
        for i in range(40):
            text = f"m{i:02d}"
            while True:
                async with session.post(
                    web.url,
                    data=message(cid, text),
                    headers={"Authorization": SECRET, "Content-Type": "application/json"},
                ) as response:
                    statuses[response.status] += 1
                    if response.status == 200:
                        break
                await asyncio.sleep(0.02)  # the platform's retry of a refused delivery
            acked.append((cid, text))
            if len(acked) == 100:
                redis_killed.set()

    async def kill_and_restart_redis() -> None:
        await redis_killed.wait()
        assert server.process is not None
        server.process.kill()  # SIGKILL: only what was fsynced survives
        await server.process.wait()
        server.process = None
        await asyncio.sleep(0.5)
        await server.start()

    try:
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(
                kill_and_restart_redis(), *(conversation(session, n) for n in range(8))
            )
        await eventually(lambda: set(handled) >= set(acked), within=20)
    finally:
        await web.aclose()
    assert statuses[503] > 0, statuses
    assert set(statuses) <= {200, 503}, statuses
    for n in range(8):
        texts = list(dict.fromkeys(t for c, t in handled if c == f"conv-{n}"))
        assert texts == [f"m{i:02d}" for i in range(40)]
    print(f"\n{len(acked)} acknowledged, {statuses[503]} answered 503 while Redis was down, 0 lost")
