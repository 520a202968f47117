"""The inbox figures a scrape shows are the inbox's figures at that moment, through both front
ends served for real (aiohttp's ``WebhookServer``, ``WebhookApp`` on uvicorn): an operator who
purges a dead letter, or whose backlog drains, sees it at the next scrape."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from ultimate_async import telemetry
from ultimate_async.asgi import WebhookApp
from ultimate_async.inbox import HandlerRetry, MemoryInbox
from ultimate_async.inbox.base import InboxStats
from ultimate_async.testing import make_bot_message, make_delivery
from ultimate_async.webhook import EventContext, SharedSecretHeader, WebhookReceiver, WebhookServer

if TYPE_CHECKING:
    from conftest import Otel

SECRET = "inbox-figures-secret-0123456789"
VERIFIER = SharedSecretHeader(SECRET)

Serve = Callable[[WebhookReceiver], contextlib.AbstractAsyncContextManager[str]]


@contextlib.asynccontextmanager
async def aiohttp_front(receiver: WebhookReceiver) -> AsyncIterator[str]:
    async with WebhookServer(receiver, port=0, metrics_path="/metrics") as server:
        yield server.url.rsplit("/", 1)[0]


@contextlib.asynccontextmanager
async def uvicorn_front(receiver: WebhookReceiver) -> AsyncIterator[str]:
    app = WebhookApp(receiver, metrics_path="/metrics")
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, lifespan="on", log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                    raise AssertionError("uvicorn exited before serving")
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        await task


FRONT_ENDS = pytest.mark.parametrize(
    "serve", [aiohttp_front, uvicorn_front], ids=["aiohttp", "uvicorn"]
)


async def scrape(http: aiohttp.ClientSession, base: str) -> dict[str, float]:
    async with http.get(f"{base}/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["ultimate_inbox_pending"].type == "gauge"
    assert families["ultimate_inbox_dead_letters_total"].type == "gauge"
    return {
        name: families[name].samples[0].value
        for name in ("ultimate_inbox_pending", "ultimate_inbox_dead_letters_total")
    }


def figures(stats: InboxStats) -> dict[str, float]:
    return {
        "ultimate_inbox_pending": stats.pending,
        "ultimate_inbox_dead_letters_total": stats.dead,
    }


@FRONT_ENDS
async def test_a_scrape_shows_the_backlog_and_dead_letters_as_they_are_now(
    serve: Serve, otel: Otel
) -> None:
    receiver = WebhookReceiver(VERIFIER, retry=HandlerRetry.none())
    gate = asyncio.Event()
    waiting = asyncio.Event()

    @receiver.on_message()
    async def on_message(event: Any, ctx: EventContext) -> None:
        if event.text == "fail":
            raise RuntimeError("downstream refused")
        waiting.set()
        await gate.wait()

    async with serve(receiver) as base, aiohttp.ClientSession() as http:
        for n in range(3):
            body, headers = make_delivery(make_bot_message(f"conv-{n}", "fail"), VERIFIER)
            async with http.post(f"{base}/webhook", data=body, headers=headers) as resp:
                assert resp.status == 200
        assert await receiver.drain(timeout=5)
        body, headers = make_delivery(make_bot_message("conv-w", "wait"), VERIFIER)
        async with http.post(f"{base}/webhook", data=body, headers=headers) as resp:
            assert resp.status == 200
        await asyncio.wait_for(waiting.wait(), 5)

        # One running (pending until done), three dead: no dead letter happened since the
        # handler started, so only a read at scrape time can know about the pending one.
        stats = await receiver.inbox.stats()
        assert stats == InboxStats(pending=1, dead=3)
        assert await scrape(http, base) == figures(stats)
        assert otel.values("ultimate.inbox.pending") == {(): 1}
        assert otel.values("ultimate.inbox.dead_letters") == {(): 3}

        gate.set()
        assert await receiver.drain(timeout=5)
        first, *_ = [d async for d in receiver.inbox.dead_letters()]
        await receiver.inbox.purge(first.delivery_id)
        stats = await receiver.inbox.stats()
        assert stats == InboxStats(pending=0, dead=2)
        assert await scrape(http, base) == figures(stats)
        assert otel.values("ultimate.inbox.pending") == {(): 0}
        assert otel.values("ultimate.inbox.dead_letters") == {(): 2}


class FlakyStatsInbox(MemoryInbox):
    """A memory inbox whose ``stats()`` fails while ``broken`` is set, like storage gone away."""

    broken = False

    async def stats(self) -> InboxStats:
        if self.broken:
            raise ConnectionError("storage went away")
        return await super().stats()


async def test_an_unavailable_inbox_leaves_the_last_figures_and_the_scrape_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    inbox = FlakyStatsInbox()
    receiver = WebhookReceiver(VERIFIER, inbox=inbox, retry=HandlerRetry.none())

    @receiver.on_message()
    async def on_message(event: Any, ctx: EventContext) -> None:
        raise RuntimeError("downstream refused")

    async with aiohttp_front(receiver) as base, aiohttp.ClientSession() as http:
        body, headers = make_delivery(make_bot_message("conv-x", "fail"), VERIFIER)
        async with http.post(f"{base}/webhook", data=body, headers=headers) as resp:
            assert resp.status == 200
        assert await receiver.drain(timeout=5)
        assert await scrape(http, base) == figures(InboxStats(pending=0, dead=1))
        [dead] = [d async for d in inbox.dead_letters()]
        await inbox.purge(dead.delivery_id)
        inbox.broken = True
        with caplog.at_level(logging.DEBUG, logger="ultimate_async.telemetry"):
            shown = await scrape(http, base)
    assert shown == figures(InboxStats(pending=0, dead=1))  # the last figures known
    [record] = [r for r in caplog.records if r.name == "ultimate_async.telemetry"]
    assert record.levelno == logging.DEBUG and record.exc_info is not None


async def test_a_slow_inbox_is_given_up_on_after_the_timeout() -> None:
    class Stuck(MemoryInbox):
        async def stats(self) -> InboxStats:
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

    telemetry.inbox_gauge(pending=4, dead=2)
    async with asyncio.timeout(2):
        assert await telemetry.refresh_inbox(Stuck(), timeout=0.05) is False
    assert telemetry._inbox == (4, 2)
    assert await telemetry.refresh_inbox(MemoryInbox()) is True
    assert telemetry._inbox == (0, 0)
