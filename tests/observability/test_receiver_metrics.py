"""The operator's three questions, answered from ``/metrics`` and a trace after a known sequence
of deliveries through a real ``WebhookServer``: is it receiving, is it failing, what was sent."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from ultimate_async.asgi import WebhookApp
from ultimate_async.inbox import HandlerRetry
from ultimate_async.testing import deliver, make_action_call, make_bot_message, make_delivery
from ultimate_async.webhook import (
    EventContext,
    SharedSecretHeader,
    WebhookReceiver,
    WebhookServer,
)

if TYPE_CHECKING:
    from conftest import Otel, Prometheus

SECRET = "metrics-secret-0123456789"


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_a_known_sequence_of_deliveries_as_metrics_and_spans(
    otel: Otel, prometheus: Prometheus
) -> None:
    verifier = SharedSecretHeader(SECRET)
    failures = {"conv-b": 1}  # conv-b's handler fails once, then succeeds on the retry

    receiver = WebhookReceiver(verifier, retry=HandlerRetry(max_attempts=3, backoff_base=0.0))

    @receiver.on_message()
    async def on_message(event: Any, ctx: EventContext) -> None:
        if failures.get(ctx.platform_conversation_id or "", 0) > 0:
            failures["conv-b"] -= 1
            raise RuntimeError("downstream hiccup")

    @receiver.on_action("lookup")
    async def lookup(event: Any, ctx: EventContext) -> list[Any]:
        return []

    first = make_bot_message("conv-a", "one")
    sequence: list[tuple[bytes, dict[str, str]]] = [
        make_delivery(first, verifier),
        make_delivery(first, verifier),  # the platform's retry: a duplicate
        make_delivery(make_bot_message("conv-b", "two"), verifier),
        make_delivery(make_action_call("conv-a", "lookup"), verifier),
        (json.dumps(first).encode(), {"Authorization": "wrong"}),  # 401
        (b"{not json", {"Authorization": SECRET}),  # 400
    ]
    async with WebhookServer(receiver, port=0, metrics_path="/metrics") as server:
        base = server.url.rsplit("/", 1)[0]
        async with aiohttp.ClientSession() as http:
            statuses = []
            for body, headers in sequence:
                async with http.post(server.url, data=body, headers=headers) as resp:
                    statuses.append(resp.status)
            assert await receiver.drain(timeout=5)
            async with http.get(f"{base}/metrics") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"].startswith("text/plain; version=")
                text = await resp.text()
    assert statuses == [200, 200, 200, 200, 401, 400]

    samples = scrape(text)

    def deliveries(kind: str, outcome: str) -> float:
        key = ("ultimate_webhook_deliveries_total", (("kind", kind), ("outcome", outcome)))
        return samples.get(key, 0.0)

    # Is it receiving?
    assert deliveries("message", "accepted") == 2
    assert deliveries("message", "duplicate") == 1
    assert deliveries("action", "accepted") == 1
    # Is it failing?
    assert deliveries("unknown", "unauthorized") == 1
    assert deliveries("unknown", "invalid") == 1

    def runs(kind: str, outcome: str) -> float:
        key = (
            "ultimate_webhook_handler_duration_seconds_count",
            (("kind", kind), ("outcome", outcome)),
        )
        return samples.get(key, 0.0)

    assert runs("message", "ok") == 2  # conv-a, and conv-b's retry
    assert runs("message", "error") == 1
    assert runs("action", "ok") == 1
    assert "conv-a" not in text and "conv-b" not in text and SECRET not in text

    # The same figures through OpenTelemetry, and a trace that names conversation and attempt.
    assert (
        otel.values("ultimate.webhook.deliveries")[(("kind", "message"), ("outcome", "accepted"))]
        == 2
    )
    handles = [dict(s.attributes or {}) for s in otel.spans("ultimate.webhook.handle")]
    conv_b = [h for h in handles if h.get("ultimate.conversation_id") == "conv-b"]
    assert sorted((h["ultimate.attempt"], "error.type" in h) for h in conv_b) == [
        (1, True),
        (2, False),
    ]
    assert {"ultimate.event.kind": "action", "ultimate.attempt": 1,
            "ultimate.conversation_id": "conv-a"} in handles  # fmt: skip
    recorded = repr([s.to_json() for s in otel.spans()])
    assert SECRET not in recorded


async def test_metrics_path_counts_from_the_start_without_any_set_up() -> None:
    """``metrics_path`` alone is enough: deliveries before the first scrape are counted too."""
    verifier = SharedSecretHeader(SECRET)
    receiver = WebhookReceiver(verifier)

    @receiver.on_message()
    async def on_message(event: Any, ctx: EventContext) -> None:
        pass

    async with WebhookServer(receiver, port=0, metrics_path="/metrics") as server:
        base = server.url.rsplit("/", 1)[0]
        async with aiohttp.ClientSession() as http:
            body, headers = make_delivery(make_bot_message("conv-m", "hi"), verifier)
            async with http.post(server.url, data=body, headers=headers) as resp:
                assert resp.status == 200
            async with http.get(f"{base}/metrics") as resp:
                samples = scrape(await resp.text())
    key = ("ultimate_webhook_deliveries_total", (("kind", "message"), ("outcome", "accepted")))
    assert samples[key] == 1


async def test_webhook_app_metrics_path_counts_from_the_start() -> None:
    """The ASGI front end: a plain GET on ``metrics_path`` through the ASGI interface."""
    verifier = SharedSecretHeader(SECRET)
    receiver = WebhookReceiver(verifier)
    app = WebhookApp(receiver, metrics_path="/metrics")
    assert (await deliver(receiver, make_bot_message("conv-asgi", "hi"), verifier)).status == 200

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/metrics",
        "raw_path": b"/metrics",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"test")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    await receiver.aclose()
    assert sent[0]["status"] == 200
    text = b"".join(m.get("body", b"") for m in sent[1:]).decode()
    samples = scrape(text)
    key = ("ultimate_webhook_deliveries_total", (("kind", "message"), ("outcome", "accepted")))
    assert samples[key] == 1
