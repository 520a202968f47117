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
    PredictedIntent,
    TeamOnlineCheck,
    TicketAttachment,
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
PCID = "5b1e9a2c-7d40-4e8b-a6f3-2c9d81e0b7a4"
BOT_ID = "64b7f0c1a2d3e4f5a6b7c8d9"
CONVERSATION_ID = "6570c3d2e1f0a9b8c7d6e5f4"

EXPECTED: dict[str, Any] = {
    "action.json": ActionCall(
        name="lookUpOrder",
        platform_conversation_id=PCID,
        conversation_id=CONVERSATION_ID,
        params=[
            ActionParam(key="orderNumber", value=["A-1042"], save_as="orderStatus"),
            ActionParam(key="email", value=["reader@example.org"], sanitize=True),
        ],
        bot_id=BOT_ID,
    ),
    "alert.json": Alert(
        bot_name="Bookshop helper",
        event="actionFailed",
        platform_conversation_id=PCID,
        conversation_id=CONVERSATION_ID,
        data={
            "botId": BOT_ID,
            "conversationId": CONVERSATION_ID,
            "conversationLink": f"https://dashboard.ultimate.ai/conversations/{CONVERSATION_ID}",
            "httpStatus": 502,
            "endpointUrl": "https://orders.example.org/api/lookup",
        },
    ),
    "chat_escalate.json": Escalate(platform_conversation_id=PCID, escalate_to="returns_desk"),
    "chat_is_team_online.json": TeamOnlineCheck(team_id="returns_desk"),
    "chat_send_message_buttons.json": BotMessage(
        platform_conversation_id=PCID,
        type="text",
        text="Would you like to track it?",
        buttons=[
            Button("button", "Track parcel"),
            Button("button", "Talk to a person"),
            Button("link", "Shipping policy"),
        ],
        reply_id="6571b0a1c2d3e4f5a6b7c803",
        message_id="6571b0a1c2d3e4f5a6b7c902",
        confidence=0.64,
    ),
    "chat_send_message_carousel.json": BotMessage(
        platform_conversation_id=PCID,
        type="carousel",
        text="",
        carousel_cards=[
            CarouselCard(
                title="Paperback",
                description="Ships in 2 days",
                image_url="https://books.example.org/covers/paperback.png",
                buttons=[Button("button", "Pick paperback")],
            ),
            CarouselCard(
                title="Hardcover",
                description="Ships in 5 days",
                image_url="https://books.example.org/covers/hardcover.png",
                buttons=[Button("button", "Pick hardcover"), Button("link", "Compare editions")],
            ),
        ],
        reply_id="6571b0a1c2d3e4f5a6b7c804",
        message_id="6571b0a1c2d3e4f5a6b7c903",
        confidence=0.71,
    ),
    "chat_send_message_text.json": BotMessage(
        platform_conversation_id=PCID,
        text="Your parcel left our warehouse this morning.",
        reply_id="6571b0a1c2d3e4f5a6b7c801",
        message_id="6571b0a1c2d3e4f5a6b7c901",
        confidence=0.87,
    ),
    "chat_send_message_text_minimal.json": BotMessage(
        platform_conversation_id="visitor-7",
        text="Welcome back! How can I help?",
        reply_id="6571b0a1c2d3e4f5a6b7c802",
    ),
    "chat_unknown_event.json": UnknownChatEvent(
        event_type="conversationRated",
        raw={"eventType": "conversationRated", "platformConversationId": PCID, "rating": 4},
        platform_conversation_id=PCID,
    ),
    "chat_widget_end_session.json": WidgetEndSession(platform_conversation_id=PCID),
    "chat_widget_escalate.json": WidgetEscalate(
        platform_conversation_id=PCID, escalate_to="returns_desk"
    ),
    "chat_widget_message.json": WidgetMessage(
        platform_conversation_id=PCID,
        text="Is someone from the returns desk there?",
        conversation_id=CONVERSATION_ID,
    ),
    "ticket_reply.json": TicketReply(
        platform_conversation_id="ticket-2024-0815",
        conversation_id="6570c3d2e1f0a9b8c7d6e5f5",
        text="Thanks for writing in: your refund was issued today.",
        predicted_intents=[PredictedIntent("6571aa00bb11cc22dd33ee44", "Refund status", 0.88)],
        attachments=[TicketAttachment("attachments/refund-receipt.pdf")],
        bot_id=BOT_ID,
    ),
    "unknown_webhook.json": UnknownWebhook(
        {
            "botId": BOT_ID,
            "platformConversationId": PCID,
            "surveyId": "csat-2024-q3",
            "score": 9,
        }
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
