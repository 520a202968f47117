"""``ultimate-async inbox PATH stats | dead | replay ID | purge ID`` on a real SQLite file."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ultimate_async.cli import main
from ultimate_async.inbox import SqliteInbox


async def _with_dead_letters(path: Path) -> list[str]:
    inbox = SqliteInbox(path)
    await inbox.start()
    try:
        ids = []
        for name, value in (("card", "4111 1111"), ("plan", "gold")):
            raw = {
                "name": name,
                "data": [{"key": name, "value": value, "sanitize": name == "card"}],
            }
            await inbox.put(conversation_id="conv-1", kind="action", raw=raw, dedup_key=None)
            entry = await inbox.get()
            await inbox.failed(entry, f"RuntimeError: {name} failed", dead=True)
            ids.append(entry.delivery_id)
        await inbox.put(conversation_id="conv-2", kind="sendMessage", raw={}, dedup_key=None)
        return ids
    finally:
        await inbox.aclose()


@pytest.fixture
def dead_ids(tmp_path: Path) -> list[str]:
    return asyncio.run(_with_dead_letters(tmp_path / "inbox.db"))


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["inbox", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_stats_dead_replay_purge(
    tmp_path: Path, dead_ids: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "inbox.db")
    assert cli(capsys, path, "stats") == (0, "pending 1\ndead 2\n", "")

    code, out, _ = cli(capsys, path, "dead")
    assert code == 0
    lines = out.splitlines()
    assert [line.split("\t")[0] for line in lines] == dead_ids
    first = lines[0].split("\t")
    assert first[1:4] == ["conv-1", "action", "attempts=1"]
    assert first[-1] == "RuntimeError: card failed"
    assert "4111" not in out  # no body without --json

    code, out, _ = cli(capsys, path, "dead", "--json")
    letters = [json.loads(line) for line in out.splitlines()]
    assert letters[0]["raw"]["data"][0]["value"] == "<sanitized>"
    assert letters[1]["raw"]["data"][0]["value"] == "gold"
    assert "4111" not in out

    assert cli(capsys, path, "replay", dead_ids[0]) == (0, f"replayed {dead_ids[0]}\n", "")
    assert cli(capsys, path, "purge", dead_ids[1]) == (0, f"purged {dead_ids[1]}\n", "")
    assert cli(capsys, path, "stats")[1] == "pending 2\ndead 0\n"

    code, _, err = cli(capsys, path, "purge", dead_ids[1])
    assert code == 1 and "no dead letter" in err


def test_a_missing_file_is_a_usage_error_and_is_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, str(tmp_path / "typo.db"), "stats")
    assert code == 2 and "no inbox file" in err
    assert not (tmp_path / "typo.db").exists()


def test_the_installed_command_runs(tmp_path: Path, dead_ids: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ultimate_async", "inbox", str(tmp_path / "inbox.db"), "stats"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "pending 1\ndead 2\n"


REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    if not Path(REDIS_SERVER).exists():
        pytest.skip("no redis-server binary")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [
            REDIS_SERVER,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait()


async def _redis_dead_letter(url: str) -> str:
    from ultimate_async.redis import RedisInbox

    inbox = RedisInbox(url, key_prefix="cli-test", lease_ttl=1.0)
    await inbox.start()
    try:
        raw = {"eventType": "sendMessage", "data": {"text": "hi"}}
        await inbox.put(conversation_id="c", kind="message", raw=raw, dedup_key=None)
        entry = await asyncio.wait_for(inbox.get(), 10)
        await inbox.failed(entry, "RuntimeError: boom", dead=True)
        return entry.delivery_id
    finally:
        await inbox.aclose()


def test_the_same_commands_on_a_redis_inbox(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    delivery_id = asyncio.run(_redis_dead_letter(redis_url))
    prefix = ["--key-prefix", "cli-test"]
    assert cli(capsys, redis_url, *prefix, "stats")[:2] == (0, "pending 0\ndead 1\n")
    code, out, _ = cli(capsys, redis_url, *prefix, "dead")
    assert code == 0 and out.split("\t")[0] == delivery_id
    assert cli(capsys, redis_url, *prefix, "purge", delivery_id)[:2] == (
        0,
        f"purged {delivery_id}\n",
    )
    assert cli(capsys, redis_url, *prefix, "stats")[1] == "pending 0\ndead 0\n"
