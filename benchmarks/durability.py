"""Durable delivery, proven with real processes: kill a receiver under load, count what it lost.

``python -m benchmarks.durability`` runs the long versions and writes the "Durable delivery"
section of ``benchmarks/RELIABILITY.md``; ``tests/durability/`` runs short versions of the same
code.  Everything talks only to 127.0.0.1.

* **kill soak** - a real :class:`~ultimate_async.webhook.WebhookServer` subprocess (``serve``
  below) on a fixed port, with a ``SqliteInbox`` (or the default ``MemoryInbox``), takes
  ``sendMessage`` deliveries over many conversations; each conversation sends its next message
  only once the previous one was answered ``200`` (so that answer order is the order the
  handlers must keep).  The server is ``SIGKILL``-ed several times mid-load and restarted on
  the same file.  Handlers append one line per handled event to a log file (``os.write`` on
  an ``O_APPEND`` descriptor: the kernel holds it once the call returns, so a killed process
  loses nothing it wrote).  Then: every delivery answered ``200`` must be in the log (lost =
  0), each conversation's log must be in order, and events handled twice are bounded by what
  was in flight at each kill (at most ``max_concurrency`` running, per kill).
* **storage failure** - another connection locks the database (as a backup tool or a second
  writer would) mid-load: deliveries are answered ``503`` meanwhile, then the server recovers
  by itself and nothing acknowledged is lost.
* **throughput** - deliveries per second through the same front end with ``SqliteInbox``
  against ``MemoryInbox`` (``benchmarks/loadgen.py`` in another process), and the SQLite file
  size after each round (done entries and expired keys are deleted: it must not grow).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import signal
import socket
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs

REPO = Path(__file__).resolve().parent.parent
SECRET = "s3cret"  # benchmarks/payloads.py's, so loadgen.py can drive the same server
PATH = "/webhook"
BOT_ID = "618a30beee4e8e87d2f94015"

__all__ = ["SoakResult", "ThroughputResult", "run_soak", "run_throughput", "serve"]


# -- the server process ---------------------------------------------------------------------


def serve(argv: list[str]) -> None:
    """``python -m benchmarks.durability serve --port N [--inbox sqlite --path F] [--log L]``.

    Handlers: conversations named ``poison*`` raise (until the ``--heal`` file exists: the bug
    was fixed, replay the dead letters); ``flaky*`` raise until their third attempt; every other
    ``sendMessage`` sleeps ``--work`` seconds, then logs one line
    ``conversation<TAB>text<TAB>delivery_id<TAB>attempt``.
    """
    parser = argparse.ArgumentParser(prog="durability serve")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--inbox", choices=["memory", "sqlite"], default="sqlite")
    parser.add_argument("--path", help="the SQLite file")
    parser.add_argument("--synchronous", default="FULL")
    parser.add_argument("--busy-timeout", type=float, default=0.2)
    parser.add_argument("--dedup-ttl", type=float, default=86400.0)
    parser.add_argument("--log", help="append one line per handled event")
    parser.add_argument("--work", type=float, default=0.0)
    parser.add_argument("--heal", type=Path, help="once this file exists, poison* is handled")
    parser.add_argument("--max-concurrency", type=int, default=16)
    args = parser.parse_args(argv)

    from ultimate_async.inbox import HandlerRetry, SqliteInbox
    from ultimate_async.webhook import SharedSecretHeader, WebhookReceiver, WebhookServer

    inbox = None
    if args.inbox == "sqlite":
        inbox = SqliteInbox(
            args.path,
            synchronous=args.synchronous,
            busy_timeout=args.busy_timeout,
            dedup_ttl=args.dedup_ttl,
        )
    receiver = WebhookReceiver(
        SharedSecretHeader(SECRET),
        inbox=inbox,
        retry=HandlerRetry(max_attempts=3, backoff_base=0.2, backoff_max=0.4),
        max_concurrency=args.max_concurrency,
    )
    log_fd = None
    if args.log:
        log_fd = os.open(args.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    work, heal = args.work, args.heal

    @receiver.on_message()
    async def handle(message: Any, ctx: Any) -> None:
        conversation = ctx.platform_conversation_id or ""
        if conversation.startswith("poison") and not (heal and heal.exists()):
            raise RuntimeError("poison message")
        if conversation.startswith("flaky") and ctx.attempt < 3:
            raise ConnectionError("the CRM is down for a moment")
        if work:
            await asyncio.sleep(work)
        if log_fd is not None:
            line = f"{conversation}\t{message.text}\t{ctx.delivery_id}\t{ctx.attempt}\n"
            os.write(log_fd, line.encode())

    server = WebhookServer(receiver, host="127.0.0.1", port=args.port, path=PATH)
    server.run(announce=lambda line: print("READY", line, flush=True), freeze_gc=True)


# -- driving it ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def body(conversation: str, seq: int, run_id: str = "d") -> bytes:
    return json.dumps(
        {
            "botId": BOT_ID,
            "channel": "chat",
            "data": {
                "eventType": "sendMessage",
                "platformConversationId": conversation,
                "type": "text",
                "messageId": f"{run_id}-{conversation}-{seq}",
                "text": str(seq),
                "buttons": [],
                "carouselCards": [],
            },
        }
    ).encode()


class Server:
    """One receiver subprocess on a fixed port; ``kill()`` is a real ``SIGKILL``."""

    def __init__(self, workdir: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}{PATH}"
        self.args = args
        self.stderr = workdir / "server.stderr"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, within: float = 60.0) -> None:
        with self.stderr.open("ab") as stderr:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "benchmarks.durability",
                "serve",
                "--port",
                str(self.port),
                *self.args,
                cwd=REPO,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
            )
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), within)
        if not line.startswith(b"READY"):
            raise RuntimeError(f"server did not start; see {self.stderr}")

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()
        self.process = None

    async def stop(self) -> None:
        """A graceful stop (SIGTERM: drain, then exit)."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), 30)
        except TimeoutError:
            await self.kill()
        self.process = None


