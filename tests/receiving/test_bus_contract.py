"""The receiver's side of the EventBus / Deduplicator contract, with a two-replica fake bus."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from ultimate_async.bus import Deliver
from ultimate_async.errors import BackendUnavailableError
from ultimate_async.models.webhooks import BotMessage, Escalate, Webhook
from ultimate_async.webhook import EventContext, MemoryDeduplicator, NoVerification, WebhookReceiver


class Hub:
    """Shared state of the fake bus: who holds which conversation."""

    def __init__(self) -> None:
        self.holders: dict[str, FakeBus] = {}
        self.down = False


class FakeBus:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.deliver: Deliver | None = None
        self.calls: list[tuple[str, str]] = []
        self.closed = False

    async def start(self, deliver: Deliver) -> None:
        self.calls.append(("start", ""))
        self.deliver = deliver

    async def aclose(self) -> None:
        self.closed = True

    async def hold(self, conversation_id: str) -> None:
        if self.hub.down:
            raise BackendUnavailableError("down")
        self.calls.append(("hold", conversation_id))
        self.hub.holders[conversation_id] = self

    async def release(self, conversation_id: str) -> None:
        self.calls.append(("release", conversation_id))
        if self.hub.holders.get(conversation_id) is self:
            del self.hub.holders[conversation_id]

    async def forward(self, conversation_id: str, raw: Mapping[str, Any]) -> bool:
        if self.hub.down:
            raise BackendUnavailableError("down")
        holder = self.hub.holders.get(conversation_id)
        if holder is None or holder is self:
            return False
        assert holder.deliver is not None
        await holder.deliver(conversation_id, raw)
        return True


class FlakyDedup(MemoryDeduplicator):
    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.forgotten: list[str] = []

    async def claim(self, key: str) -> bool:
        if self.down:
            raise BackendUnavailableError("down")
        return await super().claim(key)

    async def forget(self, key: str) -> None:
        self.forgotten.append(key)
        await super().forget(key)


def body(cid: str, text: str = "hi", message_id: str | None = None) -> bytes:
    data: dict[str, Any] = {"eventType": "sendMessage", "platformConversationId": cid, "text": text}
    if message_id:
        data["messageId"] = message_id
    return json.dumps({"botId": "b", "data": data}).encode()


async def test_events_reach_the_replica_holding_the_conversation() -> None:
    hub = Hub()
    bus_a, bus_b = FakeBus(hub), FakeBus(hub)
    replica_a = WebhookReceiver(NoVerification(), bus=bus_a)
    replica_b = WebhookReceiver(NoVerification(), bus=bus_b)
    seen: list[tuple[str, str, bool]] = []

    async def observer(event: Webhook, ctx: EventContext) -> None:
        assert isinstance(event, BotMessage | Escalate)
        seen.append(("a-registered", type(event).__name__, ctx.forwarded))

    @replica_b.on_message()
    async def b_catch_all(msg: BotMessage, ctx: EventContext) -> None:
        seen.append(("b-catch-all", msg.text, ctx.forwarded))

    @replica_b.on_escalate()
    async def b_decides(event: Escalate, ctx: EventContext) -> bool:
        seen.append(("b-decides", "escalate", ctx.forwarded))
        return False

    registration = replica_a.register("conv-1", observer)
    await registration.ready()
    assert ("hold", "conv-1") in bus_a.calls and hub.holders["conv-1"] is bus_a

    assert (await replica_b.handle(body("conv-1", "for a"), {})).status == 200
    assert (await replica_b.handle(body("conv-2", "nobody holds"), {})).status == 200
    escalate = json.dumps(
        {"data": {"eventType": "escalate", "platformConversationId": "conv-1"}}
    ).encode()
    assert (await replica_b.handle(escalate, {})).status == 409  # b answers
    assert await replica_a.drain(timeout=5) and await replica_b.drain(timeout=5)
    assert sorted(seen) == sorted(
        [
            ("a-registered", "BotMessage", True),
            ("b-catch-all", "nobody holds", False),
            ("b-decides", "escalate", False),
            ("a-registered", "Escalate", True),
        ]
    )

    registration.remove()
    assert await replica_a.drain(timeout=5)  # drain also settles bus announcements
    assert "conv-1" not in hub.holders
    assert ("release", "conv-1") in bus_a.calls
    await replica_a.aclose()
    await replica_b.aclose()
    assert bus_a.closed and bus_b.closed


async def test_backend_outages_answer_503_and_claim_nothing() -> None:
    hub = Hub()
    dedup = FlakyDedup()
    receiver = WebhookReceiver(NoVerification(), bus=FakeBus(hub), dedup=dedup)
    handled: list[str] = []

    @receiver.on_message()
    async def handler(msg: BotMessage, ctx: EventContext) -> None:
        handled.append(msg.text)

    dedup.down = True
    assert (await receiver.handle(body("c1", "x", "m1"), {})).status == 503
    dedup.down = False
    hub.down = True
    assert (await receiver.handle(body("c1", "x", "m1"), {})).status == 503
    # the bus is asked before the inbox stores (and de-duplicates): nothing was claimed
    assert dedup.forgotten == []
    hub.down = False
    assert (await receiver.handle(body("c1", "x", "m1"), {})).status == 200  # the retry works
    assert await receiver.drain(timeout=5)
    assert handled == ["x"]
    await receiver.aclose()


async def test_registration_before_start_is_announced_on_start() -> None:
    hub = Hub()
    bus = FakeBus(hub)
    receiver = WebhookReceiver(NoVerification(), bus=bus)

    @receiver.on_message(conversation_id="pinned")
    async def pinned(msg: BotMessage, ctx: EventContext) -> None:
        return None

    async def observer(event: Webhook, ctx: EventContext) -> None:
        return None

    assert bus.calls == []
    await receiver.start()
    assert bus.calls == [("start", ""), ("hold", "pinned")]
    hub.down = True
    registration = receiver.register("c2", observer)
    with pytest.raises(BackendUnavailableError):
        await registration.ready()
    await receiver.aclose()


async def test_the_holder_observes_and_handles_a_forwarded_notification_once() -> None:
    hub = Hub()
    replica_a = WebhookReceiver(NoVerification(), bus=FakeBus(hub))
    replica_b = WebhookReceiver(NoVerification(), bus=FakeBus(hub))
    seen: list[tuple[str, str]] = []

    for name, replica in (("a", replica_a), ("b", replica_b)):

        async def catch_all(msg: BotMessage, ctx: EventContext, name: str = name) -> None:
            seen.append((f"{name}-catch-all", msg.text))

        replica.on_message()(catch_all)

    async def observer(event: Webhook, ctx: EventContext) -> None:
        assert isinstance(event, BotMessage)
        seen.append(("a-observer", event.text))

    await replica_a.register("conv-1", observer).ready()
    assert (await replica_b.handle(body("conv-1", "via b", "m1"), {})).status == 200
    assert (await replica_b.handle(body("conv-1", "via b", "m1"), {})).status == 200  # again
    assert (await replica_a.handle(body("conv-1", "via a", "m2"), {})).status == 200
    assert await replica_a.drain(timeout=5) and await replica_b.drain(timeout=5)
    # the observer never steals: the holder's catch-all handles each event once, too
    assert sorted(seen) == sorted(
        [
            ("a-observer", "via b"),
            ("a-catch-all", "via b"),
            ("a-observer", "via a"),
            ("a-catch-all", "via a"),
        ]
    )
    await replica_a.aclose()
    await replica_b.aclose()
