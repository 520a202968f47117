"""Receiver behaviour users rely on: observers, reuse, background work, ergonomics, refusals,
settings, and durable dispatch (retries, dead letters, recovery) over the Inbox contract."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ultimate_async.conversation import Conversation
from ultimate_async.errors import BackendUnavailableError, ConfigurationError, PayloadError
from ultimate_async.inbox import HandlerRetry, MemoryInbox, SqliteInbox
from ultimate_async.models.webhooks import (
    ActionCall,
    Alert,
    BotMessage,
    Escalate,
    Webhook,
    WidgetEscalate,
)
from ultimate_async.webhook import (
    EventContext,
    NoVerification,
    Refusal,
    SharedSecretHeader,
    WebhookReceiver,
    setup_webhook,
)


async def no_sleep(delay: float) -> None:
    await asyncio.sleep(0)


def instant_retry(max_attempts: int = 3) -> HandlerRetry:
    return HandlerRetry(max_attempts=max_attempts, sleep=no_sleep, random=lambda: 0.0)


# --- observers never steal ------------------------------------------------------------------


async def test_an_observer_and_the_catch_all_both_see_an_escalation(bodies: Any) -> None:
    receiver = WebhookReceiver(NoVerification())
    bridged: list[str] = []
    observed: list[str] = []

    @receiver.on_widget_escalate()  # the human hand-off bridge
    async def bridge(event: WidgetEscalate, ctx: EventContext) -> None:
        bridged.append(ctx.conversation_id)

    async def ask_style(event: Webhook, ctx: EventContext) -> None:  # what Conversation does
        observed.append(type(event).__name__)

    registration = receiver.register("visitor-1", ask_style)
    await registration.ready()
    assert (await receiver.handle(bodies.chat("widgetEscalate", "visitor-1"), {})).status == 200
    assert (await receiver.handle(bodies.chat("widgetEscalate", "visitor-2"), {})).status == 200
    assert await receiver.drain(timeout=5)
    assert sorted(bridged) == ["visitor-1", "visitor-2"]
    assert observed == ["WidgetEscalate"]
    await receiver.aclose()


async def test_ask_and_a_catch_all_escalation_bridge_both_see_the_escalation(
    ultimate_conversation: Conversation, ultimate_receiver: WebhookReceiver
) -> None:
    """The newcomer's service: ask() answers visitors, a catch-all bridges escalations."""
    bridged: list[str] = []

    @ultimate_receiver.on_team_online()
    async def online(check: Any, ctx: EventContext) -> bool:
        return True

    @ultimate_receiver.on_widget_escalate()
    async def bridge(event: WidgetEscalate, ctx: EventContext) -> None:
        bridged.append(ctx.conversation_id)

    reply = await ultimate_conversation.ask("live chat", timeout=5.0, settle=0.3)
    assert any(isinstance(e, WidgetEscalate) for e in reply.events)
    assert await ultimate_receiver.drain(timeout=5)
    assert bridged == [ultimate_conversation.conversation_id]


async def test_a_failing_handler_in_backoff_does_not_delay_the_observer(bodies: Any) -> None:
    release = asyncio.Event()
    receiver = WebhookReceiver(
        NoVerification(), retry=HandlerRetry(max_attempts=2, sleep=lambda _: release.wait())
    )
    observed: list[str] = []

    @receiver.on_message()
    async def flaky(msg: BotMessage, ctx: EventContext) -> None:
        if ctx.attempt == 1:
            raise RuntimeError("CRM down")

    async def observer(event: Webhook, ctx: EventContext) -> None:
        observed.append(getattr(event, "text", ""))

    receiver.register("c1", observer)
    for text in ("one", "two"):
        assert (await receiver.handle(bodies.message("c1", text), {})).status == 200
    async with asyncio.timeout(5):
        while len(observed) < 2:  # noqa: ASYNC110
            await asyncio.sleep(0)
    assert observed == ["one", "two"]  # while "one" waits for its retry
    release.set()
    assert await receiver.drain(timeout=5)
    await receiver.aclose()


# --- a receiver is reusable -------------------------------------------------------------------

MODULE_RECEIVER = WebhookReceiver(NoVerification())
SEEN: list[str] = []


@MODULE_RECEIVER.on_message()
async def _record(msg: BotMessage, ctx: EventContext) -> None:
    SEEN.append(msg.text)


async def test_a_module_level_receiver_serves_two_app_lifespans_in_a_row(bodies: Any) -> None:
    for lifespan in ("first", "second"):
        app = web.Application()
        setup_webhook(app, MODULE_RECEIVER, "/webhook")
        async with TestClient(TestServer(app)) as client:
            resp = await client.post("/webhook", data=bodies.message("c1", lifespan))
            assert resp.status == 200
            assert await MODULE_RECEIVER.drain(timeout=5)
        assert MODULE_RECEIVER.closing  # the app's shutdown closed it...
    assert SEEN == ["first", "second"]  # ...and the next start-up opened it again
    await MODULE_RECEIVER.aclose()


