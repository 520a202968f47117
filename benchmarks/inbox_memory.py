"""Is an inbox's cost flat over a long run?  Process memory and SQLite file size over N deliveries.

``python -m benchmarks.inbox_memory [--deliveries 1000000]`` drives signed ``sendMessage``
deliveries in-process through the public API (``WebhookReceiver(verifier, inbox=...)`` and
``await receiver.handle(body, headers)``, a no-op ``on_message``) over many conversations, with
unique ``messageId``s, from 64 concurrent "connections", and ``drain()``s every
``--drain-every`` deliveries so the backlog stays bounded as it does on a server that keeps up.
Each inbox runs in its own child process (so one inbox's heap is not counted against the next):

* ``memory`` - :class:`~ultimate_async.inbox.MemoryInbox` (its de-duplication keys are bounded
  by ``dedup_max_keys``);
* ``sqlite`` - :class:`~ultimate_async.inbox.SqliteInbox` on a temporary file, ``dedup_ttl``
  short (``--dedup-ttl``, default 5 s) so keys expire during the run: done entries and expired
  keys are deleted, so the file must stop growing;
* ``sqlite-24h`` - the same with the default ``dedup_ttl`` (24 h): no key expires within the
  run, so the file grows by one de-duplication key per delivery until the first keys expire a
  day later; it reports that growth rate per delivery.

Every ``--sample-every`` deliveries (after a drain) it records the resident set size (from
``/proc/self/statm``; the figure is the current RSS, not the peak), the database, ``-wal`` and
``-shm`` sizes and the rows left in ``entries`` and ``dedup``.  The first sample is the
warm-up (de-duplication stores filled, SQLite page cache and allocator pools grown); growth is
measured from there to the end.  ``--tracemalloc`` also prints the allocations that grew most
between the warm-up and the end (slow: use it to find what grows, not to measure).

Prints one JSON line per inbox; ``--write`` puts the table into ``benchmarks/RELIABILITY.md``
(its own block inside the durable delivery section, which ``benchmarks/durability.py`` keeps).
``--quick`` is the smoke test's size.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.memory import Deliveries, rss_bytes
from benchmarks.payloads import SECRET

REPO = Path(__file__).resolve().parent.parent
INBOXES = ("memory", "sqlite", "sqlite-24h")

START = "<!-- inbox-memory:start -->"
END = "<!-- inbox-memory:end -->"
SECTION_END = "<!-- durability:end -->"

__all__ = ["measure", "render", "write_block"]


def _file_sizes(path: Path | None) -> dict[str, int]:
    if path is None:
        return {}
    sizes = {}
    for suffix in ("", "-wal", "-shm"):
        try:
            sizes["db" + suffix.replace("-", "_")] = os.path.getsize(f"{path}{suffix}")
        except FileNotFoundError:
            sizes["db" + suffix.replace("-", "_")] = 0
    return sizes


def _rows(path: Path | None) -> dict[str, int]:
    """Rows left in the inbox's tables, read through a separate connection (WAL: no blocking)."""
    if path is None:
        return {}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {
            table: int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            for table in ("entries", "dedup")
        }
    finally:
        db.close()


