"""Graceful shutdown under load: every 200 was handled (or counted as dropped), then 503.

Deliveries stream in over a real port while the server is stopped mid-stream.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from typing import Any

import aiohttp
import pytest

from ultimate_async.webhook import WebhookReceiver, WebhookServer
from ultimate_async.webhook.verify import NoVerification


def message(cid: str, n: int) -> bytes:
    data = {
        "eventType": "sendMessage",
        "platformConversationId": cid,
        "type": "text",
        "text": str(n),
        "messageId": f"{cid}/{n}",
    }
    return json.dumps({"botId": "b", "data": data}).encode()


async def stream(
    http: aiohttp.ClientSession, url: str, conversations: int, per_conversation: int
) -> dict[str, list[tuple[int, int | None]]]:
    """Each conversation posts its messages one after another; ``(n, status or None)``."""
    answers: dict[str, list[tuple[int, int | None]]] = defaultdict(list)

    async def one(cid: str) -> None:
        for n in range(per_conversation):
            try:
                async with http.post(url, data=message(cid, n)) as resp:
                    await resp.read()
                    answers[cid].append((n, resp.status))
            except aiohttp.ClientError:  # the port is closed once the server is gone
                answers[cid].append((n, None))
            await asyncio.sleep(0)

    await asyncio.gather(*(one(f"c{i}") for i in range(conversations)))
    return answers


async def test_stop_mid_stream_handles_every_acked_delivery() -> None:
    handled: dict[str, list[int]] = defaultdict(list)
    progress = asyncio.Event()
    receiver = WebhookReceiver(NoVerification(), drain_timeout=10)

    @receiver.on_message()
    async def slow(msg: Any, ctx: Any) -> None:
        await asyncio.sleep(0.002)  # slow enough that work is queued when the stop begins
        handled[ctx.platform_conversation_id].append(int(msg.text))
        progress.set()

    server = WebhookServer(receiver)
    await server.start()
    async with aiohttp.ClientSession() as http:
        load = asyncio.ensure_future(stream(http, server.url, 40, 30))
        async with asyncio.timeout(10):
            while sum(map(len, handled.values())) < 100:
                progress.clear()
                await progress.wait()
        await server.aclose()  # drain, then stop the port; load keeps coming meanwhile
        answers = await load
    statuses = [status for per in answers.values() for _, status in per]
    assert statuses.count(200) >= 100
    assert set(statuses) <= {200, 503, None}
    assert 503 in statuses or None in statuses  # the stop really happened mid-stream
    for cid, per in answers.items():
        acked = [n for n, status in per if status == 200]
        assert handled[cid] == acked, cid  # every 200 handled, in order, nothing else
        # once refused, never accepted again
        first_refusal = next((i for i, (_, s) in enumerate(per) if s != 200), len(per))
        assert all(s != 200 for _, s in per[first_refusal:]), cid
    assert receiver.cancelled_on_close == 0


async def test_past_drain_timeout_the_rest_is_cancelled_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    release = asyncio.Event()
    handled: list[str] = []
    receiver = WebhookReceiver(NoVerification(), drain_timeout=0.2)

    @receiver.on_message()
    async def stuck(msg: Any, ctx: Any) -> None:
        await release.wait()
        handled.append(msg.message_id)

    async with WebhookServer(receiver) as server, aiohttp.ClientSession() as http:
        acked = 0
        for i in range(5):  # 5 conversations x 3 messages: 5 running, 10 queued
            for n in range(3):
                async with http.post(server.url, data=message(f"c{i}", n)) as resp:
                    assert resp.status == 200
                    acked += 1
        # The receiver drains while its port still serves (as when it is mounted in a larger
        # application); ``WebhookServer.aclose()`` stops listening first, so there a late
        # delivery cannot even connect.
        closing = asyncio.ensure_future(receiver.aclose())
        await asyncio.sleep(0.05)
        assert receiver.closing and not closing.done()
        async with http.post(server.url, data=message("late", 0)) as resp:
            assert resp.status == 503  # refused while draining
        await closing
    assert handled == []
    assert receiver.cancelled_on_close == acked  # every acked delivery accounted for
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(f"cancelled {acked} " in text for text in warnings), warnings
    assert receiver.pending == 0 and receiver.active_conversations == 0


async def test_requests_in_flight_are_answered_during_shutdown() -> None:
    gate = asyncio.Event()
    entered = asyncio.Event()
    running: list[int] = []
    receiver = WebhookReceiver(NoVerification(), drain_timeout=5)

    @receiver.on_team_online()
    async def online(event: Any, ctx: Any) -> bool:
        running.append(1)
        if len(running) == 5:
            entered.set()
        await gate.wait()
        return True

    body = json.dumps({"botId": "b", "data": {"eventType": "isTeamOnline"}}).encode()
    async with aiohttp.ClientSession() as http:
        server = WebhookServer(receiver)
        await server.start()
        pending = [asyncio.ensure_future(http.post(server.url, data=body)) for _ in range(5)]
        await asyncio.wait_for(entered.wait(), 5)
        closing = asyncio.ensure_future(server.aclose())
        await asyncio.sleep(0.05)
        # the answers below must come while the shutdown is under way, not before it began
        assert receiver.closing and not closing.done()
        assert all(not future.done() for future in pending)
        gate.set()
        await closing
        for future in pending:
            async with await future as resp:
                assert resp.status == 200 and await resp.json() == {"isOnline": True}
