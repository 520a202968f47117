"""What every command shares: exit codes, one-line errors, the event-loop runner."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Coroutine
from typing import Any, NoReturn, TypeVar

__all__ = [
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_USAGE",
    "CommandError",
    "UsageError",
    "run",
    "wait_for_signal",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

_T = TypeVar("_T")


class CommandError(Exception):
    """A failure worth one line on stderr and exit code ``code`` (no traceback)."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


class UsageError(CommandError):
    """Bad arguments or missing configuration: exit code 2."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_USAGE)


def usage(message: str) -> NoReturn:
    raise UsageError(message)


def run(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coro`` on uvloop when it is installed (the ``speed`` extra), else on asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


async def wait_for_signal() -> None:
    """Return on Ctrl-C or SIGTERM, so a server command can shut down cleanly."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - Windows
            pass
    try:
        await stop.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def one_line(error: BaseException) -> str:
    """An exception as one line: no traceback, no newlines."""
    text = str(error) or type(error).__name__
    return " ".join(text.split())


def eprint(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)