async def measure(
    inbox_kind: str,
    *,
    deliveries: int,
    conversations: int,
    concurrency: int,
    drain_every: int,
    sample_every: int,
    dedup_ttl: float,
    workdir: Path,
    trace: bool = False,
) -> dict[str, Any]:
    """Drive ``deliveries`` through one receiver and sample memory and file size as it goes."""
    from ultimate_async.inbox import MemoryInbox, SqliteInbox
    from ultimate_async.webhook import SharedSecretHeader, WebhookReceiver

    path: Path | None = None
    inbox: Any
    if inbox_kind == "memory":
        inbox = MemoryInbox()
    else:
        path = workdir / "inbox.sqlite3"
        ttl = dedup_ttl if inbox_kind == "sqlite" else 86400.0
        inbox = SqliteInbox(path, dedup_ttl=ttl)
    receiver = WebhookReceiver(SharedSecretHeader(SECRET), inbox=inbox)
    load = Deliveries(receiver, conversations, concurrency)

    samples: list[dict[str, Any]] = []
    snapshot: Any = None
    started = time.perf_counter()
    drained = True
    next_sample = sample_every
    while load.sent < deliveries:
        await load.drive(min(drain_every, deliveries - load.sent))
        drained = await receiver.drain(timeout=120.0) and drained
        if load.sent >= next_sample or load.sent == deliveries:
            next_sample += sample_every
            gc.collect()
            samples.append(
                {
                    "deliveries": load.sent,
                    "seconds": round(time.perf_counter() - started, 1),
                    "rss": rss_bytes(),
                    **_file_sizes(path),
                    **_rows(path),
                }
            )
            print(json.dumps({"inbox": inbox_kind, **samples[-1]}), file=sys.stderr, flush=True)
            if trace and snapshot is None:
                import tracemalloc

                tracemalloc.start(10)
                snapshot = tracemalloc.take_snapshot()
    seconds = time.perf_counter() - started
    stats = await inbox.stats()
    top: list[str] = []
    if snapshot is not None:
        import tracemalloc

        diff = tracemalloc.take_snapshot().compare_to(snapshot, "traceback")
        top = [
            f"{stat.size_diff / 1024:+.1f} KiB in {stat.count_diff:+} blocks, allocated at:\n"
            + "\n".join(stat.traceback.format(limit=3, most_recent_first=True))
            for stat in diff[:10]
        ]
        tracemalloc.stop()
    await receiver.aclose()
    final = _rows(path)  # after aclose: the disk thread finished every done()
    warm, last = samples[0], samples[-1]
    file_keys = [k for k in ("db", "db_wal") if k in last]
    return {
        "inbox": inbox_kind,
        "dedup_ttl": None if path is None else inbox.dedup_ttl,
        "deliveries": deliveries,
        "conversations": conversations,
        "concurrency": concurrency,
        "drain_every": drain_every,
        "sample_every": sample_every,
        "handled": load.handled,
        "drained": drained,
        "statuses": {str(k): v for k, v in sorted(load.statuses.items())},
        "pending_after": stats.pending,
        "dead_after": stats.dead,
        "seconds": round(seconds, 1),
        "rss_warm": warm["rss"],
        "rss_end": last["rss"],
        "rss_max": max(s["rss"] for s in samples),
        "rss_growth": last["rss"] - warm["rss"],
        "file_max": max((sum(s[k] for k in file_keys) for s in samples), default=0),
        "file_end": sum(last[k] for k in file_keys),
        "file_growth_per_delivery": (
            (sum(last[k] for k in file_keys) - sum(warm[k] for k in file_keys))
            / max(1, last["deliveries"] - warm["deliveries"])
            if file_keys
            else 0.0
        ),
        "entries_after": final.get("entries"),
        "dedup_rows_after": final.get("dedup"),
        "samples": samples,
        "tracemalloc_top": top,
    }


def _child(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="ua-inbox-memory-") as name:
        result = asyncio.run(
            measure(
                args.child,
                deliveries=args.deliveries,
                conversations=args.conversations,
                concurrency=args.concurrency,
                drain_every=args.drain_every,
                sample_every=args.sample_every,
                dedup_ttl=args.dedup_ttl,
                workdir=Path(name),
                trace=args.tracemalloc,
            )
        )
    print(json.dumps(result), flush=True)


def _mib(n: float) -> str:
    return f"{n / 1048576:.1f} MiB"


