"""Shared plumbing of the receiver scripts: arguments, loop choice, the READY line, /stats.

A server script only builds what it measures -- ``make_app(stats)`` returning an aiohttp app with
its handler -- and ends with ``serve_main(make_app, __doc__)``; everything else lives here.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from aiohttp import web

T = TypeVar("T")


class Stats:
    """Counters the harness reads after a run to prove the handler path actually executed.

    ``extra`` holds counters specific to one server (reported as they are).
    """

    __slots__ = ("acked", "extra", "handled")

    def __init__(self) -> None:
        self.acked = 0
        self.handled = 0
        self.extra: dict[str, Any] = {}

    def as_dict(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        return {
            **self.extra,
            "acked": self.acked,
            "handled": self.handled,
            "loop": f"{type(loop).__module__}.{type(loop).__name__}",
            "orjson": "orjson" in sys.modules and sys.modules["orjson"] is not None,
            "gc_collections": [g["collections"] for g in gc.get_stats()],
        }


def parse_args(
    description: str, add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
) -> argparse.Namespace:
    """The options every server takes (plus ``add_arguments``'s own); applies ``--no-speed``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = any free port")
    parser.add_argument("--profile", default=None, help="write a cProfile of the run to this file")
    if add_arguments is not None:
        add_arguments(parser)
    args = parse_loop_args(parser)
    if args.profile:
        _PROFILE[0] = args.profile
    return args


def parse_loop_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Add ``--uvloop`` and ``--no-speed``, parse, and apply ``--no-speed`` at once.

    Every benchmark process takes these two; call this before importing the code under test.
    """
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    parser.add_argument(
        "--no-speed",
        action="store_true",
        help="make orjson and uvloop unimportable, as if the speed extra were not installed",
    )
    args = parser.parse_args()
    if args.no_speed:
        block_speed_extras()
    return args


def block_speed_extras() -> None:
    """Pretend the ``speed`` extra is absent: ``import orjson`` / ``import uvloop`` now fail.

    Must run before the code under test is imported.
    """
    sys.modules["orjson"] = None  # type: ignore[assignment]
    sys.modules["uvloop"] = None  # type: ignore[assignment]


_PROFILE: list[str | None] = [None]


def run(main: Callable[[], Coroutine[Any, Any, None]], *, use_uvloop: bool) -> None:
    """Run ``main`` on the default loop or on uvloop (under cProfile with ``--profile``)."""
    if _PROFILE[0]:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        try:
            _run(main, use_uvloop=use_uvloop)
        finally:
            profiler.disable()
            profiler.dump_stats(_PROFILE[0])
    else:
        _run(main, use_uvloop=use_uvloop)


def _run(main: Callable[[], Coroutine[Any, Any, None]], *, use_uvloop: bool) -> None:
    run_coroutine(main(), use_uvloop=use_uvloop)


def run_coroutine(coro: Coroutine[Any, Any, T], *, use_uvloop: bool) -> T:
    """``asyncio.run(coro)``, on uvloop when asked."""
    if use_uvloop:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)
    return asyncio.run(coro)


async def wait_for_signal() -> None:
    """Block until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def ready(port: int, stats_port: int | None = None) -> None:
    """Tell the harness the server is up; ``stats_port`` when ``/stats`` is served apart."""
    print(f"READY {port}" + (f" {stats_port}" if stats_port else ""), flush=True)


@asynccontextmanager
async def stats_server(stats: Stats, host: str) -> AsyncIterator[int]:
    """``GET /stats`` on a port of its own (yields it), for servers that serve only the SDK."""
    from aiohttp import web

    app = web.Application()
    app.router.add_get("/stats", stats_route(stats))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, 0)
        await site.start()
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def serve_aiohttp(app: Any, host: str, port: int) -> None:
    """Serve an aiohttp app without access logging (as every variant does) until signalled."""
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    server = site._server
    assert server is not None
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    ready(bound)
    try:
        await wait_for_signal()
    finally:
        await runner.cleanup()


def serve_asgi(app: Any, args: argparse.Namespace, stats: Stats) -> None:
    """Serve an ASGI ``app`` on uvicorn until signalled, ``GET /stats`` on a port of its own.

    Every ASGI variant runs on the same uvicorn settings: its HTTP parser on httptools (what
    ``uvicorn[standard]`` installs), lifespan on, access log off, the loop ``--uvloop`` picks.
    """
    import uvicorn

    async def main() -> None:
        config = uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            loop="none",
            http="httptools",
            lifespan="on",
            log_config=None,
            access_log=False,
            backlog=1024,
        )
        server = uvicorn.Server(config)  # it handles SIGTERM/SIGINT itself
        serving = asyncio.ensure_future(server.serve())
        async with stats_server(stats, args.host) as stats_port:
            while not server.started:
                if serving.done():
                    serving.result()
                    return
                await asyncio.sleep(0.01)
            ready(server.servers[0].sockets[0].getsockname()[1], stats_port)
            await serving

    run(main, use_uvloop=args.uvloop)


def stats_route(stats: Stats) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A ``GET /stats`` aiohttp handler."""
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        return web.json_response(stats.as_dict())

    return handler


def post_app(
    path: str, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.Application:
    """An aiohttp app serving ``handler`` for ``POST path`` and nothing else."""
    from aiohttp import web

    app = web.Application()
    app.router.add_post(path, handler)
    return app


def serve_main(make_app: Callable[[Stats], web.Application], description: str | None) -> None:
    """The whole life of a server script: parse the common options, serve until signalled."""
    serve(make_app, parse_args(description or ""))


def serve(make_app: Callable[[Stats], web.Application], args: argparse.Namespace) -> None:
    """Serve ``make_app(stats)`` plus ``GET /stats`` as ``args`` say, until SIGTERM/SIGINT.

    ``make_app`` runs inside the loop, after ``--no-speed`` took effect (``parse_args``).
    """
    stats = Stats()

    async def main() -> None:
        app = make_app(stats)
        app.router.add_get("/stats", stats_route(stats))
        await serve_aiohttp(app, args.host, args.port)

    run(main, use_uvloop=args.uvloop)
