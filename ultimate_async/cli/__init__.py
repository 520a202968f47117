"""The command line: demo, listen, send, simulate, trigger, replay and inbox.

Heavy imports (aiohttp, the simulator) happen inside the commands, so ``--help`` is instant.
Errors are one line on stderr; exit codes: 0 ok, 1 failure, 2 usage or configuration.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import NoReturn

from ..errors import ConfigurationError, UltimateError
from ._common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, CommandError, eprint, one_line

__all__ = ["build_parser", "main"]

PROG = "ultimate-async"
_CID_HELP = "the platformConversationId"

_ENV_HELP = """\
environment:
  ULTIMATE_API_KEY    the Custom CRM API key (required)
  ULTIMATE_BOT_ID     the bot id (required unless --bot-id)
  ULTIMATE_BASE_URL   API base URL (default https://api.ultimate.ai)
"""


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line on stderr and exit code 2 (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        raise CommandError(f"{self.prog}: {message} (see --help)", EXIT_USAGE)


def _add_meta(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--meta",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="a session parameter (metaData); repeat for several",
    )


def _add_api(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bot-id", help="bot id (default: $ULTIMATE_BOT_ID)")
    parser.add_argument("--base-url", help="API base URL (default: $ULTIMATE_BASE_URL)")
    parser.add_argument("--timeout", type=float, default=10.0, help="request timeout in seconds")


def _add_verifier(parser: argparse.ArgumentParser, *, required: bool, insecure: bool) -> None:
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument(
        "--secret", metavar="S", help="shared secret expected in the Authorization header"
    )
    group.add_argument(
        "--hmac-secret",
        metavar="S",
        help="HMAC-SHA256 secret (X-Ultimate-Signature / X-Ultimate-Timestamp headers)",
    )
    if insecure:
        group.add_argument(
            "--insecure", action="store_true", help="accept unauthenticated deliveries"
        )


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree (exposed for tests and shell-completion tools)."""
    parser = _Parser(
        prog=PROG,
        description="Talk to an Ultimate (Zendesk AI agents - Advanced) bot from the shell.",
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    demo = commands.add_parser(
        "demo",
        help="run a whole customer journey against the built-in simulator",
        description="Start a simulator and a webhook receiver on this machine and run a scripted "
        "customer journey through Conversation, printing the transcript. Exits 1 if any step "
        "fails.",
    )
    demo.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for each bot answer"
    )

    listen = commands.add_parser(
        "listen",
        help="print every verified webhook delivery as a JSON line",
        description="Serve a webhook receiver and print each verified delivery as one JSON line "
        "(credential-bearing headers redacted) on stdout. Refused deliveries are logged on "
        "stderr. Requests get neutral answers: isTeamOnline false, actions no results, "
        "escalations accepted. Stop with Ctrl-C.",
    )
    listen.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    listen.add_argument("--port", type=int, default=8080, help="port (default 8080, 0 = any)")
    listen.add_argument("--path", default="/webhook", help="URL path (default /webhook)")
    _add_verifier(listen, required=True, insecure=True)
    listen.add_argument(
        "--save",
        metavar="FILE",
        help="also append each verified delivery to FILE as one JSON line (for replay)",
    )

    send = commands.add_parser(
        "send",
        help="post one event to the API",
        description="Post one event to the Ultimate API.",
        epilog=_ENV_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    kinds = send.add_subparsers(dest="kind", metavar="KIND", parser_class=_Parser)
    kinds.required = True

    def kind(name: str, help: str, description: str) -> argparse.ArgumentParser:
        """A ``send`` sub-command: the environment epilog and ``--conversation`` come with it."""
        parser = kinds.add_parser(
            name,
            help=help,
            description=description,
            epilog=_ENV_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.add_argument("--conversation", required=True, metavar="ID", help=_CID_HELP)
        return parser

    chat = kind(
        "chat",
        help="a visitor event (POST /converse/chat)",
        description="Send a visitor event to the Chat API.",
    )
    chat.add_argument(
        "--event",
        required=True,
        choices=["startSession", "message", "endSession", "metadata"],
        help="eventType",
    )
    chat.add_argument("--text", help="visitor text (required for --event message)")
    chat.add_argument("--card-index", type=int, metavar="N", help="0-based carousel card index")
    _add_meta(chat)
    _add_api(chat)

    ticket = kind(
        "ticket",
        help="a ticket (POST /converse/ticket)",
        description="Send a ticket to the Ticket API; the answer arrives on the ticket webhook.",
    )
    ticket.add_argument("--text", required=True, help="the ticket body")
    ticket.add_argument("--platform", default="PUBLIC_API", help="platform (default PUBLIC_API)")
    _add_meta(ticket)
    _add_api(ticket)

    widget = kind(
        "widget",
        help="a human-agent event (POST /agent/converse/send-message-to-widget)",
        description="Send a human-agent event to the Widget Escalation API.",
    )
    widget.add_argument(
        "--event",
        required=True,
        choices=[
            "escalationQueueUpdate",
            "escalationSuccess",
            "message",
            "escalationFailed",
            "agentDisconnect",
        ],
        help="eventType",
    )
    widget.add_argument("--text", help="agent text (required for --event message)")
    widget.add_argument("--agent", metavar="A", help="agent name (escalationSuccess)")
    widget.add_argument("--agent-avatar", metavar="URL", help="agent avatar (escalationSuccess)")
    widget.add_argument(
        "--queue-position", metavar="P", help="queue position (escalationQueueUpdate)"
    )
    widget.add_argument(
        "--waiting-time", metavar="W", help="waiting time in minutes (escalationQueueUpdate)"
    )
    _add_api(widget)

    simulate = commands.add_parser(
        "simulate",
        help="serve the simulator for other programs' tests",
        description="Serve a local Ultimate platform (API + webhook delivery + scripted bot). "
        "Prints the environment to point a client at it; stop with Ctrl-C or SIGTERM.",
    )
    simulate.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    simulate.add_argument("--port", type=int, default=0, help="port (default 0 = any free port)")
    simulate.add_argument(
        "--webhook-url", metavar="URL", help="where the simulated bot delivers its webhooks"
    )
    simulate.add_argument(
        "--bot", metavar="FILE", help="a JSON bot script (default: the built-in demo bot)"
    )
    _add_verifier(simulate, required=False, insecure=False)

    from ._verifier import SIGNING_SCHEMES
    from .samples import SAMPLE_KINDS

    def add_signing(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--to", required=True, metavar="URL", help="the receiver's URL")
        parser.add_argument(
            "--secret", metavar="S", help="the receiver's secret (default: send unsigned)"
        )
        parser.add_argument(
            "--verifier",
            choices=SIGNING_SCHEMES,
            help="how the receiver verifies: header = SharedSecretHeader (default), "
            "hmac = HmacSignature, token = UrlToken",
        )
        parser.add_argument(
            "--timeout", type=float, default=10.0, help="seconds to wait for each answer"
        )

    trigger = commands.add_parser(
        "trigger",
        help="send one signed sample webhook to a receiver",
        description="POST a realistic sample webhook of KIND to a receiver, signed for its "
        "verifier, and print the answer (status and body). Exits 1 unless it answers 2xx.",
    )
    trigger.add_argument("kind", choices=SAMPLE_KINDS, metavar="KIND", help=", ".join(SAMPLE_KINDS))
    add_signing(trigger)
    trigger.add_argument("--conversation", metavar="ID", help=f"{_CID_HELP} (default: a new one)")
    trigger.add_argument("--text", metavar="T", help="the text of a message-like sample")
    trigger.add_argument("--name", metavar="ACTION", help="the action name (action, alert event)")

    replay = commands.add_parser(
        "replay",
        help="re-send deliveries saved by listen --save",
        description="POST each delivery saved by 'listen --save' to a receiver, in order, "
        "re-signed for its verifier, and print each answer. Exits 1 if any is not 2xx.",
    )
    replay.add_argument("file", metavar="FILE", help="a file written by listen --save")
    add_signing(replay)

    from .inbox import add_parser as add_inbox

    add_inbox(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 failure, 2 usage/configuration)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "demo":
            from .demo import command
        elif args.command == "listen":
            from .listen import command
        elif args.command == "send":
            from .send import command
        elif args.command == "trigger":
            from .trigger import command
        elif args.command == "replay":
            from .replay import command
        elif args.command == "inbox":
            from .inbox import command
        else:
            from .simulate import command
        return command(args)
    except SystemExit as exit_:  # --help / --version
        code = exit_.code
        return code if isinstance(code, int) else (EXIT_OK if code is None else EXIT_FAILURE)
    except CommandError as error:
        eprint(f"error: {one_line(error)}")
        return error.code
    except ConfigurationError as error:
        eprint(f"error: {one_line(error)}")
        return EXIT_USAGE
    except UltimateError as error:
        eprint(f"error: {one_line(error)}")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_FAILURE
    except Exception as error:  # a bug or an unexpected failure: still one line
        eprint(f"error: {type(error).__name__}: {one_line(error)}")
        return EXIT_FAILURE
