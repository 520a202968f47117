"""ultimate_async: the asyncio-first SDK for the Ultimate (Zendesk AI agents - Advanced) APIs."""

from __future__ import annotations

from ._retry import RetryPolicy
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
from .legacy import LegacyClient
from .models.legacy import (
    AutomationButton,
    AutomationMessage,
    AutomationReply,
    DetectedLanguage,
    Entity,
    IntentsResult,
    PredictedIntent,
    RecognizedEntity,
)
from .models.outbound import ActionResult, MetaData
from .session import ChatAPI, Session, TicketsAPI, WidgetAPI

__version__ = "0.1.0"

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "ActionResult",
    "AuthenticationError",
    "AutomationButton",
    "AutomationMessage",
    "AutomationReply",
    "BackendUnavailableError",
    "BadRequestError",
    "ChatAPI",
    "ConfigurationError",
    "DetectedLanguage",
    "Entity",
    "HandlerConflictError",
    "IntentsResult",
    "LegacyClient",
    "MetaData",
    "NotFoundError",
    "PayloadError",
    "PermissionDeniedError",
    "PredictedIntent",
    "RateLimitError",
    "RecognizedEntity",
    "ReplyTimeout",
    "ResponseDecodeError",
    "RetryPolicy",
    "ServerError",
    "Session",
    "SignatureError",
    "TicketsAPI",
    "UltimateError",
    "WebhookError",
    "WidgetAPI",
    "__version__",
]
