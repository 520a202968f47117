"""What only the SQLite inbox promises: group commit, a free event loop, a bounded file,
de-duplication expiry, a backlog larger than memory, repair from another process, and
nothing acknowledged lost to a ``SIGKILL``."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _inbox_cases import putter

from ultimate_async.errors import BackendUnavailableError, ConfigurationError
from ultimate_async.inbox import InboxEntry, InboxStats, SqliteInbox


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def take(inbox: SqliteInbox, count: int) -> list[InboxEntry]:
    return [await asyncio.wait_for(inbox.get(), 5.0) for _ in range(count)]


def count_rows(path: Path, table: str) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


async def test_concurrent_puts_share_commits(tmp_path: Path) -> None:
    inbox = SqliteInbox(tmp_path / "i.db")
    await inbox.start()
    try:
        before = inbox.commits
        ids = await asyncio.gather(*(putter(inbox)(f"c{i}", "m") for i in range(200)))
        assert None not in ids
        assert inbox.commits - before < 50  # one commit would be enough; never one per put
    finally:
        await inbox.aclose()


async def test_a_locked_database_answers_unavailable_without_blocking_the_loop(
    tmp_path: Path,
) -> None:
    path = tmp_path / "i.db"
    inbox = SqliteInbox(path, busy_timeout=1.0)
    await inbox.start()
    put = putter(inbox)
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    other = sqlite3.connect(path, isolation_level=None)
    ticking = asyncio.ensure_future(ticker())
    try:
        other.execute("BEGIN EXCLUSIVE")  # a backup tool, another writer...
        with pytest.raises(BackendUnavailableError):
            await put("c", "refused", key="k")
        assert max(gaps) < 0.5  # the loop kept running while the disk thread waited 1 s
        other.execute("ROLLBACK")
        # Recovered by itself; the refused put stored nothing and did not mark its key seen.
        assert await put("c", "accepted", key="k") is not None
        (entry,) = await take(inbox, 1)
        assert entry.raw["data"]["text"] == "accepted"
        assert await inbox.stats() == InboxStats(pending=1, dead=0)
    finally:
        ticking.cancel()
        other.close()
        await inbox.aclose()


async def test_done_entries_and_expired_keys_are_deleted(tmp_path: Path) -> None:
    path = tmp_path / "i.db"
    clock = Clock()
    inbox = SqliteInbox(path, dedup_ttl=10.0, clock=clock)
    await inbox.start()
    put = putter(inbox)
    sizes = []
    try:
        for round_ in range(3):
            await asyncio.gather(
                *(put(f"c{i % 7}", "x" * 200, key=f"{round_}-{i}") for i in range(2500))
            )
            await asyncio.gather(*(inbox.done(entry) for entry in await take(inbox, 2500)))
            clock.now += 11.0  # every key of this round expired
            await put("c", "sweeper")  # a commit runs the sweep
            for entry in await take(inbox, 1):
                await inbox.done(entry)
            assert count_rows(path, "entries") == 0
            assert count_rows(path, "dedup") == 0
            with sqlite3.connect(path) as db:  # fold the WAL in: measure the database itself
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            sizes.append(path.stat().st_size)
    finally:
        await inbox.aclose()
    assert sizes[2] <= sizes[0] * 1.2, sizes  # freed pages are reused: the file does not grow


async def test_a_key_stays_seen_while_stored_and_for_the_ttl_after_done(tmp_path: Path) -> None:
    clock = Clock()
    inbox = SqliteInbox(tmp_path / "i.db", dedup_ttl=10.0, clock=clock)
    await inbox.start()
    put = putter(inbox)
    try:
        await put("c", "slow", key="k")
        clock.now += 100.0  # long past the ttl, but still stored (a slow handler, a dead letter)
        assert await put("c", "dup", key="k") is None
        (entry,) = await take(inbox, 1)
        await inbox.done(entry)
        clock.now += 9.0
        assert await put("c", "dup", key="k") is None
        clock.now += 2.0
        assert await put("c", "new again", key="k") is not None
    finally:
        await inbox.aclose()


async def test_a_backlog_larger_than_the_buffer_comes_out_in_order(tmp_path: Path) -> None:
    path = tmp_path / "i.db"
    inbox = SqliteInbox(path, buffer=8)
    await inbox.start()
    put = putter(inbox)
    try:
        ids = await asyncio.gather(*(put(f"c{i % 3}", f"m{i}") for i in range(100)))
        assert len(inbox._ready) <= 8  # the rest waits on disk, not in memory
        got = await take(inbox, 60)
        assert [e.delivery_id for e in got] == ids[:60]
    finally:
        await inbox.aclose()
    # ... and after a restart: 40 never handed out, 60 handed out and not done.
    inbox = SqliteInbox(path, buffer=8)
    await inbox.start()
    try:
        again = await take(inbox, 100)
        assert [e.delivery_id for e in again] == ids
    finally:
        await inbox.aclose()


async def test_a_replay_from_another_process_reaches_the_running_inbox(tmp_path: Path) -> None:
    path = tmp_path / "i.db"
    serving = SqliteInbox(path)
    await serving.start()
    try:
        await putter(serving)("c", "poison")
        (entry,) = await take(serving, 1)
        await serving.failed(entry, "boom", dead=True)
        waiting = asyncio.ensure_future(serving.get())
        repair = SqliteInbox(path)  # what `ultimate-async inbox PATH replay ID` does
        await repair.start()
        try:
            assert [d.delivery_id async for d in repair.dead_letters()] == [entry.delivery_id]
            await repair.replay(entry.delivery_id)
        finally:
            await repair.aclose()
        replayed = await asyncio.wait_for(waiting, 5.0)
        assert replayed.delivery_id == entry.delivery_id
        assert replayed.attempt == 1
        # The live inbox's own puts after the repair still come out in order.
        await putter(serving)("c", "after")
        (after,) = await take(serving, 1)
        assert after.raw["data"]["text"] == "after"
        await serving.done(replayed)
        await serving.done(after)
        assert await serving.stats() == InboxStats(pending=0, dead=0)
    finally:
        await serving.aclose()


async def test_one_inbox_hands_out_and_another_on_the_file_takes_over(tmp_path: Path) -> None:
    path = tmp_path / "i.db"
    first, second = SqliteInbox(path), SqliteInbox(path)  # e.g. two worker processes
    await first.start()
    await second.start()
    try:
        await putter(first)("c", "m0")
        (m0,) = await take(first, 1)  # first consumes; it is now running m0
        await putter(second)("c", "m1")  # stored and acknowledged by the other one
        (m1,) = await take(first, 1)  # handed out by the consumer, in order
        assert m1.raw["data"]["text"] == "m1"
        assert not first.shared and not second.shared
        standby = asyncio.ensure_future(second.get())
        await putter(second)("c", "m2")
        await asyncio.sleep(0.3)
        assert not standby.done()  # never two processes handing out the same file
        assert second.shared  # its puts are handed out by the other one (drain need not wait)
        await first.done(m0)
        await first.aclose()  # the consumer goes away (a crash releases the lock too)
        taken_over = await asyncio.wait_for(standby, 5.0)
        assert not second.shared
        assert taken_over.delivery_id == m1.delivery_id  # what was left first, in order
        (m2,) = await take(second, 1)
        assert m2.raw["data"]["text"] == "m2"
    finally:
        await first.aclose()
        await second.aclose()


async def test_storage_that_cannot_be_opened_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    inbox = SqliteInbox(tmp_path / "dir.db")
    with pytest.raises(BackendUnavailableError):
        await inbox.start()
    with pytest.raises(BackendUnavailableError):
        await putter(inbox)("c", "m")


def test_arguments_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        SqliteInbox(tmp_path / "i.db", dedup_ttl=0)
    with pytest.raises(ConfigurationError):
        SqliteInbox(tmp_path / "i.db", synchronous="OFF")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        SqliteInbox(tmp_path / "i.db", buffer=0)


async def test_delivery_ids_differ_between_files(tmp_path: Path) -> None:
    ids = []
    for name in ("a.db", "b.db"):
        inbox = SqliteInbox(tmp_path / name)
        await inbox.start()
        ids.append(await putter(inbox)("c", "m"))
        await inbox.aclose()
    assert ids[0] != ids[1]  # handlers may store them to stay idempotent


_WRITER = """
import asyncio, sys
from ultimate_async.inbox import SqliteInbox

