"""The local Ultimate API stand-in for the client benchmarks: answers every POST with 200.

Kept as cheap as possible (uvloop when available) so the client under test is the bottleneck.
"""

from __future__ import annotations

from aiohttp import web

from benchmarks.servers._common import Stats, post_app, serve_main


def make_app(stats: Stats) -> web.Application:
    async def accept(request: web.Request) -> web.Response:
        await request.read()
        stats.handled += 1
        return web.Response()

    return post_app("/{tail:.*}", accept)


if __name__ == "__main__":
    serve_main(make_app, __doc__)
