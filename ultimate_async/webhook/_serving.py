"""What every front end answers besides deliveries: health, metrics, and the shared refusals.

The aiohttp adapter (``aiohttp.py``) and the ASGI one (``ultimate_async.asgi``) only convert
requests and answers; the answers they have in common are built here once, so both front ends
say the same thing in the same bytes.
"""

from __future__ import annotations

from typing import Any, Final

from .response import WebhookResponse

__all__ = [
    "ALLOWED_METHODS",
    "HEALTHY",
    "METRICS_UNAVAILABLE",
    "NOT_ALLOWED",
    "NOT_FOUND",
    "SHUTTING_DOWN",
    "health",
    "metrics",
    "unknown_expectation",
]

#: What the webhook path answers; anything else is a 405 naming these.
ALLOWED_METHODS: Final = ("GET", "HEAD", "POST")

# No internal figure (queue length, replica count) leaves the process through the health
# answer: it is unauthenticated, so it says only whether to send deliveries here.
HEALTHY: Final = WebhookResponse.json(200, {"status": "ok"})
SHUTTING_DOWN: Final = WebhookResponse.json(503, {"status": "closing"})
NOT_FOUND: Final = WebhookResponse(404, b"404: Not Found")
NOT_ALLOWED: Final = WebhookResponse(405, b"405: Method Not Allowed")
UNSUPPORTED_CODING: Final = WebhookResponse.error(415, "unsupported content encoding")
BAD_LENGTH: Final = WebhookResponse.error(400, "invalid Content-Length")
METRICS_UNAVAILABLE: Final = WebhookResponse(
    404, b"metrics need the prometheus extra: pip install 'ultimate_async[prometheus]'"
)


def unknown_expectation(value: str) -> WebhookResponse:
    """417 for an ``Expect`` other than ``100-continue``; odd bytes are escaped, not echoed."""
    shown = value.encode("ascii", "backslashreplace")
    return WebhookResponse(417, b"Unknown Expect: " + shown)


def health(receiver: Any) -> WebhookResponse:
    """200 ``{"status": "ok"}``, or 503 ``{"status": "closing"}`` so balancers move on."""
    return SHUTTING_DOWN if receiver.closing else HEALTHY


async def metrics(receiver: Any) -> WebhookResponse:
    """The Prometheus text exposition of the SDK's figures (``ultimate_async.telemetry``).

    The inbox figures are read from ``receiver.inbox`` now, so a scrape shows the backlog and
    the dead letters as they are rather than as they were at the last dead letter; a slow or
    unavailable inbox leaves the last figures (see ``telemetry.refresh_inbox``).  Imported on
    first use: serving metrics is optional and must not cost an import otherwise.
    """
    try:
        from .. import telemetry
    except ImportError:
        return METRICS_UNAVAILABLE
    try:
        telemetry.enable_prometheus()
    except ImportError:  # the telemetry module is there, prometheus_client is not
        return METRICS_UNAVAILABLE
    inbox = getattr(receiver, "inbox", None)
    if inbox is not None:
        await telemetry.refresh_inbox(inbox)
    body, content_type = telemetry.prometheus_exposition()
    return WebhookResponse(200, body, content_type)


def start_metrics() -> None:
    """Start counting when a front end is given ``metrics_path``, so that the deliveries before
    the first scrape count too.  Without prometheus_client the path answers
    ``METRICS_UNAVAILABLE`` (see :func:`metrics`)."""
    try:
        from ..telemetry import enable_prometheus

        enable_prometheus()
    except ImportError:
        pass
