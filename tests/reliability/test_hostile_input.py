"""Hostile and malformed deliveries: never a 5xx, an exception, or a handler left running.

Every body below reaches the parser (no verifier, or a correctly signed one): what is being
tested is that whatever arrives, the receiver answers 200 or refuses with 400/401/413 and a
reason, and stays healthy for the next delivery.  Example counts are moderate here; ``make
reliability`` runs the same strategies much longer.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.reliability import (
    CONTENT_TYPES,
    ENCODINGS,
    NESTING_SITES,
    HostileTally,
    answer_problem,
    benign_receiver,
    encoded_variants,
    example_count,
    fixture_payloads,
    leftover_tasks,
    mutated_payloads,
    nested,
    raw_post,
    strategies,
    where,
)
from ultimate_async.webhook import WebhookReceiver, WebhookServer
from ultimate_async.webhook.verify import HmacSignature, NoVerification

SECRET = "hostile-input-secret"
S = strategies()
HYPOTHESIS = settings(
    max_examples=example_count(200),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


async def assert_healthy(receiver: WebhookReceiver) -> None:
    """Nothing queued or running, no conversation state, and the receiver still answers."""
    assert await receiver.drain(timeout=5.0), "handlers still running after hostile input"
    assert receiver.pending == 0
    assert receiver.active_conversations == 0
    body = json.dumps(fixture_payloads()["chat_send_message_text.json"]).encode()
    _, headers = receiver.verifier.authenticate("http://127.0.0.1/webhook", body)
    answer = await receiver.handle(body, headers)
    assert answer.status == 200


def assert_tally_clean(tally: HostileTally) -> None:
    assert tally.problems == [], "\n".join(tally.problems)
    assert tally.server_errors == 0


# --------------------------------------------------------------------------- handle()


async def test_fixtures_are_accepted(json_backend: str) -> None:
    """The baseline the mutations start from: every fixture is a 200 and reaches a handler.

    Also guards ``test_odd_encodings``, parametrized by these files: none found is a failure.
    """
    receiver, seen = benign_receiver()
    payloads = fixture_payloads()
    assert len(payloads) >= 10, "the shared webhook fixtures were not found"
    for name, payload in payloads.items():
        answer = await receiver.handle(json.dumps(payload).encode(), {})
        assert answer.status == 200, name
    await assert_healthy(receiver)
    assert sum(seen.values()) >= len(payloads)
    await receiver.aclose()


async def test_every_field_of_every_fixture_with_a_wrong_type(json_backend: str) -> None:
    """One field at a time replaced by a value of every other JSON type: 200 or 400+reasons."""
    receiver, _ = benign_receiver()
    tally = HostileTally()
    for label, payload in mutated_payloads():
        try:
            answer = await receiver.handle(json.dumps(payload).encode(), {})
        except Exception as exc:
            tally.record_exception(label, exc)
        else:
            tally.record(label, answer.status, answer.body)
    assert tally.tried > 300  # every field of every fixture, several types each
    assert_tally_clean(tally)
    assert tally.statuses[400] > 0 and tally.statuses[200] > 0  # both outcomes occur
    await assert_healthy(receiver)
    await receiver.aclose()


@pytest.mark.parametrize("depth", [64, 1000, 1100, 5000, 100_000])
@pytest.mark.parametrize("kind", ["list", "object"])
@pytest.mark.parametrize("site", sorted(NESTING_SITES))
async def test_deep_nesting(json_backend: str, site: str, kind: str, depth: int) -> None:
    """Nesting far beyond any real payload is refused with 400, not a RecursionError (500)."""
    receiver, _ = benign_receiver()
    body = NESTING_SITES[site](nested(depth, kind))
    try:
        answer = await receiver.handle(body, {})
    finally:
        await receiver.drain(timeout=5.0)
    assert answer_problem(answer.status, answer.body) is None, (answer.status, answer.body[:200])
    await assert_healthy(receiver)
    await receiver.aclose()


@pytest.mark.parametrize("name", sorted(fixture_payloads()))
async def test_odd_encodings(json_backend: str, name: str) -> None:
    """UTF-16/32, latin-1, BOMs, invalid or surrogate UTF-8: a 200 or a 400, never a crash."""
    receiver, _ = benign_receiver()
    tally = HostileTally()
    for label, body in encoded_variants(fixture_payloads()[name]):
        try:
            answer = await receiver.handle(body, {"Content-Type": "application/json"})
        except Exception as exc:
            tally.record_exception(label, exc)
        else:
            tally.record(label, answer.status, answer.body)
    # every listed encoding plus the 7 broken-UTF-8 / BOM variants was really tried
    assert tally.tried == len(ENCODINGS) + 7
    assert_tally_clean(tally)
    await assert_healthy(receiver)
    await receiver.aclose()


@HYPOTHESIS
@given(case=S.bodies, headers=st.dictionaries(st.text(max_size=20), st.text(max_size=40)))
async def test_arbitrary_bodies_via_handle(
    json_backend: str, case: tuple[str, bytes], headers: dict[str, str]
) -> None:
    """Any bytes, any JSON, envelopes with any field values, deep, huge, oddly encoded."""
    label, body = case
    receiver, _ = benign_receiver(max_body_size=2_000_000)
    try:
        answer = await receiver.handle(body, headers)
    finally:
        await receiver.drain(timeout=5.0)
    assert answer_problem(answer.status, answer.body) is None, (label, answer.status, answer.body)
    assert receiver.pending == 0 and receiver.active_conversations == 0
    await receiver.aclose()


@HYPOTHESIS
@given(document=S.json_documents)
async def test_arbitrary_json_signed_with_hmac(document: Any) -> None:
    """Correctly signed arbitrary JSON passes verification and is then parsed safely."""
    verifier = HmacSignature(SECRET)
    receiver, _ = benign_receiver(verifier)
    body = json.dumps(document).encode()
    answer = await receiver.handle(body, HmacSignature.sign(body, SECRET))
    await receiver.drain(timeout=5.0)
    assert answer.status in (200, 400), answer
    assert answer_problem(answer.status, answer.body) is None
    await receiver.aclose()


async def test_oversized_body_is_413_in_handle() -> None:
    receiver, seen = benign_receiver(max_body_size=1024)
    body = json.dumps(
        {"data": {"eventType": "sendMessage", "platformConversationId": "c", "text": "x" * 2000}}
    ).encode()
    answer = await receiver.handle(body, {})
    assert answer.status == 413
    assert answer_problem(answer.status, answer.body) is None
    assert not seen
    await assert_healthy(receiver)
    await receiver.aclose()


# --------------------------------------------------------------------------- real HTTP port


@pytest.fixture
async def hostile_server() -> AsyncIterator[tuple[WebhookServer, WebhookReceiver]]:
    """A real port serving a receiver that verifies HMAC signatures (bodies are signed)."""
    receiver, _ = benign_receiver(HmacSignature(SECRET), max_body_size=600_000)
    async with WebhookServer(receiver) as server:
        yield server, receiver


def _signed(body: bytes, content_type: str) -> list[tuple[bytes, bytes]]:
    headers = [(k.encode(), v.encode()) for k, v in HmacSignature.sign(body, SECRET).items()]
    headers.append((b"Content-Type", content_type.encode("utf-8", "surrogateescape")))
    return headers


@HYPOTHESIS
@given(case=S.bodies, content_type=S.content_types, chunked=st.booleans())
async def test_arbitrary_bodies_via_http(
    hostile_server: tuple[WebhookServer, WebhookReceiver],
    case: tuple[str, bytes],
    content_type: str,
    chunked: bool,
) -> None:
    """The same bodies on a real port, any content type, chunked or not."""
    server, receiver = hostile_server
    label, body = case
    content_type = content_type.replace("\r", " ").replace("\n", " ")
    answer = await raw_post(
        *where(server),
        body,
        _signed(body, content_type),
        chunked=chunked,
    )
    problem = answer_problem(answer.status, answer.body, answer.headers.get("content-type", ""))
    assert problem is None, (label, problem)
    assert await receiver.drain(timeout=5.0)


async def test_http_refusals_and_recovery(
    hostile_server: tuple[WebhookServer, WebhookReceiver],
) -> None:
    """Too large (announced or chunked), unsigned, garbage: refused; then a good one is 200."""
    server, receiver = hostile_server
    host, port, path = where(server)
    big = b'{"data":{"eventType":"sendMessage","text":"' + b"x" * 700_000 + b'"}}'
    tally = HostileTally()
    cases: dict[str, dict[str, Any]] = {
        "announced-too-large": {"body": b"{}", "content_length": 10_000_000},
        "chunked-too-large": {"body": big, "chunked": True},
        "too-large": {"body": big},
    }
    for label, kwargs in cases.items():
        body = kwargs.pop("body")
        answer = await raw_post(host, port, path, body, _signed(body, "application/json"), **kwargs)
        assert answer.status == 413, label
        tally.record(label, answer.status, answer.body)
    unsigned = await raw_post(host, port, path, b"{}", [(b"Content-Type", b"application/json")])
    assert unsigned.status == 401
    tally.record("unsigned", unsigned.status, unsigned.body)
    for content_type in CONTENT_TYPES:
        garbage = b"\x00\xff{not json"
        answer = await raw_post(host, port, path, garbage, _signed(garbage, content_type))
        assert answer.status == 400, content_type
        tally.record(f"garbage:{content_type}", answer.status, answer.body)
    assert_tally_clean(tally)
    good = json.dumps(fixture_payloads()["chat_send_message_text.json"]).encode()
    answer = await raw_post(host, port, path, good, _signed(good, "application/json"))
    assert answer.status == 200
    await assert_healthy(receiver)


async def test_many_concurrent_hostile_connections_leave_nothing_behind() -> None:
    """A burst of bad deliveries in parallel: all refused, then no task or handler left."""
    baseline = set(asyncio.all_tasks())
    receiver, _ = benign_receiver(HmacSignature(SECRET))
    bodies = [body for _, body in encoded_variants(fixture_payloads()["action.json"])]
    bodies += [nested(5000), b"", b"[]", b"null", b'{"data":1}']
    async with WebhookServer(receiver) as server:
        answers = await asyncio.gather(
            *(
                raw_post(
                    *where(server),
                    body,
                    _signed(body, "application/json"),
                )
                for body in bodies * 10
            )
        )
        assert all(answer_problem(a.status, a.body) is None for a in answers), answers
        assert await receiver.drain(timeout=5.0)
    assert await leftover_tasks(baseline) == []


# --------------------------------------------------------------------------- with a Redis bus


async def test_hostile_body_forwarded_over_redis(json_backend: str, redis_url: str) -> None:
    """A body the receiver accepts must survive being forwarded to the holding replica.

    Replica B holds the conversation, replica A receives the delivery and forwards the parsed
    body over Redis.  JSON that A's decoder accepts (here a ``\\ud800`` escape, a lone
    surrogate) must either be refused with 400 up front or forwarded - never an exception
    out of ``handle()`` (which aiohttp turns into a 500).
    """
    from ultimate_async.redis import RedisEventBus

    a = WebhookReceiver(NoVerification(), bus=RedisEventBus(redis_url))
    b = WebhookReceiver(NoVerification(), bus=RedisEventBus(redis_url))
    got: list[Any] = []
    arrived = asyncio.Event()

    async def observe(event: Any, ctx: Any) -> None:
        got.append(event)
        arrived.set()

    registration = b.register("conv-1", observe)
    try:
        await b.start()
        await registration.ready()
        await a.start()
        tally = HostileTally()
        for label, text in {"lone-surrogate": b"\\ud800", "pair": b"\\ud83d\\ude00"}.items():
            body = (
                b'{"data":{"eventType":"sendMessage","platformConversationId":"conv-1",'
                b'"text":"' + text + b'","messageId":"' + label.encode() + b'"}}'
            )
            try:
                answer = await a.handle(body, {})
            except Exception as exc:
                tally.record_exception(label, exc)
            else:
                tally.record(label, answer.status, answer.body)
        assert_tally_clean(tally)
        async with asyncio.timeout(5):
            await arrived.wait()  # the valid surrogate pair reached the holder
    finally:
        await a.aclose()
        await b.aclose()
