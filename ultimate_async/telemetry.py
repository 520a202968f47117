"""Metrics and traces for operators: OpenTelemetry (extra ``otel``) and Prometheus (``prometheus``).

The receiver calls :func:`delivery` and :func:`handler_run` for every webhook, the transport
:func:`api_call` for every API call, the dispatcher :func:`inbox_gauge` at each dead letter.
Those hooks sit on hot paths, so when nothing is configured each one is a clock read and a few
global lookups: no span, no dictionary, no allocation.  Two things switch them on:

* an OpenTelemetry SDK configured by the application (``set_tracer_provider`` /
  ``set_meter_provider``).  We depend only on ``opentelemetry-api``; the global providers are
  looked for at most once a second until one is found, so configuring the SDK after the first
  delivery still works.  :func:`use_opentelemetry` names providers explicitly instead.
* :func:`enable_prometheus` (``WebhookServer(metrics_path=...)`` calls it): the same figures in a
  dedicated ``prometheus_client`` registry, served by :func:`prometheus_exposition`.

What may become a label is fixed here: ``kind``, ``outcome``, ``call`` and ``status`` take a
handful of values each.  A conversation id is a span attribute only (unbounded cardinality would
ruin a metrics backend), and nothing a caller sends (texts, metadata, ``sanitize=True`` values,
secrets) is ever recorded.  Exceptions are recorded by type name only: their messages may quote
what a server echoed back.

The inbox figures (pending entries, dead letters) are current counts, not tallies: asking an
inbox costs a storage round trip, so they are never read per delivery.  They are read when they
are looked at instead: each Prometheus scrape calls :func:`refresh_inbox` before rendering, and
the OpenTelemetry observable gauges report the figures last stored (by a scrape, a dead letter,
or your own :func:`refresh_inbox`), since an OpenTelemetry callback cannot await the inbox.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
    from opentelemetry.trace import Span, TracerProvider

    from .inbox.base import Inbox

__all__ = [
    "PROMETHEUS_NAMES",
    "ApiCallRecord",
    "api_call",
    "delivery",
    "enable_prometheus",
    "handler_run",
    "inbox_gauge",
    "prometheus_exposition",
    "refresh",
    "refresh_inbox",
    "reset",
    "use_opentelemetry",
]

#: Instrumentation scope (OpenTelemetry meter and tracer name).
SCOPE: Final = "ultimate_async"

#: How long a scrape waits for ``inbox.stats()`` before serving the last figures instead.
INBOX_STATS_TIMEOUT: Final = 1.0

log = logging.getLogger(__name__)

#: The Prometheus metric families, by the OpenTelemetry instrument they mirror.
PROMETHEUS_NAMES: Final[dict[str, str]] = {
    "ultimate.webhook.deliveries": "ultimate_webhook_deliveries_total",
    "ultimate.webhook.handler.duration": "ultimate_webhook_handler_duration_seconds",
    "ultimate.inbox.pending": "ultimate_inbox_pending",
    "ultimate.inbox.dead_letters": "ultimate_inbox_dead_letters_total",
    "ultimate.api.requests": "ultimate_api_requests_total",
    "ultimate.api.duration": "ultimate_api_duration_seconds",
    "ultimate.api.throttled": "ultimate_api_throttled_total",
}

_PROBE_INTERVAL: Final = 1.0
#: What ``get_meter_provider()`` returns while no SDK is configured.
_NO_METER_PROVIDERS: Final = frozenset({"_ProxyMeterProvider", "NoOpMeterProvider"})


# -- sinks ---------------------------------------------------------------------------------------


class _Otel:
    """The tracer and instruments, made once from the providers in force."""

    def __init__(self, tracer_provider: TracerProvider, meter_provider: MeterProvider) -> None:
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        from . import __version__

        self.trace = trace
        self.client_kind = SpanKind.CLIENT
        self.server_kind = SpanKind.SERVER
        self.error_status = Status(StatusCode.ERROR)
        self.tracer = tracer_provider.get_tracer(SCOPE, __version__)
        meter = meter_provider.get_meter(SCOPE, __version__)
        self.deliveries = meter.create_counter(
            "ultimate.webhook.deliveries", "{delivery}", "Webhook deliveries by kind and outcome"
        )
        self.handler_duration = meter.create_histogram(
            "ultimate.webhook.handler.duration", "s", "Handler run time by kind and outcome"
        )
        from opentelemetry.metrics import Observation

        # Observable: the SDK asks at each collection, and gets the figures last stored.
        def pending(options: CallbackOptions) -> Iterable[Observation]:
            return () if _inbox is None else (Observation(_inbox[0]),)

        def dead_letters(options: CallbackOptions) -> Iterable[Observation]:
            return () if _inbox is None else (Observation(_inbox[1]),)

        meter.create_observable_gauge(
            "ultimate.inbox.pending", [pending], "{entry}", "Inbox entries waiting for a handler"
        )
        meter.create_observable_gauge(
            "ultimate.inbox.dead_letters",
            [dead_letters],
            "{entry}",
            "Dead letters in the inbox now (a purge or replay lowers it)",
        )
        self.api_requests = meter.create_counter(
            "ultimate.api.requests", "{request}", "API attempts by call and HTTP status"
        )
        self.api_duration = meter.create_histogram(
            "ultimate.api.duration", "s", "API call time, retries and waits included"
        )
        self.api_throttled = meter.create_counter(
            "ultimate.api.throttled", "{call}", "API calls held back by a Retry-After cool-down"
        )


class _Prometheus:
    """The same figures in a dedicated ``CollectorRegistry`` (never the global default one)."""

    def __init__(self) -> None:
        try:
            import prometheus_client as prom
        except ImportError as exc:
            raise ImportError(
                "Prometheus metrics need prometheus_client: "
                "pip install 'ultimate_async[prometheus]'"
            ) from exc
        self.prom = prom
        self.registry = prom.CollectorRegistry()
        reg = self.registry
        # prometheus_client appends ``_total`` to counters (and ``_seconds`` stays ours).
        self.deliveries = prom.Counter(
            "ultimate_webhook_deliveries",
            "Webhook deliveries by kind and outcome",
            ["kind", "outcome"],
            registry=reg,
        )
        self.handler_duration = prom.Histogram(
            "ultimate_webhook_handler_duration_seconds",
            "Handler run time by kind and outcome",
            ["kind", "outcome"],
            registry=reg,
        )
        self.pending = prom.Gauge(
            "ultimate_inbox_pending", "Inbox entries waiting for a handler", registry=reg
        )
        # A gauge despite the ``_total`` suffix (the documented name): the dead letters held
        # now, which a purge or a replay lowers.
        self.dead_letters = prom.Gauge(
            "ultimate_inbox_dead_letters_total",
            "Dead letters in the inbox now (a purge or replay lowers it)",
            registry=reg,
        )
        self.api_requests = prom.Counter(
            "ultimate_api_requests",
            "API attempts by call and HTTP status",
            ["call", "status"],
            registry=reg,
        )
        self.api_duration = prom.Histogram(
            "ultimate_api_duration_seconds",
            "API call time, retries and waits included",
            ["call"],
            registry=reg,
        )
        self.api_throttled = prom.Counter(
            "ultimate_api_throttled",
            "API calls held back by a Retry-After cool-down",
            ["call"],
            registry=reg,
        )


# Module state.  The hooks read ``_otel`` and ``_prom``; until an SDK is found they also compare
# the clock with ``_next_probe`` (infinite when opentelemetry-api is not installed).
_otel: _Otel | None = None
_prom: _Prometheus | None = None
_next_probe = 0.0
#: The inbox's ``(pending, dead)`` as last reported; ``None`` before the first report.
_inbox: tuple[int, int] | None = None
#: Whether anything records (an SDK found, or Prometheus enabled): a hot path may read this
#: rather than enter a no-op :func:`handler_run`.  The receiver calls :func:`delivery` for every
#: webhook, which looks for a global SDK (at most once a second), so it stays current.
on = False
_monotonic: Final = time.monotonic


def _sdk_providers() -> tuple[TracerProvider, MeterProvider] | None:
    """The global providers when the application configured an SDK for either, else ``None``."""
    global _next_probe
    try:
        from opentelemetry import metrics, trace
    except ImportError:
        _next_probe = math.inf  # never look again
        return None
    tracer_provider = trace.get_tracer_provider()
    meter_provider = metrics.get_meter_provider()
    no_tracing = isinstance(tracer_provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)
    # The API's stand-in meter provider is private (``_ProxyMeterProvider``): known by name.
    no_metrics = type(meter_provider).__name__ in _NO_METER_PROVIDERS
    if no_tracing and no_metrics:
        return None
    # The proxies of the unconfigured half forward to a real provider once one is set.
    return tracer_provider, meter_provider


def _probe() -> None:
    """Look for an OpenTelemetry SDK the application configured (the hooks call this when
    ``_next_probe`` is due, so at most once a second)."""
    global _next_probe, _otel, on
    _next_probe = _monotonic() + _PROBE_INTERVAL
    providers = _sdk_providers()
    if providers is not None:
        _otel = _Otel(*providers)
        on = True


# -- configuration -------------------------------------------------------------------------------


def use_opentelemetry(
    tracer_provider: TracerProvider | None = None, meter_provider: MeterProvider | None = None
) -> None:
    """Record through these providers (default: the global ones) from now on.

    Not needed when the application sets the global providers: they are found on their own.
    Use it for providers that are not global, or to start recording at a precise moment.
    Needs ``opentelemetry-api`` (``pip install 'ultimate_async[otel]'``): ``ImportError`` without.
    """
    global _otel, on
    try:
        from opentelemetry import metrics, trace
    except ImportError as exc:
        raise ImportError(
            "OpenTelemetry needs opentelemetry-api: pip install 'ultimate_async[otel]'"
        ) from exc
    _otel = _Otel(
        tracer_provider if tracer_provider is not None else trace.get_tracer_provider(),
        meter_provider if meter_provider is not None else metrics.get_meter_provider(),
    )
    on = True


def enable_prometheus() -> None:
    """Start counting into the Prometheus registry (idempotent).

    Raises ``ImportError`` naming the extra when ``prometheus_client`` is not installed
    (``pip install 'ultimate_async[prometheus]'``), like every optional part of the package.
    """
    global _prom, on
    if _prom is None:
        _prom = _Prometheus()
        on = True


def prometheus_exposition() -> tuple[bytes, str]:
    """The metrics in the Prometheus text format, and the ``Content-Type`` to serve them with.

    Enables the registry if :func:`enable_prometheus` was not called (counting starts now).
    """
    enable_prometheus()
    assert _prom is not None
    return _prom.prom.generate_latest(_prom.registry), _prom.prom.CONTENT_TYPE_LATEST


def reset() -> None:
    """Forget providers and figures: back to "nothing configured" (for tests)."""
    global _otel, _prom, _next_probe, _inbox, on
    _otel = _prom = None
    on = False
    _next_probe = 0.0
    _inbox = None


# -- hooks ---------------------------------------------------------------------------------------


def delivery(
    kind: str,
    outcome: str,
    *,
    conversation_id: str | None = None,
    status: int | None = None,
    start_ns: int | None = None,
) -> None:
    """Count one webhook delivery (``outcome``: accepted, duplicate, unauthorized, ...).

    With tracing, also records an ``ultimate.webhook.receive`` span from ``start_ns``
    (``time.time_ns()`` when the delivery arrived; default: now) to now.
    """
    if _otel is None:
        if _monotonic() >= _next_probe:
            _probe()
        if _otel is None and _prom is None:
            return
    if _prom is not None:
        _prom.deliveries.labels(kind, outcome).inc()
    otel = _otel
    if otel is not None:
        otel.deliveries.add(1, {"kind": kind, "outcome": outcome})
        attributes: dict[str, str | int] = {"ultimate.event.kind": kind}
        if conversation_id is not None:
            attributes["ultimate.conversation_id"] = conversation_id
        if status is not None:
            attributes["http.response.status_code"] = status
        span = otel.tracer.start_span(
            "ultimate.webhook.receive",
            kind=otel.server_kind,
            attributes=attributes,
            start_time=start_ns,
        )
        if status is not None and status >= 500:
            span.set_status(otel.error_status)
        span.end()


def refresh() -> bool:
    """Look for a global SDK if the once-a-second look is due; return :data:`on`.

    The receiver calls it when it starts, so that recovered entries run before the first
    delivery are recorded too.
    """
    if _otel is None and _monotonic() >= _next_probe:
        _probe()
    return on


def inbox_gauge(pending: int, dead: int) -> None:
    """Report the inbox's ``pending`` entries and ``dead`` letters as they are now.

    Both figures replace the previous ones (a purge lowers ``dead``).  The OpenTelemetry gauges
    read what was stored here at their next collection.
    """
    global _inbox
    _inbox = (pending, dead)
    if _otel is None and _monotonic() >= _next_probe:
        _probe()
    if _prom is not None:
        _prom.pending.set(pending)
        _prom.dead_letters.set(dead)


async def refresh_inbox(inbox: Inbox, timeout: float = INBOX_STATS_TIMEOUT) -> bool:  # noqa: ASYNC109
    """Ask ``inbox`` for its figures now and report them (:func:`inbox_gauge`).

    Every ``metrics_path`` scrape calls this.  Without Prometheus, call it from a periodic task
    of your own for OpenTelemetry gauges that move between dead letters.  A slow or unavailable
    inbox (``timeout`` seconds) must not fail the scrape: the last figures stay, a DEBUG line
    says why, and the result is ``False``.
    """
    try:
        async with asyncio.timeout(timeout):
            stats = await inbox.stats()
    except Exception:
        log.debug("inbox figures not refreshed, the last ones stay", exc_info=True)
        return False
    inbox_gauge(stats.pending, stats.dead)
    return True


class _NoRun:
    """What the context managers return when nothing records: every method does nothing."""

    __slots__ = ()

    def __enter__(self) -> _NoRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        return False

    def response(self, status: int | None) -> None:
        """An attempt got an answer with ``status`` (``None``: no answer)."""

    def throttled(self) -> None:
        """The call waits for a cool-down another call's 429 started."""


