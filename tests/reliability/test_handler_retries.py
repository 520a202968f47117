"""A failing notification handler is retried in place; its conversation waits, the others go on.

Deliveries go through a real port (``WebhookServer``).  The retry backoff is a gate (the
``sleep`` a :class:`HandlerRetry` is given), so the tests see exactly what happens while an
event waits for its next attempt, without sleeping.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from ultimate_async.inbox import HandlerRetry, Inbox, InboxStats, MemoryInbox, SqliteInbox
from ultimate_async.testing import make_bot_message
from ultimate_async.webhook import WebhookReceiver, WebhookServer
from ultimate_async.webhook.verify import NoVerification


def message(cid: str, text: str) -> bytes:
    return json.dumps(make_bot_message(cid, text, message_id=f"{cid}/{text}")).encode()


class GatedSleep:
    """The backoff of a :class:`HandlerRetry`: records each delay and waits for :meth:`open`."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.waiting = asyncio.Event()
        self._gate = asyncio.Event()

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        self.waiting.set()
        await self._gate.wait()

    def open(self) -> None:
        self._gate.set()


class Flaky:
    """Handles messages; ``fail[text]`` more attempts of that text raise first."""

    def __init__(self, fail: dict[str, int]) -> None:
        self.fail = fail
        self.runs: list[tuple[str, str, int]] = []
        self.handled: dict[str, list[str]] = defaultdict(list)
        self.ids: dict[str, set[str | None]] = defaultdict(set)
        self.errors: list[tuple[str, BaseException, int]] = []
        self.progress = asyncio.Event()

    async def __call__(self, msg: Any, ctx: Any) -> None:
        cid = ctx.platform_conversation_id
        self.runs.append((cid, msg.text, ctx.attempt))
        self.ids[msg.text].add(ctx.delivery_id)
        if self.fail.get(msg.text, 0) > 0:
            self.fail[msg.text] -= 1
            raise RuntimeError(f"transient failure on {msg.text}")
        self.handled[cid].append(msg.text)
        self.progress.set()

    async def on_error(self, error: BaseException, event: Any, ctx: Any) -> None:
        self.errors.append((event.text, error, ctx.attempt))


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(http: aiohttp.ClientSession, url: str, body: bytes) -> int:
    async with http.post(url, data=body) as resp:
        await resp.read()
        return resp.status


async def wait_handled(flaky: Flaky, cid: str, count: int) -> None:
    async with asyncio.timeout(5):
        while len(flaky.handled[cid]) < count:
            flaky.progress.clear()
            await flaky.progress.wait()


def receiver_for(flaky: Flaky, retry: HandlerRetry, inbox: Inbox | None = None) -> WebhookReceiver:
    receiver = WebhookReceiver(NoVerification(), retry=retry, inbox=inbox)
    receiver.on_message()(flaky)
    receiver.on_error()(flaky.on_error)
    return receiver


