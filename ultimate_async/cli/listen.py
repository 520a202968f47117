"""``listen``: see what the platform really sends, one JSON line per verified delivery.

The platform documents no signing scheme; running this against the dashboard's
webhook URL shows which headers arrive.  Credential-bearing header values (authorization,
cookies, signatures, tokens, secrets, API keys) are redacted to their length, and so are action
parameters marked ``sanitize``; everything else is shown as it came, so the output can be pasted
into an issue and ``--save`` files can be replayed (``replay``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any

from ._common import EXIT_OK, UsageError, eprint, mask_sanitized, run, wait_for_signal
from ._verifier import verifier_from_args

if TYPE_CHECKING:
    from ..webhook import EventContext, WebhookReceiver

__all__ = ["command", "delivery_line", "is_credential_header", "redact_headers"]

#: Headers that carry a credential by their very name.
CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key"}
)
#: A header whose name contains one of these carries a credential too (``X-Ultimate-Signature``,
#: ``X-Webhook-Token``, ``X-Hub-Signature-256``, a custom ``SharedSecretHeader`` name ...).
_CREDENTIAL_PARTS = ("auth", "cookie", "signature", "token", "secret", "apikey", "api-key", "passw")


def is_credential_header(name: str) -> bool:
    """Whether a header of this name may carry a secret (its value is then never shown)."""
    lowered = name.lower()
    return lowered in CREDENTIAL_HEADERS or any(part in lowered for part in _CREDENTIAL_PARTS)


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers, credential-bearing values replaced by ``<redacted N chars>``."""
    return {
        name: f"<redacted {len(value)} chars>" if is_credential_header(name) else value
        for name, value in headers.items()
    }


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
            "body": mask_sanitized(ctx.raw),
        },
        ensure_ascii=False,
        default=str,
    )


def printing_receiver(
    receiver: WebhookReceiver, save: Callable[[str], None] | None = None
) -> WebhookReceiver:
    """Attach catch-all handlers that print (and ``save``) every event; requests get neutral
    answers."""

    async def show(event: Any, ctx: EventContext) -> None:
        line = delivery_line(event, ctx)
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        if save is not None:
            save(line)

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


def _appender(file: IO[str]) -> Callable[[str], None]:
    def save(line: str) -> None:
        file.write(line + "\n")
        file.flush()  # a Ctrl-C must not lose what was already shown

    return save


async def _serve(args: argparse.Namespace, save: Callable[[str], None] | None) -> None:
    from ..webhook import WebhookReceiver, WebhookServer

    verifier = verifier_from_args(args)
    receiver = printing_receiver(WebhookReceiver(verifier, ack="after_handler"), save)
    async with WebhookServer(receiver, host=args.host, port=args.port, path=args.path) as server:
        eprint(f"listening on {server.url} (Ctrl-C to stop)")
        if args.insecure:
            eprint("warning: --insecure: every delivery is accepted without verification")
        await wait_for_signal()
    eprint("stopped")


def command(args: argparse.Namespace) -> int:
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.save is None:
        run(_serve(args, None))
        return EXIT_OK
    try:
        file = open(args.save, "a", encoding="utf-8")  # closed by the with below
    except OSError as exc:
        raise UsageError(f"cannot write {args.save}: {exc.strerror or exc}") from None
    with file:
        run(_serve(args, _appender(file)))
    return EXIT_OK
