"""ultimate_async: the asyncio-first SDK for the Ultimate (Zendesk AI agents - Advanced) APIs."""

from __future__ import annotations

from .errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BackendUnavailableError,
    BadRequestError,
    ConfigurationError,
    HandlerConflictError,
    NotFoundError,
    PayloadError,
    PermissionDeniedError,
    RateLimitError,
    ReplyTimeout,
    ResponseDecodeError,
    ServerError,
    SignatureError,
    UltimateError,
    WebhookError,
)

__version__ = "0.1.0"

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BackendUnavailableError",
    "BadRequestError",
    "ConfigurationError",
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
    "__version__",
]
