"""``listen``: see what the platform really sends, one JSON line per verified delivery.

The platform documents no signing scheme (API_SPEC §6); running this against the dashboard's
webhook URL shows which headers arrive.  Header *values* are redacted (only their length is
shown) except a few harmless ones, so the output can be pasted into an issue.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ._common import EXIT_OK, eprint, run, wait_for_signal
from ._verifier import verifier_from_args

if TYPE_CHECKING:
    from ..webhook import EventContext, WebhookReceiver

__all__ = ["SHOWN_HEADERS", "command", "delivery_line", "redact_headers"]

#: Headers whose values are shown as they are: they identify the sender and carry no secret.
SHOWN_HEADERS = frozenset({"content-type", "content-length", "user-agent"})


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Every header with its value replaced by ``<redacted N chars>`` (except SHOWN_HEADERS)."""
    return {
        name: value if name.lower() in SHOWN_HEADERS else f"<redacted {len(value)} chars>"
        for name, value in headers.items()
    }


def _mask_sanitized(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The body with ``sanitize: true`` action parameter values masked (they are PII)."""
    body = dict(raw)
    params = body.get("data")
    if isinstance(params, list):
        body["data"] = [
            {**p, "value": "<sanitized>"} if isinstance(p, dict) and p.get("sanitize") else p
            for p in params
        ]
    return body


def delivery_line(event: object, ctx: EventContext) -> str:
    """One delivery as one JSON line: kind, conversation, time, redacted headers and body."""
    received: Any = ctx.received_at
    if isinstance(received, datetime):
        received = received.isoformat()
    return json.dumps(
        {
            "kind": type(event).__name__,
            "conversation": ctx.platform_conversation_id,
            "received_at": received,
            "headers": redact_headers(ctx.headers),
            "body": _mask_sanitized(ctx.raw),
        },
        ensure_ascii=False,
        default=str,
    )


def printing_receiver(receiver: WebhookReceiver) -> WebhookReceiver:
    """Attach catch-all handlers that print every event; requests get neutral answers."""

    async def show(event: Any, ctx: EventContext) -> None:
        sys.stdout.write(delivery_line(event, ctx) + "\n")
        sys.stdout.flush()

    async def show_online(event: Any, ctx: EventContext) -> bool:
        await show(event, ctx)
        return False  # we are only listening: no human team here

    async def show_action(event: Any, ctx: EventContext) -> list[Any]:
        await show(event, ctx)
        return []

    receiver.on_message()(show)
    receiver.on_escalate()(show)
    receiver.on_team_online()(show_online)
    receiver.on_action()(show_action)
    receiver.on_widget_escalate()(show)
    receiver.on_widget_message()(show)
    receiver.on_widget_end_session()(show)
    receiver.on_ticket_reply()(show)
    receiver.on_alert()(show)
    receiver.on_unknown()(show)
    return receiver


async def _serve(args: argparse.Namespace) -> None:
    from ..webhook import WebhookReceiver, WebhookServer

    verifier = verifier_from_args(args)
    receiver = printing_receiver(WebhookReceiver(verifier, ack="after_handler"))
    async with WebhookServer(receiver, host=args.host, port=args.port, path=args.path) as server:
        eprint(f"listening on {server.url} (Ctrl-C to stop)")
        if args.insecure:
            eprint("warning: --insecure: every delivery is accepted without verification")
        await wait_for_signal()
    eprint("stopped")


def command(args: argparse.Namespace) -> int:
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    run(_serve(args))
    return EXIT_OK
