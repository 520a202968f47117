"""A durable inbox in one SQLite file: the embedded choice for a single replica.

Why it is built this way:

- **All disk work on one dedicated thread.**  ``sqlite3`` calls block, and a commit that waits
  for the disk must never stall the event loop.  One thread owns the one connection (Python's
  ``sqlite3`` wants a connection used by the thread that made it), so there are no locks here.
- **Group commit.**  Operations queue up while the thread is committing; it then runs every
  queued one in a single transaction and answers them all.  Concurrent deliveries share one
  commit (and one ``fsync``), which is what makes durability affordable under load.
- **WAL with ``synchronous=FULL`` by default.**  Ultimate documents no webhook retries: a ``200``
  is a promise the platform never re-sends, so an acknowledged entry must survive a power loss,
  not only a process crash.  ``FULL`` syncs the WAL at each commit (group commit amortises it);
  ``synchronous="NORMAL"`` survives any process crash (``kill -9``) but may lose the last
  commits to a power loss or OS crash, in exchange for less latency.
- **De-duplication in the same transaction as the put** (a ``dedup`` table with a unique key):
  a key is never seen without its entry stored.  A key stays seen while its entry is stored
  and for ``dedup_ttl`` seconds after it was done; expired keys are deleted, and done entries
  are deleted at once, so the file stays bounded by what is pending.
- **Memory stays flat.**  At most ``buffer`` entries are held in memory ready to hand out; a
  backlog beyond that stays on disk and is read back in put order as the dispatcher catches up.
- **Other processes may use the file too.**  The CLI repairs it while the server runs
  (``ultimate-async inbox PATH replay ID``), and several worker processes may store into it;
  one of them at a time (holding ``PATH.consumer-lock``) hands entries out, and notices the
  others' commits (``PRAGMA data_version``) to read their entries from disk, in order.  When it
  dies, the lock goes with it and a waiting one takes over.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import queue
import secrets
import sqlite3
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from .. import _json

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment,unused-ignore]
from ..errors import BackendUnavailableError, ConfigurationError
from ._handout import hand_over
from .base import DeadLetter, InboxEntry, InboxStats

__all__ = ["SqliteInbox"]

logger = logging.getLogger("ultimate_async.inbox")

#: ``dedup.expires`` of a key whose entry is still stored: never expires while it is.
_KEEP = 9.0e18
#: Expired keys deleted per sweep (one sweep per commit while there are more).
_SWEEP_SLICE = 2000
#: Entry states.
_PENDING, _DEAD = 0, 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    number INTEGER,
    state INTEGER NOT NULL DEFAULT 0,
    conversation_id TEXT,
    kind TEXT NOT NULL,
    raw BLOB NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    stored_at REAL NOT NULL,
    dedup_key TEXT,
    last_error TEXT
);
CREATE TABLE IF NOT EXISTS dedup (key TEXT PRIMARY KEY, expires REAL NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dedup_expires ON dedup (expires);
"""
# ``seq`` is the put order (AUTOINCREMENT: never reused, even after every entry was deleted);
# a replayed dead letter gets a new ``seq`` and keeps its ``number``, the stable part of its
# delivery id (``number`` is NULL when it equals ``seq``).

_PUT_KEY = (
    "INSERT INTO dedup (key, expires) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET expires = excluded.expires WHERE dedup.expires <= ?"
)
_PUT = (
    "INSERT INTO entries (conversation_id, kind, raw, stored_at, dedup_key) VALUES (?, ?, ?, ?, ?)"
)
_COLUMNS = "seq, coalesce(number, seq), conversation_id, kind, raw, attempts, stored_at, dedup_key"


class _Stop:
    """Queued by :meth:`SqliteInbox.aclose`: the thread finishes what is before it and exits."""


# One queued operation: what, its arguments, the future to answer, and what the event loop
# does with a successful result before answering (run even if the waiting task was cancelled,
# so a committed put is never left out of the hand-out order).
_Then = Callable[[Any], object] | None
_Op = tuple[str, tuple[Any, ...], "asyncio.Future[Any]", _Then]
_Answer = tuple["asyncio.Future[Any]", Any, BaseException | None, _Then]