async def test_start_after_aclose_keeps_handlers_and_hands_out_what_was_left(
    bodies: Any,
) -> None:
    inbox = MemoryInbox()
    receiver = WebhookReceiver(NoVerification(), inbox=inbox, drain_timeout=0.05)
    gate = asyncio.Event()
    seen: list[str] = []

    @receiver.on_message()
    async def handler(msg: BotMessage, ctx: EventContext) -> None:
        if msg.text == "stuck":
            await gate.wait()
        seen.append(msg.text)

    assert (await receiver.handle(bodies.message("c1", "stuck"), {})).status == 200
    assert (await receiver.handle(bodies.message("c1", "queued"), {})).status == 200
    await asyncio.sleep(0.01)
    await receiver.aclose()
    assert receiver.cancelled_on_close == 2
    assert (await receiver.handle(bodies.message("c1", "refused"), {})).status == 503
    gate.set()
    await receiver.start()
    assert (await receiver.handle(bodies.message("c1", "new"), {})).status == 200
    assert await receiver.drain(timeout=5)
    assert seen == ["stuck", "queued", "new"]  # what was not done comes first, in order
    await receiver.aclose()


# --- background work --------------------------------------------------------------------------


async def test_spawned_work_runs_after_the_answer_is_drained_and_reported(bodies: Any) -> None:
    receiver = WebhookReceiver(NoVerification())
    joined: list[str] = []
    errors: list[tuple[str, Any]] = []
    gate = asyncio.Event()

    async def join_as_agent(conversation_id: str) -> None:
        await gate.wait()
        joined.append(conversation_id)

    async def explode() -> None:
        raise RuntimeError("agent backend down")

    @receiver.on_escalate()
    async def accept(event: Escalate, ctx: EventContext) -> bool:
        ctx.spawn(join_as_agent(ctx.conversation_id))
        ctx.spawn(explode())
        return True

    @receiver.on_error()
    async def on_error(error: BaseException, event: Any, ctx: EventContext | None) -> None:
        errors.append((str(error), type(event).__name__))

    resp = await receiver.handle(bodies.chat("escalate", "c9"), {})
    assert resp.status == 200 and joined == []  # answered before the work ran
    assert receiver.pending >= 1
    assert not await receiver.drain(timeout=0.05)  # drain waits for background work
    gate.set()
    assert await receiver.drain(timeout=5)
    assert joined == ["c9"]
    assert errors == [("agent backend down", "Escalate")]
    await receiver.aclose()


async def test_background_work_is_cancelled_after_drain_timeout() -> None:
    receiver = WebhookReceiver(NoVerification(), drain_timeout=0.05)
    await receiver.start()
    cancelled = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    receiver.spawn(forever())
    await receiver.aclose()
    assert cancelled.is_set() and receiver.cancelled_on_close == 1


# --- handler ergonomics -----------------------------------------------------------------------


async def test_ctx_api_conversation_id_and_action_values(bodies: Any) -> None:
    receiver = WebhookReceiver(NoVerification())
    seen: list[Any] = []

    @receiver.on_action("balance")
    async def balance(call: ActionCall, ctx: EventContext) -> None:
        seen.append((ctx.conversation_id, call.value("userId"), call.values("userId")))
        seen.append((call.value("missing"), call.value("missing", "dflt"), call.values("no")))
        try:
            ctx.api  # noqa: B018 - the property is what is tested
        except ConfigurationError as exc:
            seen.append("session=" in str(exc))

    @receiver.on_alert()
    async def alert(event: Alert, ctx: EventContext) -> None:
        with pytest.raises(PayloadError):
            ctx.conversation_id  # noqa: B018
        seen.append("alert")

    assert (await receiver.handle(bodies.action("balance", "conv-7"), {})).status == 200
    resp = await receiver.handle(json.dumps({"botName": "b", "event": "x"}).encode(), {})
    assert resp.status == 200
    assert await receiver.drain(timeout=5)
    assert seen == [("conv-7", "42", ["42"]), (None, "dflt", []), True, "alert"]
    session = object()
    ctx = EventContext("c", None, None, None, {}, {}, session)  # type: ignore[arg-type]
    assert ctx.api is session
    await receiver.aclose()


# --- refusals -----------------------------------------------------------------------------------


