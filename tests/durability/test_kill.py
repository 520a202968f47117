"""Kill a real receiver process under load: with ``SqliteInbox`` nothing answered ``200`` is
lost and order holds; the default ``MemoryInbox`` loses what it held (the reason to choose).

Short versions of ``python -m benchmarks.durability`` (see there for the set-up)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.durability import run_soak, run_throughput

pytestmark = pytest.mark.timeout(120)


async def test_sqlite_inbox_loses_nothing_to_sigkill(tmp_path: Path) -> None:
    result = await run_soak(tmp_path, inbox="sqlite", seconds=3.0, kills=2, conversations=30)
    assert result.kills == 2
    assert result.acked > 200, result
    assert result.lost == 0, result
    assert result.out_of_order == 0, result
    assert result.duplicates <= result.duplicate_bound, result


async def test_memory_inbox_loses_what_it_held_at_a_kill(tmp_path: Path) -> None:
    # Handlers slower than arrivals: a backlog is queued in memory at each kill.
    result = await run_soak(
        tmp_path, inbox="memory", seconds=3.0, kills=2, conversations=60, work=0.05
    )
    assert result.acked > 200, result
    assert result.lost > 0, result
    assert result.out_of_order == 0, result


async def test_a_locked_database_answers_503_then_recovers(tmp_path: Path) -> None:
    result = await run_soak(
        tmp_path, inbox="sqlite", seconds=3.0, kills=0, conversations=20, lock_for=1.0
    )
    assert result.answered_503_while_locked > 0, result
    assert result.acked_after_lock > 50, result  # recovered by itself
    assert result.lost == 0, result
    assert result.out_of_order == 0, result


async def test_under_load_the_sqlite_file_stays_bounded(tmp_path: Path) -> None:
    (sqlite,) = await run_throughput(
        tmp_path, configs=(("sqlite", "FULL"),), seconds=0.7, rounds=3, dedup_ttl=0.5
    )
    assert sqlite.best > 0 and sqlite.non_2xx == 0
    databases = [database for database, _ in sqlite.file_bytes]
    # Entries done and keys expired are deleted, and their pages reused.
    assert databases[2] <= max(databases[:2]) * 1.5, sqlite.file_bytes