_NO_RUN: Final = _NoRun()


def _outcome(exc_type: type[BaseException] | None) -> str:
    if exc_type is None:
        return "ok"
    if issubclass(exc_type, TimeoutError):
        return "timeout"
    if issubclass(exc_type, Exception):
        return "error"
    return "cancelled"


class _HandlerRun:
    __slots__ = ("_kind", "_otel", "_span", "_start", "_token")

    def __init__(self, kind: str, conversation_id: str | None, attempt: int) -> None:
        self._kind = kind
        self._otel = otel = _otel
        self._span: Span | None = None
        self._token: object = None
        if otel is not None:
            attributes: dict[str, str | int] = {
                "ultimate.event.kind": kind,
                "ultimate.attempt": attempt,
            }
            if conversation_id is not None:
                attributes["ultimate.conversation_id"] = conversation_id
            self._span = otel.tracer.start_span("ultimate.webhook.handle", attributes=attributes)
        self._start = 0.0

    def __enter__(self) -> _HandlerRun:
        if self._span is not None:
            from opentelemetry import context

            assert self._otel is not None
            # Current while the handler runs, so its API calls become child spans.
            self._token = context.attach(self._otel.trace.set_span_in_context(self._span))
        self._start = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        seconds = time.perf_counter() - self._start
        outcome = _outcome(exc_type)
        if _prom is not None:
            _prom.handler_duration.labels(self._kind, outcome).observe(seconds)
        otel = self._otel
        if otel is not None:
            otel.handler_duration.record(seconds, {"kind": self._kind, "outcome": outcome})
        span = self._span
        if span is not None:
            if exc_type is not None:
                span.set_attribute("error.type", exc_type.__qualname__)
                span.set_status(otel.error_status)  # type: ignore[union-attr]
            if self._token is not None:
                from opentelemetry import context

                context.detach(self._token)  # type: ignore[arg-type]
            span.end()
        return False


