"""Suite-wide test setup: an aioresponses compatibility shim and the ``mock_api`` fixture.

Why the shim: aioresponses 0.7.9 builds fake ``aiohttp.ClientResponse`` objects itself, and
aiohttp 3.14 added a required keyword ``stream_writer`` to ``ClientResponse.__init__`` (used to
report the request's output size).  Without it every mocked call dies with a ``TypeError``.
We hand aioresponses a ``ClientResponse`` subclass that supplies an inert writer.  The patch
touches only aioresponses' module namespace, so real aiohttp traffic (e.g. to the 127.0.0.1
servers other tests start) is unaffected.  Drop it once aioresponses ships a fix.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import aiohttp
import aioresponses as _aioresponses_pkg
import aioresponses.core as _aioresponses_core
import pytest


class _NullStreamWriter:
    """Stands in for the request writer of a response that no real request produced."""

    output_size = 0
    buffer_size = 0


class _CompatClientResponse(aiohttp.ClientResponse):
    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", _NullStreamWriter())
        super().__init__(method, url, **kwargs)


if "stream_writer" in inspect.signature(aiohttp.ClientResponse.__init__).parameters:
    # aioresponses looks the class up in its own module at call time.
    setattr(_aioresponses_core, "ClientResponse", _CompatClientResponse)  # noqa: B010


@pytest.fixture
def mock_api() -> Iterator[Any]:
    """An active ``aioresponses`` mock; calls to local 127.0.0.1 servers pass through."""
    local = ["http://127.0.0.1", "http://localhost"]
    with _aioresponses_pkg.aioresponses(passthrough=local) as mocked:
        yield mocked
