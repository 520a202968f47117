"""``trigger``: fire one realistic, signed sample webhook at a receiver and print its answer.

Like ``stripe trigger``: the fastest way to see a handler run without the platform.  The exit
code says whether the receiver accepted it (0 for a 2xx, 1 otherwise), so a refused signature
(401) fails a script.
"""

from __future__ import annotations

import argparse
import json

from ._common import EXIT_FAILURE, EXIT_OK, run
from ._deliver import post_signed
from ._verifier import signer_from_args
from .samples import sample

__all__ = ["command"]


async def _trigger(args: argparse.Namespace) -> int:
    import aiohttp

    signer = signer_from_args(args)
    payload = sample(args.kind, args.conversation, text=args.text, name=args.name)
    body = json.dumps(payload).encode()
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        answer = await post_signed(http, args.to, body, signer)
    print(answer.lines(), flush=True)
    return EXIT_OK if answer.ok else EXIT_FAILURE


def command(args: argparse.Namespace) -> int:
    return run(_trigger(args))
