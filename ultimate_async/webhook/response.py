"""The framework-neutral answer of :meth:`WebhookReceiver.handle`: :class:`WebhookResponse`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import attrs

from .._json import dumps

__all__ = ["WebhookResponse", "health_answer"]

JSON: Final = "application/json"
TEXT: Final = "text/plain"


@attrs.frozen
class WebhookResponse:
    """Status, body and content type; an HTTP adapter copies them onto its own response."""

    status: int
    body: bytes = b""
    content_type: str = TEXT

    @classmethod
    def json(cls, status: int, payload: Any) -> WebhookResponse:
        return cls(status, dumps(payload), JSON)

    @classmethod
    def error(cls, status: int, message: str, reasons: Sequence[str] = ()) -> WebhookResponse:
        payload: dict[str, Any] = {"error": message}
        if reasons:
            payload["reasons"] = list(reasons)
        return cls.json(status, payload)


def health_answer(receiver: Any) -> WebhookResponse:
    """``{"status": "ok"|"closing", "pending": n}``; 503 while closing, so balancers move on.

    ``receiver`` is a :class:`~ultimate_async.webhook.WebhookReceiver` (``closing``, ``pending``).
    """
    closing: bool = receiver.closing
    payload = {"status": "closing" if closing else "ok", "pending": receiver.pending}
    return WebhookResponse.json(503 if closing else 200, payload)


# Shared, immutable answers for the hot paths.
ACK: Final = WebhookResponse(200)
UNAUTHORIZED: Final = WebhookResponse.error(401, "unauthorized")
TOO_LARGE: Final = WebhookResponse.error(413, "payload too large")
BODY_TIMEOUT: Final = WebhookResponse.error(408, "request body not received in time")
CLOSING: Final = WebhookResponse.error(503, "receiver is shutting down")
BACKEND_UNAVAILABLE: Final = WebhookResponse.error(503, "backend unavailable, retry later")
HANDLER_FAILED: Final = WebhookResponse.error(500, "handler failed")
ESCALATION_FAILED: Final = WebhookResponse.error(409, "escalation failed")
ONLINE: Final = WebhookResponse.json(200, {"isOnline": True})
OFFLINE: Final = WebhookResponse.json(200, {"isOnline": False})
NO_RESULTS: Final = WebhookResponse.json(200, {"results": []})
