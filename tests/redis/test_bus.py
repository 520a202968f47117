"""RedisEventBus between replicas: announce, forward, deliver in order, release, expire."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

import pytest
import redis.asyncio as aioredis

from ultimate_async.bus import EventBus
from ultimate_async.redis import RedisEventBus

if TYPE_CHECKING:
    from conftest import Eventually

pytestmark = pytest.mark.redis


class Sink:
    """A ``deliver`` callback that records what a replica received, in order."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        self._queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()

    async def __call__(self, conversation_id: str, raw: Mapping[str, Any]) -> None:
        item = (conversation_id, dict(raw))
        self.received.append(item)
        self._queue.put_nowait(item)

    async def get(self, within: float = 5.0) -> tuple[str, dict[str, Any]]:
        async with asyncio.timeout(within):
            return await self._queue.get()

    async def wait_for(self, n: int, within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            while len(self.received) < n:
                await self._queue.get()


@pytest.fixture
async def make_bus(redis_url: str) -> AsyncIterator[Callable[..., RedisEventBus]]:
    """Builds buses ("replicas") on the test server and closes them afterwards."""
    made: list[RedisEventBus] = []

    def make(**kwargs: Any) -> RedisEventBus:
        kwargs.setdefault("url", redis_url)
        bus = RedisEventBus(**kwargs)
        made.append(bus)
        return bus

    yield make
    for bus in made:
        await bus.aclose()


def event(n: int, cid: str = "conv-1") -> dict[str, Any]:
    return {
        "eventType": "sendMessage",
        "platformConversationId": cid,
        "data": {"messageId": f"m{n}", "text": f"text {n} - ünïcode"},
    }


async def test_implements_the_event_bus_protocol(make_bus: Callable[..., RedisEventBus]) -> None:
    assert isinstance(make_bus(), EventBus)


async def test_an_event_for_a_conversation_held_elsewhere_reaches_the_holder(
    make_bus: Callable[..., RedisEventBus],
) -> None:
    a, b = make_bus(), make_bus()
    sink_a, sink_b = Sink(), Sink()
    await a.start(sink_a)
    await b.start(sink_b)
    await a.hold("conv-1")

    assert await b.forward("conv-1", event(1)) is True
    assert await sink_a.get() == ("conv-1", event(1))
    assert sink_b.received == []


async def test_nobody_holding_means_not_forwarded(make_bus: Callable[..., RedisEventBus]) -> None:
    a, b = make_bus(), make_bus()
    await a.start(Sink())
    assert await a.forward("conv-free", event(1)) is False
    await a.hold("conv-1")
    # The holder itself never forwards to itself: it dispatches locally.
    assert await a.forward("conv-1", event(1)) is False
    assert await b.forward("conv-free", event(1)) is False


async def test_release_withdraws_the_announcement(
    make_bus: Callable[..., RedisEventBus], redis_client: aioredis.Redis
) -> None:
    a, b = make_bus(), make_bus()
    await a.start(Sink())
    await a.hold("conv-1")
    assert await redis_client.get("ultimate_async:owner:conv-1") == a.replica_id
    await a.release("conv-1")
    assert await redis_client.exists("ultimate_async:owner:conv-1") == 0
    assert await b.forward("conv-1", event(1)) is False


async def test_the_newest_holder_wins_and_a_release_only_withdraws_its_own(
    make_bus: Callable[..., RedisEventBus],
) -> None:
    a, b, c = make_bus(), make_bus(), make_bus()
    sinks = {bus.replica_id: Sink() for bus in (a, b, c)}
    for bus in (a, b, c):
        await bus.start(sinks[bus.replica_id])
    await a.hold("conv-1")
    await b.hold("conv-1")  # e.g. a Conversation moved to replica b
    await a.release("conv-1")  # must not withdraw b's announcement
    assert await c.forward("conv-1", event(1)) is True
    assert await sinks[b.replica_id].get() == ("conv-1", event(1))
    assert sinks[a.replica_id].received == []


async def test_events_forwarded_in_sequence_arrive_in_sequence(
    make_bus: Callable[..., RedisEventBus],
) -> None:
    holder, b, c = make_bus(), make_bus(), make_bus()
    sink = Sink()
    await holder.start(sink)
    await holder.hold("conv-1")
    for n in range(300):  # alternate senders, as a load balancer would
        assert await (b if n % 2 else c).forward("conv-1", event(n))
    await sink.wait_for(300)
    assert [raw["data"]["messageId"] for _, raw in sink.received] == [f"m{n}" for n in range(300)]


async def test_a_slow_handler_delays_but_never_reorders(
    make_bus: Callable[..., RedisEventBus],
) -> None:
    holder, sender = make_bus(), make_bus()
    gate = asyncio.Event()
    seen: list[str] = []
    done = asyncio.Event()

    async def deliver(cid: str, raw: Mapping[str, Any]) -> None:
        if raw["data"]["messageId"] == "m0":
            await gate.wait()
        seen.append(raw["data"]["messageId"])
        if len(seen) == 5:
            done.set()

    await holder.start(deliver)
    await holder.hold("conv-1")
    for n in range(5):
        await sender.forward("conv-1", event(n))
    gate.set()
    async with asyncio.timeout(5):
        await done.wait()
    assert seen == ["m0", "m1", "m2", "m3", "m4"]


async def test_a_failing_deliver_is_logged_and_does_not_stop_the_inbox(
    make_bus: Callable[..., RedisEventBus], caplog: pytest.LogCaptureFixture
) -> None:
    holder, sender = make_bus(), make_bus()
    sink = Sink()

    async def deliver(cid: str, raw: Mapping[str, Any]) -> None:
        if raw["data"]["messageId"] == "m0":
            raise RuntimeError("handler bug")
        await sink(cid, raw)

    await holder.start(deliver)
    await holder.hold("conv-9")
    await sender.forward("conv-9", event(0, "conv-9"))
    await sender.forward("conv-9", event(1, "conv-9"))
    assert await sink.get() == ("conv-9", event(1, "conv-9"))
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "conv-9" in errors[0].getMessage()


async def test_announcements_are_renewed_while_held(
    make_bus: Callable[..., RedisEventBus], redis_client: aioredis.Redis
) -> None:
    a, b = make_bus(announce_ttl=0.3, renew_interval=0.1), make_bus()
    sink = Sink()
    await a.start(sink)
    await a.hold("conv-1")
    await asyncio.sleep(1.0)  # more than three announce_ttl: only renewals keep it alive
    assert 0 < await redis_client.pttl("ultimate_async:owner:conv-1") <= 300
    assert await b.forward("conv-1", event(1))
    assert await sink.get() == ("conv-1", event(1))


_CRASHING_REPLICA = """
import asyncio, sys
from ultimate_async.redis import RedisEventBus

async def main():
    bus = RedisEventBus(sys.argv[1], announce_ttl=1.0)
    await bus.start(lambda cid, raw: asyncio.sleep(0))
    await bus.hold("conv-1")
    print(bus.replica_id, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_a_dead_replica_stops_being_a_target_once_its_announcement_expires(
    make_bus: Callable[..., RedisEventBus],
    redis_url: str,
    redis_client: aioredis.Redis,
    eventually: Eventually,
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CRASHING_REPLICA, redis_url, stdout=asyncio.subprocess.PIPE
    )
    try:
        async with asyncio.timeout(30):
            dead_id = (await proc.stdout.readline()).decode().strip()  # type: ignore[union-attr]
        proc.send_signal(signal.SIGKILL)  # no aclose, no release: a crash
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert dead_id

    b = make_bus(inbox_ttl=1.0)  # the sender sets the expiry of the inbox it pushes to
    # Within announce_ttl the dead replica is still the target: events wait in its inbox...
    assert await b.forward("conv-1", event(1)) is True
    assert 0 < await redis_client.pttl(f"ultimate_async:inbox:{dead_id}") <= 1000

    # ...and once the announcement expires, the receiving replica handles events itself.
    async def handled_here() -> bool:
        return not await b.forward("conv-1", event(2))

    await eventually(handled_here, within=5)
    # ...and the dead replica's inbox does not linger.
    inbox = f"ultimate_async:inbox:{dead_id}"

    async def inbox_gone() -> bool:
        return await redis_client.exists(inbox) == 0

    await eventually(inbox_gone, within=5)


async def test_key_prefix_separates_two_bots_on_one_redis(
    make_bus: Callable[..., RedisEventBus],
) -> None:
    bot1_a, bot1_b, bot2 = (
        make_bus(key_prefix="bot1"),
        make_bus(key_prefix="bot1"),
        make_bus(key_prefix="bot2"),
    )
    sink = Sink()
    await bot1_a.start(sink)
    await bot1_a.hold("conv-1")
    assert await bot2.forward("conv-1", event(1)) is False
    assert await bot1_b.forward("conv-1", event(2)) is True
    assert await sink.get() == ("conv-1", event(2))


async def test_aclose_releases_everything_and_delivers_what_was_already_queued(
    make_bus: Callable[..., RedisEventBus], redis_client: aioredis.Redis
) -> None:
    holder, sender = make_bus(), make_bus()
    gate = asyncio.Event()
    seen: list[str] = []

    async def deliver(cid: str, raw: Mapping[str, Any]) -> None:
        await gate.wait()
        seen.append(raw["data"]["messageId"])

    await holder.start(deliver)
    for cid in ("conv-1", "conv-2", "conv-3"):
        await holder.hold(cid)
    for n in range(5):
        assert await sender.forward("conv-1", event(n))

    closing = asyncio.create_task(holder.aclose())
    await asyncio.sleep(0)
    gate.set()
    await closing
    assert seen == [f"m{n}" for n in range(5)]
    assert await redis_client.keys("ultimate_async:owner:*") == []
    assert await sender.forward("conv-1", event(9)) is False
    await holder.aclose()  # idempotent


async def test_hold_release_hold_in_quick_succession_ends_held(
    make_bus: Callable[..., RedisEventBus], redis_client: aioredis.Redis
) -> None:
    a = make_bus()
    await asyncio.gather(a.hold("conv-1"), a.release("conv-1"), a.hold("conv-1"))
    assert await redis_client.get("ultimate_async:owner:conv-1") == a.replica_id
    await asyncio.gather(a.release("conv-1"), a.hold("conv-1"), a.release("conv-1"))
    assert await redis_client.exists("ultimate_async:owner:conv-1") == 0


async def test_works_with_a_borrowed_decoding_client(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        a = RedisEventBus(client=client)
        b = RedisEventBus(client=client)
        sink = Sink()
        await a.start(sink)
        await a.hold("conv-1")
        assert await b.forward("conv-1", event(1))
        assert await sink.get() == ("conv-1", event(1))
        await a.aclose()
        await b.aclose()
        assert await client.ping()  # borrowed: still open
    finally:
        await client.aclose()


def test_configuration_is_validated() -> None:
    with pytest.raises(TypeError):
        RedisEventBus()
    with pytest.raises(ValueError):
        RedisEventBus("redis://127.0.0.1:1/0", announce_ttl=1.0, renew_interval=2.0)


async def test_aclose_never_hangs_while_announcements_are_being_renewed(
    make_bus: Callable[..., RedisEventBus],
) -> None:
    """Closing races the renewal timer.

    With ``asyncio.wait_for`` in the renew loop, Python 3.11 could leave the renewer hanging
    when the cancel landed on a renewal timeout, and ``aclose()`` with it: seen in 3 of 25
    runs of this file with both cores loaded, none in 40 after moving to ``asyncio.timeout``.
    An idle machine rarely hits that window, so this test guards the promise, bounded, rather
    than reproducing the race on demand.
    """
    for i in range(60):
        bus = make_bus(announce_ttl=0.5, renew_interval=0.01)
        await bus.start(Sink())
        await bus.hold("conv-1")
        await asyncio.sleep(0.01 * (1 + i % 3))  # aim the cancel at a renewal timeout
        async with asyncio.timeout(5):
            await bus.aclose()
