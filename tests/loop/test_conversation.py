"""Conversation over the real loop: simulator → signed webhooks → receiver → Conversation.

Everything here goes through the pytest plugin's fixtures (``ultimate_simulator``,
``ultimate_receiver``, ``ultimate_session``, ``ultimate_conversation``), which proves the plugin
works for users too.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest

from ultimate_async._retry import RetryPolicy
from ultimate_async.conversation import Conversation, Reply
from ultimate_async.errors import APIConnectionError, ReplyTimeout
from ultimate_async.models.webhooks import (
    BotMessage,
    Button,
    Escalate,
    TeamOnlineCheck,
    WidgetEscalate,
)
from ultimate_async.session import Session
from ultimate_async.simulator import Simulator
from ultimate_async.webhook import EventContext, WebhookReceiver

SETTLE = 0.3
WAIT = 5.0


def chat_bodies(sim: Simulator, conversation_id: str) -> list[dict[str, object]]:
    return [
        r.json
        for r in sim.received
        if r.path == "/converse/chat" and r.json.get("platformConversationId") == conversation_id
    ]


async def test_start_returns_the_welcome(
    ultimate_conversation: Conversation, ultimate_simulator: Simulator
) -> None:
    welcome = await ultimate_conversation.start(timeout=WAIT, settle=SETTLE)
    assert [m.text for m in welcome.messages] == [
        "Hi, I'm Ada, the Acme demo bot.",
        "What can I help you with?",
    ]
    assert welcome.text == "Hi, I'm Ada, the Acme demo bot.\nWhat can I help you with?"
    assert "Track my order" in [b.text for b in welcome.buttons]
    assert not welcome.escalated
    assert ultimate_conversation.started
    bodies = chat_bodies(ultimate_simulator, ultimate_conversation.conversation_id)
    assert [b["eventType"] for b in bodies] == ["startSession"]


async def test_ask_collects_every_message_of_the_turn(
    ultimate_conversation: Conversation,
) -> None:
    reply = await ultimate_conversation.ask("Where is my order?", timeout=WAIT, settle=SETTLE)
    assert len(reply.messages) == 2  # the answer and the follow-up question with buttons
    assert reply.text.splitlines() == [
        "Your order #A-1001 shipped yesterday and arrives tomorrow.",
        "Did that answer your question?",
    ]
    assert [b.text for b in reply.buttons] == ["Yes", "No"]
    assert reply.events == reply.messages


async def test_settle_zero_loses_nothing(ultimate_conversation: Conversation) -> None:
    """With settle=0 ask returns at the first message; the rest stays buffered."""
    first = await ultimate_conversation.ask("Where is my order?", timeout=WAIT, settle=0)
    texts = [m.text for m in first.messages]
    while len(texts) < 2:
        more = await ultimate_conversation.receive(timeout=WAIT, settle=0)
        texts += [m.text for m in more.messages]
    assert texts == [
        "Your order #A-1001 shipped yesterday and arrives tomorrow.",
        "Did that answer your question?",
    ]


async def test_click_sends_the_button_text(
    ultimate_conversation: Conversation, ultimate_simulator: Simulator
) -> None:
    question = await ultimate_conversation.ask("Where is my order?", timeout=WAIT, settle=SETTLE)
    reply = await ultimate_conversation.click(question.buttons[0], timeout=WAIT, settle=SETTLE)
    assert reply.text == "Great! Anything else I can do for you?"
    last = chat_bodies(ultimate_simulator, ultimate_conversation.conversation_id)[-1]
    assert last == {
        "platformConversationId": ultimate_conversation.conversation_id,
        "eventType": "message",
        "text": "Yes",
    }


async def test_link_buttons_are_refused_before_sending(
    ultimate_conversation: Conversation, ultimate_simulator: Simulator
) -> None:
    with pytest.raises(ValueError, match="link"):
        await ultimate_conversation.click(Button(type="link", text="Help center"))
    with pytest.raises(ValueError, match="link"):
        await ultimate_conversation.choose_card(0, Button(type="link", text="Prices"))
    assert chat_bodies(ultimate_simulator, ultimate_conversation.conversation_id) == []


async def test_choose_card_sends_text_and_card_index(
    ultimate_conversation: Conversation, ultimate_simulator: Simulator
) -> None:
    carousel = await ultimate_conversation.ask("shipping", timeout=WAIT, settle=SETTLE)
    assert [c.title for c in carousel.carousel_cards] == ["Standard shipping", "Express shipping"]
    assert carousel.messages[0].type == "carousel"
    button = carousel.carousel_cards[1].buttons[0]
    reply = await ultimate_conversation.choose_card(1, button, timeout=WAIT, settle=SETTLE)
    assert reply.text == "Express shipping it is: next day, 9.90 EUR."
    last = chat_bodies(ultimate_simulator, ultimate_conversation.conversation_id)[-1]
    assert last["text"] == "Choose express"
    assert last["cardIndex"] == 1


async def test_ask_times_out_when_the_bot_stays_silent(
    ultimate_conversation: Conversation,
    ultimate_receiver: WebhookReceiver,
    ultimate_simulator: Simulator,
) -> None:
    # Point the simulator's deliveries nowhere we listen: the bot answers into the void.
    ultimate_simulator.webhook_url = "http://127.0.0.1:9/nowhere"
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ReplyTimeout) as caught:
        await ultimate_conversation.ask("Where is my order?", timeout=0.3, settle=SETTLE)
    assert 0.3 <= loop.time() - started < 2.0
    assert isinstance(caught.value, TimeoutError)
    assert ultimate_conversation.conversation_id in str(caught.value)


async def test_start_without_welcome_returns_an_empty_reply(
    ultimate_conversation: Conversation, ultimate_simulator: Simulator
) -> None:
    ultimate_simulator.webhook_url = "http://127.0.0.1:9/nowhere"
    welcome = await ultimate_conversation.start(timeout=0.2, settle=SETTLE)
    assert welcome == Reply()
    assert welcome.messages == [] and welcome.text == "" and not welcome.escalated


async def test_a_late_message_belongs_to_the_next_read(
    ultimate_conversation: Conversation, ultimate_simulator: Simulator
) -> None:
    cid = ultimate_conversation.conversation_id
    await ultimate_conversation.ask("Where is my order?", timeout=WAIT, settle=SETTLE)
    # Delivered while nobody waits: must be buffered, not dropped.
    await ultimate_simulator.push_message(cid, "By the way: 10% off today!")
    reply = await ultimate_conversation.ask("yes", timeout=WAIT, settle=SETTLE)
    assert reply.text.splitlines() == [
        "By the way: 10% off today!",
        "Great! Anything else I can do for you?",
    ]


async def test_events_yields_everything_in_order_then_stops_when_quiet(
    ultimate_conversation: Conversation, ultimate_simulator: Simulator
) -> None:
    cid = ultimate_conversation.conversation_id
    await ultimate_conversation.send("Where is my order?")
    await ultimate_simulator.push_message(cid, "proactive")
    seen = [e async for e in ultimate_conversation.events(timeout=0.3)]
    messages = [e for e in seen if isinstance(e, BotMessage)]
    assert messages == seen
    assert [m.text for m in messages] == [
        "Your order #A-1001 shipped yesterday and arrives tomorrow.",
        "Did that answer your question?",
        "proactive",
    ]


async def test_breaking_out_of_events_keeps_the_rest(
    ultimate_conversation: Conversation, ultimate_simulator: Simulator
) -> None:
    cid = ultimate_conversation.conversation_id
    await ultimate_simulator.push(cid, "one", "two", "three")
    async for event in ultimate_conversation.events():
        assert isinstance(event, BotMessage) and event.text == "one"
        break
    rest = await ultimate_conversation.receive(timeout=WAIT, settle=SETTLE)
    assert rest.text == "two\nthree"


async def test_one_waiter_at_a_time(ultimate_conversation: Conversation) -> None:
    waiting = asyncio.create_task(ultimate_conversation.receive(timeout=WAIT))
    await asyncio.sleep(0)  # let it start waiting
    with pytest.raises(RuntimeError, match="already waiting"):
        await ultimate_conversation.ask("hello")
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    # Cancelled waits leave the conversation usable.
    reply = await ultimate_conversation.ask("Where is my order?", timeout=WAIT, settle=SETTLE)
    assert reply.messages


async def test_escalation_is_flagged_and_requests_are_observed(
    ultimate_conversation: Conversation, ultimate_receiver: WebhookReceiver
) -> None:
    @ultimate_receiver.on_team_online()
    async def online(check: TeamOnlineCheck, ctx: EventContext) -> bool:
        return True

    reply = await ultimate_conversation.ask("Talk to a human", timeout=WAIT, settle=SETTLE)
    kinds = [type(e) for e in reply.events]
    assert TeamOnlineCheck in kinds
    assert Escalate in kinds
    assert reply.escalated
    assert "Connecting you to an agent now." in reply.text


async def test_widget_escalation_is_flagged(
    ultimate_conversation: Conversation, ultimate_receiver: WebhookReceiver
) -> None:
    @ultimate_receiver.on_team_online()
    async def online(check: TeamOnlineCheck, ctx: EventContext) -> bool:
        return True

    reply = await ultimate_conversation.ask("live chat", timeout=WAIT, settle=SETTLE)
    assert any(isinstance(e, WidgetEscalate) for e in reply.events)
    assert reply.escalated


async def test_team_offline_is_not_an_escalation(ultimate_conversation: Conversation) -> None:
    # No on_team_online handler: the receiver answers {"isOnline": false}.
    reply = await ultimate_conversation.ask("Talk to a human", timeout=WAIT, settle=SETTLE)
    assert not reply.escalated
    assert "nobody is online" in reply.text


async def test_exit_ends_the_session_and_stops_observing(
    ultimate_session: Session, ultimate_receiver: WebhookReceiver, ultimate_simulator: Simulator
) -> None:
    cid = f"conv-{uuid.uuid4()}"
    caught: list[BotMessage] = []

    async with Conversation(ultimate_session, ultimate_receiver, cid) as conv:
        assert conv.conversation_id == cid
        await conv.start(timeout=WAIT, settle=SETTLE)

    assert [b["eventType"] for b in chat_bodies(ultimate_simulator, cid)] == [
        "startSession",
        "endSession",
    ]

    # The registration is gone: a later event of that conversation goes to the catch-all.
    @ultimate_receiver.on_message()
    async def catch_all(message: BotMessage, ctx: EventContext) -> None:
        caught.append(message)

    await ultimate_simulator.push_message(cid, "anyone there?")
    await ultimate_receiver.drain()
    assert [m.text for m in caught] == ["anyone there?"]
    with pytest.raises(RuntimeError, match="ended"):
        await conv.ask("again?")


async def test_exit_without_start_sends_nothing(
    ultimate_session: Session, ultimate_receiver: WebhookReceiver, ultimate_simulator: Simulator
) -> None:
    async with Conversation(ultimate_session, ultimate_receiver) as conv:
        assert uuid.UUID(conv.conversation_id).version == 4
    assert chat_bodies(ultimate_simulator, conv.conversation_id) == []


async def test_end_is_idempotent(
    ultimate_conversation: Conversation, ultimate_simulator: Simulator
) -> None:
    await ultimate_conversation.start(timeout=WAIT, settle=SETTLE)
    await ultimate_conversation.end()
    await ultimate_conversation.end()
    events = [
        b["eventType"]
        for b in chat_bodies(ultimate_simulator, ultimate_conversation.conversation_id)
    ]
    assert events == ["startSession", "endSession"]


async def test_body_exception_is_not_masked_by_a_failing_end(
    ultimate_receiver: WebhookReceiver,
    ultimate_simulator: Simulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim = ultimate_simulator
    session = Session(sim.api_key, sim.bot_id, base_url=sim.base_url, retry=RetryPolicy(0))
    caplog.set_level(logging.DEBUG, logger="ultimate_async.conversation")
    with pytest.raises(KeyError, match="boom"):
        async with session, Conversation(session, ultimate_receiver) as conv:
            await conv.start(timeout=WAIT, settle=SETTLE)
            await ultimate_simulator.aclose()  # endSession will fail to connect
            raise KeyError("boom")
    # The endSession really was sent and really failed: its error was kept, not raised.
    [record] = [r for r in caplog.records if r.getMessage().startswith("endSession failed")]
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], APIConnectionError)


async def test_metadata_is_sent_with_the_message(
    ultimate_conversation: Conversation, ultimate_simulator: Simulator
) -> None:
    reply = await ultimate_conversation.ask(
        "Where is my order?", timeout=WAIT, settle=SETTLE, metadata={"orderId": "B-7"}
    )
    assert "#B-7" in reply.text
    last = chat_bodies(ultimate_simulator, ultimate_conversation.conversation_id)[-1]
    assert last["metaData"] == [{"key": "orderId", "value": "B-7"}]


async def test_events_stops_when_the_conversation_ends(
    ultimate_conversation: Conversation, ultimate_session: Session
) -> None:
    seen: list[object] = []
    two = asyncio.Event()

    async def consume() -> None:
        async for event in ultimate_conversation.events():  # no timeout: until the end
            seen.append(event)
            if len(seen) == 2:
                two.set()

    consumer = asyncio.create_task(consume())
    await ultimate_session.chat.start_session(ultimate_conversation.conversation_id)
    await asyncio.wait_for(two.wait(), WAIT)  # the two welcome messages
    await ultimate_conversation.end()
    await asyncio.wait_for(consumer, WAIT)
    assert [type(e) for e in seen] == [BotMessage, BotMessage]
