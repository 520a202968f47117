"""Receiving webhooks: verifiers, the framework-neutral receiver, routers, the aiohttp adapter."""

from __future__ import annotations

from .aiohttp import WebhookServer, setup_webhook
from .context import EventContext
from .dedup import DedupKey, Deduplicator, MemoryDeduplicator, default_dedup_key
from .receiver import AckMode, Registration, WebhookReceiver
from .refusals import Refusal
from .response import WebhookResponse
from .router import Router
from .verify import HmacSignature, NoVerification, SharedSecretHeader, UrlToken, Verifier

__all__ = [
    "AckMode",
    "DedupKey",
    "Deduplicator",
    "EventContext",
    "HmacSignature",
    "MemoryDeduplicator",
    "NoVerification",
    "Refusal",
    "Registration",
    "Router",
    "SharedSecretHeader",
    "UrlToken",
    "Verifier",
    "WebhookReceiver",
    "WebhookResponse",
    "WebhookServer",
    "default_dedup_key",
    "setup_webhook",
]
