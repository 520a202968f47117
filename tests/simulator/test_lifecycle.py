"""Start, stop, robustness: the simulator never crashes and always shuts down cleanly."""

from __future__ import annotations

import asyncio
import io
import json
import random
from typing import Any

import pytest
from aiohttp import web

from ultimate_async.simulator import Simulator


async def test_base_url_needs_a_running_simulator(recorder: Any) -> None:
    sim = Simulator(webhook_url=recorder.url)
    with pytest.raises(RuntimeError):
        _ = sim.base_url
    async with sim:
        assert sim.base_url.startswith("http://127.0.0.1:")
        assert sim.port != 0 and sim.running
        assert "sim-key" not in repr(sim)
    assert not sim.running
    with pytest.raises(RuntimeError):
        _ = sim.base_url
    await sim.aclose()  # idempotent
    with pytest.raises(RuntimeError):
        await sim.push_message("x", "too late")


async def test_shutdown_cancels_stalled_deliveries_without_warnings(
    recorder: Any, make_client: Any
) -> None:
    stalled = asyncio.Event()
    never = asyncio.Event()

    async def stall(delivery: Any) -> web.Response | None:
        stalled.set()
        await never.wait()
        return None

    recorder.hook = stall
    async with Simulator(webhook_url=recorder.url) as sim:
        client = make_client(sim)
        for i in range(5):
            await client.chat(f"c{i}", "startSession")
        await asyncio.wait_for(stalled.wait(), 5)
    # leaving the block did not wait for the stalled receiver, and left no task behind
    assert not [t for t in asyncio.all_tasks() if "KeyedExecutor._work" in repr(t)]


async def test_wait_idle_times_out_when_deliveries_stall(recorder: Any, make_sim: Any) -> None:
    never = asyncio.Event()
    in_flight = asyncio.Event()

    async def stall(delivery: Any) -> web.Response | None:
        in_flight.set()
        await never.wait()
        return None

    recorder.hook = stall
    sim = await make_sim(webhook_url=recorder.url)
    task = asyncio.create_task(sim.push_message("x", "hi"))
    await in_flight.wait()  # the delivery is under way and will never finish
    with pytest.raises(TimeoutError):
        await sim.wait_idle(timeout=0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_the_simulator_survives_garbage_and_keeps_serving(client: Any) -> None:
    rng = random.Random(1234)
    values: list[Any] = [None, True, 0, -1, 1.5, "", "x" * 300, [], {}, [1], {"a": None}]
    keys = ["platformConversationId", "eventType", "text", "cardIndex", "metaData", "platform"]
    events = ["startSession", "message", "endSession", "metadata", "escalationSuccess", "message"]
    paths = ["/converse/chat", "/converse/ticket", "/agent/converse/send-message-to-widget"]
    for _ in range(150):
        body = {k: rng.choice(values) for k in rng.sample(keys, rng.randint(0, len(keys)))}
        if rng.random() < 0.6:
            body["platformConversationId"] = rng.choice(["g1", "g2"])
            body["eventType"] = rng.choice(events)
        status, _ = await client.post(rng.choice(paths), body)
        assert status in (200, 400)
    for raw in (b"\xff\xfe", b"null", b'"str"', b"1e999999", b"{" * 5000):
        status, _ = await client.post("/converse/chat", None, raw=raw)
        assert status == 400
    await client.sim.wait_idle(timeout=5)
    assert all(r.status in (200, 400) for r in client.sim.received)
    await client.start("after")  # still serving
    assert client.sim.transcript("after")


async def test_record_false_keeps_no_history(
    make_sim: Any, recorder: Any, make_client: Any
) -> None:
    sim = await make_sim(webhook_url=recorder.url, record=False)
    await make_client(sim).start("quiet")
    assert len(recorder.of("quiet")) == 2
    assert sim.received == [] and sim.deliveries == [] and sim.transcript("quiet") == []
    assert sim.stats.api_requests == 1 and sim.stats.delivered == 2


async def test_finished_conversations_leave_no_worker_behind(client: Any) -> None:
    for i in range(20):
        await client.chat(f"w{i}", "startSession")
    await client.sim.wait_idle(timeout=5)
    queues = client.sim._queues
    assert queues.active == 0 and queues.pending == 0


async def test_received_json_is_the_parsed_body(client: Any) -> None:
    body = {"platformConversationId": "j", "eventType": "message", "text": "hi", "cardIndex": 0}
    await client.post("/converse/chat", None, raw=json.dumps(body).encode())
    assert client.sim.received[-1].json == body


async def test_an_oversized_body_is_refused_and_recorded(client: Any) -> None:
    async with client.http.post(
        client.sim.url("/converse/chat"),
        data=io.BytesIO(b"x" * (2 * 1024 * 1024)),
        headers=client.headers(),
    ) as resp:
        assert resp.status == 413
    assert client.sim.received[-1].status == 413
    await client.start("still-up")
    assert client.sim.transcript("still-up")
