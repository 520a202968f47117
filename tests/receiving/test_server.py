"""Serving: health, 405, 413, WebhookServer URLs, drain and graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from ultimate_async.models.webhooks import BotMessage
from ultimate_async.webhook import (
    EventContext,
    MemoryDeduplicator,
    NoVerification,
    SharedSecretHeader,
    UrlToken,
    WebhookReceiver,
    WebhookServer,
)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_health_and_methods(serve: Any) -> None:
    receiver = WebhookReceiver(NoVerification())
    client = await serve(receiver)
    resp = await client.get("/webhook")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}
    for method in ("PUT", "DELETE", "PATCH"):
        resp = await client.request(method, "/webhook", data=b"{}")
        assert resp.status == 405


async def test_body_size_limit(serve: Any, bodies: Any) -> None:
    receiver = WebhookReceiver(NoVerification(), max_body_size=200)
    seen: list[str] = []

    @receiver.on_message()
    async def handler(msg: BotMessage, ctx: EventContext) -> None:
        seen.append(msg.text)

    client = await serve(receiver)
    big = bodies.message("c1", "x" * 300)
    resp = await client.post("/webhook", data=big)
    assert resp.status == 413
    assert await resp.json() == {"error": "payload too large"}

    async def chunks() -> AsyncIterator[bytes]:  # chunked: no Content-Length to check up front
        for i in range(0, len(big), 50):
            yield big[i : i + 50]

    resp = await client.post("/webhook", data=chunks())
    assert resp.status == 413
    assert (await receiver.handle(big, {})).status == 413
    resp = await client.post("/webhook", data=bodies.message("c1", "small"))
    assert resp.status == 200
    assert await receiver.drain(timeout=5)
    assert seen == ["small"]


async def test_webhook_server_url_and_real_port(http: aiohttp.ClientSession, bodies: Any) -> None:
    receiver = WebhookReceiver(SharedSecretHeader("s3cret"), ack="after_handler")
    seen: list[str] = []

    @receiver.on_message()
    async def handler(msg: BotMessage, ctx: EventContext) -> None:
        seen.append(msg.text)

    async with WebhookServer(receiver, port=0, path="/hooks/ultimate") as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert server.url.endswith("/hooks/ultimate")
        port = int(server.url.split(":")[2].split("/")[0])
        assert port > 0
        async with http.post(
            server.url, data=bodies.message("c1", "hello"), headers={"Authorization": "s3cret"}
        ) as resp:
            assert resp.status == 200
        async with http.get(server.url) as resp:
            assert (await resp.json())["status"] == "ok"
    assert seen == ["hello"]
    assert receiver.closing


async def test_webhook_server_with_url_token(http: aiohttp.ClientSession, bodies: Any) -> None:
    receiver = WebhookReceiver(UrlToken(["tok-a", "tok-b"]), ack="after_handler")
    seen: list[str] = []

    @receiver.on_message()
    async def handler(msg: BotMessage, ctx: EventContext) -> None:
        seen.append(msg.text)

    async with WebhookServer(receiver) as server:
        assert server.url.endswith("/webhook/tok-a")
        base = server.url.rsplit("/", 1)[0]
        async with http.post(server.url, data=bodies.message("c1", "a")) as resp:
            assert resp.status == 200
        async with http.post(base + "/tok-b", data=bodies.message("c1", "b")) as resp:
            assert resp.status == 200
        async with http.post(base, data=bodies.message("c1", "no token")) as resp:
            assert resp.status == 401
        async with http.post(base + "/tok-c", data=bodies.message("c1", "bad token")) as resp:
            assert resp.status == 401
    assert seen == ["a", "b"]


async def test_serve_forever_returns_when_closed(http: aiohttp.ClientSession, until: Any) -> None:
    receiver = WebhookReceiver(NoVerification())
    server = WebhookServer(receiver)
    task = asyncio.create_task(server.serve_forever())
    await until(lambda: server._url is not None)
    async with http.get(server.url) as resp:
        assert resp.status == 200
    await server.aclose()
    await asyncio.wait_for(task, 5)
    await server.aclose()  # idempotent


async def test_drain_waits_and_keeps_accepting(serve: Any, bodies: Any) -> None:
    receiver = WebhookReceiver(NoVerification())
    gate = asyncio.Event()
    done: list[str] = []

    @receiver.on_message()
    async def handler(msg: BotMessage, ctx: EventContext) -> None:
        await gate.wait()
        done.append(msg.text)

    client = await serve(receiver)
    await client.post("/webhook", data=bodies.message("c1", "one"))
    assert await receiver.drain(timeout=0.01) is False
    assert (await client.post("/webhook", data=bodies.message("c2", "two"))).status == 200
    gate.set()
    assert await receiver.drain() is True
    assert sorted(done) == ["one", "two"]
    assert not receiver.closing


async def test_graceful_shutdown_handles_everything_acked(
    serve: Any, bodies: Any, until: Any
) -> None:
    receiver = WebhookReceiver(NoVerification(), drain_timeout=5)
    gates = {f"m{i}": asyncio.Event() for i in range(20)}
    done: list[str] = []

    @receiver.on_message()
    async def handler(msg: BotMessage, ctx: EventContext) -> None:
        await gates[msg.text].wait()
        done.append(msg.text)

    client = await serve(receiver)
    for i in range(20):
        assert (
            await client.post("/webhook", data=bodies.message(f"c{i % 4}", f"m{i}"))
        ).status == 200
    closing = asyncio.create_task(receiver.aclose())
    await until(lambda: receiver.closing)
    resp = await client.post("/webhook", data=bodies.message("c9", "late"))
    assert resp.status == 503
    resp = await client.get("/webhook")
    assert resp.status == 503 and (await resp.json())["status"] == "closing"
    for gate in gates.values():
        gate.set()
    await closing
    assert sorted(done) == sorted(gates)
    assert receiver.cancelled_on_close == 0
    assert (await client.post("/webhook", data=bodies.message("c9", "later"))).status == 503


async def test_shutdown_cancels_and_counts_leftovers(
    serve: Any, bodies: Any, caplog: pytest.LogCaptureFixture, until: Any
) -> None:
    caplog.set_level(logging.WARNING, logger="ultimate_async")
    receiver = WebhookReceiver(NoVerification(), drain_timeout=0.05, max_concurrency=2)
    started: list[str] = []
    cancelled: list[str] = []

    @receiver.on_message()
    async def handler(msg: BotMessage, ctx: EventContext) -> None:
        started.append(msg.text)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(msg.text)
            raise

    client = await serve(receiver)
    # c1 gets three (one running, two queued), c2 one running, c3 one waiting for a slot
    for cid, text in [("c1", "a"), ("c1", "b"), ("c1", "c"), ("c2", "d"), ("c3", "e")]:
        assert (await client.post("/webhook", data=bodies.message(cid, text))).status == 200
    await until(lambda: len(started) == 2)
    await receiver.aclose()
    assert receiver.cancelled_on_close == 5
    assert sorted(cancelled) == sorted(started) and len(started) == 2
    assert receiver.pending == 0 and receiver.active_conversations == 0
    assert "cancelled 5 unfinished handler(s)" in caplog.text


async def test_after_handler_delivery_cancelled_by_shutdown_is_503(bodies: Any, until: Any) -> None:
    receiver = WebhookReceiver(NoVerification(), ack="after_handler", drain_timeout=0.01)

    @receiver.on_message()
    async def handler(msg: BotMessage, ctx: EventContext) -> None:
        await asyncio.Event().wait()

    delivery = asyncio.create_task(receiver.handle(bodies.message("c1", "stuck"), {}))
    await until(lambda: receiver.pending > 0)
    await receiver.aclose()
    assert (await delivery).status == 503


class _Closeable:
    def __init__(self) -> None:
        self.closed = 0

    async def aclose(self) -> None:
        self.closed += 1


async def test_shutdown_closes_dedup_and_only_owned_sessions() -> None:
    borrowed, owned = _Closeable(), _Closeable()
    dedup = MemoryDeduplicator()
    await dedup.claim("k")
    first = WebhookReceiver(NoVerification(), session=borrowed, dedup=dedup)  # type: ignore[arg-type]
    second = WebhookReceiver(NoVerification(), session=owned, close_session=True)  # type: ignore[arg-type]
    await asyncio.gather(first.aclose(), first.aclose())
    await second.aclose()
    await second.aclose()
    assert borrowed.closed == 0
    assert owned.closed == 1
    assert len(dedup) == 0


async def test_handlers_get_the_session_in_context(bodies: Any) -> None:
    session = _Closeable()
    receiver = WebhookReceiver(NoVerification(), session=session, ack="after_handler")  # type: ignore[arg-type]
    got: list[Any] = []

    @receiver.on_message()
    async def handler(msg: BotMessage, ctx: EventContext) -> None:
        got.append(ctx.session)
        got.append(ctx.headers.get("x-custom"))

    await receiver.handle(bodies.message("c1"), {"X-Custom": "v"})
    assert got == [session, "v"]
    await receiver.aclose()
