"""``examples/two_replicas.py`` runs against a real Redis and says what it did.

It lives here, not in ``tests/loop/test_examples.py``, because it needs a ``redis-server``
(the fixtures skip or fail as the rest of ``tests/redis`` does).
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis.asyncio as aioredis

if TYPE_CHECKING:
    from conftest import RedisServer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "two_replicas.py"

EXPECTED = [
    "the platform delivers every webhook to replica B",
    "bot (delivered to B, read on A): Hi, I'm Ada, the Acme demo bot.",
    "you (asking on A): Where is my order?",
    "bot (delivered to B, read on A): Your order #A-1001 shipped yesterday and arrives tomorrow.",
    "done: 4 webhooks delivered to replica B, 4 read on replica A",
]


async def run_example(env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    try:
        async with asyncio.timeout(60):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:  # timed out: do not leave it running
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ULTIMATE_") and k not in ("REDIS_URL", "PATH")
    }
    env.update(extra)
    return env


def assert_ran(code: int, out: str, err: str) -> list[str]:
    assert code == 0, err
    lines = out.splitlines()
    for expected in EXPECTED:
        assert expected in lines, f"{expected!r} missing from:\n{out}"
    urls = [line.split()[-1] for line in lines if line.startswith("replica ")]
    assert len(urls) == 2 and urls[0] != urls[1], out
    assert all(re.fullmatch(r"http://127\.0\.0\.1:\d+/webhook", url) for url in urls), out
    assert "Traceback" not in err
    assert "Unclosed" not in err
    return lines


@pytest.mark.redis
async def test_runs_against_the_redis_in_redis_url_and_leaves_no_announcement(
    redis_server: RedisServer,
) -> None:
    env = clean_env(REDIS_URL=redis_server.url, PATH=os.environ.get("PATH", ""))
    lines = assert_ran(*await run_example(env))
    assert not any(line.startswith("redis: started") for line in lines)  # used ours
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        # The replicas closed cleanly: no conversation still announced, no inbox left behind.
        assert await client.keys("ultimate_async:owner:*") == []
        assert await client.keys("ultimate_async:inbox:*") == []
        assert len(await client.keys("ultimate_async:dedup:*")) == 4  # the shared claims
    finally:
        await client.aclose()


@pytest.mark.redis
async def test_without_redis_url_it_starts_and_stops_its_own_redis_server(
    redis_binary: str, tmp_path: Path
) -> None:
    (tmp_path / "redis-server").symlink_to(redis_binary)  # the only one on PATH
    lines = assert_ran(*await run_example(clean_env(PATH=str(tmp_path))))
    started = [line for line in lines if line.startswith("redis: started")]
    assert len(started) == 1, lines
    port = int(started[0].rsplit(" ", 1)[1])
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass  # the throwaway server is gone


async def test_without_redis_it_explains_and_exits_2(tmp_path: Path) -> None:
    code, out, err = await run_example(clean_env(PATH=str(tmp_path)))  # no redis-server here
    assert code == 2
    assert out == ""
    assert err.strip().splitlines() == [
        "two_replicas.py needs Redis: set REDIS_URL or install redis-server"
    ]
