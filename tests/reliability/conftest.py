"""Fixtures for the reliability tests: the JSON decoder in use and leak checks.

The workloads live in ``benchmarks/reliability.py`` so ``make reliability`` runs the same code
longer; the repository root is put on ``sys.path`` here so that import works however pytest
is started (``python -m pytest`` adds it anyway, the ``pytest`` script does not).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

try:
    import orjson  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    HAVE_ORJSON = False
else:
    HAVE_ORJSON = True


@pytest.fixture(
    params=[
        pytest.param(
            "orjson",
            marks=pytest.mark.skipif(not HAVE_ORJSON, reason="orjson is not installed"),
        ),
        "stdlib",
    ]
)
def json_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with orjson (the ``speed`` extra) and with the stdlib fallback.

    A plain ``pip install ultimate_async`` has no orjson, so the fallback is what most users
    run; both decoders must refuse hostile bodies the same safe way.
    """
    if request.param == "stdlib":
        import ultimate_async._json as json_impl

        monkeypatch.setattr(json_impl, "_orjson", None)
    return str(request.param)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    """A throw-away ``redis-server`` on a free local port (skipped when the binary is absent)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server binary not found")
    import redis.asyncio as aioredis

    port = _free_port()
    process = await asyncio.create_subprocess_exec(
        binary,
        *("--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = aioredis.Redis.from_url(url)
    try:
        async with asyncio.timeout(10):
            while True:
                try:
                    if await client.ping():
                        break
                except (OSError, aioredis.RedisError):
                    await asyncio.sleep(0.02)
        yield url
    finally:
        await client.aclose()
        if process.returncode is None:
            process.terminate()
        await process.wait()
