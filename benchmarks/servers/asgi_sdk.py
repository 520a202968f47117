"""The SDK on an ASGI server: the receiver of ``sdk.py`` as ``WebhookApp`` on uvicorn.

The same pipeline (verification, models, de-duplication, per-conversation FIFO dispatch to a
no-op ``on_message``) served by uvicorn with the settings every ASGI variant shares
(``_common.serve_asgi``): compare it with ``asgi_raw`` (a hand-written ASGI app) and
``fastapi_app``.
"""

from __future__ import annotations

from typing import Any

from benchmarks.payloads import PATH, SECRET
from benchmarks.servers._common import Stats, parse_args, serve_asgi


def main() -> None:
    args = parse_args(__doc__ or "")
    stats = Stats()
    # Imported after parse_args, so that ``--no-speed`` can hide orjson before the SDK looks.
    from ultimate_async.asgi import WebhookApp
    from ultimate_async.webhook import SharedSecretHeader, WebhookReceiver

    receiver = WebhookReceiver(SharedSecretHeader(SECRET))

    @receiver.on_message()
    async def on_message(msg: Any, ctx: Any) -> None:
        stats.handled += 1

    serve_asgi(WebhookApp(receiver, path=PATH), args, stats)


if __name__ == "__main__":
    main()
