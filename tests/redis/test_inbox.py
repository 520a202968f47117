"""RedisInbox on a real redis-server: what several replicas rely on beyond the Inbox contract
(which ``tests/inbox/test_contract.py`` runs on it too).

De-duplication atomic with the store, partitions shared out between live replicas, a closed
replica handing over at once, a SIGKILLed one taken over within about ``lease_ttl`` with its
unfinished entries first, and Redis killed mid-load: refusals, then recovery, nothing lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis.asyncio as aioredis

from ultimate_async.errors import BackendUnavailableError
from ultimate_async.inbox import Inbox, InboxEntry, InboxStats
from ultimate_async.redis import RedisInbox, stable_partition

if TYPE_CHECKING:
    from conftest import Eventually, MakeRedisServer, RedisServer

pytestmark = pytest.mark.redis

REPLICA_SCRIPT = Path(__file__).with_name("_inbox_replica.py")
LEASE_TTL = 0.5

MakeInbox = Callable[..., Awaitable[RedisInbox]]


@pytest.fixture
async def make_inbox(redis_server: RedisServer) -> AsyncIterator[MakeInbox]:
    """Started RedisInbox replicas on the test server (short leases); closed at teardown."""
    made: list[RedisInbox] = []

    async def make(url: str | None = None, **options: Any) -> RedisInbox:
        options.setdefault("lease_ttl", LEASE_TTL)
        options.setdefault("max_backoff", 0.2)
        inbox = RedisInbox(url or redis_server.url, **options)
        made.append(inbox)
        await inbox.start()
        return inbox

    yield make
    for inbox in made:
        await inbox.aclose()


async def put(inbox: Inbox, conversation: str, text: str, key: str | None = None) -> str | None:
    return await inbox.put(
        conversation_id=conversation, kind="sendMessage", raw={"text": text}, dedup_key=key
    )


async def take(inbox: Inbox, within: float = 5.0) -> InboxEntry:
    return await asyncio.wait_for(inbox.get(), within)


def test_partitions_are_stable_across_processes() -> None:
    # crc32, not hash(): every replica (any Python, any PYTHONHASHSEED) agrees.
    assert stable_partition("conversation-1", 16) == 12
    assert RedisInbox("redis://127.0.0.1:1/0", partitions=16).partition_of("conversation-1") == 12


async def test_an_inbox_is_an_inbox_and_its_repr_has_no_password() -> None:
    inbox = RedisInbox("redis://:hunter2@127.0.0.1:1/0")
    assert isinstance(inbox, Inbox)
    assert "hunter2" not in repr(inbox)
    with pytest.raises(TypeError):
        RedisInbox()
    with pytest.raises(ValueError):
        RedisInbox("redis://127.0.0.1:1/0", partitions=0)


async def test_a_key_is_never_seen_without_its_entry_stored(
    make_inbox: MakeInbox, redis_client: aioredis.Redis
) -> None:
    inbox = await make_inbox()
    stream = inbox.stream_key(inbox.partition_of("c"))
    # Break the stream so the XADD inside the put script fails.
    await redis_client.delete(stream)
    await redis_client.set(stream, "not a stream")
    with pytest.raises(BackendUnavailableError):
        await put(inbox, "c", "lost?", key="k1")
    assert not await redis_client.exists(inbox.seen_key("k1"))
    await redis_client.delete(stream)
    delivery_id = await put(inbox, "c", "stored", key="k1")
    assert delivery_id is not None
    assert await redis_client.exists(inbox.seen_key("k1"))
    entry = await take(inbox)
    assert (entry.delivery_id, entry.raw["text"], entry.dedup_key) == (delivery_id, "stored", "k1")


async def test_the_same_delivery_put_on_two_replicas_at_once_is_stored_once(
    make_inbox: MakeInbox,
) -> None:
    a, b = await make_inbox(), await make_inbox()
    results = await asyncio.gather(
        *(put(inbox, "c", f"copy {i}", key="same") for i in range(10) for inbox in (a, b))
    )
    assert len([r for r in results if r is not None]) == 1
    assert (await a.stats()).pending == 1


async def test_done_deletes_the_entry_and_keeps_the_key_seen_for_dedup_ttl(
    make_inbox: MakeInbox, redis_client: aioredis.Redis
) -> None:
    inbox = await make_inbox(dedup_ttl=30.0)
    await put(inbox, "c", "once", key="k")
    entry = await take(inbox)
    await inbox.done(entry)
    assert await redis_client.xlen(inbox.stream_key(inbox.partition_of("c"))) == 0
    assert 25_000 < await redis_client.pttl(inbox.seen_key("k")) <= 30_000
    assert await put(inbox, "c", "again", key="k") is None


async def test_two_replicas_share_the_partitions_and_each_conversation_stays_on_one(
    make_inbox: MakeInbox, eventually: Eventually
) -> None:
    a = await make_inbox()
    b = await make_inbox()
    await eventually(lambda: len(a.held) == len(b.held) == 8, within=5)
    assert not a.held & b.held
    shares = (a.held, b.held)
    await asyncio.sleep(LEASE_TTL * 3)  # renewed while alive: nothing moves
    assert (a.held, b.held) == shares

    handled: list[tuple[str, str, int]] = []  # (replica, conversation, n)

    async def consume(name: str, inbox: RedisInbox) -> None:
        while True:
            entry = await inbox.get()
            handled.append((name, entry.conversation_id or "", entry.raw["n"]))
            await inbox.done(entry)

    consumers = [asyncio.create_task(consume("a", a)), asyncio.create_task(consume("b", b))]
    try:
        for n in range(400):
            cid = f"conv-{n % 40}"
            await a.put(conversation_id=cid, kind="m", raw={"n": n}, dedup_key=None)
        await eventually(lambda: len(handled) >= 400, within=20)
    finally:
        for task in consumers:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert sorted(n for _, _, n in handled) == list(range(400))  # each exactly once
    replicas_of: dict[str, set[str]] = {}
    for name, cid, _ in handled:
        replicas_of.setdefault(cid, set()).add(name)
    assert all(len(names) == 1 for names in replicas_of.values())
    assert {name for names in replicas_of.values() for name in names} == {"a", "b"}
    for cid in replicas_of:
        ns = [n for _, c, n in handled if c == cid]
        assert ns == sorted(ns)
    await eventually(lambda: _stats_are(a, InboxStats(pending=0, dead=0)))


async def _stats_are(inbox: Inbox, expected: InboxStats) -> bool:
    return await inbox.stats() == expected


async def test_a_closed_replica_hands_its_partitions_over_at_once(
    make_inbox: MakeInbox, eventually: Eventually
) -> None:
    a = await make_inbox(lease_ttl=5.0)  # a lease that would take 5 s to lapse
    await put(a, "c", "left behind")
    await take(a)  # taken, never finished
    b = await make_inbox(lease_ttl=5.0)
    await a.aclose()
    started = time.monotonic()
    # b's next lease round comes within lease_ttl / 5; it finds a's partitions free.
    await eventually(lambda: len(b.held) == 16, within=5)
    assert time.monotonic() - started < 2.5
    entry = await take(b, within=5)
    assert (entry.raw["text"], entry.attempt) == ("left behind", 1)


async def _read_before_the_holder(
    inbox: RedisInbox, redis_client: aioredis.Redis, consumer: str, conversation: str, text: str
) -> Any:
    """Add an entry and read it as ``consumer`` in one MULTI, so that read is served before
    the holder's blocked read can see the entry; returns what that read got."""
    stream = inbox.stream_key(inbox.partition_of(conversation))
    raw = {"c": conversation, "k": "sendMessage", "r": {"text": text}, "t": time.time()}
    async with redis_client.pipeline(transaction=True) as pipe:
        pipe.xadd(stream, {"e": json.dumps(raw)})
        pipe.xreadgroup("ultimate_async", consumer, {stream: ">"}, count=1)
        _, read = await pipe.execute()
    return read


