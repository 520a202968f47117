"""One SDK receiver replica for the replicas benchmark (issue #6).

``--redis URL``: a replica sharing that Redis, with ``RedisDeduplicator`` and ``RedisEventBus``;
without it, the baseline: one replica, in-memory de-duplication, no bus. ``--hold N``
``register()``s conversations ``conv-0`` .. ``conv-{N-1}`` (the ids the load generators cycle
through) so they are held here; READY is printed only once Redis routes them here, so a replica
without them forwards every delivery to this one.

``/stats``: ``handled`` counts every handler run here; ``forwarded_in`` those of them that came
from another replica through Redis; ``catch_all`` those of deliveries nobody held (0 when routing
works, since every conversation of the load is held somewhere).
"""

from __future__ import annotations

import argparse
from typing import Any

from aiohttp import web

from benchmarks.payloads import PATH, SECRET
from benchmarks.servers._common import Stats, parse_args, serve


def make_app(stats: Stats, args: argparse.Namespace) -> web.Application:
    # Imported here so that ``--no-speed`` can hide orjson before the SDK looks for it.
    from ultimate_async.webhook import SharedSecretHeader, WebhookReceiver, setup_webhook

    if args.redis:
        from ultimate_async.redis import RedisDeduplicator, RedisEventBus

        receiver = WebhookReceiver(
            SharedSecretHeader(SECRET),
            dedup=RedisDeduplicator(args.redis),
            bus=RedisEventBus(args.redis),
        )
    else:
        receiver = WebhookReceiver(SharedSecretHeader(SECRET))
    stats.extra.update(forwarded_in=0, catch_all=0)
    extra = stats.extra

    async def observe(event: Any, ctx: Any) -> None:
        stats.handled += 1
        if ctx.forwarded:
            extra["forwarded_in"] += 1

    @receiver.on_message()
    async def catch_all(event: Any, ctx: Any) -> None:
        stats.handled += 1
        extra["catch_all"] += 1

    # exclusive: the conversation's events go to its holder instead of the catch-all (an
    # observer alone would see them beside it)
    registrations = [
        receiver.register(f"conv-{i}", observe, exclusive=True) for i in range(args.hold)
    ]

    async def announce(_: web.Application) -> None:
        await receiver.start()
        for registration in registrations:
            await registration.ready()

    app = web.Application()
    setup_webhook(app, receiver, path=PATH)
    app.on_startup.append(announce)
    return app


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis", default=None, help="Redis URL shared by the replicas")
    parser.add_argument("--hold", type=int, default=0, help="conversations registered here")


if __name__ == "__main__":
    options = parse_args(__doc__ or "", _options)
    serve(lambda stats: make_app(stats, options), options)
