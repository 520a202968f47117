"""Run a coroutine on the fastest event loop installed: uvloop (the ``speed`` extra) or asyncio.

A library cannot switch the loop its user is already running, but the entry points it owns can
pick one: :meth:`WebhookServer.run <ultimate_async.webhook.WebhookServer.run>` and the CLI
commands start their loop here.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["loop_factory", "run", "wait_for_signal"]

_T = TypeVar("_T")


def loop_factory(use_uvloop: bool | None = None) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory when wanted and importable; ``None`` means asyncio's default.

    ``use_uvloop``: ``None`` picks uvloop when it is installed, ``True`` requires it
    (``ImportError`` otherwise), ``False`` never uses it.
    """
    if use_uvloop is False:
        return None
    try:
        import uvloop
    except ImportError:
        if use_uvloop:
            raise
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, _T], *, use_uvloop: bool | None = None) -> _T:
    """``asyncio.run(main)``, on uvloop when it is installed (see :func:`loop_factory`)."""
    try:
        factory = loop_factory(use_uvloop)
    except BaseException:
        main.close()  # never awaited: close it, or Python warns about it
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


async def wait_for_signal(signals: tuple[signal.Signals, ...] = ()) -> signal.Signals | None:
    """Return on SIGINT or SIGTERM (or ``signals``), so a server can shut down cleanly.

    Returns the signal received, or ``None`` where the loop cannot watch signals (Windows, or
    not the main thread): then it waits until cancelled.
    """
    loop = asyncio.get_running_loop()
    received: asyncio.Future[signal.Signals] = loop.create_future()

    def on_signal(sig: signal.Signals) -> None:
        if not received.done():
            received.set_result(sig)

    installed: list[signal.Signals] = []
    for sig in signals or (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal, sig)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # pragma: no cover - Windows
            pass
    try:
        if not installed:  # pragma: no cover - Windows / not the main thread
            await asyncio.Event().wait()
        return await received
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