async def test_entries_read_by_a_replica_whose_lease_lapsed_are_not_lost(
    make_inbox: MakeInbox, redis_client: aioredis.Redis, eventually: Eventually
) -> None:
    inbox = await make_inbox()
    await put(inbox, "c", "m0")
    await inbox.done(await take(inbox))  # recovered and reading
    # A replica whose lease lapsed while its read was in flight takes an entry into its own
    # pending list after the new holder's recovery.
    assert await _read_before_the_holder(inbox, redis_client, "stale-replica", "c", "m1")
    entry = await take(inbox, within=5)  # found by the holder's next lease round
    assert (entry.raw["text"], entry.attempt) == ("m1", 1)
    await inbox.done(entry)
    assert await inbox.stats() == InboxStats(pending=0, dead=0)


async def test_an_entry_whose_read_reply_was_lost_is_handed_out_after_the_error(
    make_inbox: MakeInbox, redis_client: aioredis.Redis
) -> None:
    inbox = await make_inbox()
    await put(inbox, "c", "m0")
    await inbox.done(await take(inbox))  # recovered and reading
    # Redis killed (or the connection cut) while a read was in flight: Redis put the entry in
    # the holder's own pending list, but the reply never reached the holder.
    assert await _read_before_the_holder(inbox, redis_client, inbox.replica_id, "c", "m1")
    # The holder's connections keep dropping until its read gives up retrying and fails.
    for _ in range(25):
        await redis_client.client_kill_filter(_type="normal", skipme=True)
        await asyncio.sleep(0.01)
    entry = await take(inbox, within=5)  # its partition is recovered again after the error
    assert (entry.raw["text"], entry.attempt) == ("m1", 1)
    await inbox.done(entry)
    assert await inbox.stats() == InboxStats(pending=0, dead=0)


async def _read_line(process: asyncio.subprocess.Process, within: float = 10.0) -> list[str]:
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), within)
    assert line, "the replica process exited early"
    return line.decode().split()


