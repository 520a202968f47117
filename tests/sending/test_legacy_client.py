"""LegacyClient: v2 automation, intents and GDPR calls; auth headers; tolerant reply decoding."""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp
import pytest
from yarl import URL

from ultimate_async._retry import RetryPolicy
from ultimate_async.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ResponseDecodeError,
    ServerError,
)
from ultimate_async.legacy import LegacyClient
from ultimate_async.models.legacy import (
    AutomationButton,
    AutomationMessage,
    AutomationReply,
    DetectedLanguage,
    Entity,
    IntentsResult,
    PredictedIntent,
    RecognizedEntity,
)
from ultimate_async.models.outbound import MetaData

BASE = "https://chat.test"
BASIC = base64.b64encode(b"jane@example.com:pa55word").decode()
ACCESS = "tok-ACCESS-abcdef"

DOC_REPLY = {  # the documented example of API_SPEC §3.5
    "messages": [
        {
            "text": "Type your question or select one of the options below:",
            "forwardToHuman": False,
            "buttons": [
                {"text": "Support"},
                {"text": "External link", "link": "https://ultimate.ai"},
            ],
        }
    ],
    "confidenceThreshold": 0.7,
    "predictedIntents": [
        {"value": "5ee3593d2e4a8a47573252e8", "name": "Intent Name 1", "confidence": 0.70}
    ],
    "entities": [{"name": "email", "value": "jane.doe@email.com"}],
    "languages": [{"value": "eng", "confidence": 0.9}],
}


def sent(mock_api: Any, path: str) -> list[tuple[dict[str, str], Any]]:
    calls = mock_api.requests.get(("POST", URL(BASE + path)), [])
    return [(dict(c.kwargs["headers"]), json.loads(c.kwargs["data"])) for c in calls]


async def test_automation_message_request_and_reply(mock_api: Any) -> None:
    mock_api.post(f"{BASE}/api/v2/automation", payload=DOC_REPLY)
    async with LegacyClient(email="jane@example.com", password="pa55word", base_url=BASE) as c:
        reply = await c.automation(
            "bot1", "conv1", "message", text="hello", metadata=[MetaData("id", "7", True)]
        )
    [(headers, body)] = sent(mock_api, "/api/v2/automation")
    assert headers["Authorization"] == f"Basic {BASIC}"
    assert headers["Content-Type"] == "application/json"
    assert body == {
        "botId": "bot1",
        "conversationId": "conv1",
        "eventType": "message",
        "text": "hello",
        "metaData": [{"key": "id", "value": "7", "sanitize": True}],
    }
    assert reply == AutomationReply(
        messages=[
            AutomationMessage(
                text="Type your question or select one of the options below:",
                forward_to_human=False,
                buttons=[
                    AutomationButton("Support"),
                    AutomationButton("External link", link="https://ultimate.ai"),
                ],
            )
        ],
        confidence_threshold=0.7,
        predicted_intents=[PredictedIntent("5ee3593d2e4a8a47573252e8", "Intent Name 1", 0.7)],
        entities=[Entity("email", "jane.doe@email.com")],
        languages=[DetectedLanguage("eng", 0.9)],
    )
    assert [b.is_link for b in reply.messages[0].buttons] == [False, True]
    assert reply.forward_to_human is False


async def test_automation_start_session_omits_text(mock_api: Any) -> None:
    mock_api.post(f"{BASE}/api/v2/automation", payload={"messages": []})
    async with LegacyClient(basic_token=f"Basic {BASIC}", base_url=BASE) as c:
        reply = await c.automation("bot1", "conv1", "startSession")
    [(headers, body)] = sent(mock_api, "/api/v2/automation")
    assert headers["Authorization"] == f"Basic {BASIC}"  # an explicit prefix is not doubled
    assert body == {"botId": "bot1", "conversationId": "conv1", "eventType": "startSession"}
    assert reply == AutomationReply()


