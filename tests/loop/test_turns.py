"""When is a turn over: ``until=`` (a count or a predicate), the simulator's turn ends, and what
``ask()`` says when it is not (busy, timed out, deliveries refused).

Turn-end tests pass a long ``settle`` on purpose: if ``until`` did not end the turn, the call
would wait that long and the test's ``asyncio.timeout`` would fail it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

import ultimate_async
from ultimate_async.conversation import Conversation
from ultimate_async.errors import ConversationBusyError, ReplyTimeout, UltimateError
from ultimate_async.models.outbound import ActionResult
from ultimate_async.models.webhooks import (
    ActionCall,
    BotMessage,
    Escalate,
    TeamOnlineCheck,
    Webhook,
    WidgetEscalate,
    WidgetMessage,
)
from ultimate_async.session import Session
from ultimate_async.simulator import Simulator
from ultimate_async.webhook import (
    EventContext,
    HmacSignature,
    WebhookReceiver,
    WebhookServer,
)

WAIT = 5.0
LONG = 60.0  # a settle no test may ever wait out


@pytest.fixture
async def plain(
    ultimate_session: Session, ultimate_receiver: WebhookReceiver
) -> AsyncIterator[Conversation]:
    """A Conversation that knows nothing of the simulator's turns."""
    async with Conversation(ultimate_session, ultimate_receiver) as conversation:
        yield conversation


def texts(events: Sequence[Webhook]) -> list[str]:
    return [e.text for e in events if isinstance(e, BotMessage)]


# -- until= ---------------------------------------------------------------------------------------


async def test_until_a_count_ends_the_turn_at_that_many_events(plain: Conversation) -> None:
    async with asyncio.timeout(WAIT):
        first = await plain.ask("Where is my order?", settle=LONG, until=1)
        rest = await plain.receive(settle=LONG, until=1)
    assert texts(first.events) == ["Your order #A-1001 shipped yesterday and arrives tomorrow."]
    assert texts(rest.events) == ["Did that answer your question?"]


async def test_until_a_predicate_over_the_events_so_far(plain: Conversation) -> None:
    seen: list[int] = []

    def has_buttons(events: Sequence[Webhook]) -> bool:
        seen.append(len(events))
        return any(isinstance(e, BotMessage) and e.buttons for e in events)

    async with asyncio.timeout(WAIT):
        reply = await plain.ask("Where is my order?", settle=LONG, until=has_buttons)
    assert [b.text for b in reply.buttons] == ["Yes", "No"]
    assert len(reply.messages) == 2
    assert seen[-1] == 2 and seen == sorted(seen)  # called with everything collected so far


async def test_a_turn_not_complete_in_time_raises_and_keeps_what_came(
    plain: Conversation,
) -> None:
    with pytest.raises(ReplyTimeout, match=r"not complete.*2 event") as caught:
        await plain.ask("Where is my order?", timeout=1.0, until=3)
    assert isinstance(caught.value, TimeoutError)
    kept = await plain.receive(timeout=WAIT, until=2)  # nothing was lost
    assert len(kept.messages) == 2


async def test_a_failing_predicate_loses_no_event(plain: Conversation) -> None:
    def broken(events: Sequence[Webhook]) -> bool:
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        await plain.ask("Where is my order?", timeout=WAIT, until=broken)
    reply = await plain.receive(timeout=WAIT, until=2)
    assert len(reply.messages) == 2


async def test_settle_still_ends_a_turn_until_does_not_recognise(plain: Conversation) -> None:
    async with asyncio.timeout(WAIT):
        reply = await plain.ask("Where is my order?", settle=0.3, until=5)
    assert len(reply.messages) == 2


@pytest.mark.parametrize("bad", [0, -1, True, 2.5, "2"])
async def test_a_bad_until_is_refused_up_front(
    bad: object, ultimate_session: Session, ultimate_receiver: WebhookReceiver
) -> None:
    with pytest.raises(ValueError, match="until"):
        Conversation(ultimate_session, ultimate_receiver, until=bad)  # type: ignore[arg-type]
    async with Conversation(ultimate_session, ultimate_receiver) as conversation:
        with pytest.raises(ValueError, match="until"):
            await conversation.receive(timeout=0.1, until=bad)  # type: ignore[arg-type]


# -- the simulator knows where its turns end -------------------------------------------------------


