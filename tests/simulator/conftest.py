"""Fixtures for the simulator tests: a recording webhook endpoint and simulator factories.

The receiving side is a tiny aiohttp app (not ``WebhookReceiver``): it checks every delivery
with the verifier's own ``verify``, records it, and answers like a customer backend would
(``isTeamOnline`` → ``{"isOnline": ...}``, actions → ``{"results": ...}``), unless a test
installs a ``hook`` to answer (or stall) differently.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ultimate_async.errors import SignatureError
from ultimate_async.simulator import Simulator
from ultimate_async.webhook.verify import NoVerification, Verifier


@attrs.frozen
class Delivery:
    payload: dict[str, Any]
    headers: dict[str, str]
    path: str

    @property
    def kind(self) -> str:
        data = self.payload.get("data")
        if isinstance(data, dict):
            return str(data.get("eventType"))
        if "name" in self.payload:
            return "action"
        if "predictedIntents" in self.payload:
            return "ticketReply"
        return "unknown"

    @property
    def data(self) -> dict[str, Any]:
        data = self.payload.get("data")
        return data if isinstance(data, dict) else self.payload


Hook = Callable[[Delivery], Awaitable["web.Response | None"]]


class Recorder:
    """The customer's webhook endpoint, as far as the simulator can tell."""

    def __init__(self, verifier: Verifier) -> None:
        self.verifier = verifier
        self.deliveries: list[Delivery] = []
        self.rejected = 0
        self.team_online = True
        self.action_results: list[dict[str, Any]] = [{"key": "balance", "value": "42.00"}]
        self.hook: Hook | None = None
        self.url = ""
        self._changed = asyncio.Condition()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            self.verifier.verify(body, request.headers, path_token=request.match_info.get("token"))
        except SignatureError:
            self.rejected += 1
            return web.Response(status=401)
        delivery = Delivery(json.loads(body), dict(request.headers), request.path)
        async with self._changed:
            self.deliveries.append(delivery)
            self._changed.notify_all()
        if self.hook is not None:
            answer = await self.hook(delivery)
            if answer is not None:
                return answer
        if delivery.kind == "isTeamOnline":
            return web.json_response({"isOnline": self.team_online})
        if delivery.kind == "action":
            return web.json_response({"results": self.action_results})
        return web.Response()

    def kinds(self, conversation_id: str | None = None) -> list[str]:
        return [d.kind for d in self.of(conversation_id)]

    def of(self, conversation_id: str | None = None) -> list[Delivery]:
        if conversation_id is None:
            return list(self.deliveries)
        return [
            d for d in self.deliveries if d.data.get("platformConversationId") == conversation_id
        ]

    def texts(self, conversation_id: str | None = None) -> list[str]:
        return [d.data.get("text", "") for d in self.of(conversation_id) if d.kind == "sendMessage"]

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[Delivery]:  # noqa: ASYNC109
        """Wait until at least ``count`` deliveries arrived (in total)."""
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.deliveries) >= count)
        return list(self.deliveries)


@pytest.fixture
async def make_recorder() -> AsyncIterator[Callable[..., Awaitable[Recorder]]]:
    async with AsyncExitStack() as stack:

        async def make(verifier: Verifier | None = None) -> Recorder:
            recorder = Recorder(verifier or NoVerification())
            app = web.Application()
            app.router.add_post("/hook", recorder.handle)
            app.router.add_post("/hook/{token}", recorder.handle)
            server = TestServer(app, host="127.0.0.1")
            await stack.enter_async_context(server)
            recorder.url = str(server.make_url("/hook"))
            return recorder

        yield make


@pytest.fixture
async def recorder(make_recorder: Callable[..., Awaitable[Recorder]]) -> Recorder:
    return await make_recorder()


@pytest.fixture
async def make_sim() -> AsyncIterator[Callable[..., Awaitable[Simulator]]]:
    async with AsyncExitStack() as stack:

        async def make(*args: Any, **kwargs: Any) -> Simulator:
            kwargs.setdefault("delivery_backoff", 0.01)
            return await stack.enter_async_context(Simulator(*args, **kwargs))

        yield make


@pytest.fixture
async def sim(make_sim: Callable[..., Awaitable[Simulator]], recorder: Recorder) -> Simulator:
    """The demo bot, delivering unsigned to ``recorder``."""
    return await make_sim(webhook_url=recorder.url)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class Client:
    """Plain aiohttp calls to the simulator, as a customer backend would make them."""

    def __init__(self, http: aiohttp.ClientSession, sim: Simulator) -> None:
        self.http = http
        self.sim = sim

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": self.sim.api_key, "botid": self.sim.bot_id, **extra}

    async def post(
        self,
        path: str,
        body: object,
        headers: dict[str, str] | None = None,
        *,
        raw: bytes | None = None,
    ) -> tuple[int, str]:
        data = raw if raw is not None else json.dumps(body).encode()
        async with self.http.post(
            self.sim.url(path),
            data=data,
            headers=self.headers() if headers is None else headers,
        ) as resp:
            return resp.status, await resp.text()

    async def chat(self, cid: str, event: str, **fields: Any) -> int:
        status, text = await self.post(
            "/converse/chat", {"platformConversationId": cid, "eventType": event, **fields}
        )
        assert status == 200, text
        return status

    async def widget(self, cid: str, event: str, **fields: Any) -> tuple[int, str]:
        return await self.post(
            "/agent/converse/send-message-to-widget",
            {"platformConversationId": cid, "eventType": event, **fields},
        )

    async def say(self, cid: str, text: str, **fields: Any) -> None:
        """Send a visitor message and wait until the bot's whole answer was delivered."""
        await self.chat(cid, "message", text=text, **fields)
        await self.sim.wait_idle(timeout=5)

    async def start(self, cid: str) -> None:
        await self.chat(cid, "startSession")
        await self.sim.wait_idle(timeout=5)


@pytest.fixture
def client(http: aiohttp.ClientSession, sim: Simulator) -> Client:
    return Client(http, sim)


@pytest.fixture
def make_client(http: aiohttp.ClientSession) -> Callable[[Simulator], Client]:
    return lambda sim: Client(http, sim)
