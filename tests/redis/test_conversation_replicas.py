"""A ``Conversation`` waits on replica A while the platform delivers every webhook to replica B.

The conversations here are ``exclusive=True`` (they take the catch-all handlers' place), so
"nothing fell through to a catch-all" proves the routing; the last test shows the default, an
observer beside the catch-all, which then runs once in all, not once per replica.

This is the deployment the Redis bus exists for: several receiver replicas behind one webhook
URL, and the replica where the code awaits ``conv.ask()`` is not the one the load balancer
picked.  Everything here is real: two aiohttp servers on two ports, one ``redis-server``, the
simulator delivering signed webhooks over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from attrs import define, field

from ultimate_async import (
    BotMessage,
    Conversation,
    EventContext,
    HmacSignature,
    Session,
    WebhookReceiver,
    WebhookServer,
)
from ultimate_async.redis import RedisDeduplicator, RedisEventBus, RedisInbox
from ultimate_async.simulator import Faults, ScriptedBot, Simulator
from ultimate_async.testing import make_bot_message, make_delivery

if TYPE_CHECKING:
    from conftest import RedisServer

pytestmark = pytest.mark.redis

SECRET = "replicas-webhook-secret"
VERIFIER = HmacSignature(SECRET)
# Every reply names the visitor's text, so a reply that reached the wrong conversation shows.
BOT = ScriptedBot(
    welcome=["Welcome!", "How can I help?"],
    fallback=["You said: {text}", "Anything else?"],
)
WELCOME = "Welcome!\nHow can I help?"
TIMEOUT = 5.0
SETTLE = 0.3  # quiet time that ends a reply; forwarding through Redis takes milliseconds


def answer_to(text: str) -> str:
    return f"You said: {text}\nAnything else?"


@define
class Replica:
    """One receiver replica on its own port; ``caught`` is what reached its catch-all."""

    name: str
    receiver: WebhookReceiver
    server: WebhookServer
    caught: list[BotMessage] = field(factory=list)
    arrived: asyncio.Condition = field(factory=asyncio.Condition)

    @property
    def bus(self) -> RedisEventBus:
        assert isinstance(self.receiver.bus, RedisEventBus)
        return self.receiver.bus

    async def wait_caught(self, n: int) -> None:
        async with asyncio.timeout(TIMEOUT), self.arrived:
            await self.arrived.wait_for(lambda: len(self.caught) >= n)


@define
class Cluster:
    """Replicas A and B sharing one Redis, and a platform whose webhook URL is B's."""

    a: Replica
    b: Replica
    sim: Simulator
    session: Session


MakeCluster = Callable[..., Awaitable[Cluster]]


async def start_replica(name: str, redis_url: str, *, durable: bool = False) -> Replica:
    """``durable``: a ``RedisInbox`` (which de-duplicates too) instead of the de-duplicator."""
    storage: dict[str, Any] = (
        {"inbox": RedisInbox(redis_url, lease_ttl=1.0, max_backoff=0.2)}
        if durable
        else {"dedup": RedisDeduplicator(redis_url)}
    )
    receiver = WebhookReceiver(
        VERIFIER,
        bus=RedisEventBus(redis_url, announce_ttl=3.0, block_timeout=0.2, max_backoff=0.2),
        drain_timeout=5.0,
        **storage,
    )
    replica = Replica(name, receiver, WebhookServer(receiver, port=0))

    @receiver.on_message()
    async def catch_all(message: BotMessage, ctx: EventContext) -> None:
        replica.caught.append(message)
        async with replica.arrived:
            replica.arrived.notify_all()

    await replica.server.start()
    return replica


