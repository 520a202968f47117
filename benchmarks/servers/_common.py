"""Shared plumbing of the receiver scripts: arguments, loop choice, the READY line, /stats."""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any


class Stats:
    """Counters the harness reads after a run to prove the handler path actually executed."""

    __slots__ = ("acked", "handled")

    def __init__(self) -> None:
        self.acked = 0
        self.handled = 0

    def as_dict(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        return {
            "acked": self.acked,
            "handled": self.handled,
            "loop": f"{type(loop).__module__}.{type(loop).__name__}",
            "orjson": "orjson" in sys.modules and sys.modules["orjson"] is not None,
            "gc_collections": [g["collections"] for g in gc.get_stats()],
        }


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = any free port")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    parser.add_argument(
        "--no-speed",
        action="store_true",
        help="make orjson and uvloop unimportable, as if the speed extra were not installed",
    )
    parser.add_argument("--profile", default=None, help="write a cProfile of the run to this file")
    args = parser.parse_args()
    if args.profile:
        _PROFILE[0] = args.profile
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
    if use_uvloop:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main())
    else:
        asyncio.run(main())


async def wait_for_signal() -> None:
    """Block until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def ready(port: int) -> None:
    print(f"READY {port}", flush=True)


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


def stats_route(stats: Stats) -> Any:
    """A ``GET /stats`` aiohttp handler."""
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        return web.json_response(stats.as_dict())

    return handler