async def test_a_sigkilled_replica_is_taken_over_with_its_unfinished_entries_first(
    redis_server: RedisServer, make_inbox: MakeInbox
) -> None:
    partitions = 4
    seed = RedisInbox(redis_server.url, partitions=partitions)
    ids = [await put(seed, "conv", f"m{i}") for i in range(6)]
    await seed.aclose()

    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(REPLICA_SCRIPT),
        redis_server.url,
        str(partitions),
        str(LEASE_TTL),
        "3",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert (await _read_line(child))[0] == "held"
        taken = [await _read_line(child) for _ in range(3)]
        assert [t[2] for t in taken] == ["m0", "m1", "m2"]  # running in the child, unfinished

        survivor = await make_inbox(partitions=partitions)
        child.send_signal(signal.SIGKILL)
        await child.wait()
        killed_at = time.monotonic()
        first = await take(survivor, within=10)
        takeover = time.monotonic() - killed_at
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()

    rest = [await take(survivor) for _ in range(5)]
    got = [first, *rest]
    assert [e.raw["text"] for e in got] == [f"m{i}" for i in range(6)]
    assert [e.delivery_id for e in got] == ids  # the same deliveries, not copies
    assert all(e.attempt == 1 for e in got)  # taken, not failed: no attempt was recorded
    assert survivor.held == frozenset(range(partitions))
    # The lease lapses at most lease_ttl after the kill; the next round (lease_ttl / 5) finds it.
    print(f"\ntakeover {takeover:.2f} s after SIGKILL (lease_ttl {LEASE_TTL} s)")
    assert takeover < LEASE_TTL * 1.2 + 0.5, f"took over after {takeover:.2f} s"


async def test_redis_killed_mid_load_refuses_then_recovers_and_loses_nothing(
    make_redis_server: MakeRedisServer,
    make_inbox: MakeInbox,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    eventually: Eventually,
) -> None:
    caplog.set_level(logging.INFO, logger="ultimate_async.redis")
    # Every write on disk before Redis answers it, as a deployment that relies on it would.
    server = await make_redis_server(
        "--appendonly", "yes", "--appendfsync", "always", "--dir", str(tmp_path)
    )
    inbox = await make_inbox(server.url)
    handled: list[tuple[str, int]] = []

    async def consume() -> None:
        while True:
            entry = await inbox.get()
            handled.append((entry.conversation_id or "", entry.raw["n"]))
            while True:  # the dispatcher would retry; done() fails while Redis is down
                try:
                    await inbox.done(entry)
                    break
                except BackendUnavailableError:
                    await asyncio.sleep(0.05)

    acked: list[tuple[str, int]] = []
    refused = 0

    async def produce(count: int) -> None:
        nonlocal refused
        for n in range(count):
            cid = f"c{n % 5}"
            try:
                await inbox.put(conversation_id=cid, kind="m", raw={"n": n}, dedup_key=f"k{n}")
            except BackendUnavailableError:
                refused += 1
                await asyncio.sleep(0.01)
                continue
            acked.append((cid, n))
            await asyncio.sleep(0.002)

    consumer = asyncio.create_task(consume())
    producer = asyncio.create_task(produce(600))
    try:
        await eventually(lambda: len(acked) >= 100, within=5)
        assert server.process is not None
        server.process.kill()  # SIGKILL: no shutdown save, only what was fsynced
        await server.process.wait()
        server.process = None
        await asyncio.sleep(0.3)
        await server.start()
        await asyncio.wait_for(producer, 30)
        await eventually(lambda: set(acked) <= set(handled), within=20)
    finally:
        for task in (producer, consumer):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert refused > 0
    ours = [r for r in caplog.records if r.name == "ultimate_async.redis"]
    warnings = [r for r in ours if r.levelno >= logging.WARNING]
    assert 1 <= len(warnings) <= 2  # once per component that saw the outage, not per failure
    assert any("recovered" in r.getMessage() for r in ours)
    for cid in {c for c, _ in acked}:
        ns = [n for c, n in handled if c == cid]
        assert ns == sorted(ns), f"order broken in {cid}"


async def _cli(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ultimate_async",
        "inbox",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 30)
    return process.returncode or 0, out.decode()


async def test_the_cli_shows_and_repairs_dead_letters_of_a_serving_inbox(
    redis_server: RedisServer, make_inbox: MakeInbox
) -> None:
    inbox = await make_inbox()
    await put(inbox, "c", "poison")
    entry = await take(inbox)
    await inbox.failed(entry, "ValueError: bad input", dead=True)

    code, out = await _cli(redis_server.url, "stats")
    assert (code, out.split()) == (0, ["pending", "0", "dead", "1"])
    code, out = await _cli(redis_server.url, "dead")
    assert code == 0 and entry.delivery_id in out and "ValueError: bad input" in out
    code, out = await _cli(redis_server.url, "replay", entry.delivery_id)
    assert code == 0
    again = await take(inbox)  # the serving replica hands it out again, attempts reset
    assert (again.delivery_id, again.attempt, again.raw["text"]) == (entry.delivery_id, 1, "poison")
    code, _ = await _cli(redis_server.url, "purge", "no-such-id")
    assert code != 0