async def test_the_fixture_conversation_ends_turns_without_waiting(
    ultimate_conversation: Conversation,
) -> None:
    async with asyncio.timeout(WAIT):
        welcome = await ultimate_conversation.start(settle=LONG)
        reply = await ultimate_conversation.ask("Where is my order?", settle=LONG)
        cards = await ultimate_conversation.ask("Shipping options", settle=LONG)
        chosen = await ultimate_conversation.choose_card(1, "Choose express", settle=LONG)
    assert len(welcome.messages) == 2
    assert len(reply.messages) == 2 and [b.text for b in reply.buttons] == ["Yes", "No"]
    assert len(cards.carousel_cards) == 2
    assert chosen.text == "Express shipping it is: next day, 9.90 EUR."


async def test_turns_that_end_with_a_request_or_a_branch(
    ultimate_conversation: Conversation, ultimate_receiver: WebhookReceiver
) -> None:
    online = True

    @ultimate_receiver.on_team_online()
    async def team(check: TeamOnlineCheck, ctx: EventContext) -> bool:
        return online

    @ultimate_receiver.on_action("getBalance")
    async def balance(call: ActionCall, ctx: EventContext) -> list[ActionResult]:
        return [ActionResult("balance", "12.50")]

    async with asyncio.timeout(WAIT):
        human = await ultimate_conversation.ask("Talk to a human", settle=LONG)
        money = await ultimate_conversation.ask("Check my balance", settle=LONG)
        online = False
        nobody = await ultimate_conversation.ask("Talk to a human", settle=LONG)
    assert [type(e) for e in human.events] == [BotMessage, TeamOnlineCheck, BotMessage, Escalate]
    assert human.escalated
    assert [type(e) for e in money.events] == [ActionCall, BotMessage]
    assert money.text == "Your balance is 12.50 EUR."
    assert nobody.text.endswith("Sorry, nobody is online right now. Please try again later.")


async def test_a_failed_escalation_ends_the_turn_and_its_replies_come_next(
    ultimate_conversation: Conversation, ultimate_receiver: WebhookReceiver
) -> None:
    """Deterministic: the escalation ended the turn when it was sent; the failure follows."""

    @ultimate_receiver.on_team_online()
    async def team(check: TeamOnlineCheck, ctx: EventContext) -> bool:
        return True

    @ultimate_receiver.on_escalate()
    async def refuse(event: Escalate, ctx: EventContext) -> bool:
        return False

    async with asyncio.timeout(WAIT):
        reply = await ultimate_conversation.ask("Talk to a human", settle=LONG)
        after = await ultimate_conversation.receive(settle=LONG)
    assert isinstance(reply.events[-1], Escalate)
    assert after.text == "Sorry, the hand-over failed. Please try again later."


async def test_widget_hand_over_and_agent_mode_turns(
    ultimate_conversation: Conversation,
    ultimate_receiver: WebhookReceiver,
    ultimate_simulator: Simulator,
) -> None:
    @ultimate_receiver.on_team_online()
    async def team(check: TeamOnlineCheck, ctx: EventContext) -> bool:
        return True

    cid = ultimate_conversation.conversation_id
    async with asyncio.timeout(WAIT):
        handed = await ultimate_conversation.ask("Live chat", settle=LONG)
        assert isinstance(handed.events[-1], WidgetEscalate)
        # While the escalation waits, a visitor message reaches nobody: no turn completes.
        with pytest.raises(ReplyTimeout):
            await ultimate_conversation.ask("hello?", timeout=0.3)
        await ultimate_conversation.session.widget.escalation_success(cid, agent="Sam")
        to_agent = await ultimate_conversation.ask("Hi Sam", settle=LONG)
        assert [type(e) for e in to_agent.events] == [WidgetMessage]
        await ultimate_conversation.session.widget.agent_disconnect(cid)
        back = await ultimate_conversation.receive(settle=LONG)
    assert back.text.startswith("The agent has left the chat.")
    assert ultimate_simulator.mode(cid) == "bot"


async def test_earlier_buffered_events_do_not_end_the_next_turn(
    ultimate_conversation: Conversation, ultimate_simulator: Simulator
) -> None:
    cid = ultimate_conversation.conversation_id
    await ultimate_simulator.push_message(cid, "By the way: 10% off today!")  # a turn of its own
    async with asyncio.timeout(WAIT):
        reply = await ultimate_conversation.ask("yes", settle=LONG)
    assert reply.text.splitlines() == [
        "By the way: 10% off today!",
        "Great! Anything else I can do for you?",
    ]