@pytest.fixture
async def make_cluster(redis_server: RedisServer) -> AsyncIterator[MakeCluster]:
    """Builds the cluster (optionally with simulator faults); tears everything down in order."""
    closers: list[Callable[[], Awaitable[object]]] = []

    async def make(faults: Faults | None = None, *, durable: bool = False) -> Cluster:
        a = await start_replica("a", redis_server.url, durable=durable)
        closers.append(a.server.aclose)
        b = await start_replica("b", redis_server.url, durable=durable)
        closers.append(b.server.aclose)
        sim = Simulator(BOT, webhook_url=b.server.url, verifier=VERIFIER, faults=faults)
        await sim.start()
        closers.append(sim.aclose)
        session = Session(sim.api_key, sim.bot_id, base_url=sim.base_url)
        closers.append(session.aclose)
        return Cluster(a, b, sim, session)

    yield make
    for close in reversed(closers):  # session, simulator, then the replicas
        await close()


@pytest.fixture
async def cluster(make_cluster: MakeCluster) -> Cluster:
    return await make_cluster()


def texts(messages: list[BotMessage]) -> list[str]:
    return [m.text for m in messages]


async def test_welcome_and_reply_delivered_to_b_reach_the_conversation_on_a(
    cluster: Cluster,
) -> None:
    a, b = cluster.a, cluster.b
    async with Conversation(cluster.session, a.receiver, exclusive=True) as conv:
        welcome = await conv.start(timeout=TIMEOUT, settle=SETTLE)
        reply = await conv.ask("Where is my order?", timeout=TIMEOUT, settle=SETTLE)

    assert welcome.text == WELCOME
    assert reply.text == answer_to("Where is my order?")
    # The platform really delivered everything to B, and B accepted every delivery.
    deliveries = cluster.sim.deliveries
    assert len(deliveries) == 4
    assert {d.url for d in deliveries} == {b.server.url}
    assert all(d.ok for d in deliveries)
    # Nothing fell through to a catch-all on either side: B forwarded, A's conversation read.
    assert a.caught == b.caught == []


async def test_concurrent_conversations_on_both_replicas_each_get_their_own_replies(
    cluster: Cluster,
) -> None:
    async def chat(i: int, replica: Replica) -> tuple[str, str]:
        cid = f"replicas-{replica.name}-{i}"
        async with Conversation(cluster.session, replica.receiver, cid, exclusive=True) as conv:
            welcome = await conv.start(timeout=TIMEOUT, settle=SETTLE)
            reply = await conv.ask(f"question {i}", timeout=TIMEOUT, settle=SETTLE)
        assert {e.platform_conversation_id for e in [*welcome.events, *reply.events]} == {cid}
        return welcome.text, reply.text

    replicas = [cluster.a, cluster.b] * 4
    results = await asyncio.gather(*(chat(i, r) for i, r in enumerate(replicas)))

    for i, (welcome, reply) in enumerate(results):
        assert welcome == WELCOME
        assert reply == answer_to(f"question {i}")
    assert cluster.a.caught == cluster.b.caught == []
    assert {d.url for d in cluster.sim.deliveries} == {cluster.b.server.url}


async def test_conversations_opened_together_on_a_fresh_replica_are_all_announced(
    cluster: Cluster, redis_client: aioredis.Redis
) -> None:
    """The first ``ready()`` starts the receiver; the others register while it announces."""
    a = cluster.a
    convs = [
        Conversation(cluster.session, a.receiver, f"together-{i}", exclusive=True) for i in range(3)
    ]
    async with contextlib.AsyncExitStack() as stack:
        await asyncio.gather(*(stack.enter_async_context(conv) for conv in convs))
        owners = [await redis_client.get(a.bus.owner_key(conv.conversation_id)) for conv in convs]
        assert owners == [a.bus.replica_id] * 3
        replies = await asyncio.gather(
            *(conv.ask(f"hi {i}", timeout=TIMEOUT, settle=SETTLE) for i, conv in enumerate(convs))
        )
    assert [reply.text for reply in replies] == [answer_to(f"hi {i}") for i in range(3)]
    assert a.caught == cluster.b.caught == []


