"""Fixtures for the observability tests: a fake clock, and the OpenTelemetry SDK / Prometheus
registry switched on for one test at a time (the scripted ``platform`` is suite-wide, in
``tests/conftest.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from ultimate_async import telemetry


class FakeClock:
    """A monotonic clock and a ``sleep`` that moves it: waits take no real time."""

    def __init__(self) -> None:
        self.now = 5000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.now += delay
        await asyncio.sleep(0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class Otel:
    """An SDK tracer and meter provider recording in memory, handed to ``use_opentelemetry``."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        spans = list(self.exporter.get_finished_spans())
        return [s for s in spans if name is None or s.name == name]

    def points(self, metric: str) -> list[tuple[dict[str, Any], Any]]:
        """``(attributes, point)`` for every data point of ``metric`` collected now."""
        data = self.reader.get_metrics_data()
        found: list[tuple[dict[str, Any], Any]] = []
        if data is None:
            return found
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                assert scope.scope.name == "ultimate_async"
                for m in scope.metrics:
                    if m.name == metric:
                        found += [(dict(p.attributes or {}), p) for p in m.data.data_points]
        return found

    def values(self, metric: str) -> dict[tuple[tuple[str, Any], ...], Any]:
        """``{sorted attributes: value or histogram count}`` of ``metric``."""
        out: dict[tuple[tuple[str, Any], ...], Any] = {}
        for attributes, point in self.points(metric):
            value = point.count if hasattr(point, "count") else point.value
            out[tuple(sorted(attributes.items()))] = value
        return out


@pytest.fixture
def otel() -> Iterator[Otel]:
    recorder = Otel()
    telemetry.use_opentelemetry(recorder.tracer_provider, recorder.meter_provider)
    yield recorder
    telemetry.reset()
    recorder.tracer_provider.shutdown()
    recorder.meter_provider.shutdown()


class Prometheus:
    """The exposition, parsed with prometheus_client's own text parser."""

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        body, content_type = telemetry.prometheus_exposition()
        self.content_type = content_type
        self.text = body.decode()
        samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.types: dict[str, str] = {}
        for family in text_string_to_metric_families(self.text):
            self.types[family.name] = family.type
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return samples


@pytest.fixture
def prometheus() -> Iterator[Prometheus]:
    telemetry.enable_prometheus()
    yield Prometheus()
    telemetry.reset()


@pytest.fixture(autouse=True)
def _nothing_configured() -> Iterator[None]:
    """Each test starts and ends with telemetry off, whatever it switches on."""
    telemetry.reset()
    yield
    telemetry.reset()