async def test_forward_to_human_and_tolerant_reading(mock_api: Any) -> None:
    mock_api.post(
        f"{BASE}/api/v2/automation",
        payload={
            "messages": [
                {"text": "Let me get a human", "forwardToHuman": True, "buttons": None},
                {"text": None, "secondMessage": {"old": "field"}},
            ],
            "confidenceThreshold": None,
            "predictedIntents": None,
            "somethingNew": [1, 2, 3],
        },
    )
    async with LegacyClient(basic_token=BASIC, base_url=BASE) as c:
        reply = await c.automation("bot1", "conv1", "message", text="human please")
    assert reply.forward_to_human is True
    assert reply.messages == [
        AutomationMessage(text="Let me get a human", forward_to_human=True),
        AutomationMessage(),
    ]
    assert reply.text == "Let me get a human"
    assert reply.confidence_threshold is None
    assert reply.predicted_intents == []


async def test_decode_error_lists_field_reasons(mock_api: Any) -> None:
    mock_api.post(
        f"{BASE}/api/v2/automation",
        payload={
            "messages": [{"text": ["not", "text"], "forwardToHuman": "yes", "buttons": {}}],
            "confidenceThreshold": "high",
        },
    )
    async with LegacyClient(basic_token=BASIC, base_url=BASE) as c:
        with pytest.raises(ResponseDecodeError) as info:
            await c.automation("bot1", "conv1", "message", text="x")
    assert info.value.errors == [
        "expected a string, got list @ $.messages[0].text",
        "expected a boolean, got string @ $.messages[0].forwardToHuman",
        "expected a list, got object @ $.messages[0].buttons",
        "expected a number, got string @ $.confidenceThreshold",
    ]
    assert "/api/v2/automation" in str(info.value)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("[1, 2]", "expected an object, got list @ $"),
        ("<html>gateway</html>", "body is not JSON"),
        ("", "body is not JSON"),
    ],
)
async def test_non_object_reply_is_a_decode_error(mock_api: Any, body: str, reason: str) -> None:
    mock_api.post(f"{BASE}/api/v2/automation", body=body)
    async with LegacyClient(basic_token=BASIC, base_url=BASE) as c:
        with pytest.raises(ResponseDecodeError) as info:
            await c.automation("bot1", "conv1", "endSession")
    assert info.value.errors == [reason]


async def test_intents_uses_the_raw_access_token(mock_api: Any) -> None:
    mock_api.post(
        f"{BASE}/api/intents",
        payload={
            "intents": [{"name": "refund", "confidence": 0.93}],
            "entities": [
                {
                    "name": "email",
                    "confidence": 1,
                    "form": "a@b.c",
                    "index": 3,
                    "id": "e1",
                    "sanitize": True,
                }
            ],
        },
    )
    async with LegacyClient(basic_token=BASIC, access_token=ACCESS, base_url=BASE) as c:
        result = await c.intents("bot1", "refund to a@b.c", conversation_id="conv1")
    [(headers, body)] = sent(mock_api, "/api/intents")
    assert headers["Authorization"] == ACCESS
    assert body == {"botId": "bot1", "message": "refund to a@b.c", "conversationId": "conv1"}
    assert result == IntentsResult(
        intents=[PredictedIntent(name="refund", confidence=0.93)],
        entities=[RecognizedEntity("email", 1.0, "a@b.c", 3, "e1", True)],
    )


async def test_intents_falls_back_to_basic(mock_api: Any) -> None:
    mock_api.post(f"{BASE}/api/intents", payload={})
    async with LegacyClient(basic_token=BASIC, base_url=BASE) as c:
        assert await c.intents("bot1", "hi") == IntentsResult()
    [(headers, body)] = sent(mock_api, "/api/intents")
    assert headers["Authorization"] == f"Basic {BASIC}"
    assert body == {"botId": "bot1", "message": "hi"}


async def test_delete_user_data(mock_api: Any) -> None:
    mock_api.post(f"{BASE}/api/gdpr/delete-user-data", status=200, body="OK")
    async with LegacyClient(basic_token=BASIC, base_url=BASE) as c:
        await c.delete_user_data(["c1", "c2"])
    [(headers, body)] = sent(mock_api, "/api/gdpr/delete-user-data")
    assert headers["Authorization"] == f"Basic {BASIC}"
    assert body == {"conversationIds": ["c1", "c2"]}


