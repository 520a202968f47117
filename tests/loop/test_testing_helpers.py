"""``ultimate_async.testing``: the builders make deliveries a real receiver accepts and parses."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from ultimate_async.errors import HandlerConflictError
from ultimate_async.models.outbound import ActionResult
from ultimate_async.models.webhooks import (
    ActionCall,
    BotMessage,
    Escalate,
    TeamOnlineCheck,
    TicketReply,
    UnknownChatEvent,
    Webhook,
    WidgetEndSession,
    WidgetEscalate,
    WidgetMessage,
)
from ultimate_async.testing import (
    deliver,
    make_action_call,
    make_bot_message,
    make_delivery,
    make_escalate,
    make_team_online_check,
    make_ticket_reply,
    make_widget_end_session,
    make_widget_escalate,
    make_widget_message,
    observe_all,
    record_all,
)
from ultimate_async.webhook import (
    EventContext,
    HmacSignature,
    NoVerification,
    SharedSecretHeader,
    UrlToken,
    Verifier,
    WebhookReceiver,
)

VERIFIERS = {
    "shared": SharedSecretHeader("shared-0123456789"),
    "hmac": HmacSignature("hmac-0123456789"),
    "url": UrlToken("token0123456789"),
    "none": NoVerification(),
}


@pytest.fixture(params=sorted(VERIFIERS))
def verifier(request: pytest.FixtureRequest) -> Verifier:
    return VERIFIERS[request.param]


async def test_every_builder_is_accepted_and_parsed(verifier: Verifier) -> None:
    receiver = WebhookReceiver(verifier, ack="after_handler")
    seen: list[Webhook] = []

    async def record(event: Any, ctx: EventContext) -> None:
        seen.append(event)

    receiver.register("c1", record)
    for on in (
        receiver.on_message,
        receiver.on_widget_escalate,
        receiver.on_widget_message,
        receiver.on_widget_end_session,
        receiver.on_ticket_reply,
    ):
        on(conversation_id="c1")(record)

    @receiver.on_team_online()
    async def online(event: TeamOnlineCheck, ctx: EventContext) -> bool:
        return event.team_id == "support"

    @receiver.on_action("lookup")
    async def lookup(call: ActionCall, ctx: EventContext) -> list[ActionResult]:
        param = call.param("userId")
        return [ActionResult("found", param.value[0] if param else "?")]

    payloads = [
        make_bot_message(
            "c1",
            "pick one",
            buttons=["A", {"type": "link", "text": "Docs"}],
            confidence=0.5,
        ),
        make_bot_message(
            "c1", carousel_cards=[{"title": "Card", "buttons": ["Go"]}], reply_id="r1"
        ),
        make_widget_escalate("c1", escalate_to="support"),
        make_widget_message("c1", "hello agent"),
        make_widget_end_session("c1"),
        make_ticket_reply("c1", "done", intents=[("Refund", 0.8)], attachments=["a.pdf"]),
    ]
    for payload in payloads:
        response = await deliver(receiver, payload, verifier)
        assert response.status == 200, response.body

    online_answer = await deliver(receiver, make_team_online_check(team_id="support"), verifier)
    assert json.loads(online_answer.body) == {"isOnline": True}
    action = make_action_call("c1", "lookup", {"userId": "u-9"}, save_as={"userId": "cust"})
    answer = await deliver(receiver, action, verifier)
    assert json.loads(answer.body) == {"results": [{"key": "found", "value": "u-9"}]}
    escalation = await deliver(receiver, make_escalate("c1", escalate_to="t"), verifier)
    assert escalation.status == 200
    await receiver.drain()

    text, carousel, w_escalate, w_message, w_end, ticket = seen[:6]
    assert isinstance(text, BotMessage) and text.text == "pick one"
    assert [(b.type, b.text) for b in text.buttons] == [("button", "A"), ("link", "Docs")]
    assert text.confidence == 0.5 and text.message_id
    assert isinstance(carousel, BotMessage) and carousel.type == "carousel"
    assert carousel.carousel_cards[0].title == "Card" and carousel.reply_id == "r1"
    assert carousel.carousel_cards[0].buttons[0].text == "Go"
    assert isinstance(w_escalate, WidgetEscalate) and w_escalate.escalate_to == "support"
    assert isinstance(w_message, WidgetMessage) and w_message.text == "hello agent"
    assert isinstance(w_end, WidgetEndSession)
    assert isinstance(ticket, TicketReply) and ticket.text == "done"
    assert ticket.predicted_intents[0].name == "Refund"
    assert ticket.attachments[0].path == "a.pdf"
    # The register()ed observer also saw the requests of its conversation.
    observed = seen[6:]
    assert any(isinstance(e, ActionCall) and e.params[0].save_as == "cust" for e in observed)
    assert any(isinstance(e, Escalate) and e.escalate_to == "t" for e in observed)
    await receiver.aclose()


async def test_two_builds_are_not_duplicates() -> None:
    verifier = HmacSignature("s-0123456789")
    receiver = WebhookReceiver(verifier, ack="after_handler")
    count = 0

    @receiver.on_message()
    async def seen(message: BotMessage, ctx: EventContext) -> None:
        nonlocal count
        count += 1

    same = make_bot_message("c", "x")
    for payload in (make_bot_message("c", "x"), make_bot_message("c", "x"), same, same):
        assert (await deliver(receiver, payload, verifier)).status == 200
    assert count == 3  # the repeated build is a duplicate; fresh builds are not
    await receiver.aclose()


async def test_a_delivery_signed_for_another_secret_is_refused() -> None:
    receiver = WebhookReceiver(HmacSignature("right-0123456789"))
    body, headers = make_delivery(make_bot_message("c", "x"), HmacSignature("wrong-0123456789"))
    assert (await receiver.handle(body, headers)).status == 401
    assert (await deliver(receiver, b'{"botId": "b"}', SharedSecretHeader("nope"))).status == 401
    await receiver.aclose()


async def test_record_all_sees_every_kind_and_answers_neutrally() -> None:
    verifier = HmacSignature("rec-0123456789")
    receiver = WebhookReceiver(verifier, ack="after_handler")
    seen = record_all(receiver)
    unknown = {"botId": "b", "channel": "chat", "data": {"eventType": "brandNew"}}
    notifications = [
        make_bot_message("c1", "hi"),
        make_widget_escalate("c1"),
        make_widget_message("c1", "to the agent"),
        make_widget_end_session("c1"),
        make_ticket_reply("c1", "done"),
        unknown,
    ]
    for payload in notifications:
        assert (await deliver(receiver, payload, verifier)).status == 200
    online = await deliver(receiver, make_team_online_check("c1"), verifier)
    assert json.loads(online.body) == {"isOnline": True}
    action = await deliver(receiver, make_action_call("c1", "lookup", {"k": "v"}), verifier)
    assert json.loads(action.body) == {"results": []}
    assert (await deliver(receiver, make_escalate("c1"), verifier)).status == 200

    kinds = [type(event) for event, _ in seen]
    assert kinds == [
        BotMessage,
        WidgetEscalate,
        WidgetMessage,
        WidgetEndSession,
        TicketReply,
        UnknownChatEvent,
        TeamOnlineCheck,
        ActionCall,
        Escalate,
    ]
    assert all(isinstance(ctx, EventContext) for _, ctx in seen)
    await receiver.aclose()


async def test_observe_all_answers_team_online_as_told_and_refuses_a_second_catch_all() -> None:
    receiver = WebhookReceiver(NoVerification(), ack="after_handler")
    count: list[str] = []
    observe_all(receiver, lambda event, ctx: count.append(type(event).__name__), team_online=False)
    answer = await receiver.handle(json.dumps(make_team_online_check("c1")).encode(), {})
    assert json.loads(answer.body) == {"isOnline": False}
    assert count == ["TeamOnlineCheck"]
    with pytest.raises(HandlerConflictError):
        record_all(receiver)
    await receiver.aclose()


def test_make_delivery_headers() -> None:
    body, headers = make_delivery({"a": 1}, SharedSecretHeader("s3cret-value"))
    assert json.loads(body) == {"a": 1}
    assert headers == {"Content-Type": "application/json", "Authorization": "s3cret-value"}
    _, signed = make_delivery(b"raw", HmacSignature("k"))
    assert signed["X-Ultimate-Signature"].startswith("sha256=")


def test_the_plugin_module_imports_nothing_heavy() -> None:
    """pytest imports the plugin in every run of every project: it must add nothing heavy.

    (What ``import ultimate_async`` itself loads is the package's business, measured apart.)
    The one bot id it shares with the simulator comes from a module of constants, through the
    simulator package's lazy ``__init__``; nothing else.
    """
    light = (
        "ultimate_async.testing",
        "ultimate_async.simulator",
        "ultimate_async.simulator.defaults",
    )
    code = (
        "import sys, ultimate_async; before = set(sys.modules); "
        "import ultimate_async.testing; "
        "added = sorted(m for m in set(sys.modules) - before "
        "if m.startswith(('aiohttp', 'ultimate_async.', 'multidict', 'yarl', 'attr')) "
        f"and m not in {light!r}); print(added)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "[]"


def test_observe_all_covers_every_kind_the_router_knows() -> None:
    """Derived from ``router.KIND_OF``: every kind has its catch-all afterwards."""
    from ultimate_async.webhook.router import KIND_OF

    receiver = WebhookReceiver(NoVerification())
    observe_all(receiver, lambda event, ctx: None)

    async def another(event: object, ctx: EventContext) -> None:
        return None

    for kind in set(KIND_OF.values()):
        with pytest.raises(HandlerConflictError):
            getattr(receiver, f"on_{kind}")()(another)