@contextlib.contextmanager
def locked(path: Path) -> Any:
    """Hold the database's write lock from another connection (as a backup tool would)."""
    db = sqlite3.connect(path, isolation_level=None, timeout=10)
    try:
        db.execute("BEGIN EXCLUSIVE")
        yield
        db.execute("ROLLBACK")
    finally:
        db.close()


@attrs.define
class SoakResult:
    inbox: str
    conversations: int
    acked: int
    handled: int
    lost: int
    duplicates: int
    out_of_order: int
    kills: int
    max_concurrency: int
    answered_503: int
    connection_errors: int
    answered_503_while_locked: int
    acked_after_lock: int
    seconds: float

    @property
    def duplicate_bound(self) -> int:
        """What was in flight at the kills: ``max_concurrency`` running entries per kill."""
        return self.kills * self.max_concurrency


def read_log(path: Path) -> list[tuple[str, int]]:
    if not path.exists():
        return []
    handled = []
    for line in path.read_text().splitlines():
        conversation, text, _, _ = line.split("\t")
        handled.append((conversation, int(text)))
    return handled


async def run_soak(
    workdir: Path,
    *,
    inbox: str = "sqlite",
    seconds: float = 4.0,
    kills: int = 3,
    conversations: int = 40,
    max_concurrency: int = 16,
    work: float = 0.002,
    lock_for: float = 0.0,
    synchronous: str = "FULL",
    settle: float = 20.0,
) -> SoakResult:
    """Load a receiver, ``SIGKILL`` it ``kills`` times (restarting it on the same file), then
    count.  ``lock_for`` > 0 also locks the database that long, mid-load, once."""
    import aiohttp

    db = workdir / "inbox.sqlite3"
    log = workdir / "handled.log"
    args = ["--inbox", inbox, "--log", str(log), "--work", str(work)]
    args += ["--max-concurrency", str(max_concurrency), "--synchronous", synchronous]
    if inbox == "sqlite":
        args += ["--path", str(db)]
    server = Server(workdir, *args)
    await server.start()

    acked: set[tuple[str, int]] = set()
    tally: Counter[str] = Counter()
    stop = asyncio.Event()
    locking = threading.Event()
    unlocked = threading.Event()

    async def conversation(session: aiohttp.ClientSession, name: str) -> None:
        seq = 0
        headers = {"Authorization": SECRET, "Content-Type": "application/json"}
        while not stop.is_set():
            try:
                async with session.post(server.url, data=body(name, seq), headers=headers) as r:
                    await r.read()
                    status = r.status
            except (TimeoutError, aiohttp.ClientError, OSError):
                tally["connection_errors"] += 1
                await asyncio.sleep(0.05)
                continue  # the same message again, as a retrying platform would
            if status == 200:
                acked.add((name, seq))
                if unlocked.is_set():
                    tally["acked_after_lock"] += 1
                seq += 1
            else:
                tally[f"status_{status}"] += 1
                if status == 503 and locking.is_set():
                    tally["503_while_locked"] += 1
                await asyncio.sleep(0.05)

    async def lock_mid_load() -> None:
        await asyncio.sleep(seconds * 0.3)

        def hold() -> None:
            with locked(db):
                locking.set()
                time.sleep(lock_for)
                locking.clear()
            unlocked.set()

        await asyncio.to_thread(hold)

    timeout = aiohttp.ClientTimeout(total=10)
    started = time.perf_counter()
    done_kills = 0
    async with aiohttp.ClientSession(timeout=timeout) as session:
        senders = [
            asyncio.ensure_future(conversation(session, f"conv-{i}")) for i in range(conversations)
        ]
        locker = asyncio.ensure_future(lock_mid_load()) if lock_for > 0 else None
        for _ in range(kills):
            await asyncio.sleep(seconds / (kills + 1))
            await server.kill()
            done_kills += 1
            await server.start()
        await asyncio.sleep(max(0.0, seconds - (time.perf_counter() - started)))
        if locker is not None:
            await locker
        stop.set()
        await asyncio.gather(*senders)
    elapsed = time.perf_counter() - started

    # Let the dispatcher finish what was acknowledged (or, for memory, what it still has).
    deadline = time.monotonic() + settle
    last_size = -1
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        handled_set = set(read_log(log))
        if acked <= handled_set:
            break
        size = log.stat().st_size if log.exists() else 0
        if size != last_size:
            last_size, quiet_since = size, time.monotonic()
        elif time.monotonic() - quiet_since > 2.0:
            break  # nothing more is coming
        await asyncio.sleep(0.1)
    await server.stop()

    handled = read_log(log)
    counts = Counter(handled)
    by_conversation: dict[str, list[int]] = defaultdict(list)
    for name, seq in handled:
        by_conversation[name].append(seq)
    out_of_order = sum(1 for seqs in by_conversation.values() if seqs != sorted(seqs))
    return SoakResult(
        inbox=inbox,
        conversations=conversations,
        acked=len(acked),
        handled=len(counts),
        lost=len(acked - set(counts)),
        duplicates=sum(n - 1 for n in counts.values()),
        out_of_order=out_of_order,
        kills=done_kills,
        max_concurrency=max_concurrency,
        answered_503=tally["status_503"],
        connection_errors=tally["connection_errors"],
        answered_503_while_locked=tally["503_while_locked"],
        acked_after_lock=tally["acked_after_lock"],
        seconds=elapsed,
    )