@pytest.mark.parametrize("ids", ["c1", [], ["c1", ""]])
async def test_delete_user_data_validates_ids(mock_api: Any, ids: Any) -> None:
    async with LegacyClient(basic_token=BASIC, base_url=BASE) as c:
        with pytest.raises(ValueError, match="conversation_ids"):
            await c.delete_user_data(ids)
    assert not mock_api.requests


async def test_401_is_authentication_error_without_credentials(mock_api: Any) -> None:
    mock_api.post(f"{BASE}/api/v2/automation", status=401, body="Unauthorized")
    async with LegacyClient(email="jane@example.com", password="pa55word", base_url=BASE) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.automation("bot1", "conv1", "startSession")
    for secret in (BASIC, "pa55word"):
        assert secret not in str(info.value)
        assert secret not in repr(client)


async def test_access_token_only_client(mock_api: Any) -> None:
    async with LegacyClient(access_token=ACCESS, base_url=BASE) as client:
        with pytest.raises(ConfigurationError, match="Basic"):
            await client.automation("bot1", "conv1", "startSession")
    assert not mock_api.requests


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"email": "a@b.c"},
        {"password": "x"},
        {"basic_token": BASIC, "email": "a@b.c", "password": "x"},
        {"basic_token": "Basic "},
    ],
)
def test_missing_or_ambiguous_credentials(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        LegacyClient(**kwargs)


async def test_automation_validates_before_sending(mock_api: Any) -> None:
    async with LegacyClient(basic_token=BASIC, base_url=BASE) as c:
        with pytest.raises(ValueError, match="text"):
            await c.automation("bot1", "conv1", "message")
        with pytest.raises(ValueError, match="event_type"):
            await c.automation("bot1", "conv1", "metadata")
        with pytest.raises(ValueError, match="conversation_id"):
            await c.automation("bot1", "", "startSession")
    assert not mock_api.requests


async def test_real_server_retry_and_shared_error_mapping(platform: Any, sleeps: Any) -> None:
    platform.answer(503, "busy")
    platform.answer(200, json.dumps(DOC_REPLY), Content_Type="application/json")
    platform.answer(500, "broken")
    policy = RetryPolicy(sleep=sleeps, random=lambda: 0.5)
    async with LegacyClient(basic_token=BASIC, base_url=platform.url, retry=policy) as c:
        reply = await c.automation("bot1", "conv1", "message", text="hi")
        assert reply.messages[0].buttons[1].link == "https://ultimate.ai"
        with pytest.raises(ServerError, match="broken"):
            await c.intents("bot1", "hi")
    assert sleeps.delays == [0.375]
    assert [r.path for r in platform.requests] == [
        "/api/v2/automation",
        "/api/v2/automation",
        "/api/intents",
    ]
    assert platform.requests[0].headers["Authorization"] == f"Basic {BASIC}"


async def test_lifecycle_and_borrowed_session(platform: Any) -> None:
    platform.answer(200, "{}")
    async with aiohttp.ClientSession() as http:
        client = LegacyClient(access_token=ACCESS, base_url=platform.url, http_session=http)
        assert ACCESS not in repr(client)
        await client.intents("bot1", "hi")
        await client.aclose()
        await client.aclose()
        assert not http.closed
        with pytest.raises(RuntimeError, match="closed"):
            await client.intents("bot1", "hi")
    assert platform.requests[0].headers["Authorization"] == ACCESS


async def test_sanitized_metadata_never_reaches_an_automation_error(mock_api: Any) -> None:
    from aioresponses import CallbackResult

    def echo(url: Any, **kwargs: Any) -> CallbackResult:
        return CallbackResult(status=400, body=f"invalid request {kwargs['data'].decode()}")

    mock_api.post(f"{BASE}/api/v2/automation", callback=echo)
    async with LegacyClient(basic_token=BASIC, base_url=BASE, retry=RetryPolicy.none()) as c:
        with pytest.raises(BadRequestError) as info:
            await c.automation(
                "bot1",
                "conv1",
                "startSession",
                metadata=[MetaData("ssn", "123-45-6789", sanitize=True), MetaData("k", "plain")],
            )
    shown = f"{info.value} {info.value!r} {info.value.body}"
    assert "123-45-6789" not in shown
    assert "***" in shown and "plain" in shown
