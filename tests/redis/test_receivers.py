"""Real receivers on real ports sharing one real Redis: what a deployment with replicas needs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from attrs import define, field

from ultimate_async.redis import RedisDeduplicator, RedisEventBus
from ultimate_async.webhook import (
    EventContext,
    SharedSecretHeader,
    WebhookReceiver,
    WebhookServer,
)

if TYPE_CHECKING:
    from conftest import Eventually, RedisServer

pytestmark = pytest.mark.redis

SECRET = "replica-test-secret"


@define
class Replica:
    """One receiver replica: its server, and every handler call it made, in order."""

    name: str
    receiver: WebhookReceiver
    server: WebhookServer
    calls: list[tuple[str, str, Any]] = field(factory=list)
    arrived: asyncio.Condition = field(factory=asyncio.Condition)

    async def record(self, how: str, event: Any, ctx: EventContext) -> None:
        self.calls.append((how, ctx.platform_conversation_id or "", event))
        async with self.arrived:
            self.arrived.notify_all()

    def texts(self, how: str | None = None) -> list[str]:
        return [e.text for h, _, e in self.calls if how is None or h == how]

    async def wait_calls(self, n: int, within: float = 10.0) -> None:
        async with asyncio.timeout(within), self.arrived:
            await self.arrived.wait_for(lambda: len(self.calls) >= n)


def message(cid: str, text: str, message_id: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "eventType": "sendMessage",
        "platformConversationId": cid,
        "type": "text",
        "text": text,
    }
    if message_id is not None:
        data["messageId"] = message_id
    return {"botId": "618a30beee4e8e87d2f94015", "channel": "chat", "data": data}


MakeReplica = Callable[[str], Awaitable[Replica]]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def make_replica(redis_server: RedisServer) -> AsyncIterator[MakeReplica]:
    """Starts receiver replicas that share the test Redis; each has an on_message catch-all."""
    started: list[Replica] = []

    async def make(name: str) -> Replica:
        receiver = WebhookReceiver(
            SharedSecretHeader(SECRET),
            dedup=RedisDeduplicator(redis_server.url),
            bus=RedisEventBus(redis_server.url, max_backoff=0.2, block_timeout=0.2),
            drain_timeout=5.0,
        )
        server = WebhookServer(receiver, port=0)
        replica = Replica(name, receiver, server)

        @receiver.on_message()
        async def catch_all(event: Any, ctx: EventContext) -> None:
            await replica.record("catch-all", event, ctx)

        await server.start()
        await receiver.start()
        started.append(replica)
        return replica

    yield make
    for replica in started:
        await replica.server.aclose()


async def post(http: aiohttp.ClientSession, replica: Replica, body: dict[str, Any]) -> int:
    async with http.post(
        replica.server.url,
        data=json.dumps(body).encode(),
        headers={"Authorization": SECRET, "Content-Type": "application/json"},
    ) as response:
        await response.read()
        return response.status


async def hold(replica: Replica, cid: str, *, exclusive: bool = True) -> None:
    """Register on ``replica``; exclusive (the default here) takes the catch-all's place."""

    async def observer(event: Any, ctx: EventContext) -> None:
        await replica.record("registered", event, ctx)

    await replica.receiver.register(cid, observer, exclusive=exclusive).ready()


async def test_the_same_delivery_posted_to_two_replicas_is_handled_once(
    make_replica: MakeReplica, http: aiohttp.ClientSession
) -> None:
    a, b = await make_replica("a"), await make_replica("b")
    body = message("conv-dup", "only once", message_id="msg-dup-1")
    statuses = await asyncio.gather(post(http, a, body), post(http, b, body))
    assert statuses == [200, 200]
    assert await post(http, b, body) == 200  # a late retry, too
    await a.receiver.drain()
    await b.receiver.drain()
    assert a.texts() + b.texts() == ["only once"]


async def test_an_event_received_by_b_reaches_the_handler_registered_on_a(
    make_replica: MakeReplica, http: aiohttp.ClientSession
) -> None:
    a, b = await make_replica("a"), await make_replica("b")
    await hold(a, "conv-a")
    assert await post(http, b, message("conv-a", "via b", message_id="m1")) == 200
    await a.wait_calls(1)
    assert a.calls[0][:2] == ("registered", "conv-a")
    assert a.texts() == ["via b"]
    await b.receiver.drain()
    assert b.calls == []


async def test_an_event_nobody_holds_goes_to_the_receiving_replicas_catch_all(
    make_replica: MakeReplica, http: aiohttp.ClientSession
) -> None:
    a, b = await make_replica("a"), await make_replica("b")
    await hold(a, "conv-a")
    assert await post(http, b, message("conv-free", "nobody holds me", message_id="m1")) == 200
    await b.wait_calls(1)
    assert b.calls[0][:2] == ("catch-all", "conv-free")
    await a.receiver.drain()
    assert a.calls == []


