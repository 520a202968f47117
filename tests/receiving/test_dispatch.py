"""Dispatch: per-conversation order, concurrency, requests, ack modes, dedup, errors, routers."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections import defaultdict
from typing import Any

import pytest

from ultimate_async.errors import HandlerConflictError
from ultimate_async.inbox import HandlerRetry
from ultimate_async.models.outbound import ActionResult
from ultimate_async.models.webhooks import (
    ActionCall,
    Alert,
    BotMessage,
    Escalate,
    TeamOnlineCheck,
    UnknownChatEvent,
    UnknownWebhook,
    Webhook,
)
from ultimate_async.webhook import (
    EventContext,
    NoVerification,
    Router,
    SharedSecretHeader,
    WebhookReceiver,
)

# --- ordering & concurrency ----------------------------------------------------------------------


async def test_per_conversation_order_under_random_gating(serve: Any, bodies: Any) -> None:
    rng = random.Random(1234)
    receiver = WebhookReceiver(NoVerification(), max_concurrency=50)
    conversations = [f"conv-{i}" for i in range(6)]
    per_conv = 8
    gates: dict[str, asyncio.Event] = {}
    running: dict[str, int] = defaultdict(int)
    overlaps: list[str] = []
    done: dict[str, list[int]] = defaultdict(list)

    @receiver.on_message()
    async def handle(msg: BotMessage, ctx: EventContext) -> None:
        cid = msg.platform_conversation_id
        assert cid is not None
        running[cid] += 1
        if running[cid] > 1:
            overlaps.append(cid)
        await gates[msg.text].wait()
        done[cid].append(int(msg.text.rsplit("-", 1)[1]))
        running[cid] -= 1

    client = await serve(receiver)
    sends = [(cid, n) for n in range(per_conv) for cid in conversations]
    for cid, n in sends:
        gates[f"{cid}-{n}"] = asyncio.Event()
    for cid, n in sends:
        resp = await client.post("/webhook", data=bodies.message(cid, f"{cid}-{n}"))
        assert resp.status == 200  # acked before the handler could run (its gate is closed)

    release = list(gates)
    rng.shuffle(release)
    for name in release:
        gates[name].set()
        for _ in range(rng.randint(0, 3)):
            await asyncio.sleep(0)

    assert await receiver.drain(timeout=5)
    assert overlaps == []
    assert {cid: done[cid] for cid in conversations} == {
        cid: list(range(per_conv)) for cid in conversations
    }
    assert receiver.active_conversations == 0


async def test_conversations_run_concurrently_up_to_max_concurrency(
    serve: Any, bodies: Any, until: Any
) -> None:
    receiver = WebhookReceiver(NoVerification(), max_concurrency=3)
    gate = asyncio.Event()
    active = 0
    peak = 0
    started: list[str] = []

    @receiver.on_message()
    async def handle(msg: BotMessage, ctx: EventContext) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        started.append(msg.text)
        await gate.wait()
        active -= 1

    client = await serve(receiver)
    for i in range(8):
        assert (await client.post("/webhook", data=bodies.message(f"c{i}", f"m{i}"))).status == 200
    await until(lambda: len(started) == 3)
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(started) == 3 and peak == 3  # capped, and the cap is actually reached
    gate.set()
    assert await receiver.drain(timeout=5)
    assert peak == 3 and sorted(started) == sorted(f"m{i}" for i in range(8))


async def test_no_per_conversation_state_after_many_conversations(bodies: Any) -> None:
    receiver = WebhookReceiver(NoVerification(), dedup=None)
    count = 0

    @receiver.on_message()
    async def handle(msg: BotMessage, ctx: EventContext) -> None:
        nonlocal count
        count += 1

    for i in range(10_000):
        resp = await receiver.handle(bodies.message(f"conv-{i}", "x"), {})
        assert resp.status == 200
    assert await receiver.drain(timeout=30)
    assert count == 10_000
    assert receiver.active_conversations == 0
    assert receiver._dispatcher.executor._queues == {}
    assert receiver._holds == {} and receiver._registrations == {}
    assert receiver.pending == 0
    await receiver.aclose()


async def test_events_without_conversation_are_handled(bodies: Any) -> None:
    receiver = WebhookReceiver(NoVerification(), ack="after_handler")
    seen: list[Any] = []

    @receiver.on_alert()
    async def alert(event: Alert, ctx: EventContext) -> None:
        seen.append(event)

    @receiver.on_message()
    async def msg(event: BotMessage, ctx: EventContext) -> None:
        seen.append(event)

    resp = await receiver.handle(json.dumps({"botName": "b", "event": "test"}).encode(), {})
    assert resp.status == 200
    resp = await receiver.handle(bodies.message(None, "no conversation"), {})
    assert resp.status == 200
    assert seen == [Alert(bot_name="b", event="test"), BotMessage(text="no conversation")]
    await receiver.aclose()


# --- dispatch precedence -------------------------------------------------------------------------


async def test_specific_handler_wins_and_a_registration_observes_without_stealing(
    serve: Any, bodies: Any
) -> None:
    receiver = WebhookReceiver(NoVerification(), ack="after_handler")
    calls: list[tuple[str, str | None]] = []

    @receiver.on_message()
    async def catch_all(msg: BotMessage, ctx: EventContext) -> None:
        calls.append(("all", msg.platform_conversation_id))

    @receiver.on_message(conversation_id="special")
    async def special(msg: BotMessage, ctx: EventContext) -> None:
        calls.append(("special", msg.platform_conversation_id))

    async def observer(event: Webhook, ctx: EventContext) -> None:
        calls.append(("registered", ctx.platform_conversation_id))

    registration = receiver.register("watched", observer)
    client = await serve(receiver)
    for cid in ("special", "watched", "other"):
        assert (await client.post("/webhook", data=bodies.message(cid))).status == 200
    assert await receiver.drain(timeout=5)
    registration.remove()
    registration.remove()  # idempotent
    assert (await client.post("/webhook", data=bodies.message("watched"))).status == 200
    assert await receiver.drain(timeout=5)
    assert sorted(calls) == sorted(
        [
            ("special", "special"),
            ("registered", "watched"),  # the observer saw it...
            ("all", "watched"),  # ...and the catch-all still handled it
            ("all", "other"),
            ("all", "watched"),  # removed: only the catch-all
        ]
    )
    assert not registration.active


async def test_an_exclusive_registration_takes_the_catch_alls_place(bodies: Any) -> None:
    receiver = WebhookReceiver(NoVerification())
    calls: list[str] = []

    @receiver.on_message()
    async def catch_all(msg: BotMessage, ctx: EventContext) -> None:
        calls.append(f"all:{msg.platform_conversation_id}")

    @receiver.on_message(conversation_id="pinned")
    async def pinned(msg: BotMessage, ctx: EventContext) -> None:
        calls.append("pinned")

    async def owner(event: Webhook, ctx: EventContext) -> None:
        calls.append(f"owner:{ctx.platform_conversation_id}")

    receiver.register("mine", owner, exclusive=True)
    receiver.register("pinned", owner, exclusive=True)
    for cid in ("mine", "pinned", "other"):
        assert (await receiver.handle(bodies.message(cid), {})).status == 200
    assert await receiver.drain(timeout=5)
    # exclusive: once, instead of the catch-all; a conversation-specific handler still wins
    # (and the exclusive registration observes that one)
    assert sorted(calls) == sorted(["owner:mine", "pinned", "owner:pinned", "all:other"])
    await receiver.aclose()


async def test_registered_observer_sees_requests_but_does_not_answer(bodies: Any) -> None:
    receiver = WebhookReceiver(NoVerification())
    observed: list[str] = []

    async def observer(event: Webhook, ctx: EventContext) -> None:
        observed.append(type(event).__name__)
        return None

    @receiver.on_escalate()
    async def refuse(event: Escalate, ctx: EventContext) -> bool:
        return False

    registration = receiver.register("c1", observer)
    await registration.ready()
    assert (await receiver.handle(bodies.chat("escalate", "c1"), {})).status == 409
    resp = await receiver.handle(bodies.chat("isTeamOnline", "c1"), {})
    assert json.loads(resp.body) == {"isOnline": False}
    assert (await receiver.handle(bodies.message("c1"), {})).status == 200
    assert await receiver.drain(timeout=5)
    assert observed == ["Escalate", "TeamOnlineCheck", "BotMessage"]
    await receiver.aclose()


# --- requests ------------------------------------------------------------------------------------


async def test_team_online(serve: Any, bodies: Any) -> None:
    receiver = WebhookReceiver(NoVerification(), request_timeout=0.05)
    client = await serve(receiver)
    body = bodies.chat("isTeamOnline", teamId="t1")

    resp = await client.post("/webhook", data=body)
    assert resp.status == 200 and await resp.json() == {"isOnline": False}  # no handler
    assert resp.content_type == "application/json"

    answers: list[Any] = [True]

    @receiver.on_team_online()
    async def online(event: TeamOnlineCheck, ctx: EventContext) -> bool:
        value = answers.pop(0)
        if isinstance(value, BaseException):
            raise value
        if value == "hang":
            await asyncio.Event().wait()
        return bool(value)

    answers[:] = [True, False, RuntimeError("boom"), "hang"]
    expected = [True, False, False, False]
    for want in expected:
        resp = await client.post("/webhook", data=body)
        assert resp.status == 200
        assert await resp.json() == {"isOnline": want}


async def test_actions(serve: Any, bodies: Any) -> None:
    receiver = WebhookReceiver(NoVerification(), request_timeout=0.05)
    client = await serve(receiver)
    resp = await client.post("/webhook", data=bodies.action("anything"))
    assert resp.status == 200 and await resp.json() == {"results": []}

    @receiver.on_action("balance")
    async def balance(call: ActionCall, ctx: EventContext) -> list[ActionResult]:
        user = call.param("userId")
        assert user is not None
        return [
            ActionResult("balance", f"100 for {user.value[0]}"),
            ActionResult("card", "4111", sanitize=True),
        ]

    @receiver.on_action()
    async def fallback(call: ActionCall, ctx: EventContext) -> list[ActionResult]:
        if call.name == "explode":
            raise ValueError("nope")
        if call.name == "hang":
            await asyncio.Event().wait()
        return [ActionResult("handled_by", "fallback")]

    resp = await client.post("/webhook", data=bodies.action("balance"))
    assert resp.status == 200
    assert await resp.json() == {
        "results": [
            {"key": "balance", "value": "100 for 42"},
            {"key": "card", "value": "4111", "sanitize": True},
        ]
    }
    resp = await client.post("/webhook", data=bodies.action("other"))
    assert await resp.json() == {"results": [{"key": "handled_by", "value": "fallback"}]}
    assert (await client.post("/webhook", data=bodies.action("explode"))).status == 500
    assert (await client.post("/webhook", data=bodies.action("hang"))).status == 500


async def test_action_name_and_conversation_precedence(bodies: Any) -> None:
    receiver = WebhookReceiver(NoVerification())
    for label, name, cid in [
        ("any", None, None),
        ("named", "x", None),
        ("conv", None, "c1"),
        ("conv-named", "x", "c1"),
    ]:

        async def handler(call: ActionCall, ctx: EventContext, label: str = label) -> Any:
            return [ActionResult("by", label)]

        receiver.on_action(name, conversation_id=cid)(handler)

    async def result(name: str, cid: str) -> str:
        resp = await receiver.handle(bodies.action(name, cid), {})
        return str(json.loads(resp.body)["results"][0]["value"])

    assert await result("x", "c1") == "conv-named"
    assert await result("y", "c1") == "conv"
    assert await result("x", "c2") == "named"
    assert await result("y", "c2") == "any"
    await receiver.aclose()


async def test_escalate_status_codes(serve: Any, bodies: Any) -> None:
    receiver = WebhookReceiver(NoVerification(), request_timeout=0.05)
    client = await serve(receiver)
    body = bodies.chat("escalate", "c1", escalateTo="team")
    assert (await client.post("/webhook", data=body)).status == 200  # no handler

    outcomes: list[Any] = []

    @receiver.on_escalate()
    async def escalate(event: Escalate, ctx: EventContext) -> bool | None:
        assert event.escalate_to == "team"
        value = outcomes.pop(0)
        if isinstance(value, BaseException):
            raise value
        if value == "hang":
            await asyncio.Event().wait()
        return value  # type: ignore[no-any-return]

    outcomes[:] = [None, True, False, RuntimeError("x"), "hang"]
    statuses = [(await client.post("/webhook", data=body)).status for _ in range(5)]
    assert statuses == [200, 200, 409, 500, 500]


async def test_requests_are_never_deduplicated(bodies: Any) -> None:
    receiver = WebhookReceiver(NoVerification(), dedup_key=lambda raw: "always-the-same")
    calls = 0

    @receiver.on_team_online()
    async def online(event: TeamOnlineCheck, ctx: EventContext) -> bool:
        nonlocal calls
        calls += 1
        assert ctx.dedup_key is None
        return True

    for _ in range(3):
        resp = await receiver.handle(bodies.chat("isTeamOnline"), {})
        assert json.loads(resp.body) == {"isOnline": True}
    assert calls == 3
    await receiver.aclose()


# --- ack modes, dedup ----------------------------------------------------------------------------


async def test_on_receive_acks_before_the_handler_runs(serve: Any, bodies: Any) -> None:
    receiver = WebhookReceiver(NoVerification())
    gate = asyncio.Event()
    finished: list[str] = []

    @receiver.on_message()
    async def slow(msg: BotMessage, ctx: EventContext) -> None:
        await gate.wait()
        finished.append(msg.text)

    client = await serve(receiver)
    resp = await client.post("/webhook", data=bodies.message("c1", "one"))
    assert resp.status == 200 and finished == []
    gate.set()
    assert await receiver.drain(timeout=5)
    assert finished == ["one"]


async def test_after_handler_waits_and_reports_failure(serve: Any, bodies: Any) -> None:
    receiver = WebhookReceiver(NoVerification(), ack="after_handler")
    finished: list[str] = []

    @receiver.on_message()
    async def handler(msg: BotMessage, ctx: EventContext) -> None:
        await asyncio.sleep(0)
        if msg.text == "bad":
            raise RuntimeError("handler bug")
        finished.append(msg.text)

    client = await serve(receiver)
    resp = await client.post("/webhook", data=bodies.message("c1", "good"))
    assert resp.status == 200 and finished == ["good"]
    resp = await client.post("/webhook", data=bodies.message("c1", "bad", message_id="m-bad"))
    assert resp.status == 500
    # a failed delivery is forgotten by dedup, so the platform's retry runs the handler again
    resp = await client.post("/webhook", data=bodies.message("c1", "bad", message_id="m-bad"))
    assert resp.status == 500


async def test_duplicates_are_acked_and_not_run_again(serve: Any, bodies: Any) -> None:
    receiver = WebhookReceiver(NoVerification(), ack="after_handler")
    seen: list[tuple[str, str | None]] = []

    @receiver.on_message()
    async def handler(msg: BotMessage, ctx: EventContext) -> None:
        seen.append((msg.text, ctx.dedup_key))

    client = await serve(receiver)
    for text, mid in [("a", "m1"), ("a-again", "m1"), ("b", "m2"), ("c", ""), ("c", "")]:
        assert (
            await client.post("/webhook", data=bodies.message("c1", text, message_id=mid))
        ).status == 200
    assert seen == [("a", "m1"), ("b", "m2"), ("c", None), ("c", None)]


async def test_dedup_can_be_disabled(bodies: Any) -> None:
    receiver = WebhookReceiver(NoVerification(), dedup=None, ack="after_handler")
    seen: list[str] = []

    @receiver.on_message()
    async def handler(msg: BotMessage, ctx: EventContext) -> None:
        seen.append(msg.text)

    for _ in range(2):
        await receiver.handle(bodies.message("c1", "same", message_id="m1"), {})
    assert seen == ["same", "same"]
    await receiver.aclose()


# --- errors --------------------------------------------------------------------------------------


async def test_raising_handler_is_logged_once_passed_to_on_error_and_queue_continues(
    serve: Any, bodies: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ultimate_async")
    receiver = WebhookReceiver(NoVerification(), handler_timeout=0.05, retry=HandlerRetry.none())
    handled: list[str] = []
    errors: list[tuple[str, str, str | None]] = []

    @receiver.on_message()
    async def handler(msg: BotMessage, ctx: EventContext) -> None:
        if msg.text == "explode":
            raise ValueError("exploded")
        if msg.text == "hang":
            await asyncio.Event().wait()
        handled.append(msg.text)

    @receiver.on_error()
    async def on_error(error: BaseException, event: Any, ctx: EventContext | None) -> None:
        errors.append(
            (type(error).__name__, event.text, ctx.platform_conversation_id if ctx else None)
        )
        raise RuntimeError("the error handler is broken too")

    client = await serve(receiver)
    for text in ("before", "explode", "hang", "after"):
        assert (await client.post("/webhook", data=bodies.message("conv-err", text))).status == 200
    assert await receiver.drain(timeout=5)
    assert handled == ["before", "after"]
    assert errors == [("ValueError", "explode", "conv-err"), ("TimeoutError", "hang", "conv-err")]
    failures = [
        r
        for r in caplog.records
        if "handler failed" in r.getMessage() and "on_error" not in r.getMessage()
    ]
    assert len(failures) == 1 and "conv-err" in failures[0].getMessage()
    assert "message" in failures[0].getMessage()
    timeouts = [r for r in caplog.records if "timed out" in r.getMessage()]
    assert len(timeouts) == 1
    assert sum("on_error handler failed" in r.getMessage() for r in caplog.records) == 2
    assert (
        await client.post("/webhook", data=bodies.message("conv-err", "still up"))
    ).status == 200


async def test_conversation_specific_on_error(bodies: Any) -> None:
    receiver = WebhookReceiver(NoVerification(), ack="after_handler")
    got: list[str] = []

    @receiver.on_message()
    async def boom(msg: BotMessage, ctx: EventContext) -> None:
        raise RuntimeError(msg.text)

    @receiver.on_error()
    async def general(error: BaseException, event: Any, ctx: EventContext | None) -> None:
        got.append(f"general:{error}")

    @receiver.on_error(conversation_id="vip")
    async def vip(error: BaseException, event: Any, ctx: EventContext | None) -> None:
        got.append(f"vip:{error}")

    await receiver.handle(bodies.message("vip", "a"), {})
    await receiver.handle(bodies.message("pleb", "b"), {})
    assert got == ["vip:a", "general:b"]
    await receiver.aclose()


async def test_logs_never_contain_bodies_or_sanitized_values(
    serve: Any, bodies: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver = WebhookReceiver(NoVerification(), ack="after_handler")

    @receiver.on_action()
    async def act(call: ActionCall, ctx: EventContext) -> list[ActionResult]:
        raise RuntimeError("action failed")

    @receiver.on_message()
    async def msg(event: BotMessage, ctx: EventContext) -> None:
        raise RuntimeError("message failed")

    client = await serve(receiver)
    secret_param = json.dumps(
        {
            "name": "pay",
            "platformConversationId": "c1",
            "data": [{"key": "iban", "value": ["DE-PRIVATE-IBAN"], "sanitize": True}],
        }
    ).encode()
    assert (await client.post("/webhook", data=secret_param)).status == 500
    assert (await client.post("/webhook", data=bodies.message("c1", "PRIVATE-TEXT"))).status == 500
    assert (
        await client.post("/webhook", data=b'{"data": {"eventType": 1, "x": "PRIVATE-BAD"}}')
    ).status == 400
    assert "DE-PRIVATE-IBAN" not in caplog.text
    assert "PRIVATE-TEXT" not in caplog.text
    assert "PRIVATE-BAD" not in caplog.text
    assert "action handler failed (conversation c1)" in caplog.text


# --- unknown -------------------------------------------------------------------------------------


async def test_unknown_events_go_to_on_unknown(bodies: Any) -> None:
    receiver = WebhookReceiver(NoVerification(), ack="after_handler")
    seen: list[Any] = []

    @receiver.on_unknown()
    async def unknown(event: UnknownChatEvent | UnknownWebhook, ctx: EventContext) -> None:
        seen.append(event)

    assert (await receiver.handle(bodies.chat("futureEvent", "c9", x=1), {})).status == 200
    assert (await receiver.handle(b'{"what": "ever"}', {})).status == 200
    assert seen == [
        UnknownChatEvent(
            "futureEvent",
            {"eventType": "futureEvent", "x": 1, "platformConversationId": "c9"},
            "c9",
        ),
        UnknownWebhook({"what": "ever"}),
    ]
    await receiver.aclose()


# --- registration rules --------------------------------------------------------------------------


def test_non_coroutine_handlers_are_type_errors() -> None:
    receiver = WebhookReceiver(NoVerification())

    def sync_handler(event: Any, ctx: Any) -> None:
        return None

    with pytest.raises(TypeError):
        receiver.on_message()(sync_handler)  # type: ignore[type-var]
    with pytest.raises(TypeError):
        receiver.register("c1", sync_handler)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Router().on_error()(sync_handler)  # type: ignore[type-var]

    class AsyncCallable:
        async def __call__(self, event: Any, ctx: Any) -> None:
            return None

    receiver.on_message()(AsyncCallable())


def test_handler_conflicts() -> None:
    receiver = WebhookReceiver(NoVerification())

    async def one(event: Any, ctx: Any) -> None:
        return None

    async def two(event: Any, ctx: Any) -> None:
        return None

    receiver.on_message()(one)
    receiver.on_message(conversation_id="c1")(one)
    receiver.on_escalate()(one)
    receiver.on_action("a")(one)
    receiver.on_action("b")(one)
    with pytest.raises(HandlerConflictError):
        receiver.on_message()(two)
    with pytest.raises(HandlerConflictError):
        receiver.on_message(conversation_id="c1")(two)
    with pytest.raises(HandlerConflictError):
        receiver.on_action("a")(two)
    receiver.on_message(replace=True)(two)
    assert receiver._handlers[("message", None, None)] is two

    receiver.register("c2", one)
    with pytest.raises(HandlerConflictError):
        receiver.register("c2", two)
    receiver.register("c2", two, replace=True)
    assert receiver._registrations["c2"].handler is two


async def test_router_include(bodies: Any) -> None:
    receiver = WebhookReceiver(NoVerification(), ack="after_handler")
    router = Router()
    sub = Router()
    seen: list[str] = []

    @router.on_message()
    async def from_router(msg: BotMessage, ctx: EventContext) -> None:
        seen.append(f"router:{msg.text}")

    router.include_router(sub)
    receiver.include_router(router)

    @sub.on_message(conversation_id="c-sub")  # added after inclusion: still reaches the receiver
    async def from_sub(msg: BotMessage, ctx: EventContext) -> None:
        seen.append(f"sub:{msg.text}")

    await receiver.handle(bodies.message("c1", "x"), {})
    await receiver.handle(bodies.message("c-sub", "y"), {})
    assert seen == ["router:x", "sub:y"]
    assert "c-sub" in receiver._holds  # a conversation-specific handler holds its conversation

    other = Router()

    @other.on_message()
    async def clash(msg: BotMessage, ctx: EventContext) -> None:
        return None

    with pytest.raises(HandlerConflictError):
        receiver.include_router(other)
    with pytest.raises(HandlerConflictError):
        sub.on_message()(clash)  # would conflict in the receiver: refused before any change
    assert ("message", None, None) not in sub._handlers
    with pytest.raises(ValueError):
        sub.include_router(router)
    await receiver.aclose()


def test_receiver_can_move_to_a_new_event_loop_when_idle(bodies: Any) -> None:
    receiver = WebhookReceiver(NoVerification())
    seen: list[str] = []

    @receiver.on_message()
    async def handler(msg: BotMessage, ctx: EventContext) -> None:
        seen.append(msg.text)

    async def deliver(text: str) -> None:
        assert (await receiver.handle(bodies.message("c1", text), {})).status == 200
        assert await receiver.drain(timeout=5)

    asyncio.run(deliver("first loop"))
    asyncio.run(deliver("second loop"))
    assert seen == ["first loop", "second loop"]


async def test_handle_reads_plain_dict_headers_case_insensitively(bodies: Any) -> None:
    receiver = WebhookReceiver(SharedSecretHeader("s3cret"), ack="after_handler")
    seen: list[str | None] = []

    @receiver.on_message()
    async def handler(msg: BotMessage, ctx: EventContext) -> None:
        seen.append(ctx.headers.get("AUTHORIZATION"))

    assert (await receiver.handle(bodies.message("c1"), {"authorization": "s3cret"})).status == 200
    assert (await receiver.handle(bodies.message("c1"), {"AuThOrIzAtIoN": "nope"})).status == 401
    assert seen == ["s3cret"]
    await receiver.aclose()


async def test_an_item_waiting_to_retry_keeps_its_place_but_not_its_slot() -> None:
    from ultimate_async.webhook.ordering import KeyedExecutor

    runs: list[str] = []
    retry_gate = asyncio.Event()

    async def runner(item: str) -> bool | float:
        runs.append(item)
        if item == "a1" and runs.count("a1") == 1:
            return 0.5  # "run me again after a delay"
        return True

    async def sleep(delay: float) -> None:
        await retry_gate.wait()

    executor: KeyedExecutor[str] = KeyedExecutor(runner, 1, sleep=sleep)
    executor.submit("a", "a1")
    executor.submit("a", "a2")
    executor.submit("b", "b1")
    for _ in range(20):
        await asyncio.sleep(0)
    assert runs == ["a1", "b1"]  # b ran on the only slot while a1 waits; a2 waits behind a1
    assert executor.pending == 2
    retry_gate.set()
    assert await executor.wait_idle(timeout=5)
    assert runs == ["a1", "b1", "a1", "a2"]
