"""Suite-wide test setup: the webhook fixtures, a guard against reading beside the repository,
an aioresponses compatibility shim, the ``mock_api`` fixture and a scripted fake platform
(``platform``) that the sending and observability tests post to.

Why the guard: the suite once read its sample payloads from a folder beside the repository, so a
plain ``git clone`` failed 136 tests while every developer checkout passed.  An audit hook now
refuses (and reports at the end of the run) every open or listing of a path in the repository's
parent folder that is not inside the repository; see :class:`OutsideReads` for what is exempt.

Why the shim: aioresponses 0.7.9 builds fake ``aiohttp.ClientResponse`` objects itself, and
aiohttp 3.14 added a required keyword ``stream_writer`` to ``ClientResponse.__init__`` (used to
report the request's output size).  Without it every mocked call dies with a ``TypeError``.
We hand aioresponses a ``ClientResponse`` subclass that supplies an inert writer.  The patch
touches only aioresponses' module namespace, so real aiohttp traffic (e.g. to the 127.0.0.1
servers other tests start) is unaffected.  Drop it once aioresponses ships a fix.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import site
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import aioresponses as _aioresponses_pkg
import aioresponses.core as _aioresponses_core
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

#: The repository root (this file is ``tests/conftest.py``).
REPO_ROOT = Path(__file__).resolve().parent.parent
#: Everything the tests read from disk lives here, inside the repository.
FIXTURES_DIR = REPO_ROOT / "tests" / "fixtures"
#: Webhook bodies as the platform sends them; ``invalid/`` holds the ones to refuse (README there).
WEBHOOK_FIXTURES = FIXTURES_DIR / "webhooks"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run every test taking ``valid_name`` / ``invalid_name`` once per webhook fixture file.

    An empty directory would collect no cases; ``test_every_fixture_has_an_expectation`` (and the
    hygiene tests) fail then, so that cannot pass unnoticed.
    """
    if "valid_name" in metafunc.fixturenames:
        names = sorted(p.name for p in WEBHOOK_FIXTURES.glob("*.json"))
        metafunc.parametrize("valid_name", names)
    if "invalid_name" in metafunc.fixturenames:
        names = sorted(p.name for p in (WEBHOOK_FIXTURES / "invalid").iterdir())
        metafunc.parametrize("invalid_name", names)


@pytest.fixture
def fixtures_dir() -> Path:
    """The webhook fixtures directory (``WEBHOOK_FIXTURES``)."""
    return WEBHOOK_FIXTURES


class OutsideRepositoryError(RuntimeError):
    """A test opened or listed a path beside the repository, which a plain clone does not have.

    Not an ``OSError``, so code that tolerates a missing file does not swallow it.
    """


class OutsideReads:
    """An audit hook that refuses file access in the repository's parent outside the repository.

    Exempt, because a checkout legitimately lives beside them: hidden entries of the parent
    (``~/.netrc``, ``~/.cache`` when the repository sits in a home folder), the interpreter's
    prefixes, site directories and ``sys.path`` entries (a virtualenv or editable install kept
    beside the checkout) and the temporary directory, unless one of these contains the repository
    itself. A repository at the top of the file system has nothing beside it worth guarding, so
    the guard is off there.
    """

    #: Audit events that name a path about to be read or listed.
    EVENTS = frozenset({"open", "os.listdir", "os.scandir"})

    def __init__(self, repo: Path, exempt: Iterable[str]) -> None:
        self.repo = os.path.abspath(repo)
        parent = os.path.dirname(self.repo)
        self.parent = None if parent == os.path.dirname(parent) else parent + os.sep
        inside = self.repo + os.sep
        roots = {os.path.abspath(path) + os.sep for path in exempt if path}
        self.exempt = tuple(root for root in roots if not inside.startswith(root))
        #: Paths refused so far; a non-empty list fails the run at its end.
        self.refused: list[str] = []

    def outside(self, path: str) -> bool:
        """Whether opening ``path`` reaches beside the repository."""
        full = os.path.abspath(path)
        if self.parent is None or not full.startswith(self.parent):
            return False
        if full == self.repo or full.startswith(self.repo + os.sep):
            return False
        if full[len(self.parent) :].startswith("."):
            return False
        return not (full + os.sep).startswith(self.exempt)

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if event not in self.EVENTS or not args or args[0] is None or isinstance(args[0], int):
            return
        path = os.fsdecode(args[0])
        if self.outside(path):
            self.refused.append(path)
            raise OutsideRepositoryError(
                f"{path!r} is outside the repository {self.repo!r}: a plain clone has nothing "
                "beside it; keep test data under tests/fixtures"
            )


