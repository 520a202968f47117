"""The simulated platform's endpoints answer with the platform's status codes and reasons."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ultimate_async.simulator.server import WIDGET_FLOW

CHAT = "/converse/chat"
TICKET = "/converse/ticket"
WIDGET = "/agent/converse/send-message-to-widget"


async def test_chat_accepts_a_valid_event_with_an_empty_200(client: Any) -> None:
    status, text = await client.post(
        CHAT, {"platformConversationId": "c1", "eventType": "startSession"}
    )
    assert (status, text) == (200, "")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "wrong"},
        {"Authorization": "Bearer sim-key"},
        {"Authorization": "SIM-KEY"},
    ],
    ids=["missing", "wrong", "bearer-prefix", "case-differs"],
)
async def test_chat_refuses_a_missing_or_wrong_key_with_401(client: Any, headers: Any) -> None:
    status, text = await client.post(
        CHAT,
        {"platformConversationId": "c1", "eventType": "startSession"},
        {"botid": client.sim.bot_id, **headers},
    )
    assert status == 401
    assert "API key" in text
    assert "sim-key" not in text


async def test_unknown_bot_id_is_404_and_the_header_name_is_case_insensitive(client: Any) -> None:
    body = {"platformConversationId": "c1", "eventType": "startSession"}
    status, text = await client.post(CHAT, body, {"Authorization": "sim-key", "botid": "0" * 24})
    assert status == 404 and "bot" in text
    status, _ = await client.post(CHAT, body, {"Authorization": "sim-key"})
    assert status == 404
    status, _ = await client.post(
        CHAT, body, {"Authorization": "sim-key", "BotId": client.sim.bot_id}
    )
    assert status == 200


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"eventType": "startSession"}', "platformConversationId"),
        (b'{"platformConversationId": "", "eventType": "startSession"}', "platformConversationId"),
        (b'{"platformConversationId": "c", "eventType": "typing"}', "eventType"),
        (b'{"platformConversationId": "c"}', "eventType"),
        (b'{"platformConversationId": "c", "eventType": "message"}', "text"),
        (b'{"platformConversationId": "c", "eventType": "message", "text": 5}', "text"),
        (b'{"platformConversationId": "c", "eventType": "metadata"}', "metaData"),
        (
            b'{"platformConversationId": "c", "eventType": "message", "text": "x",'
            b' "cardIndex": -1}',
            "cardIndex",
        ),
        (
            b'{"platformConversationId": "c", "eventType": "message", "text": "x",'
            b' "cardIndex": true}',
            "cardIndex",
        ),
        (
            b'{"platformConversationId": "c", "eventType": "startSession", "metaData": {"a": "b"}}',
            "metaData",
        ),
        (
            b'{"platformConversationId": "c", "eventType": "startSession",'
            b' "metaData": [{"key": "a", "value": 1}]}',
            "metaData[0]",
        ),
    ],
)
async def test_chat_refuses_invalid_bodies_with_400_and_a_reason(
    client: Any, recorder: Any, body: bytes, reason: str
) -> None:
    status, text = await client.post(CHAT, None, raw=body)
    assert status == 400
    assert reason in text
    await client.sim.wait_idle(timeout=5)
    assert recorder.deliveries == []


async def test_ticket_requires_platform_public_api(client: Any) -> None:
    ok = {"platformConversationId": "t1", "text": "hello", "platform": "PUBLIC_API"}
    assert (await client.post(TICKET, ok))[0] == 200
    for platform in (None, "ZENDESK", ""):
        body = {**ok}
        if platform is None:
            del body["platform"]
        else:
            body["platform"] = platform
        status, text = await client.post(TICKET, body)
        assert status == 400 and "PUBLIC_API" in text
    status, text = await client.post(TICKET, {"text": "x", "platform": "PUBLIC_API"})
    assert status == 400 and "platformConversationId" in text


async def test_ticket_and_widget_need_the_api_key_and_bot(client: Any) -> None:
    for path in (TICKET, WIDGET):
        status, _ = await client.post(path, {}, {"botid": client.sim.bot_id})
        assert status == 401
        status, _ = await client.post(path, {}, {"Authorization": client.sim.api_key, "botid": "x"})
        assert status == 404


async def test_widget_flow_is_one_state_machine(client: Any) -> None:
    """Each agent-side event is valid in the modes of ``WIDGET_FLOW`` only, else a 400."""
    sim = client.sim
    status, text = await client.widget("w1", "hello")
    assert status == 400 and "eventType" in text

    async def refused(event: str, why: str) -> None:
        status, text = await client.widget("w1", event, text="Hi, I am Sam")
        assert status == 400 and text.startswith(event) and why in text, text

    for event in WIDGET_FLOW:  # a conversation that does not exist, then one that never escalated
        await refused(event, "'w1' is not a live chat")
    await client.say("w1", "track my order")
    for event in WIDGET_FLOW:
        await refused(event, "in mode 'bot'")
    assert sim.transcript("w1")[-1].sender == "bot"  # refused events leave no trace

    await client.say("w1", "live chat")
    assert sim.mode("w1") == "escalating"
    await refused("message", "only allowed after escalationSuccess")
    await refused("agentDisconnect", "only allowed after escalationSuccess")
    assert (await client.widget("w1", "escalationQueueUpdate", queuePosition="2"))[0] == 200
    assert sim.mode("w1") == "escalating"
    assert (await client.widget("w1", "escalationSuccess", agent="Sam"))[0] == 200
    assert sim.mode("w1") == "agent"
    for event in ("escalationQueueUpdate", "escalationSuccess", "escalationFailed"):
        await refused(event, "before escalationSuccess; 'w1' is in mode 'agent'")
    status, text = await client.widget("w1", "message")
    assert status == 400 and "text" in text
    assert (await client.widget("w1", "message", text="Hi, I am Sam"))[0] == 200
    assert (await client.widget("w1", "agentDisconnect"))[0] == 200
    assert sim.mode("w1") == "bot"
    await refused("message", "in mode 'bot'")
    await client.chat("w1", "endSession")
    await refused("agentDisconnect", "not a live chat")


async def test_unknown_paths_and_methods_are_refused_and_recorded(client: Any, http: Any) -> None:
    async with http.post(client.sim.url("/nope"), json={}) as resp:
        assert resp.status == 404
    async with http.get(client.sim.url(CHAT)) as resp:
        assert resp.status == 405
    assert [r.status for r in client.sim.received] == [404, 405]


async def test_received_records_every_request_with_the_key_redacted(client: Any) -> None:
    await client.post(CHAT, {"platformConversationId": "c9", "eventType": "startSession"})
    await client.post(CHAT, None, raw=b"garbage")
    await client.post(CHAT, {"platformConversationId": "c9"}, {"Authorization": "wrong-key"})
    first, second, third = client.sim.received
    assert (first.method, first.path, first.status) == ("POST", CHAT, 200)
    assert first.json == {"platformConversationId": "c9", "eventType": "startSession"}
    assert first.headers["Authorization"] == "<redacted>"
    assert first.headers["botid"] == client.sim.bot_id
    assert first.reason is None
    assert (second.status, second.json, second.reason) == (400, None, "body is not valid JSON")
    assert third.status == 401
    assert "wrong-key" not in repr(third)
    assert client.sim.stats.api_requests == 3


async def test_legacy_automation_answers_synchronously(client: Any) -> None:
    sim = client.sim
    headers = {"Authorization": f"Basic {sim.legacy_token}"}
    body = {
        "botId": sim.bot_id,
        "conversationId": "l1",
        "eventType": "message",
        "text": "Where is my order?",
    }
    status, text = await client.post("/api/v2/automation", body, headers)
    assert status == 200
    answer = json.loads(text)
    assert "shipped" in answer["messages"][0]["text"]
    assert answer["messages"][1]["buttons"] == [{"text": "Yes"}, {"text": "No"}]
    assert answer["messages"][0]["forwardToHuman"] is False
    assert answer["predictedIntents"][0]["name"] == "Order status"
    assert answer["languages"] == [{"value": "eng", "confidence": 0.9}]

    welcome = json.loads(
        (await client.post("/api/v2/automation", {**body, "eventType": "startSession"}, headers))[1]
    )
    link = [b for m in welcome["messages"] for b in m["buttons"] if "link" in b]
    assert link == [{"text": "Help center", "link": "https://example.com/help"}]

    human = json.loads(
        (await client.post("/api/v2/automation", {**body, "text": "talk to a human"}, headers))[1]
    )
    assert human["messages"][-1]["forwardToHuman"] is True


async def test_legacy_automation_status_codes(client: Any) -> None:
    sim = client.sim
    good = {"Authorization": f"Basic {sim.legacy_token}"}
    body = {"botId": sim.bot_id, "conversationId": "l1", "eventType": "startSession"}
    assert (await client.post("/api/v2/automation", body, {"Authorization": "Basic bm9wZQ=="}))[
        0
    ] == 401
    assert (await client.post("/api/v2/automation", body, {"Authorization": sim.api_key}))[0] == 401
    assert (await client.post("/api/v2/automation", {**body, "botId": "x"}, good))[0] == 404
    status, text = await client.post("/api/v2/automation", {**body, "eventType": "message"}, good)
    assert status == 400 and "text" in text
    status, text = await client.post("/api/v2/automation", {**body, "eventType": "metadata"}, good)
    assert status == 400 and "eventType" in text


async def test_legacy_intents_accepts_the_access_token(client: Any) -> None:
    sim = client.sim
    body = {"botId": sim.bot_id, "message": "Track my order, mail me at jane@example.com"}
    status, text = await client.post("/api/intents", body, {"Authorization": sim.access_token})
    assert status == 200
    answer = json.loads(text)
    assert answer["intents"][0]["name"] == "Order status"
    (entity,) = answer["entities"]
    assert entity["name"] == "email" and entity["form"] == "jane@example.com"
    assert body["message"][entity["index"] :].startswith("jane@")
    assert (await client.post("/api/intents", body, {"Authorization": "nope"}))[0] == 401
    assert (
        await client.post(
            "/api/intents", {"botId": sim.bot_id}, {"Authorization": sim.access_token}
        )
    )[0] == 400


async def test_legacy_gdpr_delete_forgets_conversations(client: Any) -> None:
    sim = client.sim
    await client.start("g1")
    assert sim.transcript("g1") and sim.mode("g1") == "bot"
    headers = {"Authorization": f"Basic {sim.legacy_token}"}
    status, text = await client.post(
        "/api/gdpr/delete-user-data", {"conversationIds": ["g1"]}, headers
    )
    assert (status, text) == (200, "")
    assert sim.transcript("g1") == [] and sim.mode("g1") is None
    bad: dict[str, Any]
    for bad in ({"conversationIds": []}, {"conversationIds": "g1"}, {"conversationId": ["g1"]}):
        assert (await client.post("/api/gdpr/delete-user-data", bad, headers))[0] == 400
    assert (await client.post("/api/gdpr/delete-user-data", {"conversationIds": ["g1"]}, {}))[
        0
    ] == 401