async def main() -> None:
    inbox = SqliteInbox(sys.argv[1], synchronous=sys.argv[2])
    await inbox.start()
    n = int(sys.argv[3])
    async def one(i: int) -> None:
        raw = {"eventType": "sendMessage", "data": {"text": str(i), "messageId": f"k{i}"}}
        await inbox.put(conversation_id=f"c{i % 5}", kind="sendMessage", raw=raw,
                        dedup_key=f"k{i}")
        sys.stdout.write(f"{i}\\n")  # acknowledged: only after the commit
        sys.stdout.flush()
    while True:
        await asyncio.gather(*(one(n + j) for j in range(20)))
        n += 20

asyncio.run(main())
"""


async def _read_back(path: Path) -> list[InboxEntry]:
    inbox = SqliteInbox(path)
    await inbox.start()
    try:
        return await take(inbox, (await inbox.stats()).pending)
    finally:
        await inbox.aclose()


@pytest.mark.parametrize("synchronous", ["FULL", "NORMAL"])
def test_nothing_acknowledged_is_lost_to_sigkill(tmp_path: Path, synchronous: str) -> None:
    path = tmp_path / "i.db"
    acked: list[int] = []
    for run in range(3):  # three kills, each on the same file, mid-load
        process = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path), synchronous, str(run * 1_000_000)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        for _ in range(300):
            line = process.stdout.readline()
            assert line, "writer died"
            acked.append(int(line))
        os.kill(process.pid, signal.SIGKILL)
        acked.extend(int(line) for line in process.stdout.read().split())
        process.wait()
        process.stdout.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    stored = asyncio.run(_read_back(path))
    numbers = [int(e.raw["data"]["text"]) for e in stored]
    assert set(acked) <= set(numbers)  # every acknowledged put survived
    assert len(numbers) == len(set(numbers))  # and none twice
    for conversation in range(5):  # in put order per conversation
        mine = [n for n in numbers if n % 5 == conversation]
        assert mine == sorted(mine)
