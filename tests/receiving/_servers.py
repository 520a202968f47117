"""Real servers for the front-end tests: uvicorn in the test's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import uvicorn


def uvicorn_config(app: Any, *, keepalive_timeout: float = 5.0, **kwargs: Any) -> uvicorn.Config:
    """What the README recommends for uvicorn in front of the internet (see "Serving")."""
    return uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        lifespan="on",
        log_config=None,  # leave the test's logging alone
        access_log=False,
        http="httptools",  # uvicorn[standard]'s parser; h11 accepts ambiguous framing
        timeout_keep_alive=max(1, round(keepalive_timeout)),
        **kwargs,
    )


@contextlib.asynccontextmanager
async def serving_with_uvicorn(config: uvicorn.Config) -> AsyncIterator[int]:
    """A real uvicorn server in this loop; its port once started, a graceful exit after."""
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:  # uvicorn exposes a flag, no event
                if task.done():
                    task.result()
                    raise AssertionError("uvicorn exited before serving")
                await asyncio.sleep(0.01)
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await task