async def test_a_retrying_event_holds_back_its_conversation_only(
    http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ultimate_async")
    sleep = GatedSleep()
    flaky = Flaky({"flaky": 2})
    retry = HandlerRetry(max_attempts=5, backoff_base=1.0, sleep=sleep, random=lambda: 0.0)
    receiver = receiver_for(flaky, retry)
    async with WebhookServer(receiver) as server:
        for text in ("first", "flaky", "after-1", "after-2"):
            assert await post(http, server.url, message("a", text)) == 200
        await asyncio.wait_for(sleep.waiting.wait(), 5)
        # "flaky" failed once and waits for its retry: the conversation's later events wait
        # too, while another conversation is handled in full meanwhile
        for n in range(20):
            assert await post(http, server.url, message("b", f"m{n}")) == 200
        await wait_handled(flaky, "b", 20)
        assert flaky.handled["a"] == ["first"]
        assert ("a", "after-1", 1) not in flaky.runs
        assert receiver.pending == 3  # "flaky" and the two behind it
        assert (await receiver.inbox.stats()).pending == 3
        sleep.open()
        assert await receiver.drain(timeout=5)
    assert flaky.handled["a"] == ["first", "flaky", "after-1", "after-2"]
    assert flaky.handled["b"] == [f"m{n}" for n in range(20)]
    assert [run for run in flaky.runs if run[0] == "a"] == [
        ("a", "first", 1),
        ("a", "flaky", 1),
        ("a", "flaky", 2),
        ("a", "flaky", 3),
        ("a", "after-1", 1),
        ("a", "after-2", 1),
    ]
    assert len(flaky.ids["flaky"]) == 1  # the same delivery id on every attempt
    # capped exponential backoff, with the jitter factor at its floor (random() == 0.0)
    assert sleep.delays == [0.5, 1.0]
    assert flaky.errors == []  # it succeeded in the end: nobody is told of a failure
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    retries = [w for w in warnings if "handler failed" in w]
    assert len(retries) == 2
    assert "attempt 1 of 5" in retries[0] and "attempt 2 of 5" in retries[1]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert receiver.pending == 0 and receiver.active_conversations == 0


@pytest.mark.parametrize("store", ["memory", "sqlite"])
async def test_a_dead_letter_frees_its_conversation_and_can_be_replayed(
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Any,
    store: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="ultimate_async")
    flaky = Flaky({"doomed": 3})
    retry = HandlerRetry(max_attempts=3, backoff_base=0.01, backoff_max=0.02)
    inbox: Inbox = MemoryInbox() if store == "memory" else SqliteInbox(tmp_path / "inbox.db")
    receiver = receiver_for(flaky, retry, inbox)
    async with WebhookServer(receiver) as server:
        for text in ("doomed", "next"):
            assert await post(http, server.url, message("a", text)) == 200
        assert await receiver.drain(timeout=5)
        # the conversation went on after its dead letter
        assert flaky.handled["a"] == ["next"]
        assert flaky.runs == [
            ("a", "doomed", 1),
            ("a", "doomed", 2),
            ("a", "doomed", 3),
            ("a", "next", 1),
        ]
        # on_error once, after the last attempt
        assert [(text, str(error), attempt) for text, error, attempt in flaky.errors] == [
            ("doomed", "transient failure on doomed", 3)
        ]
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "dead letter after 3 attempt(s)" in errors[0].getMessage()
        assert errors[0].exc_info is not None  # the traceback of the last attempt
        dead = [letter async for letter in receiver.inbox.dead_letters()]
        assert len(dead) == 1
        letter = dead[0]
        assert (letter.conversation_id, letter.kind, letter.attempts) == ("a", "message", 3)
        assert letter.last_error == "RuntimeError: transient failure on doomed"
        assert letter.delivery_id in flaky.ids["doomed"]
        assert await receiver.inbox.stats() == InboxStats(pending=0, dead=1)
        # repaired: the replayed dead letter runs again, from attempt 1, and is done
        await receiver.inbox.replay(letter.delivery_id)
        await wait_handled(flaky, "a", 2)
        assert await receiver.drain(timeout=5)
    assert flaky.handled["a"] == ["next", "doomed"]
    assert flaky.runs[-1] == ("a", "doomed", 1)
    assert flaky.ids["doomed"] == {letter.delivery_id}
    assert len(flaky.errors) == 1
    if store == "sqlite":
        await inbox.start()
        try:
            assert await inbox.stats() == InboxStats(pending=0, dead=0)
        finally:
            await inbox.aclose()


async def test_a_shutdown_during_backoff_keeps_the_entry_for_the_next_start(
    http: aiohttp.ClientSession, tmp_path: Any
) -> None:
    """Past ``drain_timeout`` a waiting retry is cancelled and counted; a durable inbox hands
    the entry out again on the next start, first, with the attempt count it had reached."""
    sleep = GatedSleep()  # never opened: the retry waits until the shutdown
    flaky = Flaky({"flaky": 1})
    path = tmp_path / "inbox.db"
    retry = HandlerRetry(max_attempts=5, sleep=sleep)
    receiver = receiver_for(flaky, retry, SqliteInbox(path))
    receiver.drain_timeout = 0.2
    async with WebhookServer(receiver) as server:
        for text in ("flaky", "after"):
            assert await post(http, server.url, message("a", text)) == 200
        await asyncio.wait_for(sleep.waiting.wait(), 5)
    assert receiver.cancelled_on_close == 2  # the waiting retry and the event behind it
    assert flaky.runs == [("a", "flaky", 1)] and flaky.errors == []
    first_id = flaky.ids["flaky"]

    again = receiver_for(flaky, HandlerRetry(max_attempts=5), SqliteInbox(path))
    async with WebhookServer(again):
        await wait_handled(flaky, "a", 2)
        assert await again.drain(timeout=5)
    assert flaky.runs == [("a", "flaky", 1), ("a", "flaky", 2), ("a", "after", 1)]
    assert flaky.ids["flaky"] == first_id
    assert flaky.handled["a"] == ["flaky", "after"]
