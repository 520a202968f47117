"""Inbox implementations under test, for the contract suite (``test_contract.py``).

Each case knows how to open an inbox on *its* storage and how to open it again after a
"restart" (a durable inbox: a new object on the same file / keys; ``MemoryInbox``: the same
object, closed and started again).  To run the contract on another implementation, add one
entry to :data:`INBOX_CASES`: a name and a function ``(request, tmp_path) -> InboxCase`` (it
may take other fixtures, e.g. ``request.getfixturevalue("redis_server")``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from _inbox_cases import InboxCase

from ultimate_async.inbox import Inbox, MemoryInbox, SqliteInbox


def _memory(request: pytest.FixtureRequest, tmp_path: Path) -> InboxCase:
    return InboxCase(MemoryInbox, durable=False)


def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> InboxCase:
    return InboxCase(lambda: SqliteInbox(tmp_path / "inbox.sqlite3"), durable=True)


def _redis(request: pytest.FixtureRequest, tmp_path: Path) -> InboxCase:
    from ultimate_async.redis import RedisInbox

    url = request.getfixturevalue("inbox_redis_url")
    prefix = f"contract-{uuid.uuid4().hex}"  # one server for the session, one prefix per test
    return InboxCase(lambda: RedisInbox(url, key_prefix=prefix, lease_ttl=1.0), durable=True)


@pytest.fixture(scope="session")
def inbox_redis_url() -> Iterator[str]:
    """One real redis-server for the Redis case (H7; the Redis suite's own fixtures live in
    ``tests/redis/conftest.py``, out of this directory's reach)."""
    binary = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )
    if binary is None:
        reason = "redis-server binary not found (apt-get install redis-server)"
        if os.environ.get("ULTIMATE_ASYNC_REQUIRE_REDIS") == "1":
            pytest.fail(f"{reason}; ULTIMATE_ASYNC_REQUIRE_REDIS=1 requires the Redis tests")
        pytest.skip(reason)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(
        [binary, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.01)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


#: name -> factory of a case; extend to run the contract on another inbox.
CaseFactory = Callable[[pytest.FixtureRequest, Path], InboxCase]
INBOX_CASES: dict[str, CaseFactory] = {"memory": _memory, "sqlite": _sqlite, "redis": _redis}


@pytest.fixture(params=sorted(INBOX_CASES))
async def inbox_case(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[InboxCase]:
    factory = INBOX_CASES[request.param]
    case = factory(request, tmp_path)
    try:
        yield case
    finally:
        await case.close_all()


@pytest.fixture
async def inbox(inbox_case: InboxCase) -> Inbox:
    return await inbox_case.open()
