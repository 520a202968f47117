"""Smoke test of ``benchmarks/inbox_memory.py``, the long-run memory and file-size benchmark.

Nothing here asserts a figure (a few thousand deliveries say nothing about a million). What the
benchmark's reader relies on: it really drives every delivery through the receiver to its
handler, reports the numbers it claims to, leaves the SQLite file's ``entries`` table empty once
drained (done entries are deleted, not kept), and its table lands in ``RELIABILITY.md`` without
being wiped when ``benchmarks/durability.py`` rewrites its section.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks import durability, inbox_memory

ROOT = Path(__file__).resolve().parents[2]
QUICK_INBOXES = ("--inbox", "memory", "--inbox", "sqlite")


def test_quick_run_reports_memory_and_an_emptied_sqlite_file() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.inbox_memory", "--quick", *QUICK_INBOXES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = {r["inbox"]: r for r in map(json.loads, done.stdout.strip().splitlines())}
    assert set(results) == {"memory", "sqlite"}
    for result in results.values():
        assert result["handled"] == result["deliveries"] == 3000  # every handler really ran
        assert result["statuses"] == {"200": 3000}
        assert result["drained"] is True
        assert result["pending_after"] == 0
        assert len(result["samples"]) == 3
        assert all(sample["rss"] > 0 for sample in result["samples"])
        assert result["rss_end"] > 0
    sqlite = results["sqlite"]
    assert sqlite["entries_after"] == 0  # done entries are deleted from the file
    assert sqlite["dedup_rows_after"] > 0  # keys stay seen for dedup_ttl after their entry
    assert sqlite["file_end"] > 0
    assert all(sample["entries"] == 0 for sample in sqlite["samples"])  # drained at each sample


def test_its_block_survives_the_durability_section_being_rewritten(tmp_path: Path) -> None:
    report = tmp_path / "RELIABILITY.md"
    report.write_text(
        f"# Reliability\n\nother\n\n{durability.START}\nold durability\n{durability.END}\n\ntail\n"
    )
    result = {
        "inbox": "sqlite",
        "dedup_ttl": 5.0,
        "deliveries": 1000,
        "conversations": 10,
        "concurrency": 4,
        "drain_every": 100,
        "sample_every": 500,
        "seconds": 1.0,
        "rss_warm": 1048576,
        "rss_end": 2097152,
        "rss_max": 2097152,
        "rss_growth": 1048576,
        "file_max": 4096,
        "file_end": 4096,
        "entries_after": 0,
        "dedup_rows_after": 7,
    }
    memory = {**result, "inbox": "memory", "dedup_ttl": None, "entries_after": None}
    day = {**result, "inbox": "sqlite-24h", "dedup_ttl": 86400.0, "file_growth_per_delivery": 50.0}
    inbox_memory.write_block(report, inbox_memory.render([memory, result, day]))
    durability.write_section(report, f"{durability.START}\nnew durability\n{durability.END}\n")

    text = report.read_text()
    assert "old durability" not in text
    assert text.index("new durability") < text.index("SqliteInbox(dedup_ttl=5 s)")
    assert text.index("SqliteInbox(dedup_ttl=5 s)") < text.index(durability.END)
    assert text.count(inbox_memory.START) == 1
    assert "| MemoryInbox | 1,000 |" in text
    assert "grows by 50 bytes per delivery" in text
    assert text.startswith("# Reliability\n\nother\n") and text.endswith("tail\n")