class SqliteInbox:
    """Acknowledged notifications in a SQLite file until their handler is done.

    ``path`` is created if missing (with its parent directory); keep it on a local disk (SQLite
    locking is not reliable on network file systems).  Only the process whose :meth:`get` holds
    the file's consumer lock hands entries out; others on the same file store entries and wait
    to take over.  ``buffer`` entries at most are held in memory.  ``busy_timeout``
    is how long a write waits for another connection's lock before the put fails (the receiver
    answers ``503``).  ``clock`` is wall-clock seconds (de-duplication expiry survives restarts).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        dedup_ttl: float = 86400.0,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        buffer: int = 1000,
        busy_timeout: float = 2.0,
        max_batch: int = 1000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not (isinstance(dedup_ttl, int | float) and math.isfinite(dedup_ttl) and dedup_ttl > 0):
            raise ConfigurationError(f"dedup_ttl must be a positive number, got {dedup_ttl!r}")
        if synchronous not in ("FULL", "NORMAL"):
            raise ConfigurationError(f"synchronous must be 'FULL' or 'NORMAL', not {synchronous!r}")
        if buffer < 1 or max_batch < 1:
            raise ConfigurationError("buffer and max_batch must be >= 1")
        if busy_timeout < 0:
            raise ConfigurationError(f"busy_timeout must be >= 0, got {busy_timeout!r}")
        self.path = Path(path)
        self.dedup_ttl = float(dedup_ttl)
        self.synchronous = synchronous
        self.buffer = buffer
        self.busy_timeout = busy_timeout
        self.max_batch = max_batch
        self._clock = clock
        self._requests: queue.SimpleQueue[_Op | _Stop] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._token = ""
        #: Transactions committed by this object (monitoring, and proof of group commit: under
        #: concurrent load it grows much slower than the number of puts).
        self.commits = 0
        self._getters: deque[asyncio.Future[InboxEntry]] = deque()
        # Only the process holding the consumer lock hands entries out (see _consume).
        self._consuming = False
        self._lock_fd: int | None = None
        self._claim: asyncio.Task[None] | None = None
        self._standby = False
        self._reset_memory()

    def _reset_memory(self) -> None:
        # Entries read or stored, not yet handed out, in seq order.
        self._ready: deque[InboxEntry] = deque()
        # seq of every entry in memory (ready or handed out, not done): done() needs it.
        self._seq_of: dict[str, int] = {}
        # Every pending entry with seq <= horizon is in memory; those above wait on disk when
        # ``spilled`` (else there are none).
        self._horizon = 0
        self._spilled = True
        self._refilling = False

    @property
    def shared(self) -> bool:
        """``True`` while another process handles this file and this one only stores: its
        puts are then handed out over there (the ``Inbox`` contract's ``shared`` flag)."""
        return self._standby

    def __repr__(self) -> str:
        state = "open" if self._thread is not None else "closed"
        return f"SqliteInbox({str(self.path)!r}, synchronous={self.synchronous!r}, {state})"

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._reset_memory()
        self._requests = queue.SimpleQueue()
        ready: asyncio.Future[str] = self._loop.create_future()
        thread = threading.Thread(
            target=self._run, args=(self._requests, ready), name="ultimate-inbox", daemon=True
        )
        thread.start()
        try:
            self._token = await ready
        except BaseException:
            thread.join()
            raise
        self._thread = thread
        if any(not getter.done() for getter in self._getters):
            self._start_consuming()

    async def aclose(self) -> None:
        thread = self._thread
        if thread is None:
            return
        self._thread = None
        if self._claim is not None:
            self._claim.cancel()
            self._claim = None
        self._requests.put(_Stop())  # after every operation queued before it
        await asyncio.get_running_loop().run_in_executor(None, thread.join)
        self._release_consumer_lock()
        self._ready.clear()
        self._seq_of.clear()

    # -- the contract ----------------------------------------------------------------------

    async def put(
        self,
        *,
        conversation_id: str | None,
        kind: str,
        raw: Mapping[str, Any],
        dedup_key: str | None,
    ) -> str | None:
        result: tuple[int, InboxEntry] | None = await self._call(
            "put", (conversation_id, kind, raw, dedup_key), self._stored
        )
        return None if result is None else result[1].delivery_id

    async def get(self) -> InboxEntry:
        if not self._consuming:
            self._start_consuming()
        elif self._ready:
            return self._ready.popleft()
        elif self._spilled:
            self._refill()
        getter: asyncio.Future[InboxEntry] = asyncio.get_running_loop().create_future()
        self._getters.append(getter)
        return await getter

    async def done(self, entry: InboxEntry) -> None:
        seq = self._seq_of.get(entry.delivery_id)
        if seq is None:
            return
        await self._settle("done", (seq, entry.dedup_key), self._forget(entry.delivery_id))

    async def failed(self, entry: InboxEntry, error: str, *, dead: bool) -> None:
        seq = self._seq_of.get(entry.delivery_id)
        if seq is None:
            return
        then = self._forget(entry.delivery_id) if dead else None
        await self._settle("failed", (seq, entry.attempt, error, dead), then)

    async def stats(self) -> InboxStats:
        pending, dead = await self._call("stats", ())
        return InboxStats(pending=pending, dead=dead)

    async def dead_letters(self) -> AsyncIterator[DeadLetter]:
        after = 0
        while True:
            page: list[tuple[int, DeadLetter]] = await self._call("dead", (after,))
            for seq, letter in page:
                after = seq
                yield letter
            if len(page) < 100:
                return

    async def replay(self, delivery_id: str) -> None:
        await self._call("replay", (self._number(delivery_id),), self._stored)

    async def purge(self, delivery_id: str) -> None:
        await self._call("purge", (self._number(delivery_id),))

    # -- event-loop side -------------------------------------------------------------------

    def _number(self, delivery_id: str) -> int:
        token, _, number = delivery_id.rpartition("-")
        if self._thread is None:
            raise BackendUnavailableError("inbox is closed")
        if token != self._token or not number.isdigit():
            raise LookupError(f"no dead letter {delivery_id!r}")
        return int(number)

    def _call(self, what: str, args: tuple[Any, ...], then: _Then = None) -> asyncio.Future[Any]:
        loop = self._loop
        if self._thread is None or loop is None:
            raise BackendUnavailableError("inbox is closed")
        future: asyncio.Future[Any] = loop.create_future()
        self._requests.put((what, args, future, then))
        return future

    async def _settle(self, what: str, args: tuple[Any, ...], then: _Then) -> None:
        """Record an outcome, trying again while the storage is briefly unavailable (a lock):
        giving up would leave a finished entry to be handled again after the next restart."""
        for backoff in (0.1, 0.2, 0.4, 0.8, 1.6):
            try:
                await self._call(what, args, then)
                return
            except BackendUnavailableError:
                if self._thread is None:
                    raise
                await asyncio.sleep(backoff)
        await self._call(what, args, then)

    def _forget(self, delivery_id: str) -> Callable[[object], None]:
        def forget(_: object) -> None:
            self._seq_of.pop(delivery_id, None)

        return forget

    def _stored(self, result: tuple[int, InboxEntry] | None) -> None:
        """A put (or replay) was committed: buffer it unless a backlog waits on disk."""
        if result is None or self._thread is None:
            return
        if not self._consuming:  # the consuming process reads it from disk
            self._spilled = True
            return
        seq, entry = result
        if self._spilled or len(self._ready) >= self.buffer or seq <= self._horizon:
            self._spilled = True
            return
        self._horizon = seq
        self._seq_of[entry.delivery_id] = seq
        self._offer(entry)

    def _offer(self, entry: InboxEntry) -> None:
        if not hand_over(self._getters, entry):
            self._ready.append(entry)

    def _start_consuming(self) -> None:
        if self._claim is None and self._thread is not None:
            self._claim = asyncio.get_running_loop().create_task(self._consume())

    async def _consume(self) -> None:
        """Become the one process that hands this file's entries out, then recover them.

        Other processes may store into the same file (their puts are committed and
        acknowledged) and wait here; when the consumer dies its lock goes with it, and the next
        one takes over, handling what was left first.  The CLI never calls :meth:`get`, so it
        never competes.
        """
        told = False
        while not self._try_consumer_lock():
            if not told:
                logger.warning("inbox %s: another process is handling it; waiting", self.path)
                told = self._standby = True
            await asyncio.sleep(0.5)
        if told:
            logger.warning("inbox %s: taking over", self.path)
            self._standby = False
        self._claim = None
        self._consuming = True
        self._reset_memory()  # nothing was handed out: start from what the file holds
        self._refill()

    def _try_consumer_lock(self) -> bool:
        if fcntl is None:  # no flock (Windows): one process per file is up to the deployment
            return True
        fd = os.open(f"{self.path}.consumer-lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def _release_consumer_lock(self) -> None:
        self._consuming = False
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def _refill(self) -> None:
        """Read the next entries of a backlog from disk (once at a time)."""
        if self._refilling or self._thread is None or not self._consuming:
            return
        self._refilling = True
        future = self._call("load", (self._horizon, self.buffer), self._loaded)
        future.add_done_callback(self._load_failed)

    def _loaded(self, rows: list[tuple[int, InboxEntry]]) -> None:
        # Runs in the order the disk thread answered (not as a done callback, which would run
        # after puts answered just behind it): the horizon must never pass an unread entry.
        self._refilling = False
        if self._thread is None:
            return
        for seq, entry in rows:
            if seq > self._horizon:
                self._horizon = seq
                self._seq_of[entry.delivery_id] = seq
                self._offer(entry)
        if len(rows) < self.buffer:
            self._spilled = False
        elif self._getters:
            self._refill()

    def _load_failed(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled() or future.exception() is None:
            return
        self._refilling = False
        logger.error("inbox: reading pending entries failed (retrying): %s", future.exception())
        if self._thread is not None:
            asyncio.get_running_loop().call_later(1.0, self._refill)

    def _external(self) -> None:
        """Another connection committed: entries it stored wait on disk for a refill."""
        self._spilled = True
        if not self._ready and self._getters:
            self._refill()

    # -- the disk thread -------------------------------------------------------------------

    def _post(self, callback: Callable[..., object], *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop was closed under us: nobody is waiting any more
            pass

    def _run(self, requests: queue.SimpleQueue[_Op | _Stop], ready: asyncio.Future[str]) -> None:
        try:
            db = self._open()
        except (sqlite3.Error, OSError) as error:
            self._post(_settle, ready, None, BackendUnavailableError(f"inbox: {error}"))
            return
        try:
            worker = _Worker(self, db)
        except sqlite3.Error as error:
            db.close()
            self._post(_settle, ready, None, BackendUnavailableError(f"inbox: {error}"))
            return
        self._post(_settle, ready, worker.token, None)
        try:
            worker.serve(requests)
        finally:
            db.close()

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=True
        )
        try:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute(f"PRAGMA synchronous = {self.synchronous}")
            db.execute("PRAGMA journal_size_limit = 8388608")
            db.executescript(_SCHEMA)
        except BaseException:
            db.close()
            raise
        return db


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _answer(answers: list[_Answer]) -> None:
    for future, result, error, then in answers:
        if error is None and then is not None:
            then(result)
        _settle(future, result, error)


class _Worker:
    """The disk thread's state: the connection, and one method per operation."""

    def __init__(self, inbox: SqliteInbox, db: sqlite3.Connection) -> None:
        self.inbox = inbox
        self.db = db
        self.ttl = inbox.dedup_ttl
        self.clock = inbox._clock
        row = db.execute("SELECT value FROM meta WHERE name = 'token'").fetchone()
        if row is None:
            token = secrets.token_hex(6)
            db.execute("INSERT OR IGNORE INTO meta (name, value) VALUES ('token', ?)", (token,))
            row = db.execute("SELECT value FROM meta WHERE name = 'token'").fetchone()
        self.token: str = row[0]
        self.version = self._data_version()
        self.next_sweep = 0.0

    def _data_version(self) -> int:
        version: int = self.db.execute("PRAGMA data_version").fetchone()[0]
        return version

    def serve(self, requests: queue.SimpleQueue[_Op | _Stop]) -> None:
        max_batch = self.inbox.max_batch
        while True:
            try:
                first = requests.get(timeout=1.0)
            except queue.Empty:
                self._idle()
                continue
            if isinstance(first, _Stop):
                return
            batch = [first]
            stop = False
            while len(batch) < max_batch:
                try:
                    item = requests.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, _Stop):
                    stop = True
                    break
                batch.append(item)
            self._run_batch(batch)
            if stop:
                return

    def _idle(self) -> None:
        """Nothing to do for a second: notice other processes' commits, sweep old keys."""
        try:
            version = self._data_version()
            if version != self.version:
                self.version = version
                self.inbox._post(self.inbox._external)
            if self.clock() >= self.next_sweep:
                self.db.execute("BEGIN IMMEDIATE")
                try:
                    self._sweep()
                    self.db.execute("COMMIT")
                except BaseException:
                    self.db.execute("ROLLBACK")
                    raise
        except sqlite3.Error as error:
            logger.warning("inbox: housekeeping failed: %s", error)

    def _sweep(self) -> None:
        """Delete expired de-duplication keys, a slice at a time so no commit waits long;
        while slices come back full, the next commit sweeps again."""
        now = self.clock()
        deleted = self.db.execute(
            "DELETE FROM dedup WHERE key IN "
            "(SELECT key FROM dedup WHERE expires <= ? ORDER BY expires LIMIT ?)",
            (now, _SWEEP_SLICE),
        ).rowcount
        self.next_sweep = now if deleted >= _SWEEP_SLICE else now + min(60.0, self.ttl / 4)

    def _run_batch(self, batch: list[_Op]) -> None:
        """Run every operation of ``batch`` in one transaction; answer them all at once."""
        db = self.db
        answers: list[_Answer] = []
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                # Holding the write lock: whatever another connection committed is older
                # than what this batch stores, so the event loop must learn of it first.
                version = self._data_version()
                if version != self.version:
                    self.version = version
                    self.inbox._post(self.inbox._external)
                for what, args, future, then in batch:
                    answers.append((future, getattr(self, "op_" + what)(*args), None, then))
                if self.clock() >= self.next_sweep:
                    self._sweep()
                db.execute("COMMIT")
                self.inbox.commits += 1
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except LookupError as error:
            # A repair operation named no dead letter: redo the others without it.
            if len(batch) == 1:
                self._fail(batch, error)
            else:
                for op in batch:
                    self._run_batch([op])
            return
        except (sqlite3.Error, OSError, ValueError, TypeError) as error:
            logger.error("inbox: storage failed: %s", error)
            self._fail(batch, BackendUnavailableError(f"inbox storage failed: {error}"))
            return
        self.inbox._post(_answer, answers)

    def _fail(self, batch: list[_Op], error: BaseException) -> None:
        self.inbox._post(_answer, [(future, None, error, None) for _, _, future, _ in batch])

    # Operations: each runs inside the batch's transaction.

    def _entry(self, row: tuple[Any, ...]) -> tuple[int, InboxEntry]:
        seq, number, conversation_id, kind, raw, attempts, stored_at, dedup_key = row
        entry = InboxEntry(
            f"{self.token}-{number}",
            conversation_id,
            kind,
            _json.loads(raw),
            attempts + 1,
            stored_at,
            dedup_key,
        )
        return seq, entry

    def op_put(
        self,
        conversation_id: str | None,
        kind: str,
        raw: Mapping[str, Any],
        dedup_key: str | None,
    ) -> tuple[int, InboxEntry] | None:
        db = self.db
        now = self.clock()
        if dedup_key is not None:
            if db.execute(_PUT_KEY, (dedup_key, _KEEP, now)).rowcount != 1:
                return None  # stored, or done within dedup_ttl
        cursor = db.execute(_PUT, (conversation_id, kind, _json.dumps(raw), now, dedup_key))
        seq = cursor.lastrowid
        assert seq is not None
        entry = InboxEntry(f"{self.token}-{seq}", conversation_id, kind, raw, 1, now, dedup_key)
        return seq, entry

    def op_done(self, seq: int, dedup_key: str | None) -> None:
        self.db.execute("DELETE FROM entries WHERE seq = ?", (seq,))
        if dedup_key is not None:
            self._release(dedup_key)

    def _release(self, dedup_key: str) -> None:
        """The key's entry is gone: it stays seen for ``dedup_ttl`` from now."""
        self.db.execute(
            "UPDATE dedup SET expires = ? WHERE key = ?", (self.clock() + self.ttl, dedup_key)
        )

    def op_failed(self, seq: int, attempt: int, error: str, dead: bool) -> None:
        self.db.execute(
            "UPDATE entries SET attempts = ?, last_error = ?, state = ? WHERE seq = ?",
            (attempt, error, _DEAD if dead else _PENDING, seq),
        )

    def op_stats(self) -> tuple[int, int]:
        counts = dict(
            self.db.execute("SELECT state, count(*) FROM entries GROUP BY state").fetchall()
        )
        return counts.get(_PENDING, 0), counts.get(_DEAD, 0)

    def op_load(self, after: int, limit: int) -> list[tuple[int, InboxEntry]]:
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM entries WHERE seq > ? AND state = {_PENDING} "
            "ORDER BY seq LIMIT ?",
            (after, limit),
        ).fetchall()
        return [self._entry(row) for row in rows]

    def op_dead(self, after: int) -> list[tuple[int, DeadLetter]]:
        rows = self.db.execute(
            f"SELECT {_COLUMNS}, last_error FROM entries WHERE seq > ? AND state = {_DEAD} "
            "ORDER BY seq LIMIT 100",
            (after,),
        ).fetchall()
        letters = []
        for row in rows:
            seq, entry = self._entry(row[:-1])
            letter = DeadLetter(
                delivery_id=entry.delivery_id,
                conversation_id=entry.conversation_id,
                kind=entry.kind,
                attempts=entry.attempt - 1,
                last_error=row[-1] or "",
                raw=entry.raw,
                stored_at=entry.stored_at,
            )
            letters.append((seq, letter))
        return letters

    def _find_dead(self, number: int) -> tuple[Any, ...]:
        row = self.db.execute(
            f"SELECT {_COLUMNS} FROM entries WHERE coalesce(number, seq) = ? AND state = {_DEAD}",
            (number,),
        ).fetchone()
        if row is None:
            raise LookupError(f"no dead letter {self.token}-{number}")
        return tuple(row)

    def op_replay(self, number: int) -> tuple[int, InboxEntry]:
        row = self._find_dead(number)
        seq = row[0]
        db = self.db
        # A new seq puts it at the end of its conversation; the number keeps its delivery id.
        cursor = db.execute(
            "INSERT INTO entries (number, conversation_id, kind, raw, stored_at, dedup_key) "
            "SELECT coalesce(number, seq), conversation_id, kind, raw, stored_at, dedup_key "
            "FROM entries WHERE seq = ?",
            (seq,),
        )
        new_seq = cursor.lastrowid
        assert new_seq is not None
        db.execute("DELETE FROM entries WHERE seq = ?", (seq,))
        _, entry = self._entry((new_seq, *row[1:5], 0, *row[6:]))
        return new_seq, entry

    def op_purge(self, number: int) -> None:
        row = self._find_dead(number)
        self.db.execute("DELETE FROM entries WHERE seq = ?", (row[0],))
        if row[7] is not None:
            self._release(row[7])