def render(results: list[dict[str, Any]]) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    first = results[0]
    lines = [
        START,
        "- Memory and file size over a long run (`python -m benchmarks.inbox_memory`, "
        f"{now}): signed `sendMessage` deliveries through `receiver.handle()` in one process, "
        f"{first['conversations']:,} conversations, {first['concurrency']} concurrent callers, "
        f"unique `messageId`s, a no-op handler, `drain()` every {first['drain_every']:,} "
        f"deliveries; RSS sampled (after `gc.collect()`) every {first['sample_every']:,} "
        "deliveries, the first sample being the warm-up; file = database + WAL (the database "
        "file never shrinks: SQLite reuses the pages of deleted rows).",
        "",
        "| Inbox | Deliveries | Wall time | RSS after warm-up -> end (max) | Growth | "
        "File max / end | Rows left (entries, de-dup keys) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        if r["inbox"] == "memory":
            label = "MemoryInbox"
        elif r["inbox"] == "sqlite":
            label = f"SqliteInbox(dedup_ttl={r['dedup_ttl']:g} s)"
        else:
            label = "SqliteInbox (default dedup_ttl 24 h)"
        if r["inbox"] == "memory":
            file, rows = "-", "-"
        else:
            file = f"{_mib(r['file_max'])} / {_mib(r['file_end'])}"
            rows = f"{r['entries_after']:,}, {r['dedup_rows_after']:,}"
        lines.append(
            f"| {label} | {r['deliveries']:,} | {r['seconds']:.0f} s "
            f"| {_mib(r['rss_warm'])} -> {_mib(r['rss_end'])} ({_mib(r['rss_max'])}) "
            f"| {(r['rss_growth']) / 1048576:+.1f} MiB | {file} | {rows} |"
        )
    lines.append("")
    for r in results:
        samples = r.get("samples") or []
        if r["inbox"] == "sqlite" and samples:
            sizes = ", ".join(f"{(x['db'] + x['db_wal']) / 1048576:.1f}" for x in samples)
            keys = [x["dedup"] for x in samples[1:]] or [samples[0]["dedup"]]
            lines.append(
                f"- `SqliteInbox(dedup_ttl={r['dedup_ttl']:g} s)`, file (MiB) at each sample: "
                f"{sizes}. Live de-duplication keys after warm-up {min(keys):,}-{max(keys):,} "
                "(the deliveries of the last `dedup_ttl` plus the sweep interval): the file "
                "follows the highest number of live keys so far, not the deliveries; `entries` "
                "empty at every sample."
            )
        if r["inbox"] == "sqlite-24h":
            lines.append(
                f"- With the default `dedup_ttl` (24 h) no key expires within the run: the file "
                f"grows by {r['file_growth_per_delivery']:.0f} bytes per delivery (one "
                "de-duplication key and its index entry). Not run for a day: once the first "
                "keys expire the sweep deletes them and SQLite reuses their pages, so it "
                "should level off at about a day's deliveries times that (for example "
                f"{r['file_growth_per_delivery'] * 1_000_000 / 1048576:.0f} MiB for "
                "1,000,000 deliveries a day), as the 5 s run does at its scale."
            )
        if r["inbox"] == "memory":
            lines.append(
                "- `MemoryInbox`: its de-duplication keys (at most `dedup_max_keys`, 100,000) "
                "are part of the warm-up; nothing is kept per delivery after that."
            )
    while lines[-1] == "":
        lines.pop()
    lines.append(END)
    return "\n".join(lines) + "\n"


def write_block(path: Path, block: str) -> None:
    """Replace this script's block of ``RELIABILITY.md``, or put it at the end of the durable
    delivery section (``benchmarks/durability.py`` keeps it when it rewrites that section)."""
    text = path.read_text("utf-8")
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END) + "\n?", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    elif SECTION_END in text:
        text = text.replace(SECTION_END, block + SECTION_END, 1)
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text, "utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=1_000_000)
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--drain-every", type=int, default=10_000)
    parser.add_argument("--sample-every", type=int, default=100_000)
    parser.add_argument("--dedup-ttl", type=float, default=5.0, help="for the 'sqlite' inbox")
    parser.add_argument("--inbox", choices=INBOXES, action="append", help="default: all three")
    parser.add_argument("--quick", action="store_true", help="3,000 deliveries (smoke test)")
    parser.add_argument("--tracemalloc", action="store_true", help="print what grew most")
    parser.add_argument("--write", action="store_true", help="update benchmarks/RELIABILITY.md")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "RELIABILITY.md")
    parser.add_argument("--child", choices=INBOXES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.deliveries, args.conversations = 3000, 100
        args.drain_every, args.sample_every, args.dedup_ttl = 500, 1000, 1.0
    if args.child:
        _child(args)
        return
    forwarded = [
        f"--deliveries={args.deliveries}",
        f"--conversations={args.conversations}",
        f"--concurrency={args.concurrency}",
        f"--drain-every={args.drain_every}",
        f"--sample-every={args.sample_every}",
        f"--dedup-ttl={args.dedup_ttl}",
        *(["--tracemalloc"] if args.tracemalloc else []),
    ]
    results = []
    for kind in args.inbox or INBOXES:
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.inbox_memory", "--child", kind, *forwarded],
            cwd=REPO,
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        ).stdout
        result = json.loads(out.strip().splitlines()[-1])
        for line in result.pop("tracemalloc_top"):
            print(line, file=sys.stderr)
        print(json.dumps(result), flush=True)
        results.append(result)
    if args.write:
        write_block(args.output, render(results))


if __name__ == "__main__":
    main()