async def test_duplicate_deliveries_by_the_platform_are_read_once(
    make_cluster: MakeCluster,
) -> None:
    cluster = await make_cluster(Faults(duplicate_rate=1.0, seed=1))
    async with Conversation(cluster.session, cluster.a.receiver, exclusive=True) as conv:
        welcome = await conv.start(timeout=TIMEOUT, settle=SETTLE)
        reply = await conv.ask("hello twice", timeout=TIMEOUT, settle=SETTLE)

    assert texts(welcome.messages) == ["Welcome!", "How can I help?"]
    assert texts(reply.messages) == ["You said: hello twice", "Anything else?"]
    # Each of the 4 messages was really delivered twice to B (and acknowledged twice).
    assert cluster.sim.stats.duplicates == 4
    assert sum(d.duplicate for d in cluster.sim.deliveries) == 4
    assert all(d.ok for d in cluster.sim.deliveries)
    assert cluster.a.caught == cluster.b.caught == []


async def test_the_same_delivery_posted_to_a_and_b_is_read_once(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    async with Conversation(cluster.session, a.receiver, exclusive=True) as conv:
        await conv.start(timeout=TIMEOUT, settle=SETTLE)
        payload = make_bot_message(conv.conversation_id, "sent to both", message_id="both-1")
        body, headers = make_delivery(payload, VERIFIER)
        async with aiohttp.ClientSession() as http:

            async def post(url: str) -> int:
                async with http.post(url, data=body, headers=headers) as response:
                    return response.status

            statuses = await asyncio.gather(post(a.server.url), post(b.server.url))
        assert list(statuses) == [200, 200]
        got = await conv.receive(timeout=TIMEOUT, settle=SETTLE)

    assert texts(got.messages) == ["sent to both"]
    assert a.caught == b.caught == []


async def test_after_the_conversation_ends_its_events_go_to_bs_catch_all(
    cluster: Cluster, redis_client: aioredis.Redis
) -> None:
    a, b = cluster.a, cluster.b
    async with Conversation(cluster.session, a.receiver, exclusive=True) as conv:
        cid = conv.conversation_id
        owner_key = a.bus.owner_key(cid)
        # Entering the conversation announced it, before anything was sent.
        assert await redis_client.get(owner_key) == a.bus.replica_id
        await conv.start(timeout=TIMEOUT, settle=SETTLE)

    await a.receiver.drain()  # settles the release announcement too
    assert await redis_client.exists(owner_key) == 0
    assert cid not in a.bus.held

    # A proactive message after the end: nobody holds the conversation, so B handles it.
    await cluster.sim.push_message(cid, "Are you still there?")
    await b.wait_caught(1)
    assert texts(b.caught) == ["Are you still there?"]
    assert b.caught[0].platform_conversation_id == cid
    await a.receiver.drain()
    assert a.caught == []


async def test_an_observing_conversation_leaves_each_message_to_one_catch_all(
    cluster: Cluster,
) -> None:
    a, b = cluster.a, cluster.b
    async with Conversation(cluster.session, a.receiver) as conv:  # observes only
        welcome = await conv.start(timeout=TIMEOUT, settle=SETTLE)
        reply = await conv.ask("and the catch-all?", timeout=TIMEOUT, settle=SETTLE)
    assert welcome.text == WELCOME
    assert reply.text == answer_to("and the catch-all?")
    await a.receiver.drain()
    await b.receiver.drain()
    caught = sorted(texts(a.caught + b.caught))
    assert caught == sorted([*WELCOME.split("\n"), *answer_to("and the catch-all?").split("\n")])


async def test_with_redis_inboxes_the_conversation_on_a_still_reads_what_b_received(
    make_cluster: MakeCluster,
) -> None:
    cluster = await make_cluster(durable=True)
    a, b = cluster.a, cluster.b
    async with Conversation(cluster.session, a.receiver) as conv:
        welcome = await conv.start(timeout=TIMEOUT, settle=SETTLE)
        reply = await conv.ask("stored first?", timeout=TIMEOUT, settle=SETTLE)
    assert welcome.text == WELCOME
    assert reply.text == answer_to("stored first?")
    assert {d.url for d in cluster.sim.deliveries} == {b.server.url}
    # Stored in Redis, handled by whichever replica holds the partition: once in all.
    await a.receiver.drain()
    await b.receiver.drain()
    caught = sorted(texts(a.caught + b.caught))
    assert caught == sorted([*WELCOME.split("\n"), *answer_to("stored first?").split("\n")])
