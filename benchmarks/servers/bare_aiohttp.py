"""Baseline: the cheapest useful aiohttp webhook endpoint (read the body, answer 200)."""

from __future__ import annotations

from aiohttp import web

from benchmarks.payloads import PATH
from benchmarks.servers._common import Stats, post_app, serve_main


def make_app(stats: Stats) -> web.Application:
    async def webhook(request: web.Request) -> web.Response:
        await request.read()
        stats.acked += 1
        stats.handled += 1
        return web.Response()

    return post_app(PATH, webhook)


if __name__ == "__main__":
    serve_main(make_app, __doc__)
