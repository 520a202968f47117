"""With a shared ``RedisInbox``, a notification for a conversation another replica holds is
stored by the replica that received it before its ``200``; the holder only gets an observation
copy over the bus for its ``register()`` observer / ``Conversation`` waiter.

Before, the receiving replica forwarded the event over the bus *instead* of storing it, and the
holder stored it only once it had popped it from its Redis list: a holder dying in between lost
an acknowledged event, which ``RedisInbox`` exists to prevent.  Real receivers on real ports,
one real redis-server.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from attrs import define, field

from ultimate_async.bus import Deliver
from ultimate_async.errors import BackendUnavailableError
from ultimate_async.redis import RedisEventBus, RedisInbox
from ultimate_async.testing import make_bot_message
from ultimate_async.webhook import (
    EventContext,
    SharedSecretHeader,
    WebhookReceiver,
    WebhookServer,
)

if TYPE_CHECKING:
    from conftest import Eventually, RedisServer

pytestmark = pytest.mark.redis

SECRET = "forwarded-durable-secret"


class FaultyBus(RedisEventBus):
    """A real Redis bus that can lose what it popped (``lose``: the holder died right after
    popping the event) or fail to forward (``refuse``: Redis went away after the store)."""

    lose = False
    refuse = False

    async def start(self, deliver: Deliver) -> None:
        async def maybe_deliver(conversation_id: str, raw: Mapping[str, Any]) -> None:
            if not self.lose:
                await deliver(conversation_id, raw)

        await super().start(maybe_deliver)

    async def forward(self, conversation_id: str, raw: Mapping[str, Any]) -> bool:
        if self.refuse:
            raise BackendUnavailableError("Redis event bus: unreachable (test)")
        return await super().forward(conversation_id, raw)


@define
class Replica:
    name: str
    receiver: WebhookReceiver
    server: WebhookServer
    bus: FaultyBus
    caught: list[str] = field(factory=list)  # the on_message catch-all's texts
    observed: list[tuple[str, bool]] = field(factory=list)  # (text, ctx.forwarded)


MakeReplica = Callable[[str], Awaitable[Replica]]


@pytest.fixture
async def make_replica(redis_server: RedisServer) -> AsyncIterator[MakeReplica]:
    started: list[Replica] = []

    async def make(name: str) -> Replica:
        bus = FaultyBus(redis_server.url, block_timeout=0.2, max_backoff=0.2)
        receiver = WebhookReceiver(
            SharedSecretHeader(SECRET),
            inbox=RedisInbox(redis_server.url, lease_ttl=1.0, max_backoff=0.2),
            bus=bus,
            drain_timeout=5.0,
        )
        replica = Replica(name, receiver, WebhookServer(receiver, port=0), bus)

        @receiver.on_message()
        async def catch_all(event: Any, ctx: EventContext) -> None:
            replica.caught.append(event.text)

        await replica.server.start()
        started.append(replica)
        return replica

    yield make
    for replica in started:
        await replica.server.aclose()


async def post(replica: Replica, cid: str, text: str) -> int:
    body = json.dumps(make_bot_message(cid, text, message_id=f"{cid}/{text}"))
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            replica.server.url,
            data=body.encode(),
            headers={"Authorization": SECRET, "Content-Type": "application/json"},
        ) as response,
    ):
        await response.read()
        return response.status


async def observe(replica: Replica, cid: str, *, exclusive: bool = False) -> None:
    async def observer(event: Any, ctx: EventContext) -> None:
        replica.observed.append((event.text, ctx.forwarded))

    await replica.receiver.register(cid, observer, exclusive=exclusive).ready()


async def settled(*replicas: Replica) -> None:
    """Both replicas drained, and a moment for a second (wrong) run to show up."""
    for replica in replicas:
        assert await replica.receiver.drain(5)
    await asyncio.sleep(0.3)
    for replica in replicas:
        assert await replica.receiver.drain(5)


@pytest.mark.parametrize("exclusive", [False, True], ids=["observer", "exclusive"])
async def test_the_holder_observes_and_the_catch_all_runs_once(
    make_replica: MakeReplica, eventually: Eventually, exclusive: bool
) -> None:
    a, b = await make_replica("a"), await make_replica("b")
    await observe(a, "conv-1", exclusive=exclusive)
    for text in ("first", "second", "third"):
        assert await post(b, "conv-1", text) == 200
    assert await post(b, "conv-1", "second") == 200  # a retried delivery: no copy, no run

    await eventually(lambda: len(a.caught) + len(b.caught) >= 3 and len(a.observed) >= 3)
    await settled(a, b)
    assert a.observed == [("first", True), ("second", True), ("third", True)]
    # Stored once, by b: whichever replica owns the partition ran the catch-all, once each.
    assert sorted(a.caught + b.caught) == ["first", "second", "third"]


async def test_a_holder_dying_with_the_copy_loses_nothing_acknowledged(
    make_replica: MakeReplica, eventually: Eventually
) -> None:
    a, b = await make_replica("a"), await make_replica("b")
    await observe(a, "conv-2")
    a.bus.lose = True  # a pops what b forwards, and dies before doing anything with it
    assert await post(b, "conv-2", "acknowledged") == 200

    # The 200 came after the store: the partition's owner handles it from the inbox.
    await eventually(lambda: a.caught + b.caught == ["acknowledged"])
    await settled(a, b)
    assert a.caught + b.caught == ["acknowledged"]
    assert a.observed == []


async def test_a_bus_failure_after_the_store_still_answers_200(
    make_replica: MakeReplica, eventually: Eventually
) -> None:
    a, b = await make_replica("a"), await make_replica("b")
    await observe(a, "conv-3")
    b.bus.refuse = True
    assert await post(b, "conv-3", "stored anyway") == 200
    assert not b.receiver.refusals
    await eventually(lambda: a.caught + b.caught == ["stored anyway"])
    await settled(a, b)
    assert a.caught + b.caught == ["stored anyway"]
    assert a.observed == []  # the copy is best effort


async def test_an_event_received_by_the_holder_is_observed_and_stored_once(
    make_replica: MakeReplica, eventually: Eventually
) -> None:
    a, b = await make_replica("a"), await make_replica("b")
    await observe(a, "conv-4", exclusive=True)
    assert await post(a, "conv-4", "direct") == 200
    await eventually(lambda: a.caught + b.caught == ["direct"] and a.observed)
    await settled(a, b)
    assert a.observed == [("direct", False)]
    assert a.caught + b.caught == ["direct"]
