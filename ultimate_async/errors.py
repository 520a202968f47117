"""The exception tree of ultimate_async.

Every exception a caller can see derives from :class:`UltimateError`, so one ``except`` clause
catches them all.  Messages say which call failed and what the server said; they never contain
an API key, a webhook secret or a ``sanitize=True`` value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .webhook.refusals import Refusal

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BackendUnavailableError",
    "BadRequestError",
    "ConfigurationError",
    "ConversationBusyError",
    "HandlerConflictError",
    "NotFoundError",
    "PayloadError",
    "PermissionDeniedError",
    "RateLimitError",
    "ReplyTimeout",
    "ResponseDecodeError",
    "ServerError",
    "SignatureError",
    "UltimateError",
    "WebhookError",
]

#: How much of a server's error body an exception message quotes.
BODY_EXCERPT_LIMIT = 500


class UltimateError(Exception):
    """Base class of every error raised by ultimate_async."""


class ConfigurationError(UltimateError):
    """The SDK was set up in a way that cannot work (or would be insecure by accident)."""


class APIError(UltimateError):
    """A call to an Ultimate API failed.

    ``method`` and ``url`` name the call; ``message`` says what went wrong.
    """

    def __init__(self, method: str, url: str, message: str) -> None:
        self.method = method
        self.url = url
        self.message = message
        super().__init__(f"{method} {url}: {message}")


class APIConnectionError(APIError):
    """The request did not get an HTTP answer (refused, reset, DNS, TLS...)."""


class APITimeoutError(APIConnectionError):
    """The request or the connection attempt took longer than the configured timeout."""


class APIStatusError(APIError):
    """The server answered with a non-2xx status.

    ``body`` is the server's answer text (truncated); ``request_id`` is the server's request id
    header when it sent one.
    """

    def __init__(
        self,
        method: str,
        url: str,
        status: int,
        body: str = "",
        request_id: str | None = None,
    ) -> None:
        self.status = status
        self.body = body[:BODY_EXCERPT_LIMIT]
        self.request_id = request_id
        said = self.body.strip() or "<empty body>"
        message = f"HTTP {status}: {said}"
        if request_id:
            message += f" (request id {request_id})"
        super().__init__(method, url, message)


class BadRequestError(APIStatusError):
    """HTTP 400: the platform refused the body."""


class AuthenticationError(APIStatusError):
    """HTTP 401: missing or wrong API key."""


class PermissionDeniedError(APIStatusError):
    """HTTP 403: the key is not allowed for this bot."""


class NotFoundError(APIStatusError):
    """HTTP 404: unknown bot id or path."""


class RateLimitError(APIStatusError):
    """HTTP 429: too many requests. ``retry_after`` is the server's hint in seconds, if any."""

    def __init__(
        self,
        method: str,
        url: str,
        status: int,
        body: str = "",
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(method, url, status, body, request_id)


class ServerError(APIStatusError):
    """HTTP 5xx: the platform failed."""


class ResponseDecodeError(UltimateError):
    """A response body did not have the documented shape.

    ``errors`` lists the reasons, one string each.
    """

    def __init__(self, message: str, errors: Sequence[str] = ()) -> None:
        self.errors = list(errors)
        detail = "; ".join(self.errors)
        super().__init__(f"{message}: {detail}" if detail else message)


class WebhookError(UltimateError):
    """Base class of errors about an inbound webhook delivery."""


class SignatureError(WebhookError):
    """The delivery failed authentication. The message names the reason, never the secret."""


class PayloadError(WebhookError):
    """The delivery's body is not a webhook we can read. ``errors`` lists field-level reasons."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        super().__init__("invalid webhook payload: " + "; ".join(self.errors))


class HandlerConflictError(WebhookError):
    """A handler is already registered for this event kind and conversation."""


class BackendUnavailableError(UltimateError):
    """A shared backend (Redis de-duplication or event bus) cannot be reached.

    The receiver answers such deliveries with 503 so the platform may retry; nothing is acked
    that was not handled or queued.
    """


class ReplyTimeout(UltimateError, TimeoutError):
    """No bot reply (or no complete turn) arrived within the ``ask()`` timeout.

    ``refusals`` holds the deliveries the receiver refused while the call waited (each with a
    ``status`` and ``reason``), newest last; the message names the last one, because a reply
    that never comes is most often a delivery the receiver turned away (a wrong secret, a clock
    out of tolerance), not a silent bot.
    """

    def __init__(self, message: str, *, refusals: Sequence[Refusal] = ()) -> None:
        self.refusals: tuple[Refusal, ...] = tuple(refusals)
        super().__init__(message)


class ConversationBusyError(UltimateError, RuntimeError):
    """A second call waited for events on a :class:`~ultimate_async.Conversation` already waiting.

    One conversation has one reader: two concurrent ``ask()`` calls could not tell whose reply
    is whose.  Await one ``start``/``ask``/``click``/``choose_card``/``receive``/``events`` step
    at a time, or open one ``Conversation`` per visitor.  (Also a ``RuntimeError``, which it
    was before it had a type.)
    """
