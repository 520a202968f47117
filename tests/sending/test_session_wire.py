"""What goes on the wire for every Session call: URL, headers and the exact JSON body."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from yarl import URL

from ultimate_async.models.outbound import MetaData
from ultimate_async.session import Session

API_KEY = "sk-test-SECRET-0123456789"
BOT_ID = "5f0c0ffee0ddba11c0ffee00"
BASE = "https://api.test"
CHAT = f"{BASE}/converse/chat"
TICKET = f"{BASE}/converse/ticket"
WIDGET = f"{BASE}/agent/converse/send-message-to-widget"


def sent(mock_api: Any, url: str) -> list[tuple[dict[str, str], Any]]:
    """(headers, decoded JSON body) of every request aioresponses saw for ``url``."""
    calls = mock_api.requests.get(("POST", URL(url)), [])
    return [(dict(c.kwargs["headers"]), json.loads(c.kwargs["data"])) for c in calls]


async def call_once(
    mock_api: Any, url: str, call: Callable[[Session], Awaitable[None]]
) -> tuple[dict[str, str], Any]:
    mock_api.post(url, status=200)
    async with Session(API_KEY, BOT_ID, base_url=BASE) as session:
        await call(session)
    [(headers, body)] = sent(mock_api, url)
    return headers, body


async def test_headers_are_raw_key_botid_and_json(mock_api: Any) -> None:
    headers, _ = await call_once(mock_api, CHAT, lambda s: s.chat.end_session("c1"))
    assert headers["Authorization"] == API_KEY  # raw, no "Bearer"/"Basic"
    assert headers["botid"] == BOT_ID
    assert headers["Content-Type"] == "application/json"


CHAT_CASES: list[tuple[str, Callable[[Session], Awaitable[None]], dict[str, Any]]] = [
    (
        "start_session",
        lambda s: s.chat.start_session("c1"),
        {"platformConversationId": "c1", "eventType": "startSession"},
    ),
    (
        "start_session+metadata",
        lambda s: s.chat.start_session("c1", metadata={"lang": "en", "tier": "gold"}),
        {
            "platformConversationId": "c1",
            "eventType": "startSession",
            "metaData": [{"key": "lang", "value": "en"}, {"key": "tier", "value": "gold"}],
        },
    ),
    (
        "send_message",
        lambda s: s.chat.send_message("c1", "Hello there"),
        {"platformConversationId": "c1", "eventType": "message", "text": "Hello there"},
    ),
    (
        "send_message+card_index+metadata",
        lambda s: s.chat.send_message(
            "c1",
            "secondCardButton",
            card_index=1,
            metadata=[MetaData("userId", "54321", sanitize=True), MetaData("plan", "pro")],
        ),
        {
            "platformConversationId": "c1",
            "eventType": "message",
            "text": "secondCardButton",
            "cardIndex": 1,
            "metaData": [
                {"key": "userId", "value": "54321", "sanitize": True},
                {"key": "plan", "value": "pro"},
            ],
        },
    ),
    (
        "send_message card_index 0",
        lambda s: s.chat.send_message("c1", "first", card_index=0),
        {"platformConversationId": "c1", "eventType": "message", "text": "first", "cardIndex": 0},
    ),
    (
        "send_metadata",
        lambda s: s.chat.send_metadata("c1", {"email": "a@b.c"}),
        {
            "platformConversationId": "c1",
            "eventType": "metadata",
            "metaData": [{"key": "email", "value": "a@b.c"}],
        },
    ),
    (
        "end_session",
        lambda s: s.chat.end_session("c1"),
        {"platformConversationId": "c1", "eventType": "endSession"},
    ),
]


@pytest.mark.parametrize(("name", "call", "expected"), CHAT_CASES, ids=[c[0] for c in CHAT_CASES])
async def test_chat_bodies(
    mock_api: Any, name: str, call: Callable[[Session], Awaitable[None]], expected: Any
) -> None:
    headers, body = await call_once(mock_api, CHAT, call)
    assert body == expected  # exact: no nulls, no extra keys, camelCase names
    assert headers["botid"] == BOT_ID


async def test_ticket_body(mock_api: Any) -> None:
    _, body = await call_once(
        mock_api,
        TICKET,
        lambda s: s.tickets.send(
            "t-1", "I need to update my address", metadata=[MetaData("order_id", "A1", True)]
        ),
    )
    assert body == {
        "platformConversationId": "t-1",
        "text": "I need to update my address",
        "platform": "PUBLIC_API",
        "metaData": [{"key": "order_id", "value": "A1", "sanitize": True}],
    }


async def test_ticket_body_custom_platform_without_metadata(mock_api: Any) -> None:
    _, body = await call_once(
        mock_api, TICKET, lambda s: s.tickets.send("t-2", "hi", platform="OTHER")
    )
    assert body == {"platformConversationId": "t-2", "text": "hi", "platform": "OTHER"}


WIDGET_CASES: list[tuple[str, Callable[[Session], Awaitable[None]], dict[str, Any]]] = [
    (
        "queue_update",
        lambda s: s.widget.queue_update("w1", queue_position="3", waiting_time="5"),
        {
            "platformConversationId": "w1",
            "eventType": "escalationQueueUpdate",
            "queuePosition": "3",
            "waitingTime": "5",
        },
    ),
    (
        "queue_update ints become strings",
        lambda s: s.widget.queue_update("w1", queue_position=2),
        {
            "platformConversationId": "w1",
            "eventType": "escalationQueueUpdate",
            "queuePosition": "2",
        },
    ),
    (
        "queue_update bare",
        lambda s: s.widget.queue_update("w1"),
        {"platformConversationId": "w1", "eventType": "escalationQueueUpdate"},
    ),
    (
        "escalation_success",
        lambda s: s.widget.escalation_success(
            "w1", agent="John Smith", agent_avatar="https://example.com/j.png"
        ),
        {
            "platformConversationId": "w1",
            "eventType": "escalationSuccess",
            "agent": "John Smith",
            "agentAvatar": "https://example.com/j.png",
        },
    ),
    (
        "escalation_success bare",
        lambda s: s.widget.escalation_success("w1"),
        {"platformConversationId": "w1", "eventType": "escalationSuccess"},
    ),
    (
        "agent_message",
        lambda s: s.widget.agent_message("w1", "How can I help?"),
        {"platformConversationId": "w1", "eventType": "message", "text": "How can I help?"},
    ),
    (
        "escalation_failed",
        lambda s: s.widget.escalation_failed("w1"),
        {"platformConversationId": "w1", "eventType": "escalationFailed"},
    ),
    (
        "agent_disconnect",
        lambda s: s.widget.agent_disconnect("w1"),
        {"platformConversationId": "w1", "eventType": "agentDisconnect"},
    ),
]


@pytest.mark.parametrize(
    ("name", "call", "expected"), WIDGET_CASES, ids=[c[0] for c in WIDGET_CASES]
)
async def test_widget_bodies(
    mock_api: Any, name: str, call: Callable[[Session], Awaitable[None]], expected: Any
) -> None:
    headers, body = await call_once(mock_api, WIDGET, call)
    assert body == expected
    assert headers["Authorization"] == API_KEY


async def test_base_url_path_prefix_is_kept(mock_api: Any) -> None:
    base = "https://acme.zendesk.com/ai-agents/api/"
    mock_api.post(f"{base}converse/chat", status=200)
    async with Session(API_KEY, BOT_ID, base_url=base) as session:
        await session.chat.end_session("c1")
    assert sent(mock_api, f"{base}converse/chat")


@pytest.mark.parametrize(
    ("preset", "host"), [("eu", "https://api.ultimate.ai"), ("US", "https://api.us.ultimate.ai")]
)
async def test_region_presets(mock_api: Any, preset: str, host: str) -> None:
    mock_api.post(f"{host}/converse/chat", status=200)
    async with Session(API_KEY, BOT_ID, base_url=preset) as session:
        assert session.base_url == host
        await session.chat.end_session("c1")
    assert sent(mock_api, f"{host}/converse/chat")
    assert Session.EU == "https://api.ultimate.ai"
    assert Session.US == "https://api.us.ultimate.ai"


async def test_metadata_key_spelling_switch(mock_api: Any) -> None:
    mock_api.post(TICKET, status=200)
    async with Session(API_KEY, BOT_ID, base_url=BASE, metadata_key="metadata") as session:
        await session.tickets.send("t", "x", metadata={"k": "v"})
    [(_, body)] = sent(mock_api, TICKET)
    assert body["metadata"] == [{"key": "k", "value": "v"}]
    assert "metaData" not in body


async def test_non_ascii_text_round_trips(mock_api: Any) -> None:
    _, body = await call_once(
        mock_api, CHAT, lambda s: s.chat.send_message("c1", 'Grüße 👋 "quoted"\n')
    )
    assert body["text"] == 'Grüße 👋 "quoted"\n'


async def test_real_server_receives_the_same_bytes(platform: Any) -> None:
    """Against a real HTTP server: path, headers and body as the platform would see them."""
    async with Session(API_KEY, BOT_ID, base_url=platform.url + "/prefix") as session:
        await session.chat.send_message("c9", "hi", card_index=2, metadata={"a": "b"})
        await session.widget.agent_message("c9", "agent here")
    chat, widget = platform.requests
    assert chat.path == "/prefix/converse/chat"
    assert chat.headers["Authorization"] == API_KEY
    assert chat.headers["botid"] == BOT_ID
    assert chat.headers["Content-Type"] == "application/json"
    assert chat.json() == {
        "platformConversationId": "c9",
        "eventType": "message",
        "text": "hi",
        "cardIndex": 2,
        "metaData": [{"key": "a", "value": "b"}],
    }
    assert widget.path == "/prefix/agent/converse/send-message-to-widget"
    assert widget.json() == {
        "platformConversationId": "c9",
        "eventType": "message",
        "text": "agent here",
    }