async def test_every_refusal_is_recorded_with_its_reason_and_logged(
    bodies: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ultimate_async")
    receiver = WebhookReceiver(SharedSecretHeader("s3cret"), max_body_size=200)
    before = time.monotonic()
    assert (await receiver.handle(bodies.message("c1"), {})).status == 401
    auth = {"Authorization": "s3cret"}
    assert (await receiver.handle(b'{"data": {"eventType": 1}}', auth)).status == 400
    assert (await receiver.handle(b" " * 201, auth)).status == 413
    await receiver.aclose()
    assert (await receiver.handle(bodies.message("c1"), auth)).status == 503
    assert [r.status for r in receiver.refusals] == [401, 400, 413, 503]
    assert all(isinstance(r, Refusal) and r.at >= before for r in receiver.refusals)
    assert "authorization" in receiver.refusals[0].reason.lower()
    assert "s3cret" not in " ".join(r.reason for r in receiver.refusals)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 4
    assert all(r.reason in w for r, w in zip(receiver.refusals, warnings, strict=True))


async def test_an_inbox_that_cannot_store_answers_503(bodies: Any) -> None:
    class BrokenInbox(MemoryInbox):
        async def put(self, **kwargs: Any) -> str | None:
            raise BackendUnavailableError("disk full")

    receiver = WebhookReceiver(NoVerification(), inbox=BrokenInbox())

    @receiver.on_message()
    async def handler(msg: BotMessage, ctx: EventContext) -> None:
        return None

    assert (await receiver.handle(bodies.message("c1"), {})).status == 503
    assert receiver.refusals[-1].status == 503 and "disk full" in receiver.refusals[-1].reason
    await receiver.aclose()


async def test_no_handler_warns_once_per_kind(
    bodies: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ultimate_async")
    receiver = WebhookReceiver(NoVerification())
    for _ in range(3):
        assert (await receiver.handle(bodies.message("c1"), {})).status == 200
    notes = [r for r in caplog.records if "no handler for a message" in r.getMessage()]
    assert [r.levelno for r in notes] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    await receiver.aclose()


# --- settings -----------------------------------------------------------------------------------


async def test_settings_are_read_only_or_take_effect(bodies: Any) -> None:
    receiver = WebhookReceiver(NoVerification(), retry=HandlerRetry.none())
    for name, value in [
        ("ack", "after_handler"),
        ("max_concurrency", 1),
        ("inbox", None),
        ("bus", None),
        ("retry", None),
        ("dedup", None),
        ("max_body_size", 10),
    ]:
        with pytest.raises(AttributeError):
            setattr(receiver, name, value)
    with pytest.raises(ConfigurationError):
        receiver.handler_timeout = 0

    @receiver.on_message()
    async def slow(msg: BotMessage, ctx: EventContext) -> None:
        await asyncio.sleep(1)

    @receiver.on_team_online()
    async def slow_online(event: Any, ctx: EventContext) -> bool:
        await asyncio.sleep(1)
        return True

    timed_out: list[str] = []

    @receiver.on_error()
    async def on_error(error: BaseException, event: Any, ctx: EventContext | None) -> None:
        timed_out.append(type(error).__name__)

    receiver.handler_timeout = 0.01
    receiver.request_timeout = 0.01
    assert (await receiver.handle(bodies.message("c1"), {})).status == 200
    resp = await receiver.handle(bodies.chat("isTeamOnline"), {})
    assert json.loads(resp.body) == {"isOnline": False}
    assert await receiver.drain(timeout=5)
    assert timed_out == ["TimeoutError", "TimeoutError"]
    await receiver.aclose()


def test_after_handler_with_an_inbox_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        WebhookReceiver(NoVerification(), ack="after_handler", inbox=MemoryInbox())


# --- retries, dead letters, order -------------------------------------------------------------


async def test_a_failing_handler_is_retried_in_order_while_others_go_on(bodies: Any) -> None:
    receiver = WebhookReceiver(NoVerification(), retry=instant_retry(3))
    runs: list[tuple[str, int, str | None]] = []
    fail_first = {"c1:one": 2}

    @receiver.on_message()
    async def handler(msg: BotMessage, ctx: EventContext) -> None:
        runs.append((msg.text, ctx.attempt, ctx.delivery_id))
        if fail_first.get(f"{ctx.conversation_id}:{msg.text}", 0) >= ctx.attempt:
            raise RuntimeError("transient")

    for cid, text in [("c1", "one"), ("c1", "two"), ("c2", "other")]:
        assert (await receiver.handle(bodies.message(cid, text), {})).status == 200
    assert await receiver.drain(timeout=5)
    texts = [(t, a) for t, a, _ in runs]
    c1 = [x for x in texts if x[0] != "other"]
    assert c1 == [("one", 1), ("one", 2), ("one", 3), ("two", 1)]  # "two" waited
    assert texts.index(("other", 1)) < texts.index(("one", 3))  # c2 did not wait
    ids = {d for t, _, d in runs if t == "one"}
    assert len(ids) == 1 and None not in ids  # one delivery id across attempts
    assert (await receiver.inbox.stats()).pending == 0
    await receiver.aclose()


async def test_after_max_attempts_a_dead_letter_and_the_conversation_goes_on(
    bodies: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ultimate_async")
    receiver = WebhookReceiver(NoVerification(), retry=instant_retry(2))
    handled: list[str] = []
    reported: list[tuple[str, int]] = []

    @receiver.on_message()
    async def handler(msg: BotMessage, ctx: EventContext) -> None:
        if msg.text == "poison":
            raise ValueError("cannot parse order 17")
        handled.append(msg.text)

    @receiver.on_error()
    async def on_error(error: BaseException, event: Any, ctx: EventContext | None) -> None:
        assert ctx is not None
        reported.append((str(error), ctx.attempt))

    for text in ("poison", "after"):
        assert (await receiver.handle(bodies.message("c1", text), {})).status == 200
    assert await receiver.drain(timeout=5)
    assert handled == ["after"] and reported == [("cannot parse order 17", 2)]
    letters = [letter async for letter in receiver.inbox.dead_letters()]
    assert [(x.conversation_id, x.attempts) for x in letters] == [("c1", 2)]
    assert "ValueError: cannot parse order 17" in letters[0].last_error
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "dead letter" in errors[0].getMessage()
    await receiver.inbox.replay(letters[0].delivery_id)  # repaired: handled once more
    assert await receiver.drain(timeout=5)
    assert reported[-1] == ("cannot parse order 17", 2)
    await receiver.aclose()


async def test_a_durable_inbox_deduplicates_and_recovers_on_start(
    bodies: Any, tmp_path: Path
) -> None:
    path = tmp_path / "inbox.sqlite3"
    first = WebhookReceiver(NoVerification(), inbox=SqliteInbox(path), drain_timeout=0.05)

    @first.on_message()
    async def hang(msg: BotMessage, ctx: EventContext) -> None:
        await asyncio.Event().wait()

    for text, mid in [("a", "m1"), ("a", "m1"), ("b", "m2")]:
        assert (await first.handle(bodies.message("c1", text, message_id=mid), {})).status == 200
    await first.aclose()  # both cancelled: stored, not done

    second = WebhookReceiver(NoVerification(), inbox=SqliteInbox(path))
    seen: list[tuple[str, int, str | None]] = []

    @second.on_message()
    async def record(msg: BotMessage, ctx: EventContext) -> None:
        seen.append((msg.text, ctx.attempt, ctx.dedup_key))

    await second.start()
    assert (await second.handle(bodies.message("c1", "c", message_id="m3"), {})).status == 200
    assert (await second.handle(bodies.message("c1", "a", message_id="m1"), {})).status == 200
    assert await second.drain(timeout=5)
    assert [t for t, _, _ in seen] == ["a", "b", "c"]  # recovered first, in order, once
    await second.aclose()


class _Recording(MemoryInbox):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    async def done(self, entry: Any) -> None:
        self.calls.append(f"done:{entry.kind}")
        await super().done(entry)

    async def put(
        self,
        *,
        conversation_id: str | None,
        kind: str,
        raw: Mapping[str, Any],
        dedup_key: str | None,
    ) -> str | None:
        self.calls.append(f"put:{kind}")
        return await super().put(
            conversation_id=conversation_id, kind=kind, raw=raw, dedup_key=dedup_key
        )


async def test_requests_are_answered_inline_and_never_stored(bodies: Any) -> None:
    inbox = _Recording()
    receiver = WebhookReceiver(NoVerification(), inbox=inbox)

    @receiver.on_message()
    async def handler(msg: BotMessage, ctx: EventContext) -> None:
        return None

    assert (await receiver.handle(bodies.chat("isTeamOnline", "c1"), {})).status == 200
    assert (await receiver.handle(bodies.action("x"), {})).status == 200
    assert (await receiver.handle(bodies.message("c1"), {})).status == 200
    assert await receiver.drain(timeout=5)
    assert inbox.calls == ["put:message", "done:message"]
    await receiver.aclose()


async def test_drain_does_not_wait_for_entries_a_shared_inbox_hands_to_other_replicas(
    bodies: Any,
) -> None:
    class ElsewhereInbox(MemoryInbox):
        """Like RedisInbox when another replica holds the partition: put here, got there."""

        shared = True

        async def get(self) -> Any:
            await asyncio.Event().wait()

    receiver = WebhookReceiver(NoVerification(), inbox=ElsewhereInbox())

    @receiver.on_message()
    async def handler(msg: BotMessage, ctx: EventContext) -> None:
        return None

    assert (await receiver.handle(bodies.message("c1"), {})).status == 200
    assert await receiver.drain(timeout=1)
    assert receiver.pending == 0
    await receiver.aclose()
