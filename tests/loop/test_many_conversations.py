"""Many conversations share one session and one receiver; each sees only its own events."""

from __future__ import annotations

import asyncio

from ultimate_async.conversation import Conversation
from ultimate_async.models.webhooks import BotMessage
from ultimate_async.session import Session
from ultimate_async.simulator import Simulator
from ultimate_async.webhook import WebhookReceiver

N = 50


async def test_fifty_concurrent_conversations_see_only_their_own_events(
    ultimate_session: Session, ultimate_receiver: WebhookReceiver, ultimate_simulator: Simulator
) -> None:
    async def one(i: int) -> None:
        async with Conversation(ultimate_session, ultimate_receiver, f"many-{i}") as conv:
            welcome = await conv.start(timeout=10, settle=0.5)
            assert len(welcome.messages) == 2
            # The order id is this conversation's own session variable: a reply that carried
            # another conversation's events would show another number.
            reply = await conv.ask(
                "Where is my order?", timeout=10, settle=0.5, metadata={"orderId": f"N-{i}"}
            )
            assert reply.text.splitlines()[0] == (
                f"Your order #N-{i} shipped yesterday and arrives tomorrow."
            )
            await ultimate_simulator.push_message(conv.conversation_id, f"only for {i}")
            late = await conv.receive(timeout=10, settle=0.5)
            assert late.text == f"only for {i}"
            for event in [*welcome.events, *reply.events, *late.events]:
                assert isinstance(event, BotMessage)
                assert event.platform_conversation_id == f"many-{i}"

    await asyncio.gather(*(one(i) for i in range(N)))
    # Every conversation removed its registration on exit.
    assert ultimate_receiver.active_conversations == 0
