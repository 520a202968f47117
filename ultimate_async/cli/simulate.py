"""``simulate``: serve the simulator for another program's tests.

Prints the three environment variables a client needs (``ULTIMATE_BASE_URL``,
``ULTIMATE_API_KEY``, ``ULTIMATE_BOT_ID``) as ``KEY=value`` lines, so a script can ``eval`` or
parse them, then serves until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ._common import EXIT_OK, eprint, run, wait_for_signal
from ._verifier import verifier_from_args

if TYPE_CHECKING:
    from ..simulator import ScriptedBot

__all__ = ["command"]


def _load_bot(path: str) -> ScriptedBot:
    """The bot script; a bad file is a ConfigurationError (exit 2) naming the place."""
    from ..simulator import ScriptedBot

    return ScriptedBot.from_json(path)


async def _serve(args: argparse.Namespace, bot: ScriptedBot | None) -> None:
    from ..simulator import Simulator

    async with Simulator(
        bot,
        webhook_url=args.webhook_url,
        verifier=verifier_from_args(args),
        host=args.host,
        port=args.port,
    ) as sim:
        print(f"ULTIMATE_BASE_URL={sim.base_url}", flush=True)
        print(f"ULTIMATE_API_KEY={sim.api_key}", flush=True)
        print(f"ULTIMATE_BOT_ID={sim.bot_id}", flush=True)
        target = args.webhook_url or "nowhere (no --webhook-url)"
        eprint(f"simulator serving at {sim.base_url}, webhooks to {target} (Ctrl-C to stop)")
        await wait_for_signal()
    eprint("stopped")


def command(args: argparse.Namespace) -> int:
    bot = _load_bot(args.bot) if args.bot else None
    run(_serve(args, bot))
    return EXIT_OK
