"""The SDK under test: ``WebhookReceiver`` + ``SharedSecretHeader`` mounted with ``setup_webhook``.

Full pipeline per delivery: verification, parsing into models, de-duplication and
per-conversation FIFO dispatch to a no-op ``on_message`` handler. ``--no-speed`` hides orjson and
uvloop (the SDK without its ``speed`` extra); ``--uvloop`` runs the loop the SDK's own runner picks
when the extra is installed.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from benchmarks.payloads import PATH, SECRET
from benchmarks.servers._common import Stats, serve_main


def make_app(stats: Stats) -> web.Application:
    # Imported here so that ``--no-speed`` can hide orjson before the SDK looks for it.
    from ultimate_async.webhook import SharedSecretHeader, WebhookReceiver, setup_webhook

    receiver = WebhookReceiver(SharedSecretHeader(SECRET))

    @receiver.on_message()
    async def on_message(msg: Any, ctx: Any) -> None:
        stats.handled += 1

    app = web.Application()
    setup_webhook(app, receiver, path=PATH)
    return app


if __name__ == "__main__":
    serve_main(make_app, __doc__)