# -- throughput ------------------------------------------------------------------------------


@attrs.define
class ThroughputResult:
    label: str
    inbox: str
    synchronous: str
    rps: list[float] = attrs.Factory(list)  # one per round
    p99_ms: list[float] = attrs.Factory(list)
    non_2xx: int = 0
    #: (database, WAL) bytes after each round, once the dispatcher caught up
    file_bytes: list[tuple[int, int]] = attrs.Factory(list)

    @property
    def best(self) -> float:
        return max(self.rps)


def _file_bytes(db: Path) -> tuple[int, int]:
    wal = Path(f"{db}-wal")
    return db.stat().st_size, wal.stat().st_size if wal.exists() else 0


CONFIGS = (("memory", "FULL"), ("sqlite", "FULL"), ("sqlite", "NORMAL"))


async def run_throughput(
    workdir: Path,
    *,
    configs: tuple[tuple[str, str], ...] = CONFIGS,
    seconds: float = 5.0,
    rounds: int = 3,
    connections: int = 64,
    dedup_ttl: float = 5.0,
) -> list[ThroughputResult]:
    """Deliveries/s through one ``WebhookServer`` per config (handlers do nothing).

    The servers run side by side and the rounds are interleaved (memory, sqlite, ... then
    again), so a busy neighbour on a shared machine slows every config alike.  A short
    ``dedup_ttl`` lets the rounds show the file staying bounded (with the default 24 h, the
    de-duplication keys of a day's deliveries are the file's floor).
    """
    servers, results = [], []
    for index, (inbox, synchronous) in enumerate(configs):
        db = workdir / f"throughput-{index}.sqlite3"
        args = ["--inbox", inbox, "--max-concurrency", "64", "--synchronous", synchronous]
        args += ["--path", str(db), "--dedup-ttl", str(dedup_ttl)]
        servers.append((Server(workdir, *args), db))
        label = "MemoryInbox" if inbox == "memory" else f"SqliteInbox({synchronous})"
        results.append(ThroughputResult(label, inbox, synchronous))
    try:
        for server, _ in servers:
            await server.start()
        for round_ in range(rounds):
            for (server, db), result in zip(servers, results, strict=True):
                load = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "benchmarks.loadgen",
                    server.url,
                    "--seconds",
                    str(seconds),
                    "--connections",
                    str(connections),
                    "--run-id",
                    f"round{round_}",
                    "--uvloop",
                    cwd=REPO,
                    stdout=asyncio.subprocess.PIPE,
                )
                out, _ = await load.communicate()
                figures = json.loads(out.decode().strip().splitlines()[-1])
                result.rps.append(figures["rps"])
                result.p99_ms.append(figures["p99_ms"])
                result.non_2xx += figures["non_2xx"]
                if result.inbox == "sqlite":
                    await asyncio.sleep(dedup_ttl)  # caught up; this round's keys expired
                    result.file_bytes.append(_file_bytes(db))
    finally:
        for server, _ in servers:
            await server.stop()
    return results


# -- the report ------------------------------------------------------------------------------

