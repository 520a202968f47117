"""Baseline: the cheapest useful aiohttp webhook endpoint (read the body, answer 200)."""

from __future__ import annotations

from aiohttp import web

from benchmarks.payloads import PATH
from benchmarks.servers._common import Stats, parse_args, run, serve_aiohttp, stats_route


def make_app(stats: Stats) -> web.Application:
    async def webhook(request: web.Request) -> web.Response:
        await request.read()
        stats.acked += 1
        stats.handled += 1
        return web.Response()

    app = web.Application()
    app.router.add_post(PATH, webhook)
    app.router.add_get("/stats", stats_route(stats))
    return app


def main() -> None:
    args = parse_args(__doc__ or "")
    stats = Stats()

    async def serve() -> None:
        await serve_aiohttp(make_app(stats), args.host, args.port)

    run(serve, use_uvloop=args.uvloop)


if __name__ == "__main__":
    main()
