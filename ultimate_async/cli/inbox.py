"""``inbox``: see and repair what a durable inbox holds, from the shell.

``ultimate-async inbox PATH|redis://… stats | dead [--json] | replay ID | purge ID``.  It works
while the receiver is serving: a replayed dead letter is picked up by the running process.
Dead letters' bodies are shown only with ``--json``, with ``sanitize: true`` values masked.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._common import EXIT_FAILURE, EXIT_OK, CommandError, UsageError, mask_sanitized, run

if TYPE_CHECKING:
    from ..inbox import DeadLetter, Inbox

__all__ = ["add_parser", "command", "open_inbox"]


def add_parser(commands: Any) -> None:
    """Add the ``inbox`` command to the CLI's sub-command set."""
    inbox = commands.add_parser(
        "inbox",
        help="inspect and repair a durable inbox (stats, dead letters, replay, purge)",
        description="Inspect and repair a durable inbox: a SqliteInbox file or a RedisInbox "
        "(redis:// or rediss:// URL). Safe while the receiver is serving.",
    )
    inbox.add_argument("target", metavar="PATH|URL", help="the SQLite file, or a redis:// URL")
    inbox.add_argument(
        "--key-prefix", metavar="P", help="RedisInbox key prefix (default: RedisInbox's own)"
    )
    actions = inbox.add_subparsers(dest="action", metavar="ACTION", parser_class=type(inbox))
    actions.required = True
    actions.add_parser("stats", help="pending entries and dead letters, as two numbers")
    dead = actions.add_parser("dead", help="list dead letters, oldest first")
    dead.add_argument(
        "--json", action="store_true", help="one JSON object a line, with the event body"
    )
    replay = actions.add_parser("replay", help="put a dead letter back at the end of its queue")
    replay.add_argument("delivery_id", metavar="ID")
    purge = actions.add_parser("purge", help="drop one dead letter for good")
    purge.add_argument("delivery_id", metavar="ID")


def open_inbox(target: str, *, key_prefix: str | None = None) -> Inbox:
    """The inbox ``target`` names.  A missing file is an error: a typo must not create one.

    The commands never make this process a consumer (they never call :meth:`Inbox.get`, and
    a ``RedisInbox`` is not even started, so it takes no partition lease): they are safe next
    to a serving receiver.
    """
    if target.startswith(("redis://", "rediss://", "unix://")):
        try:
            from ..redis import RedisInbox  # type: ignore[attr-defined,unused-ignore]
        except ImportError as error:
            raise UsageError(f"RedisInbox is not available: {error}") from None
        if key_prefix is None:
            return RedisInbox(target)  # type: ignore[no-any-return,unused-ignore]
        return RedisInbox(target, key_prefix=key_prefix)  # type: ignore[no-any-return,unused-ignore]
    from ..inbox import SqliteInbox

    if key_prefix is not None:
        raise UsageError("--key-prefix is for redis:// inboxes")
    path = Path(target)
    if not path.is_file():
        raise UsageError(f"no inbox file at {target}")
    return SqliteInbox(path, buffer=1)  # it hands nothing out: hold no backlog in memory


def _when(stored_at: float) -> str:
    return datetime.fromtimestamp(stored_at, UTC).isoformat(timespec="seconds")


def letter_line(letter: DeadLetter, *, as_json: bool) -> str:
    """One dead letter as one line (tab-separated, or JSON with its body)."""
    if as_json:
        return json.dumps(
            {
                "delivery_id": letter.delivery_id,
                "conversation_id": letter.conversation_id,
                "kind": letter.kind,
                "attempts": letter.attempts,
                "last_error": letter.last_error,
                "stored_at": _when(letter.stored_at),
                "raw": mask_sanitized(letter.raw),
            },
            ensure_ascii=False,
            default=str,
        )
    fields = (
        letter.delivery_id,
        letter.conversation_id or "-",
        letter.kind,
        f"attempts={letter.attempts}",
        _when(letter.stored_at),
        letter.last_error,
    )
    return "\t".join(fields)


async def _act(args: argparse.Namespace) -> int:
    inbox = open_inbox(args.target, key_prefix=args.key_prefix)
    from ..inbox import SqliteInbox

    if isinstance(inbox, SqliteInbox):
        await inbox.start()  # its disk thread; RedisInbox repairs without start (no leases)
    try:
        if args.action == "stats":
            stats = await inbox.stats()
            print(f"pending {stats.pending}\ndead {stats.dead}", flush=True)
        elif args.action == "dead":
            async for letter in inbox.dead_letters():
                print(letter_line(letter, as_json=args.json), flush=True)
        else:
            act = inbox.replay if args.action == "replay" else inbox.purge
            try:
                await act(args.delivery_id)
            except LookupError:
                raise CommandError(f"no dead letter {args.delivery_id}", EXIT_FAILURE) from None
            done = "replayed" if args.action == "replay" else "purged"
            print(f"{done} {args.delivery_id}", flush=True)
    finally:
        await inbox.aclose()
    return EXIT_OK


def command(args: argparse.Namespace) -> int:
    return run(_act(args))
