"""The SDK as a standalone server: the receiver of ``sdk.py`` served by ``WebhookServer``.

The same pipeline as ``sdk.py`` (verification, models, de-duplication, per-conversation FIFO
dispatch to a no-op ``on_message``), served by ``WebhookServer`` (aiohttp's low-level server)
instead of ``setup_webhook`` in an ``aiohttp.web.Application``.  ``GET /stats`` is answered by
the server's not-found fallback, so the webhook path is served exactly as users get it.
"""

from __future__ import annotations

from typing import Any

from benchmarks.payloads import PATH, SECRET
from benchmarks.servers._common import Stats, parse_args, ready, run, stats_route, wait_for_signal


def main() -> None:
    args = parse_args(__doc__ or "")
    stats = Stats()

    async def serve() -> None:
        # Imported here so that ``--no-speed`` can hide orjson before the SDK looks for it.
        from ultimate_async.webhook import SharedSecretHeader, WebhookReceiver, WebhookServer

        receiver = WebhookReceiver(SharedSecretHeader(SECRET))

        @receiver.on_message()
        async def on_message(msg: Any, ctx: Any) -> None:
            stats.handled += 1

        server = WebhookServer(receiver, args.host, args.port, path=PATH)
        server._handler.fallback = stats_route(stats)  # /stats only; not part of the SDK
        async with server:
            ready(int(server.url.rsplit(":", 1)[1].split("/", 1)[0]))
            await wait_for_signal()

    run(serve, use_uvloop=args.uvloop)


if __name__ == "__main__":
    main()
