"""Handlers that raise, hang past their timeout or are slow: everything else keeps flowing.

Deliveries go through a real port (``WebhookServer``); ordering is checked with gates, not
sleeps.  A failing notification handler is retried (``HandlerRetry``) before its delivery is a
dead letter: the tests run with one attempt (``HandlerRetry.none()``) and with retries on a
short backoff, and check that on_error is told once, at the end, and that order holds.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from ultimate_async.inbox import HandlerRetry
from ultimate_async.webhook import WebhookReceiver, WebhookServer
from ultimate_async.webhook.verify import NoVerification

#: One attempt (the dead letter at once), and three attempts with a short real backoff.
POLICIES = [
    pytest.param(HandlerRetry.none(), id="one-attempt"),
    pytest.param(
        HandlerRetry(max_attempts=3, backoff_base=0.02, backoff_max=0.05), id="3-attempts"
    ),
]


def message(cid: str, text: str, mid: str | None = None) -> bytes:
    data = {
        "eventType": "sendMessage",
        "platformConversationId": cid,
        "type": "text",
        "text": text,
        "messageId": mid or f"{cid}/{text}",
    }
    return json.dumps({"botId": "b", "data": data}).encode()


def request(event_type: str, cid: str, **extra: Any) -> bytes:
    return json.dumps(
        {"botId": "b", "data": {"eventType": event_type, "platformConversationId": cid, **extra}}
    ).encode()


class Behaviour:
    """A catch-all handler whose behaviour is chosen by the message text."""

    def __init__(self) -> None:
        self.handled: dict[str, list[str]] = defaultdict(list)
        self.errors: list[tuple[str, BaseException]] = []
        self.hanging = asyncio.Event()
        self.cancelled: list[str] = []
        self.forever = asyncio.Event()
        self.progress = asyncio.Event()
        #: ``(text, ctx.attempt)`` of every run, in the order they started.
        self.runs: list[tuple[str, int]] = []

    async def __call__(self, msg: Any, ctx: Any) -> None:
        text, cid = msg.text, ctx.platform_conversation_id
        self.runs.append((text, ctx.attempt))
        if text.startswith("raise"):
            raise RuntimeError(f"handler blew up on {text}")
        if text.startswith("hang"):
            self.hanging.set()
            try:
                await self.forever.wait()
            except asyncio.CancelledError:
                self.cancelled.append(f"{cid}/{text}")
                raise
        if text.startswith("slow"):
            await asyncio.sleep(0.05)
        self.handled[cid].append(text)
        self.progress.set()

    async def on_error(self, error: BaseException, event: Any, ctx: Any) -> None:
        self.errors.append((getattr(event, "text", ""), error))


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def receiver_with(behaviour: Behaviour, **kwargs: Any) -> WebhookReceiver:
    receiver = WebhookReceiver(NoVerification(), **kwargs)
    receiver.on_message()(behaviour)
    receiver.on_error()(behaviour.on_error)
    return receiver


async def post(http: aiohttp.ClientSession, url: str, body: bytes) -> int:
    async with http.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
        await resp.read()
        return resp.status


@pytest.mark.parametrize("retry", POLICIES)
async def test_raising_hanging_and_slow_handlers_do_not_stop_the_queue(
    http: aiohttp.ClientSession, retry: HandlerRetry
) -> None:
    behaviour = Behaviour()
    receiver = receiver_with(behaviour, handler_timeout=0.3, retry=retry)
    attempts = retry.max_attempts
    async with WebhookServer(receiver) as server:
        script = ["ok1", "raise1", "ok2", "hang1", "ok3", "slow1", "ok4", "raise2", "ok5"]
        for text in script:  # all acked at once, run in order
            assert await post(http, server.url, message("conv-a", text)) == 200
        assert await receiver.drain(timeout=5 + 3 * attempts * 0.3)
    assert behaviour.handled["conv-a"] == ["ok1", "ok2", "ok3", "slow1", "ok4", "ok5"]
    # every attempt of a failing event ran before the conversation's next event
    expected_runs = []
    for text in script:
        tries = attempts if text.startswith(("raise", "hang")) else 1
        expected_runs += [(text, n) for n in range(1, tries + 1)]
    assert behaviour.runs == expected_runs
    assert behaviour.cancelled == ["conv-a/hang1"] * attempts
    # on_error once per dead letter, after its last attempt
    failed = sorted(text for text, _ in behaviour.errors)
    assert failed == ["hang1", "raise1", "raise2"]
    assert any(isinstance(e, TimeoutError) for _, e in behaviour.errors)
    assert receiver.pending == 0 and receiver.active_conversations == 0
    dead = {d.delivery_id: d for d in [d async for d in receiver.inbox.dead_letters()]}
    assert sorted(d.attempts for d in dead.values()) == [attempts] * 3
    assert sorted(d.last_error for d in dead.values()) == [
        "RuntimeError: handler blew up on raise1",
        "RuntimeError: handler blew up on raise2",
        "timed out after 0.3s",
    ]
    assert (await receiver.inbox.stats()).pending == 0


async def test_other_conversations_flow_while_one_hangs(http: aiohttp.ClientSession) -> None:
    behaviour = Behaviour()
    receiver = receiver_with(behaviour, handler_timeout=30)
    async with WebhookServer(receiver) as server:
        assert await post(http, server.url, message("stuck", "hang")) == 200
        assert await post(http, server.url, message("stuck", "after-hang")) == 200
        await asyncio.wait_for(behaviour.hanging.wait(), 5)
        bodies = [message(f"conv-{i}", f"m{j}") for i in range(50) for j in range(5)]
        statuses = await asyncio.gather(*(post(http, server.url, b) for b in bodies))
        assert set(statuses) == {200}
        # everything else completes while "stuck" is still hanging (its timeout is 30 s)
        async with asyncio.timeout(10):
            while sum(len(v) for k, v in behaviour.handled.items() if k != "stuck") < 250:
                behaviour.progress.clear()
                await behaviour.progress.wait()
        assert behaviour.cancelled == [] and "stuck" not in behaviour.handled
        for i in range(50):
            assert behaviour.handled[f"conv-{i}"] == [f"m{j}" for j in range(5)]
        behaviour.forever.set()  # release it: the queued event after it runs next
        assert await receiver.drain(timeout=5)
    assert behaviour.handled["stuck"] == ["hang", "after-hang"]


@pytest.mark.parametrize("retry", POLICIES)
async def test_hanging_handlers_cannot_exhaust_the_concurrency_cap(
    http: aiohttp.ClientSession, retry: HandlerRetry
) -> None:
    """With every slot taken by hanging handlers, the timeout frees them for the rest (and a
    handler waiting for its retry holds no slot)."""
    behaviour = Behaviour()
    receiver = receiver_with(behaviour, handler_timeout=0.2, max_concurrency=2, retry=retry)
    attempts = retry.max_attempts
    async with WebhookServer(receiver) as server:
        for cid in ("h1", "h2"):
            assert await post(http, server.url, message(cid, "hang")) == 200
        for i in range(10):
            assert await post(http, server.url, message(f"later-{i}", "ok")) == 200
        assert await receiver.drain(timeout=5 + attempts * 0.3)
    assert sorted(behaviour.cancelled) == sorted(["h1/hang", "h2/hang"] * attempts)
    assert all(behaviour.handled[f"later-{i}"] == ["ok"] for i in range(10))
    assert [text for text, _ in behaviour.errors] == ["hang", "hang"]


async def test_after_handler_ack_maps_failures_to_500_and_recovers(
    http: aiohttp.ClientSession,
) -> None:
    behaviour = Behaviour()
    receiver = receiver_with(behaviour, handler_timeout=0.2, ack="after_handler")
    async with WebhookServer(receiver) as server:
        results = [
            await post(http, server.url, message("c", text))
            for text in ("ok1", "raise", "ok2", "hang", "ok3")
        ]
        # the platform retries a 500: the redelivery must be handled, not dropped as duplicate
        retried = await post(http, server.url, message("c", "raise"))
    assert results == [200, 500, 200, 500, 200]
    assert retried == 500
    assert [text for text, _ in behaviour.errors] == ["raise", "hang", "raise"]
    assert behaviour.handled["c"] == ["ok1", "ok2", "ok3"]


async def test_failing_request_handlers_answer_and_do_not_block(
    http: aiohttp.ClientSession,
) -> None:
    """Requests answer within ``request_timeout`` whatever their handler does."""
    gate = asyncio.Event()
    receiver = WebhookReceiver(NoVerification(), request_timeout=0.2)
    seen: list[str] = []

    @receiver.on_team_online()
    async def online(event: Any, ctx: Any) -> bool:
        await gate.wait()  # hangs
        return True

    @receiver.on_escalate()
    async def escalate(event: Any, ctx: Any) -> bool:
        if event.escalate_to == "boom":
            raise RuntimeError("escalation handler failed")
        if event.escalate_to == "hang":
            await gate.wait()
        return bool(event.escalate_to != "nobody")

    @receiver.on_action()
    async def action(call: Any, ctx: Any) -> list[Any]:
        raise RuntimeError("action failed")

    @receiver.on_message()
    async def note(msg: Any, ctx: Any) -> None:
        seen.append(msg.text)

    async with WebhookServer(receiver) as server:
        url = server.url
        async with http.post(url, data=request("isTeamOnline", "c", teamId="t")) as resp:
            assert resp.status == 200 and await resp.json() == {"isOnline": False}
        answers = {
            to: await post(http, url, request("escalate", "c", escalateTo=to))
            for to in ("boom", "hang", "nobody", "team")
        }
        assert answers == {"boom": 500, "hang": 500, "nobody": 409, "team": 200}
        action_body = json.dumps({"name": "x", "platformConversationId": "c", "data": []})
        assert await post(http, url, action_body.encode()) == 500
        assert await post(http, url, message("c", "still here")) == 200
        assert await receiver.drain(timeout=5)
    assert seen == ["still here"]
