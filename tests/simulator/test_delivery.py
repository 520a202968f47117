"""Webhook delivery: signing, shapes, per-conversation order, retries and injected faults."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web

from ultimate_async.simulator import Faults, Rule, ScriptedBot, Text
from ultimate_async.webhook.verify import HmacSignature, SharedSecretHeader, UrlToken, Verifier

VERIFIERS: dict[str, Callable[[], Verifier]] = {
    "shared-header": lambda: SharedSecretHeader(["s3cret", "old"]),
    "hmac": lambda: HmacSignature("hmac-secret"),
    "url-token": lambda: UrlToken("tok3n"),
}


@pytest.mark.parametrize("name", list(VERIFIERS))
async def test_deliveries_are_signed_for_the_chosen_verifier(
    name: str, make_recorder: Any, make_sim: Any, make_client: Any
) -> None:
    verifier = VERIFIERS[name]()
    recorder = await make_recorder(verifier)
    sim = await make_sim(webhook_url=recorder.url, verifier=verifier)
    client = make_client(sim)
    await client.start("v1")
    await client.say("v1", "balance")  # notifications and a request (action)
    assert recorder.rejected == 0
    assert recorder.kinds("v1") == ["sendMessage"] * 2 + ["action", "sendMessage"]
    sample = recorder.deliveries[0]
    if name == "shared-header":
        assert sample.headers["Authorization"] == "s3cret"
    elif name == "hmac":
        assert sample.headers["X-Ultimate-Signature"].startswith("sha256=")
        assert sample.headers["X-Ultimate-Timestamp"].isdigit()
    else:
        assert sample.path == "/hook/tok3n"
        assert all(r.url == recorder.url for r in sim.deliveries)  # no token in records
    assert sample.headers["Content-Type"] == "application/json"


async def test_a_receiver_with_another_secret_refuses_and_is_not_retried(
    make_recorder: Any, make_sim: Any, make_client: Any
) -> None:
    recorder = await make_recorder(SharedSecretHeader("theirs"))
    sim = await make_sim(webhook_url=recorder.url, verifier=SharedSecretHeader("ours"))
    await make_client(sim).start("v2")
    assert recorder.rejected == 2  # one attempt per message: a 401 is final
    assert sim.stats.failed == 2 and sim.stats.retries == 0


async def test_send_message_shape(client: Any, recorder: Any) -> None:
    await client.start("shape")
    raw = recorder.deliveries[1].payload
    assert set(raw) == {"botId", "channel", "data"}
    assert raw["botId"] == client.sim.bot_id and raw["channel"] == "chat"
    data = raw["data"]
    assert set(data) == {
        "eventType",
        "platformConversationId",
        "type",
        "text",
        "buttons",
        "carouselCards",
        "replyId",
        "messageId",
        "confidence",
    }
    assert data["type"] == "text" and data["carouselCards"] == []
    assert re.fullmatch(r"[0-9a-f]{24}", data["messageId"])
    assert re.fullmatch(r"[0-9a-f]{24}", data["replyId"])
    # the same script reply keeps its replyId; every message gets a new messageId
    await client.start("shape-2")
    again = recorder.of("shape-2")[1].data
    assert again["replyId"] == data["replyId"] and again["messageId"] != data["messageId"]


async def test_deliveries_are_recorded(client: Any, recorder: Any) -> None:
    await client.say("rec", "human")
    records = client.sim.deliveries
    assert [r.kind for r in records] == ["sendMessage", "isTeamOnline", "sendMessage", "escalate"]
    assert all(r.ok and r.attempts == 1 and not r.duplicate for r in records)
    assert records[1].payload["data"]["eventType"] == "isTeamOnline"
    assert client.sim.stats.delivered == 4


async def test_one_conversation_is_delivered_in_order_others_run_concurrently(
    make_sim: Any, recorder: Any, make_client: Any
) -> None:
    bot = ScriptedBot(rules=[Rule("go", ["first", "second", "third"])])
    sim = await make_sim(bot, webhook_url=recorder.url)
    client = make_client(sim)
    release = asyncio.Event()
    blocked = asyncio.Event()

    async def stall_first_of_a(delivery: Any) -> web.Response | None:
        data = delivery.data
        if data.get("platformConversationId") == "A" and data.get("text") == "first":
            blocked.set()
            await release.wait()
        return None

    recorder.hook = stall_first_of_a
    await client.chat("A", "message", text="go")
    await blocked.wait()
    await client.chat("B", "message", text="go")
    await recorder.wait_for(4)  # A's first (stalled) + all of B
    assert recorder.texts("B") == ["first", "second", "third"]
    assert recorder.texts("A") == ["first"]  # A's next waits for the answer to its first
    release.set()
    await sim.wait_idle(timeout=5)
    assert recorder.texts("A") == ["first", "second", "third"]


async def test_many_messages_of_one_conversation_keep_their_order(
    make_sim: Any, recorder: Any, make_client: Any
) -> None:
    bot = ScriptedBot(rules=[Rule("re:.", "echo {text}")])
    sim = await make_sim(bot, webhook_url=recorder.url)
    client = make_client(sim)
    for i in range(30):
        await client.chat("seq", "message", text=str(i))
    await sim.wait_idle(timeout=5)
    assert recorder.texts("seq") == [f"echo {i}" for i in range(30)]


async def test_notifications_are_retried_on_5xx_and_429(client: Any, recorder: Any) -> None:
    answers = [503, 429, 500]

    async def flaky(delivery: Any) -> web.Response | None:
        if answers:
            return web.Response(status=answers.pop(0), headers={"Retry-After": "0"})
        return None

    recorder.hook = flaky
    await client.say("retry", "hi")
    assert len(recorder.of("retry")) == 4  # the same message, delivered on the 4th try
    assert len({d.data["messageId"] for d in recorder.of("retry")}) == 1
    assert client.sim.stats.retries == 3 and client.sim.stats.failed == 0
    (record,) = client.sim.deliveries
    assert record.attempts == 4 and record.status == 200


async def test_a_retry_after_http_date_replaces_the_backoff(
    make_sim: Any, recorder: Any, make_client: Any
) -> None:
    answers = [503]

    async def once(delivery: Any) -> web.Response | None:
        if answers:
            past = "Wed, 21 Oct 2015 07:28:00 GMT"  # already passed: retry at once
            return web.Response(status=answers.pop(), headers={"Retry-After": past})
        return None

    recorder.hook = once
    # Without the date the retry would wait the backoff, 60 s capped at 2 s.
    sim = await make_sim(webhook_url=recorder.url, delivery_backoff=60.0)
    started = asyncio.get_running_loop().time()
    await make_client(sim).say("ra", "hi")
    assert asyncio.get_running_loop().time() - started < 1.0
    assert [(r.status, r.attempts) for r in sim.deliveries] == [(200, 2)]


async def test_delivery_gives_up_after_the_attempts_and_the_queue_moves_on(
    make_sim: Any, recorder: Any, make_client: Any
) -> None:
    async def down(delivery: Any) -> web.Response | None:
        return web.Response(status=503) if delivery.data.get("text") == "one" else None

    recorder.hook = down
    bot = ScriptedBot(rules=[Rule("go", ["one", "two"])])
    sim = await make_sim(bot, webhook_url=recorder.url, delivery_attempts=2)
    await make_client(sim).say("g", "go")
    assert recorder.texts("g") == ["one", "one", "two"]
    assert sim.stats.failed == 1 and sim.stats.delivered == 1
    assert [(r.status, r.attempts) for r in sim.deliveries] == [(503, 2), (200, 1)]


async def test_an_unreachable_receiver_is_retried_then_counted_as_failed(
    make_sim: Any, make_client: Any, unused_tcp_port: int
) -> None:
    sim = await make_sim(webhook_url=f"http://127.0.0.1:{unused_tcp_port}/hook")
    await make_client(sim).start("down")
    assert sim.stats.failed == 2
    assert sim.stats.attempts == 8 and sim.stats.retries == 6
    assert all(r.status is None for r in sim.deliveries)


async def test_without_a_webhook_url_deliveries_are_dropped_and_the_url_can_be_set_later(
    make_sim: Any, make_client: Any, recorder: Any
) -> None:
    sim = await make_sim()
    client = make_client(sim)
    await client.start("late")
    assert sim.stats.dropped == 2 and recorder.deliveries == []
    sim.webhook_url = recorder.url
    await client.start("late")
    assert len(recorder.of("late")) == 2


async def test_actions_can_go_to_a_separate_webhook(
    make_sim: Any, make_recorder: Any, make_client: Any
) -> None:
    chat, actions = await make_recorder(), await make_recorder()
    sim = await make_sim(webhook_url=chat.url, action_webhook_url=actions.url)
    await make_client(sim).say("sep", "balance")
    assert chat.kinds("sep") == ["sendMessage"]
    assert actions.kinds("sep") == ["action"]
    assert chat.texts("sep") == ["Your balance is 42.00 EUR."]


async def test_duplicates_repeat_the_same_body_and_message_id(
    make_sim: Any, recorder: Any, make_client: Any
) -> None:
    sim = await make_sim(webhook_url=recorder.url, faults=Faults(duplicate_rate=1.0, seed=1))
    await make_client(sim).say("dup", "human")
    kinds = recorder.kinds("dup")
    # sendMessage twice each; requests (isTeamOnline, escalate) never duplicated
    assert kinds == [
        "sendMessage",
        "sendMessage",
        "isTeamOnline",
        "sendMessage",
        "sendMessage",
        "escalate",
    ]
    first, second = recorder.of("dup")[:2]
    assert first.payload == second.payload
    assert sim.stats.duplicates == 2
    assert [r.duplicate for r in sim.deliveries].count(True) == 2


async def test_seeded_duplicates_are_reproducible(
    make_sim: Any, make_recorder: Any, make_client: Any
) -> None:
    bot = ScriptedBot(rules=[Rule("go", [Text(str(i)) for i in range(20)])])
    patterns = []
    for _ in range(2):
        recorder = await make_recorder()
        sim = await make_sim(
            bot, webhook_url=recorder.url, faults=Faults(duplicate_rate=0.5, seed=7)
        )
        await make_client(sim).say("d", "go")
        patterns.append(recorder.texts("d"))
    assert patterns[0] == patterns[1]
    assert 20 < len(patterns[0]) < 40  # some, not all, were duplicated


async def test_api_faults_refuse_requests_with_retry_after_before_processing(
    make_sim: Any, recorder: Any, make_client: Any
) -> None:
    faults = Faults(error_rate=0.5, error_statuses=(429, 503), retry_after=2, seed=3)
    runs = []
    for _ in range(2):
        sim = await make_sim(webhook_url=recorder.url, faults=faults)
        client = make_client(sim)
        statuses = []
        for i in range(20):
            async with client.http.post(
                sim.url("/converse/chat"),
                json={"platformConversationId": f"f{i}", "eventType": "startSession"},
                headers=client.headers(),
            ) as resp:
                statuses.append(resp.status)
                if resp.status != 200:
                    assert resp.headers["Retry-After"] == "2"
                    assert await resp.text() == "injected fault"
        await sim.wait_idle(timeout=5)
        refused = [f"f{i}" for i, s in enumerate(statuses) if s != 200]
        # a refused request was not processed: no session, no welcome
        assert all(sim.mode(cid) is None for cid in refused)
        assert sim.stats.api_faults == len(refused)
        runs.append(statuses)
    assert runs[0] == runs[1]
    assert set(runs[0]) == {200, 429, 503}


async def test_api_faults_never_hide_authentication_errors(make_sim: Any, make_client: Any) -> None:
    sim = await make_sim(faults=Faults(error_rate=1.0))
    client = make_client(sim)
    body = {"platformConversationId": "x", "eventType": "startSession"}
    assert (await client.post("/converse/chat", body, {"botid": sim.bot_id}))[0] == 401
    assert (await client.post("/converse/chat", body))[0] in (429, 503)


async def test_latency_delays_each_delivery(make_sim: Any, recorder: Any, make_client: Any) -> None:
    sim = await make_sim(webhook_url=recorder.url, faults=Faults(latency=(0.05, 0.06), seed=0))
    loop = asyncio.get_running_loop()
    started = loop.time()
    await make_client(sim).start("slow")  # two messages, one after the other
    assert loop.time() - started >= 0.09
    assert len(recorder.of("slow")) == 2


def test_faults_validate_their_arguments() -> None:
    for bad in (
        {"duplicate_rate": 1.5},
        {"error_rate": -0.1},
        {"latency": (0.2, 0.1)},
        {"latency": (-1, 0)},
        {"error_statuses": (200,)},
        {"error_statuses": ()},
    ):
        with pytest.raises(ValueError):
            Faults(**bad)


async def test_wait_idle_covers_retries_in_progress(client: Any, recorder: Any) -> None:
    attempts = 0

    async def fail_twice(delivery: Any) -> web.Response | None:
        nonlocal attempts
        attempts += 1
        return web.Response(status=503) if attempts <= 2 else None

    recorder.hook = fail_twice
    await client.chat("idle", "message", text="x")
    await client.sim.wait_idle(timeout=5)
    assert recorder.texts("idle") == ["Sorry, I did not get that."] * 3
    assert client.sim.stats.delivered == 1


async def test_non_ascii_text_arrives_intact(client: Any, recorder: Any) -> None:
    await client.sim.push_message("u1", "Grüße ✓")
    assert recorder.texts("u1") == ["Grüße ✓"]
