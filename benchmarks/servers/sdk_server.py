"""The SDK as a standalone server: the receiver of ``sdk.py`` served by ``WebhookServer``.

The same pipeline as ``sdk.py`` (verification, models, de-duplication, per-conversation FIFO
dispatch to a no-op ``on_message``), served by ``WebhookServer``: an aiohttp application of
ours run by ``web.AppRunner``, so compare it with ``handwritten`` on the same aiohttp server.
``GET /stats`` is served on a port of its own, so the webhook port is served exactly as users
get it.  Like ``WebhookServer.run()``, it calls ``gc.freeze()`` once serving (see that method).
"""

from __future__ import annotations

import argparse
import gc
from typing import Any

from benchmarks.payloads import PATH, SECRET
from benchmarks.servers._common import (
    Stats,
    parse_args,
    ready,
    run,
    stats_server,
    wait_for_signal,
)


def _freeze(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-gc-freeze", action="store_true", help="as run(freeze_gc=False)")


def main() -> None:
    args = parse_args(__doc__ or "", _freeze)
    stats = Stats()

    async def serve() -> None:
        # Imported here so that ``--no-speed`` can hide orjson before the SDK looks for it.
        from ultimate_async.webhook import SharedSecretHeader, WebhookReceiver, WebhookServer

        receiver = WebhookReceiver(SharedSecretHeader(SECRET))

        @receiver.on_message()
        async def on_message(msg: Any, ctx: Any) -> None:
            stats.handled += 1

        server = WebhookServer(receiver, args.host, args.port, path=PATH)
        async with server, stats_server(stats, args.host) as stats_port:
            if not args.no_gc_freeze:
                gc.freeze()  # as WebhookServer.run() does once serving
            ready(int(server.url.rsplit(":", 1)[1].split("/", 1)[0]), stats_port)
            await wait_for_signal()

    run(serve, use_uvloop=args.uvloop)


if __name__ == "__main__":
    main()