def _exempt_roots() -> list[str]:
    roots = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    roots += [tempfile.gettempdir(), *site.getsitepackages(), site.getusersitepackages()]
    return roots + [entry for entry in sys.path if entry]


OUTSIDE_READS = OutsideReads(REPO_ROOT, _exempt_roots())
sys.addaudithook(OUTSIDE_READS)


@pytest.fixture
def outside_reads() -> OutsideReads:
    """The suite's guard against reading beside the repository."""
    return OUTSIDE_READS


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if OUTSIDE_READS.refused:
        terminalreporter.section("paths outside the repository", red=True)
        for path in OUTSIDE_READS.refused:
            terminalreporter.line(f"refused: {path}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when anything reached beside the repository, even if the error was caught."""
    if OUTSIDE_READS.refused and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


class Recorded:
    """One request the fake platform received."""

    def __init__(self, path: str, headers: dict[str, str], body: bytes) -> None:
        self.path = path
        self.headers = headers
        self.body = body
        self.arrived_at = time.monotonic()

    def json(self) -> Any:
        return json.loads(self.body)


class FakePlatform:
    """A real aiohttp server on 127.0.0.1 that records requests and plays scripted answers.

    ``script`` is a list of ``(status, body, headers)`` answers used in order; when it runs
    out, the server answers an empty 200.  The status ``"stall"`` never answers (until the test
    ends), to exercise timeouts; ``"truncate"`` sends a 200 and hangs up mid-body.
    """

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.script: list[tuple[int | str, str, dict[str, str]]] = []
        self.release = asyncio.Event()
        self.arrived = asyncio.Event()  # set by the first request
        self.url = ""

    def answer(self, status: int | str, body: str = "", **headers: str) -> None:
        self.script.append((status, body, {k.replace("_", "-"): v for k, v in headers.items()}))

    @property
    def hits(self) -> int:
        return len(self.requests)

    @property
    def arrivals(self) -> list[float]:
        """When each request arrived (``time.monotonic()``)."""
        return [request.arrived_at for request in self.requests]

    @property
    def bodies(self) -> list[bytes]:
        return [request.body for request in self.requests]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(Recorded(request.path_qs, dict(request.headers), await request.read()))
        self.arrived.set()
        status, body, headers = self.script.pop(0) if self.script else (200, "", {})
        if status == "stall":
            try:
                await asyncio.wait_for(self.release.wait(), 5)
            except TimeoutError:
                pass
            return web.Response(status=200)
        if status == "truncate":  # promise 1000 bytes, send a few, hang up
            resp = web.StreamResponse(status=200, headers={"Content-Length": "1000"})
            await resp.prepare(request)
            await resp.write(b'{"messages": [')
            assert request.transport is not None
            request.transport.close()
            return resp
        assert isinstance(status, int)
        return web.Response(status=status, text=body, headers=headers)


@pytest.fixture
async def platform(aiohttp_server: AiohttpServer) -> AsyncIterator[FakePlatform]:
    fake = FakePlatform()
    app = web.Application()
    app.router.add_post("/{tail:.*}", fake.handle)
    server = await aiohttp_server(app)
    fake.url = str(server.make_url("")).rstrip("/")
    yield fake
    fake.release.set()  # let stalled handlers finish so the server shuts down promptly


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


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A 127.0.0.1 URL whose port is bound but not listening: connections are refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()
