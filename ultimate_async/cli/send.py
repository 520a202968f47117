"""``send``: post one event to the API from the shell (configuration from the environment)."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from ._common import EXIT_OK, CommandError, UsageError, one_line, run

if TYPE_CHECKING:
    from ..session import Session

__all__ = ["command", "parse_meta"]

DEFAULT_BASE_URL = "https://api.ultimate.ai"


def parse_meta(items: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings as a mapping; a missing ``=`` or empty key is a usage error."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--meta expects KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def _config(args: argparse.Namespace) -> tuple[str, str, str]:
    api_key = os.environ.get("ULTIMATE_API_KEY", "")
    bot_id = args.bot_id or os.environ.get("ULTIMATE_BOT_ID", "")
    base_url = args.base_url or os.environ.get("ULTIMATE_BASE_URL") or DEFAULT_BASE_URL
    missing = []
    if not api_key:
        missing.append("ULTIMATE_API_KEY")
    if not bot_id:
        missing.append("ULTIMATE_BOT_ID")
    if missing:
        raise UsageError(
            f"{' and '.join(missing)} not set: export the Custom CRM API key and bot id "
            "(see `ultimate-async send --help`)"
        )
    return api_key, bot_id, base_url


def _check(args: argparse.Namespace) -> dict[str, str] | None:
    """Validate the combination of options before anything is sent."""
    meta = parse_meta(getattr(args, "meta", []))
    event = getattr(args, "event", None)
    if event == "message" and not args.text:
        raise UsageError(f"--event message needs --text ({args.kind})")
    if args.kind == "chat":
        if event == "endSession" and meta:
            raise UsageError("--meta is not allowed with --event endSession")
        if event == "metadata" and not meta:
            raise UsageError("--event metadata needs at least one --meta KEY=VALUE")
        if args.card_index is not None and event != "message":
            raise UsageError("--card-index is only allowed with --event message")
        if args.card_index is not None and args.card_index < 0:
            raise UsageError("--card-index must not be negative")
    return meta or None


async def _send(session: Session, args: argparse.Namespace, meta: dict[str, str] | None) -> str:
    cid = args.conversation
    if args.kind == "ticket":
        await session.tickets.send(cid, args.text, metadata=meta, platform=args.platform)
        return f"sent ticket for conversation {cid}"
    if args.kind == "chat":
        chat = session.chat
        if args.event == "startSession":
            await chat.start_session(cid, metadata=meta)
        elif args.event == "message":
            await chat.send_message(cid, args.text, card_index=args.card_index, metadata=meta)
        elif args.event == "endSession":
            await chat.end_session(cid)
        else:
            await chat.send_metadata(cid, meta or {})
        return f"sent chat {args.event} for conversation {cid}"
    widget = session.widget
    if args.event == "escalationQueueUpdate":
        await widget.queue_update(
            cid, queue_position=args.queue_position, waiting_time=args.waiting_time
        )
    elif args.event == "escalationSuccess":
        await widget.escalation_success(cid, agent=args.agent, agent_avatar=args.agent_avatar)
    elif args.event == "message":
        await widget.agent_message(cid, args.text)
    elif args.event == "escalationFailed":
        await widget.escalation_failed(cid)
    else:
        await widget.agent_disconnect(cid)
    return f"sent widget {args.event} for conversation {cid}"


async def _main(args: argparse.Namespace, meta: dict[str, str] | None) -> str:
    from ..errors import ConfigurationError, UltimateError
    from ..session import Session

    api_key, bot_id, base_url = _config(args)
    try:
        async with Session(api_key, bot_id, base_url=base_url, timeout=args.timeout) as session:
            return await _send(session, args, meta)
    except ConfigurationError:
        raise
    except ValueError as error:  # an argument the API would refuse (e.g. blank text)
        raise UsageError(one_line(error)) from None
    except UltimateError as error:
        raise CommandError(one_line(error)) from None


def command(args: argparse.Namespace) -> int:
    meta = _check(args)
    _config(args)  # fail on missing configuration before touching the network
    print(run(_main(args, meta)), flush=True)
    return EXIT_OK
