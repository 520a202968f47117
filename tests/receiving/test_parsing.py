"""Every fixture parses into its model over real HTTP; every invalid body is a 400 with reasons."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ultimate_async.converter import parse_webhook, parse_webhook_body, webhook_body
from ultimate_async.errors import PayloadError
from ultimate_async.models.webhooks import (
    ActionCall,
    ActionParam,
    Alert,
    BotMessage,
    Button,
    CarouselCard,
    Escalate,
    TeamOnlineCheck,
    TicketAttachment,
    TicketIntent,
    TicketReply,
    UnknownChatEvent,
    UnknownWebhook,
    WidgetEndSession,
    WidgetEscalate,
    WidgetMessage,
)
from ultimate_async.testing import record_all
from ultimate_async.webhook import NoVerification, WebhookReceiver

# The fixture directory is located in conftest.py (``fixtures_dir``), which also parametrizes
# every test taking ``valid_name`` / ``invalid_name`` with the files found there.
PCID = "13427e90-f76a-47c2-a26d-ea0b4f1836c5"

EXPECTED: dict[str, Any] = {
    "action.json": ActionCall(
        name="updateCustomerBalance",
        platform_conversation_id=PCID,
        conversation_id="65f0aa11bb22cc33dd44ee55",
        params=[
            ActionParam(key="userId", value=["123345"], save_as="customerId"),
            ActionParam(key="balance", value=["100"]),
        ],
        bot_id="618a30beee4e8e87d2f94015",
    ),
    "alert.json": Alert(
        bot_name="Support bot",
        event="backendIntegrationFailed",
        platform_conversation_id=PCID,
        conversation_id="65f0aa11bb22cc33dd44ee55",
        data={
            "botId": "618a30beee4e8e87d2f94015",
            "conversationId": "65f0aa11bb22cc33dd44ee55",
            "conversationLink": "https://dashboard.ultimate.ai/conversations/65f0aa11bb22cc33dd44ee55",
            "httpStatus": 500,
            "endpointUrl": "https://backend.example.com/orders",
        },
    ),
    "chat_escalate.json": Escalate(platform_conversation_id=PCID, escalate_to="team_billing"),
    "chat_is_team_online.json": TeamOnlineCheck(team_id="team_billing"),
    "chat_send_message_buttons.json": BotMessage(
        platform_conversation_id=PCID,
        type="text",
        text="Did that answer your question?",
        buttons=[
            Button("button", "YES"),
            Button("button", "NO"),
            Button("link", "Open help center"),
        ],
        reply_id="610abc338851860016485d79",
        message_id="65a9f0c2e4b0a1b2c3d4e5f7",
        confidence=0.81,
    ),
    "chat_send_message_carousel.json": BotMessage(
        platform_conversation_id=PCID,
        type="carousel",
        text="",
        carousel_cards=[
            CarouselCard(
                title="Standard shipping",
                description="3-5 business days",
                image_url="https://example.com/img/standard.png",
                buttons=[Button("button", "Choose standard")],
            ),
            CarouselCard(
                title="Express shipping",
                description="Next day",
                image_url="https://example.com/img/express.png",
                buttons=[Button("button", "Choose express"), Button("link", "Prices")],
            ),
        ],
        reply_id="61e5439dce4387001311d6db",
        message_id="65a9f0c2e4b0a1b2c3d4e5f8",
        confidence=0.77,
    ),
    "chat_send_message_text.json": BotMessage(
        platform_conversation_id=PCID,
        text="Hello, this is a bot text message",
        reply_id="618a30be1c2ffe001ab1078f",
        message_id="65a9f0c2e4b0a1b2c3d4e5f6",
        confidence=0.93,
    ),
    "chat_send_message_text_minimal.json": BotMessage(
        platform_conversation_id="session1",
        text="Hello, this is a bot text message",
        reply_id="618a30be1c2ffe001ab1078f",
    ),
    "chat_unknown_event.json": UnknownChatEvent(
        event_type="typingIndicator",
        raw={"eventType": "typingIndicator", "platformConversationId": PCID, "isTyping": True},
        platform_conversation_id=PCID,
    ),
    "chat_widget_end_session.json": WidgetEndSession(platform_conversation_id=PCID),
    "chat_widget_escalate.json": WidgetEscalate(
        platform_conversation_id=PCID, escalate_to="team_billing"
    ),
    "chat_widget_message.json": WidgetMessage(
        platform_conversation_id=PCID,
        text="Hello, is anyone there?",
        conversation_id="65f0aa11bb22cc33dd44ee55",
    ),
    "ticket_reply.json": TicketReply(
        platform_conversation_id="f15ee8b6-cf3e-4eaf-bf27-507ded70519a",
        conversation_id="65f0aa11bb22cc33dd44ee56",
        text="We have updated your shipping address.",
        predicted_intents=[TicketIntent("5ee3593d2e4a8a47573252e8", "Update address", 0.92)],
        attachments=[TicketAttachment("attachments/label.pdf")],
        bot_id="618a30beee4e8e87d2f94015",
    ),
}


def test_every_fixture_has_an_expectation(fixtures_dir: Path) -> None:
    """Guards the parametrizations below: they must not silently collect nothing."""
    assert {p.name for p in fixtures_dir.glob("*.json")} == set(EXPECTED)
    assert len(list((fixtures_dir / "invalid").glob("*"))) >= 5


async def test_valid_fixture_is_accepted_and_parsed(
    valid_name: str, fixtures_dir: Path, serve: Any
) -> None:
    name = valid_name
    receiver = WebhookReceiver(NoVerification(), ack="after_handler")
    seen = record_all(receiver)
    client = await serve(receiver)
    body = (fixtures_dir / name).read_bytes()

    resp = await client.post("/webhook", data=body, headers={"Content-Type": "application/json"})

    assert resp.status == 200, await resp.text()
    assert len(seen) == 1
    event, ctx = seen[0]
    assert event == EXPECTED[name]
    assert ctx.raw == json.loads(body)
    assert ctx.bot_id == json.loads(body).get("botId")
    assert ctx.platform_conversation_id == EXPECTED[name].platform_conversation_id


async def test_invalid_fixture_is_refused_and_server_keeps_serving(
    invalid_name: str, fixtures_dir: Path, serve: Any
) -> None:
    receiver = WebhookReceiver(NoVerification())
    seen = record_all(receiver)
    client = await serve(receiver)

    resp = await client.post(
        "/webhook", data=(fixtures_dir / "invalid" / invalid_name).read_bytes()
    )

    assert resp.status == 400
    answer = await resp.json()
    assert answer["error"] == "invalid payload"
    assert answer["reasons"] and all(" @ $" in reason for reason in answer["reasons"])
    assert seen == []
    ok = await client.post("/webhook", data=(fixtures_dir / "chat_escalate.json").read_bytes())
    assert ok.status == 200


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("data_not_object.json", "expected an object or a list, got string @ $.data"),
        ("event_type_not_string.json", "expected a string, got number @ $.data.eventType"),
        ("send_message_buttons_not_list.json", "expected a list, got string @ $.data.buttons"),
        ("top_level_array.json", "expected a JSON object, got list @ $"),
    ],
)
def test_invalid_reasons_name_the_field(name: str, reason: str, fixtures_dir: Path) -> None:
    body = (fixtures_dir / "invalid" / name).read_bytes()
    with pytest.raises(PayloadError) as info:
        parse_webhook_body(body)
    assert info.value.errors == [reason]


def test_not_json_reason_gives_position_not_content() -> None:
    body = b'{"botId": "secret-looking-text", "data": {'
    with pytest.raises(PayloadError) as info:
        parse_webhook_body(body)
    assert info.value.errors[0].startswith("invalid JSON")
    assert "secret-looking-text" not in str(info.value)


def test_nested_errors_have_wire_paths_and_no_values() -> None:
    raw = {
        "data": {
            "eventType": "sendMessage",
            "carouselCards": [{"title": "ok"}, {"title": "t", "buttons": [{"text": 12345}]}],
            "confidence": "very",
        }
    }
    with pytest.raises(PayloadError) as info:
        parse_webhook(raw)
    assert sorted(info.value.errors) == [
        "expected a number, got string @ $.data.confidence",
        "expected a string, got number @ $.data.carouselCards[1].buttons[0].text",
    ]
    assert "12345" not in str(info.value) and "very" not in str(info.value)


def test_null_fields_read_as_defaults_and_unknown_keys_are_ignored() -> None:
    raw = {
        "botId": None,
        "data": {
            "eventType": "sendMessage",
            "platformConversationId": "c1",
            "text": None,
            "buttons": None,
            "carouselCards": [{"title": "t", "buttons": None, "futureField": 1}],
            "messageId": None,
            "brandNew": {"x": 1},
        },
    }
    event = parse_webhook(raw)
    assert event == BotMessage(
        platform_conversation_id="c1", text="", carousel_cards=[CarouselCard(title="t")]
    )


def test_action_shapes() -> None:
    assert parse_webhook({"name": "noParams"}) == ActionCall(name="noParams")
    assert parse_webhook({"name": "nullParams", "data": None}) == ActionCall(name="nullParams")
    event = parse_webhook(
        {
            "name": "scalar",
            "data": [
                {"key": "a", "value": "one"},
                {"key": "b", "value": 7},
                {"key": "c", "value": None},
                {"key": "d", "value": ["x", "y"], "saveAs": "dd", "sanitize": True},
            ],
        }
    )
    assert isinstance(event, ActionCall)
    assert [p.value for p in event.params] == [["one"], ["7"], [], ["x", "y"]]
    assert event.param("d") == ActionParam("d", ["x", "y"], "dd", True)
    assert "'x'" not in repr(event)  # sanitize=True values are masked


def test_discrimination_of_flat_shapes() -> None:
    assert isinstance(parse_webhook({"botName": "b", "event": "test"}), Alert)
    assert isinstance(parse_webhook({"predictedIntents": []}), TicketReply)
    assert isinstance(parse_webhook({"text": "t", "conversationId": "c"}), TicketReply)
    assert parse_webhook({"hello": "world"}) == UnknownWebhook({"hello": "world"})
    assert parse_webhook({"data": {"no": "eventType"}}) == UnknownWebhook(
        {"data": {"no": "eventType"}}
    )
    with pytest.raises(PayloadError):
        parse_webhook({"data": 42})
    with pytest.raises(PayloadError):
        parse_webhook({"botName": "b", "event": "e", "data": ["not", "an", "object"]})


def test_webhook_body_round_trips(valid_name: str, fixtures_dir: Path) -> None:
    raw, event = parse_webhook_body((fixtures_dir / valid_name).read_bytes())
    bot_id = raw.get("botId")
    assert parse_webhook(webhook_body(event, bot_id=bot_id)) == event