def handler_run(kind: str, conversation_id: str | None, attempt: int) -> _HandlerRun | _NoRun:
    """Wrap one handler run: ``with telemetry.handler_run(kind, cid, attempt): await ...``.

    Records its duration under the outcome (``ok``, ``error``, ``timeout``, ``cancelled``, from
    the exception leaving the block) and, with tracing, an ``ultimate.webhook.handle`` span that
    is current inside the block.
    """
    if _otel is None:
        if _monotonic() >= _next_probe:
            _probe()
        if _otel is None and _prom is None:
            return _NO_RUN
    return _HandlerRun(kind, conversation_id, attempt)


class _ApiCall:
    __slots__ = ("_attempts", "_call", "_otel", "_span", "_start", "_status")

    def __init__(self, call: str, conversation_id: str | None) -> None:
        self._call = call
        self._otel = otel = _otel
        self._attempts = 0
        self._status: int | None = None
        self._span: Span | None = None
        if otel is not None:
            attributes: dict[str, Any] = {"http.request.method": "POST"}
            if conversation_id is not None:
                attributes["ultimate.conversation_id"] = conversation_id
            self._span = otel.tracer.start_span(
                f"ultimate.api {call}", kind=otel.client_kind, attributes=attributes
            )
        self._start = time.perf_counter()

    def __enter__(self) -> _ApiCall:
        return self

    def response(self, status: int | None) -> None:
        """One attempt ended with ``status`` (``None``: no HTTP answer arrived)."""
        self._attempts += 1
        self._status = status
        label = "error" if status is None else str(status)
        if _prom is not None:
            _prom.api_requests.labels(self._call, label).inc()
        if self._otel is not None:
            self._otel.api_requests.add(1, {"call": self._call, "status": label})

    def throttled(self) -> None:
        """The call waits for the cool-down another call's 429 started."""
        if _prom is not None:
            _prom.api_throttled.labels(self._call).inc()
        if self._otel is not None:
            self._otel.api_throttled.add(1, {"call": self._call})

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        seconds = time.perf_counter() - self._start
        if _prom is not None:
            _prom.api_duration.labels(self._call).observe(seconds)
        otel = self._otel
        if otel is not None:
            otel.api_duration.record(seconds, {"call": self._call})
        span = self._span
        if span is not None:
            span.set_attribute("ultimate.attempt", self._attempts)
            if self._status is not None:
                span.set_attribute("http.response.status_code", self._status)
            if exc_type is not None:
                span.set_attribute("error.type", exc_type.__qualname__)
                span.set_status(otel.error_status)  # type: ignore[union-attr]
            span.end()
        return False


ApiCallRecord: TypeAlias = "_ApiCall | _NoRun"
"""What :func:`api_call` returns: ``.response(status)`` per attempt, ``.throttled()``."""


def api_call(call: str, conversation_id: str | None = None) -> ApiCallRecord:
    """Wrap one API call (``call`` like ``chat.send_message``), retries included.

    The block reports each attempt's answer with ``.response(status)`` and a wait for another
    call's rate-limit cool-down with ``.throttled()``.  Records ``ultimate.api.requests`` per
    attempt, ``ultimate.api.duration`` per call and an ``ultimate.api <call>`` span.
    """
    if _otel is None:
        if _monotonic() >= _next_probe:
            _probe()
        if _otel is None and _prom is None:
            return _NO_RUN
    return _ApiCall(call, conversation_id)
