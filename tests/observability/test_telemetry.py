"""OpenTelemetry and Prometheus: the names, labels and counts the README promises."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import pytest
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CONTENT_TYPE_LATEST

from ultimate_async import telemetry
from ultimate_async._retry import RetryPolicy
from ultimate_async.models.outbound import MetaData
from ultimate_async.session import Session

if TYPE_CHECKING:
    from conftest import FakeClock, FakePlatform, Otel, Prometheus

API_KEY = "sk-live-telemetry-0123456789"
HIDDEN = "DE89-3704-0044-0532-0130-00"


# --- the sending side -------------------------------------------------------------------------


async def test_an_api_call_is_one_span_and_counted_per_attempt(
    platform: FakePlatform, clock: FakeClock, otel: Otel, prometheus: Prometheus
) -> None:
    policy = RetryPolicy(sleep=clock.sleep, clock=clock)
    platform.answer(429, f"slow down {API_KEY} {HIDDEN}", Retry_After="1")
    async with Session(API_KEY, "bot", base_url=platform.url, retry=policy) as session:
        await session.chat.send_message(
            "conv-1", "hi", metadata=[MetaData("iban", HIDDEN, sanitize=True)]
        )
        await session.tickets.send("conv-2", "help")

    [span] = otel.spans("ultimate.api chat.send_message")
    assert span.kind is SpanKind.CLIENT
    assert dict(span.attributes or {}) == {
        "http.request.method": "POST",
        "ultimate.conversation_id": "conv-1",
        "ultimate.attempt": 2,
        "http.response.status_code": 200,
    }
    assert [s.name for s in otel.spans()] == [
        "ultimate.api chat.send_message",
        "ultimate.api tickets.send",
    ]
    requests = otel.values("ultimate.api.requests")
    assert requests == {
        (("call", "chat.send_message"), ("status", "429")): 1,
        (("call", "chat.send_message"), ("status", "200")): 1,
        (("call", "tickets.send"), ("status", "200")): 1,
    }
    assert otel.values("ultimate.api.duration") == {
        (("call", "chat.send_message"),): 1,
        (("call", "tickets.send"),): 1,
    }
    samples = prometheus.scrape()
    assert samples[("ultimate_api_duration_seconds_count", (("call", "tickets.send"),))] == 1
    recorded = repr([s.to_json() for s in otel.spans()]) + prometheus.text
    assert API_KEY not in recorded and HIDDEN not in recorded


async def test_a_failed_call_marks_its_span_by_error_type_only(
    platform: FakePlatform, otel: Otel
) -> None:
    platform.answer(400, f"bad request, your key is {API_KEY}")
    async with Session(API_KEY, "bot", base_url=platform.url) as session:
        with pytest.raises(Exception, match="HTTP 400"):
            await session.chat.end_session("conv-1")
    [span] = otel.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] == "BadRequestError"
    assert span.attributes["http.response.status_code"] == 400
    assert span.events == () or all(API_KEY not in str(e.attributes) for e in span.events)


# --- the receiving side's hooks ---------------------------------------------------------------


def test_deliveries_are_counted_by_kind_and_outcome(otel: Otel, prometheus: Prometheus) -> None:
    for kind, outcome in [
        ("message", "accepted"),
        ("message", "accepted"),
        ("message", "duplicate"),
        ("unknown", "unauthorized"),
        ("action", "accepted"),
    ]:
        telemetry.delivery(kind, outcome, conversation_id="conv-9", status=200)
    expected = {
        (("kind", "message"), ("outcome", "accepted")): 2,
        (("kind", "message"), ("outcome", "duplicate")): 1,
        (("kind", "unknown"), ("outcome", "unauthorized")): 1,
        (("kind", "action"), ("outcome", "accepted")): 1,
    }
    assert otel.values("ultimate.webhook.deliveries") == expected
    samples = prometheus.scrape()
    for labels, count in expected.items():
        assert samples[("ultimate_webhook_deliveries_total", labels)] == count
    assert prometheus.types["ultimate_webhook_deliveries"] == "counter"
    spans = otel.spans("ultimate.webhook.receive")
    assert len(spans) == 5
    assert dict(spans[0].attributes or {}) == {
        "ultimate.event.kind": "message",
        "ultimate.conversation_id": "conv-9",
        "http.response.status_code": 200,
    }
    # A conversation id is a span attribute, never a metric label (unbounded cardinality).
    assert "conv-9" not in prometheus.text
    for metric in ("ultimate.webhook.deliveries",):
        assert all("conv-9" not in str(attrs) for attrs, _ in otel.points(metric))


async def test_handler_runs_record_duration_outcome_and_a_current_span(
    otel: Otel, prometheus: Prometheus, platform: FakePlatform
) -> None:
    with telemetry.handler_run("message", "conv-3", 1):
        # An API call made by the handler becomes a child of the handle span.
        async with Session(API_KEY, "bot", base_url=platform.url) as session:
            await session.chat.send_message("conv-3", "thanks")
    with pytest.raises(ValueError), telemetry.handler_run("message", "conv-3", 2):
        raise ValueError("boom")
    with pytest.raises(TimeoutError), telemetry.handler_run("action", None, 1):
        raise TimeoutError
    with pytest.raises(asyncio.CancelledError), telemetry.handler_run("message", "conv-4", 1):
        raise asyncio.CancelledError

    handles = otel.spans("ultimate.webhook.handle")
    assert [dict(s.attributes or {}) for s in handles][:2] == [
        {
            "ultimate.event.kind": "message",
            "ultimate.attempt": 1,
            "ultimate.conversation_id": "conv-3",
        },
        {
            "ultimate.event.kind": "message",
            "ultimate.attempt": 2,
            "ultimate.conversation_id": "conv-3",
            "error.type": "ValueError",
        },
    ]
    [api] = otel.spans("ultimate.api chat.send_message")
    assert api.parent is not None and api.parent.span_id == handles[0].context.span_id
    durations = {
        (("kind", "message"), ("outcome", "ok")): 1,
        (("kind", "message"), ("outcome", "error")): 1,
        (("kind", "action"), ("outcome", "timeout")): 1,
        (("kind", "message"), ("outcome", "cancelled")): 1,
    }
    assert otel.values("ultimate.webhook.handler.duration") == durations
    [(_, point)] = [
        p for p in otel.points("ultimate.webhook.handler.duration") if p[0]["outcome"] == "ok"
    ]
    assert point.sum > 0
    samples = prometheus.scrape()
    for labels, count in durations.items():
        assert samples[("ultimate_webhook_handler_duration_seconds_count", labels)] == count
    assert prometheus.types["ultimate_webhook_handler_duration_seconds"] == "histogram"


def test_inbox_gauge_reports_the_current_pending_and_dead_letter_counts(
    otel: Otel, prometheus: Prometheus
) -> None:
    assert otel.values("ultimate.inbox.pending") == {}  # nothing reported: no made-up zero
    telemetry.inbox_gauge(pending=7, dead=0)
    telemetry.inbox_gauge(pending=3, dead=2)
    telemetry.inbox_gauge(pending=0, dead=0)  # dead letters purged: the figure drops
    telemetry.inbox_gauge(pending=1, dead=1)
    samples = prometheus.scrape()
    assert samples[("ultimate_inbox_pending", ())] == 1
    assert samples[("ultimate_inbox_dead_letters_total", ())] == 1
    assert prometheus.types["ultimate_inbox_pending"] == "gauge"
    assert prometheus.types["ultimate_inbox_dead_letters_total"] == "gauge"
    assert otel.values("ultimate.inbox.pending") == {(): 1}
    assert otel.values("ultimate.inbox.dead_letters") == {(): 1}


def test_the_exposition_uses_design_names_and_the_standard_content_type(
    prometheus: Prometheus,
) -> None:
    telemetry.delivery("message", "accepted")
    with telemetry.handler_run("message", "c", 1):
        pass
    telemetry.inbox_gauge(1, 1)
    with telemetry.api_call("chat.send_message") as call:
        call.throttled()
        call.response(200)
    names = {name for name, _ in prometheus.scrape()}
    assert prometheus.content_type == CONTENT_TYPE_LATEST
    for name in telemetry.PROMETHEUS_NAMES.values():
        assert name in names or f"{name}_count" in names, name


# --- nothing configured -----------------------------------------------------------------------


async def test_nothing_configured_means_nothing_recorded(platform: FakePlatform) -> None:
    """No SDK, no registry: the hooks hand out one shared do-nothing object."""
    assert telemetry.api_call("a") is telemetry.api_call("b")
    assert telemetry.handler_run("message", "c", 1) is telemetry.api_call("x")
    telemetry.delivery("message", "accepted")
    telemetry.inbox_gauge(1, 1)
    async with Session(API_KEY, "bot", base_url=platform.url) as session:
        await session.chat.send_message("c1", "hi")
    assert telemetry._prom is None and telemetry._otel is None


def test_prometheus_without_prometheus_client_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ImportError, match=r"ultimate_async\[prometheus\]"):
        telemetry.enable_prometheus()


def test_opentelemetry_without_the_api_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ImportError, match=r"ultimate_async\[otel\]"):
        telemetry.use_opentelemetry()
    telemetry.delivery("message", "accepted")  # and the hooks stay quiet
    assert telemetry._otel is None


def test_a_global_sdk_is_found_even_when_configured_after_the_first_delivery() -> None:
    """The usual set-up: the application sets the global providers; we find them on our own.

    In a subprocess, because the global providers can be set only once per process.
    """
    script = textwrap.dedent(
        """
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from ultimate_async import telemetry

        telemetry.delivery("message", "accepted")  # before any SDK: nothing
        assert telemetry._otel is None
        exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        telemetry._next_probe = 0.0  # as if the once-a-second look were due
        telemetry.delivery("message", "accepted")
        telemetry.delivery("alert", "accepted")
        print(sorted(s.name for s in exporter.get_finished_spans()))
        [m] = reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics
        print(m.name, sum(p.value for p in m.data.data_points))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "['ultimate.webhook.receive', 'ultimate.webhook.receive']",
        "ultimate.webhook.deliveries 2",
    ]
