"""Fixtures for the receiving half: a real aiohttp test server around a WebhookReceiver."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from ultimate_async.webhook import (
    EventContext,
    NoVerification,
    Verifier,
    WebhookReceiver,
    setup_webhook,
)

# The webhook sample payloads (``fixtures_dir``, ``valid_name``, ``invalid_name``) come from
# tests/conftest.py: they live in tests/fixtures/webhooks.

Serve = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


@pytest.fixture
def serve(aiohttp_client: Any) -> Serve:
    """Mount a receiver on a fresh aiohttp app and return a client for it."""

    async def _serve(
        receiver: WebhookReceiver, path: str = "/webhook"
    ) -> TestClient[web.Request, web.Application]:
        app = web.Application()
        setup_webhook(app, receiver, path)
        client: TestClient[web.Request, web.Application] = await aiohttp_client(app)
        return client

    return _serve


class Bodies:
    """Builders of webhook bodies as the platform sends them."""

    @staticmethod
    def message(
        conversation_id: str | None,
        text: str = "hi",
        *,
        message_id: str | None = None,
        bot_id: str = "618a30beee4e8e87d2f94015",
    ) -> bytes:
        """A sendMessage webhook body."""
        data: dict[str, Any] = {"eventType": "sendMessage", "type": "text", "text": text}
        if conversation_id is not None:
            data["platformConversationId"] = conversation_id
        if message_id is not None:
            data["messageId"] = message_id
        return json.dumps({"botId": bot_id, "channel": "chat", "data": data}).encode()

    @staticmethod
    def chat(event_type: str, conversation_id: str | None = None, **fields: Any) -> bytes:
        data: dict[str, Any] = {"eventType": event_type, **fields}
        if conversation_id is not None:
            data["platformConversationId"] = conversation_id
        return json.dumps({"botId": "618a30beee4e8e87d2f94015", "data": data}).encode()

    @staticmethod
    def action(name: str, conversation_id: str = "conv-a", **fields: Any) -> bytes:
        body = {
            "botId": "618a30beee4e8e87d2f94015",
            "platformConversationId": conversation_id,
            "name": name,
            "data": [{"key": "userId", "value": ["42"]}],
            **fields,
        }
        return json.dumps(body).encode()


@pytest.fixture
def bodies() -> type[Bodies]:
    return Bodies


async def _until(predicate: Callable[[], object], limit: float = 5.0) -> None:
    """Yield to the event loop until ``predicate()`` holds; fails after ``limit`` seconds."""
    async with asyncio.timeout(limit):
        while not predicate():  # noqa: ASYNC110 - polling state, not waiting for an event
            await asyncio.sleep(0)


@pytest.fixture
def until() -> Callable[..., Awaitable[None]]:
    return _until


@pytest.fixture(params=["aiohttp", "httptools"])
def backend(request: pytest.FixtureRequest) -> str:
    """Each ``WebhookServer`` backend in turn: tests using it run once per HTTP layer."""
    name: str = request.param
    if name == "httptools":
        pytest.importorskip("httptools")
    return name


Recording = Callable[..., tuple[WebhookReceiver, list[str]]]


@pytest.fixture
def recording() -> Recording:
    """``receiver, seen = recording(verifier=None, **kwargs)``: a receiver whose message handler
    records each text in ``seen`` (``ack="after_handler"`` unless told)."""

    def _recording(
        verifier: Verifier | None = None, **kwargs: Any
    ) -> tuple[WebhookReceiver, list[str]]:
        kwargs.setdefault("ack", "after_handler")
        receiver = WebhookReceiver(verifier or NoVerification(), **kwargs)
        seen: list[str] = []

        @receiver.on_message()
        async def record(msg: Any, ctx: EventContext) -> None:
            seen.append(msg.text)

        return receiver, seen

    return _recording