START = "<!-- durability:start -->"
END = "<!-- durability:end -->"


def render(
    soaks: list[SoakResult], locked_soak: SoakResult, throughput: list[ThroughputResult]
) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    cpu = platform.processor() or platform.machine()
    lines = [
        START,
        "## Durable delivery (`python -m benchmarks.durability`)",
        "",
        f"- Date: {now}; {os.cpu_count()} logical CPUs ({cpu}), Python {platform.python_version()}",
        "- Kill soak: a real `WebhookServer` subprocess, `SIGKILL`-ed mid-load and restarted on "
        "the same inbox file; each conversation sends its next message once the previous one got "
        "`200` (a refused or unanswered one is sent again). Handlers sleep 2 ms and append a "
        "line to a log; `max_concurrency` 16, so at most 16 entries are in flight at a kill.",
        "",
        "| Inbox | Conversations | Answered 200 | Kills | Lost | Handled twice (bound) "
        "| Out of order | Wall time |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in soaks:
        lines.append(
            f"| {s.inbox} | {s.conversations} | {s.acked:,} | {s.kills} | **{s.lost:,}** "
            f"| {s.duplicates} (<= {s.duplicate_bound}) | {s.out_of_order} | {s.seconds:.1f} s |"
        )
    s = locked_soak
    lines += [
        "",
        f"- Storage failure: the SQLite file write-locked by another connection for "
        f"{LOCK_SECONDS:.0f} s mid-load ({s.conversations} conversations, 10 s): "
        f"{s.answered_503_while_locked} deliveries answered `503` meanwhile, then recovery by "
        f"itself ({s.acked_after_lock:,} answered `200` after the lock); {s.acked:,} answered "
        f"`200` in all, lost **{s.lost}**, out of order {s.out_of_order}.",
        "- Throughput: one `WebhookServer` (uvloop) per inbox, handlers do nothing, "
        "`benchmarks/loadgen.py` (64 connections, unique `messageId`s) in another process, "
        "5 s rounds interleaved across the inboxes. The Python load generator shares the 2 "
        "CPUs (with other work on this machine), so absolute figures are low and noisy; "
        "`dedup_ttl` 5 s here so the rounds show the file bounded (database, WAL) after each.",
        "",
        "| Inbox | Deliveries/s per round (best) | p99 (best round) | Best vs MemoryInbox "
        "| File after each round |",
        "| --- | --- | --- | --- | --- |",
    ]
    memory = next(t for t in throughput if t.inbox == "memory")
    for t in throughput:
        rounds = " / ".join(f"{r:,.0f}" for r in t.rps)
        p99 = t.p99_ms[t.rps.index(t.best)]
        sizes = ", ".join(f"{d / 1024:.0f}+{w / 1024:.0f} KiB" for d, w in t.file_bytes) or "-"
        lines.append(
            f"| {t.label} | {rounds} (**{t.best:,.0f}**) | {p99:.0f} ms "
            f"| **{t.best / memory.best:.2f}x** | {sizes} |"
        )
    lines.append(END)
    return "\n".join(lines) + "\n"


LOCK_SECONDS = 2.0


def write_section(path: Path, section: str) -> None:
    """Replace (or append) this script's section of ``RELIABILITY.md``, leaving the rest.

    The block ``benchmarks/inbox_memory.py`` writes inside the section (a 1,000,000-delivery
    run this script does not repeat) is kept, at the end of the section."""
    text = path.read_text("utf-8") if path.exists() else ""
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END) + "\n?", re.S)
    nested = re.search(r"<!-- inbox-memory:start -->.*?<!-- inbox-memory:end -->\n", text, re.S)
    if nested and nested.group(0) not in section:
        section = section.replace(END, nested.group(0) + END, 1)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text, "utf-8")


@contextlib.asynccontextmanager
async def _workdir() -> AsyncIterator[Path]:
    with tempfile.TemporaryDirectory(prefix="ua-durability-") as name:
        yield Path(name)


async def _main(args: argparse.Namespace) -> None:
    soaks = []
    for inbox in ("sqlite", "memory"):
        async with _workdir() as workdir:
            result = await run_soak(
                workdir, inbox=inbox, seconds=args.seconds, kills=args.kills, conversations=200
            )
        print(result, flush=True)
        soaks.append(result)
    async with _workdir() as workdir:
        locked_soak = await run_soak(
            workdir, seconds=10.0, kills=0, conversations=100, lock_for=LOCK_SECONDS
        )
    print(locked_soak, flush=True)
    async with _workdir() as workdir:
        throughput = await run_throughput(workdir)
    for rate in throughput:
        print(rate, flush=True)
    write_section(args.output, render(soaks, locked_soak, throughput))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        serve(argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="kill soak duration")
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "RELIABILITY.md")
    args = parser.parse_args(argv)
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
