"""The local Ultimate API stand-in for the client benchmarks: answers every POST with 200.

Kept as cheap as possible (uvloop when available) so the client under test is the bottleneck.
"""

from __future__ import annotations

from aiohttp import web

from benchmarks.servers._common import Stats, parse_args, run, serve_aiohttp, stats_route


def make_app(stats: Stats) -> web.Application:
    async def accept(request: web.Request) -> web.Response:
        await request.read()
        stats.handled += 1
        return web.Response()

    app = web.Application()
    app.router.add_post("/{tail:.*}", accept)
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
