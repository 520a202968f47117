"""What every command shares: exit codes, one-line errors, the event-loop runner."""

from __future__ import annotations

import sys
from collections.abc import Coroutine, Mapping
from typing import Any, NoReturn, TypeVar

from .. import _loop

__all__ = [
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_USAGE",
    "CommandError",
    "UsageError",
    "mask_sanitized",
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
    return _loop.run(coro)


async def wait_for_signal() -> None:
    """Return on Ctrl-C or SIGTERM, so a server command can shut down cleanly."""
    await _loop.wait_for_signal()


def one_line(error: BaseException) -> str:
    """An exception as one line: no traceback, no newlines."""
    text = str(error) or type(error).__name__
    return " ".join(text.split())


def mask_sanitized(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A webhook body with ``sanitize: true`` action parameter values masked (they are PII).

    Every command that prints or saves a body (``listen``, ``inbox dead --json``) goes through
    this one function, so what counts as sanitized is decided in one place.
    """
    body = dict(raw)
    params = body.get("data")
    if isinstance(params, list):
        body["data"] = [
            {**p, "value": "<sanitized>"} if isinstance(p, dict) and p.get("sanitize") else p
            for p in params
        ]
    return body


def eprint(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)