async def test_order_of_one_conversation_is_kept_across_replicas(
    make_replica: MakeReplica, http: aiohttp.ClientSession
) -> None:
    a, b, c = await make_replica("a"), await make_replica("b"), await make_replica("c")
    await hold(a, "conv-ordered")
    texts = [f"event {n}" for n in range(40)]
    for n, text in enumerate(texts):  # a load balancer spreading one conversation's events
        target = (a, b, c)[n % 3]
        assert await post(http, target, message("conv-ordered", text, message_id=f"o{n}")) == 200
    await a.wait_calls(len(texts))
    assert a.texts("registered") == texts
    assert b.calls == c.calls == []


async def test_after_release_events_stay_on_the_receiving_replica(
    make_replica: MakeReplica, http: aiohttp.ClientSession, eventually: Eventually
) -> None:
    a, b = await make_replica("a"), await make_replica("b")

    async def observer(event: Any, ctx: EventContext) -> None:
        await a.record("registered", event, ctx)

    registration = a.receiver.register("conv-r", observer)
    await registration.ready()
    registration.remove()
    await a.receiver.drain()  # let the release reach Redis
    bus = b.receiver.bus
    assert bus is not None

    async def released() -> bool:
        return not await bus.forward("conv-r", message("conv-r", "probe"))

    await eventually(released, within=5)
    assert await post(http, b, message("conv-r", "after release", message_id="r1")) == 200
    await b.wait_calls(1)
    assert b.texts("catch-all") == ["after release"]


async def test_redis_outage_answers_503_then_recovers(
    make_replica: MakeReplica,
    http: aiohttp.ClientSession,
    redis_server: RedisServer,
    eventually: Eventually,
) -> None:
    a, b = await make_replica("a"), await make_replica("b")
    await hold(a, "conv-a")
    assert await post(http, b, message("conv-a", "before", message_id="p1")) == 200
    await a.wait_calls(1)

    await redis_server.stop()
    # With a delivery key the shared de-duplication refuses; without one the bus does.
    assert await post(http, b, message("conv-a", "during", message_id="p2")) == 503
    assert await post(http, b, message("conv-a", "during, no key")) == 503
    assert await post(http, a, message("conv-x", "during", message_id="p3")) == 503

    await redis_server.start()  # empty: claims and announcements are gone
    # Replica a re-announces conv-a by itself (no delivery needed to wake it up)...
    probe = aioredis.Redis.from_url(redis_server.url)
    try:
        await eventually(lambda: probe.exists("ultimate_async:owner:conv-a"))
    finally:
        await probe.aclose()
    # ...so the platform's retry of the refused delivery reaches it.
    assert await post(http, b, message("conv-a", "during", message_id="p2")) == 200
    await a.wait_calls(2)
    await a.receiver.drain()
    await b.receiver.drain()
    assert a.texts("registered") == ["before", "during"]
    assert b.calls == []


async def test_a_request_is_answered_by_the_receiving_replica_and_observed_by_the_holder(
    make_replica: MakeReplica, http: aiohttp.ClientSession
) -> None:
    a, b = await make_replica("a"), await make_replica("b")
    decided: list[str] = []

    @b.receiver.on_escalate()
    async def refuse(event: Any, ctx: EventContext) -> bool:
        decided.append(ctx.platform_conversation_id or "")
        return False

    await hold(a, "conv-esc")
    escalate = {
        "botId": "618a30beee4e8e87d2f94015",
        "channel": "chat",
        "data": {
            "eventType": "escalate",
            "platformConversationId": "conv-esc",
            "escalateTo": "team_billing",
        },
    }
    assert await post(http, b, escalate) == 409  # b's decision handler said no
    assert decided == ["conv-esc"]
    await a.wait_calls(1)
    how, cid, event = a.calls[0]
    assert (how, cid, type(event).__name__) == ("registered", "conv-esc", "Escalate")


async def test_a_replica_shutting_down_mid_stream_loses_no_acknowledged_event(
    make_replica: MakeReplica, http: aiohttp.ClientSession
) -> None:
    """Deliveries keep landing on B while A (the holder) closes: each 200 is handled once."""
    a, b = await make_replica("a"), await make_replica("b")
    await hold(a, "conv-closing")
    texts = [f"mid-stream {i}" for i in range(60)]

    async def send(i: int) -> tuple[str, int]:
        body = message("conv-closing", texts[i], message_id=f"close-{i}")
        return texts[i], await post(http, b, body)

    first = [asyncio.create_task(send(i)) for i in range(20)]
    await asyncio.sleep(0)  # let the first posts start before A begins to close
    closing = asyncio.create_task(a.receiver.aclose())
    rest = [asyncio.create_task(send(i)) for i in range(20, 60)]
    answered = await asyncio.gather(*first, *rest)
    await closing
    await b.receiver.drain()
    acked = sorted(text for text, status in answered if status == 200)
    assert len(acked) == len(texts)  # B never refused: it forwards or handles itself
    handled = sorted(a.texts() + b.texts())
    assert handled == acked
    assert a.receiver.cancelled_on_close == 0
