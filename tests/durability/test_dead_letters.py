"""Retries and dead letters on a real server with ``SqliteInbox``, repaired with the CLI while
it serves: order is kept behind a retrying event, other conversations go on, a dead letter
frees its conversation, and ``inbox PATH replay ID`` hands it to the running server again."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from benchmarks.durability import SECRET, Server, body

pytestmark = pytest.mark.timeout(120)


async def cli(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ultimate_async",
        "inbox",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode()


async def eventually(check: Callable[[], object], within: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


def handled(log: Path) -> list[list[str]]:
    return [line.split("\t") for line in log.read_text().splitlines()] if log.exists() else []


async def test_retry_dead_letter_and_replay_from_the_cli(tmp_path: Path) -> None:
    db, log, heal = tmp_path / "inbox.sqlite3", tmp_path / "handled.log", tmp_path / "healed"
    server = Server(
        tmp_path, "--path", str(db), "--log", str(log), "--heal", str(heal), "--work", "0"
    )
    await server.start()
    try:
        headers = {"Authorization": SECRET, "Content-Type": "application/json"}
        async with aiohttp.ClientSession() as session:
            for name, seq in [("flaky-1", 0), ("flaky-1", 1), ("poison-1", 0), ("poison-1", 1)]:
                async with session.post(server.url, data=body(name, seq), headers=headers) as r:
                    assert r.status == 200
            async with session.post(server.url, data=body("ok-1", 0), headers=headers) as r:
                assert r.status == 200

        await eventually(lambda: len(handled(log)) == 3)
        lines = handled(log)
        # ok-1 went on while flaky-1 was retrying; flaky-1's second event waited for its first.
        assert [(c, t, a) for c, t, _, a in lines] == [
            ("ok-1", "0", "1"),
            ("flaky-1", "0", "3"),
            ("flaky-1", "1", "3"),
        ]
        for _ in range(150):  # the two poison events: 3 attempts each, then dead letters
            if await cli(str(db), "stats") == "pending 0\ndead 2\n":
                break
            await asyncio.sleep(0.1)
        assert await cli(str(db), "stats") == "pending 0\ndead 2\n"

        dead = [line.split("\t") for line in (await cli(str(db), "dead")).splitlines()]
        assert [d[1:4] for d in dead] == [["poison-1", "message", "attempts=3"]] * 2
        assert all(d[-1] == "RuntimeError: poison message" for d in dead)
        first, second = dead[0][0], dead[1][0]

        heal.touch()  # the bug is fixed: replay one, drop the other
        assert await cli(str(db), "replay", first) == f"replayed {first}\n"
        assert await cli(str(db), "purge", second) == f"purged {second}\n"
        await eventually(lambda: any(line[0] == "poison-1" for line in handled(log)))
        replayed = [line for line in handled(log) if line[0] == "poison-1"]
        assert [(t, d, a) for _, t, d, a in replayed] == [("0", first, "1")]
        assert await cli(str(db), "stats") == "pending 0\ndead 0\n"
    finally:
        await server.stop()