async def test_a_conversation_restarted_at_once_still_ends_its_turns(
    ultimate_session: Session, ultimate_receiver: WebhookReceiver, ultimate_simulator: Simulator
) -> None:
    """``endSession`` then ``startSession`` of one id: the old turn's clean-up keeps the new."""
    for _ in range(2):
        async with (
            Conversation(
                ultimate_session,
                ultimate_receiver,
                "restarted",
                until=ultimate_simulator.turn_complete,
            ) as conversation,
            asyncio.timeout(WAIT),
        ):
            welcome = await conversation.start(settle=LONG)
            assert len(welcome.messages) == 2


def test_turn_complete_is_false_for_nothing_and_for_unknown_conversations() -> None:
    sim = Simulator()
    assert not sim.turn_complete([])  # not even started
    assert not sim.turn_complete([BotMessage("c1", text="hi", message_id="m1")])


# -- one reader at a time --------------------------------------------------------------------------


async def test_two_concurrent_asks_raise_a_typed_error(ultimate_conversation: Conversation) -> None:
    first = asyncio.create_task(ultimate_conversation.ask("Where is my order?", timeout=WAIT))
    await asyncio.sleep(0)  # let it claim the conversation
    with pytest.raises(ConversationBusyError, match="already waiting") as caught:
        await ultimate_conversation.ask("hello")
    assert isinstance(caught.value, UltimateError) and isinstance(caught.value, RuntimeError)
    assert ultimate_async.ConversationBusyError is ConversationBusyError
    reply = await first  # the first call is unaffected
    assert len(reply.messages) == 2


# -- ReplyTimeout says what the receiver refused ---------------------------------------------------


async def test_reply_timeout_names_the_refusal_of_a_wrongly_signed_delivery(
    ultimate_session: Session,
) -> None:
    receiver = WebhookReceiver(HmacSignature("the-right-secret-0123"))
    async with (
        WebhookServer(receiver, host="127.0.0.1", port=0) as server,
        Simulator(webhook_url=server.url, verifier=HmacSignature("a-wrong-secret-4567")) as sim,
        Session(sim.api_key, sim.bot_id, base_url=sim.base_url) as session,
        Conversation(session, receiver) as conversation,
    ):
        with pytest.raises(ReplyTimeout) as caught:
            await conversation.ask("Where is my order?", timeout=1.0)
    message = str(caught.value)
    assert caught.value.refusals, message
    last = caught.value.refusals[-1]
    assert last.status == 401
    assert f"the last with 401: {last.reason}" in message
    count = len(caught.value.refusals)  # the turn's two messages, unless the box is very slow
    assert f"refused {count} deliver{'y' if count == 1 else 'ies'}" in message
    assert "a-wrong-secret" not in message and "the-right-secret" not in message


async def test_reply_timeout_without_refusals_says_nothing_of_them(
    plain: Conversation, ultimate_simulator: Simulator
) -> None:
    ultimate_simulator.webhook_url = "http://127.0.0.1:9/nowhere"
    with pytest.raises(ReplyTimeout) as caught:
        await plain.ask("Where is my order?", timeout=0.3)
    assert caught.value.refusals == ()
    assert "refused" not in str(caught.value)


# -- observing, not stealing -----------------------------------------------------------------------


@pytest.mark.parametrize("exclusive", [False, True])
async def test_a_conversation_observes_unless_exclusive(
    exclusive: bool,
    ultimate_session: Session,
    ultimate_receiver: WebhookReceiver,
    ultimate_simulator: Simulator,
) -> None:
    bridged: list[str | None] = []

    @ultimate_receiver.on_team_online()
    async def team(check: TeamOnlineCheck, ctx: EventContext) -> bool:
        return True

    @ultimate_receiver.on_widget_escalate()
    async def bridge(event: WidgetEscalate, ctx: EventContext) -> None:
        bridged.append(event.platform_conversation_id)

    async with Conversation(
        ultimate_session,
        ultimate_receiver,
        until=ultimate_simulator.turn_complete,
        exclusive=exclusive,
    ) as conversation:
        reply = await conversation.ask("Live chat", timeout=WAIT)
        await ultimate_receiver.drain()
    assert reply.escalated  # the conversation saw the hand-over either way
    assert bridged == ([] if exclusive else [conversation.conversation_id])
