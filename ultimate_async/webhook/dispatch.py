"""The delivery pipeline's back half: from the inbox to handlers, in order, with retries.

The receiver *puts* each notification into the :class:`~ultimate_async.inbox.Inbox` before it
answers ``200``; the :class:`Dispatcher` *gets* entries back out (one pump task), and runs each
entry's handler on the per-conversation :class:`~ultimate_async.webhook.ordering.KeyedExecutor`:

* success → ``inbox.done(entry)``;
* a raise or a ``handler_timeout`` → ``inbox.failed(entry, dead=False)`` and, after the
  :class:`~ultimate_async.inbox.HandlerRetry` backoff, the same entry again, with
  ``ctx.attempt`` one higher.  Its conversation's later entries wait behind it (order is never
  broken); other conversations go on, and the waiting entry holds no concurrency slot;
* the last allowed attempt failed → ``inbox.failed(entry, dead=True)`` (a dead letter), an ERROR
  record, ``on_error``; the conversation goes on.

Entries this process just put carry their parsed event and context over (a bounded table keyed
by delivery id), so the hot path parses each body once; recovered entries, or entries another
replica put, are parsed from ``entry.raw``.

Observer copies (``register()``) and ``ack="after_handler"`` deliveries run on the same executor
without an inbox entry: they are run once, and their failure is reported, not retried.
:class:`Background` tracks the tasks handlers ``spawn``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import attrs
from multidict import CIMultiDict, CIMultiDictProxy

from .. import telemetry
from ..converter import parse_webhook
from ..errors import PayloadError
from ..inbox.base import Inbox, InboxEntry
from ..inbox.retry import HandlerRetry
from ..models.webhooks import Webhook
from .context import EventContext
from .ordering import KeyedExecutor
from .reporting import Report

__all__ = ["Background", "Dispatcher", "Job"]

log = logging.getLogger("ultimate_async.webhook")

_R = TypeVar("_R")
Handler = Callable[..., Awaitable[Any]]
#: ``(kind, conversation_id) -> handler``: who handles a notification (looked up when it runs).
Lookup = Callable[[str, "str | None"], "Handler | None"]

EMPTY_HEADERS: Final = CIMultiDictProxy(CIMultiDict[str]())
#: How many just-put entries keep their parsed event while waiting for the pump.
MAX_CARRIED: Final = 65_536


#: One unit of work on the executor: ``(handler, event, ctx, entry)``.  ``entry`` is ``None``
#: for observer copies and ``ack="after_handler"`` runs; ``handler``/``event``/``ctx`` are
#: ``None`` for entries the pump got without a carried event (found when they run).  A tuple,
#: not a class: one is built per delivery.
Job = tuple["Handler | None", "Webhook | None", "EventContext | None", "InboxEntry | None"]


class Dispatcher:
    """Runs handlers in per-conversation order; pumps and settles inbox entries.

    ``carried`` maps the delivery id of an entry just put by this process to its parsed event,
    context and handler (bounded: entries another replica takes are forgotten oldest first).
    """

    def __init__(
        self,
        *,
        inbox: Inbox,
        retry: HandlerRetry,
        max_concurrency: int,
        lookup: Lookup,
        report: Report,
        make_context: Callable[[InboxEntry, Webhook], EventContext],
        pump_lost: Callable[[], None],
    ) -> None:
        self.inbox = inbox
        self.retry = retry
        self.executor: KeyedExecutor[Job] = KeyedExecutor(
            self._run, max_concurrency, sleep=retry.sleep
        )
        self._lookup = lookup
        self._report = report
        #: Set by the receiver's ``handler_timeout`` setter; read at every run.
        self.handler_timeout: float | None = None
        self._make_context = make_context
        self.carried: dict[str, tuple[Webhook, EventContext, Handler | None]] = {}
        #: Delivery ids the pump took without a carried event (bounded, oldest dropped first).
        self.early: dict[str, None] = {}
        #: The next attempt's handler, event and context of entries waiting for a retry.
        self._retrying: dict[str, tuple[Handler, Webhook, EventContext]] = {}
        self._carried_empty: asyncio.Event | None = None
        self._pump: asyncio.Task[None] | None = None
        self._pump_lost = pump_lost
        self._stopping = False
        #: Entries the inbox held when it (re)started that the pump has not taken yet (a
        #: non-shared inbox hands them out before anything new, see ``Inbox``): ``drain()``
        #: waits for them, ``pending`` counts them.
        self.recovered = 0

    # -- feeding ------------------------------------------------------------------------------

    def stored(
        self,
        stored: InboxEntry | str,
        event: Webhook,
        ctx: EventContext,
        handler: Handler | None,
    ) -> None:
        """The receiver stored a notification: ``stored`` is the entry when the inbox handed it
        straight over (``put_and_take``), which then runs at once; else its delivery id, and
        the parsed event waits for the pump to get that entry."""
        if isinstance(stored, InboxEntry):
            self.executor.submit(stored.conversation_id, (handler, event, ctx, stored))
        elif stored in self.early:  # the pump already took it (and parses it itself)
            del self.early[stored]
        else:
            self.carry(stored, event, ctx, handler)

    def carry(
        self, delivery_id: str, event: Webhook, ctx: EventContext, handler: Handler | None
    ) -> None:
        """Keep a just-put entry's parsed event for when the pump gets it."""
        carried = self.carried
        if len(carried) >= MAX_CARRIED:  # entries another replica took: forget the oldest
            del carried[next(iter(carried))]
        carried[delivery_id] = (event, ctx, handler)

    def submit(
        self, key: Hashable | None, job: Job, waiter: asyncio.Future[bool] | None = None
    ) -> None:
        self.executor.submit(key, job, waiter)

    @property
    def shared(self) -> bool:
        """The inbox may hand what this process puts to another one (read each time: a
        ``SqliteInbox`` becomes shared when another process holds its consumer lock)."""
        return bool(getattr(self.inbox, "shared", False))

    async def start(self) -> None:
        """Open the inbox (recovered entries come first) and start pumping it."""
        telemetry.refresh()  # (handler runs read ``telemetry.on``)
        await self.inbox.start()
        if self._pump is None:  # a fresh start: count what the inbox kept for us
            self.recovered = await self._backlog()
        if self._pump is None or self._pump.done():
            self._pump = asyncio.get_running_loop().create_task(self._pump_entries())

    async def _backlog(self) -> int:
        """How many entries a just-started, non-shared inbox will hand out first (those it
        kept from before); a shared inbox hands its backlog to whichever replica holds it."""
        if self.shared:
            return 0
        try:
            return max(0, (await self.inbox.stats()).pending)
        except Exception:
            log.debug("could not count the inbox's recovered entries", exc_info=True)
            return 0

    async def _pump_entries(self) -> None:
        inbox = self.inbox
        carried = self.carried
        submit = self.executor.submit
        while True:
            try:
                entry = await inbox.get()
            except asyncio.CancelledError:
                if not self._stopping:  # its event loop is going away: restart on the next
                    self._pump_lost()
                raise
            except Exception:
                log.exception("reading the inbox failed; trying again in 1s")
                await asyncio.sleep(1.0)
                continue
            if self.recovered:  # the first entries handed out are the recovered ones
                self.recovered -= 1
            known = carried.pop(entry.delivery_id, None)
            if known is None:
                # Recovered, another replica's, or handed out before its put() returned here
                # (a durable inbox may wake us at commit): then nothing is to be carried.
                early = self.early
                if len(early) >= MAX_CARRIED:
                    del early[next(iter(early))]
                early[entry.delivery_id] = None
                submit(entry.conversation_id, (None, None, None, entry))
            else:
                submit(entry.conversation_id, (known[2], known[0], known[1], entry))
            if not carried and not self.recovered and self._carried_empty is not None:
                self._carried_empty.set()

    # -- settling -----------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Jobs queued or running, and entries put here or recovered at start that the pump
        has not taken yet (a shared inbox: only what this replica has taken)."""
        if self.shared:
            return self.executor.pending
        return self.executor.pending + len(self.carried) + self.recovered

    def _unpumped(self) -> bool:
        return bool(self.carried or self.recovered) and not self.shared

    async def wait_pumped(self, timeout: float | None) -> bool:  # noqa: ASYNC109
        """Wait until the pump took every entry put here or recovered at start; ``False``
        on timeout.

        A shared inbox may hand them to another replica: then there is nothing to wait for
        (checked again every quarter second: a ``SqliteInbox`` may become shared meanwhile).
        """
        if not self._unpumped():
            return True
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self._unpumped():
            if self._carried_empty is None or self._carried_empty.is_set():
                self._carried_empty = asyncio.Event()
            wait = 0.25 if deadline is None else min(0.25, deadline - loop.time())
            if wait <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._carried_empty.wait()
        return True

    async def stop(self) -> int:
        """Stop pumping and cancel what still runs (entries stay in the inbox); returns how
        many jobs were cancelled."""
        if self._pump is not None:
            self._stopping = True
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
            self._stopping = False
            self._pump = None
        left = await self.executor.cancel_all()
        self.recovered = 0
        self.carried.clear()
        self.early.clear()
        self._retrying.clear()
        return left

    # -- running ------------------------------------------------------------------------------

    async def _run(self, job: Job) -> bool | float:
        handler, event, ctx, entry = job
        if entry is not None and self._retrying:  # a retry: its context counts the attempt
            retrying = self._retrying.pop(entry.delivery_id, None)
            if retrying is not None:
                handler, event, ctx = retrying
        if event is None or ctx is None:  # recovered, or put by another replica
            assert entry is not None
            try:
                event = parse_webhook(dict(entry.raw))
            except PayloadError as exc:
                log.error("stored %s entry %s is unreadable", entry.kind, entry.delivery_id)
                await self._settle(entry, "; ".join(exc.errors), dead=True)
                return False
            ctx = self._make_context(entry, event)
        if handler is None:
            handler = self._lookup(ctx.kind, ctx.platform_conversation_id)
            if handler is None:  # only observed, or no handler (any more)
                assert entry is not None
                await self._settle(entry, None, dead=False)
                return True
        timeout = self.handler_timeout
        try:
            if timeout is None and not telemetry.on:  # the usual case, spelled out
                await handler(event, ctx)
            else:
                with telemetry.handler_run(ctx.kind, ctx.platform_conversation_id, ctx.attempt):
                    if timeout is None:
                        await handler(event, ctx)
                    else:
                        async with asyncio.timeout(timeout) as scope:
                            await handler(event, ctx)
        except Exception as exc:
            timed_out = timeout is not None and isinstance(exc, TimeoutError) and scope.expired()
            return await self._failed(
                handler, event, ctx, entry, exc, timeout if timed_out else None
            )
        if entry is not None:
            try:
                await self.inbox.done(entry)
            except Exception:
                log.exception("recording the outcome of delivery %s failed", entry.delivery_id)
        return True

    async def _failed(
        self,
        handler: Handler,
        event: Webhook,
        ctx: EventContext,
        entry: InboxEntry | None,
        error: Exception,
        timed_out_after: float | None,
    ) -> bool | float:
        cid = ctx.platform_conversation_id
        if entry is None:  # an observer or ack="after_handler": run once, reported
            if timed_out_after is not None:
                log.error(
                    "%s handler timed out after %ss (conversation %s)",
                    ctx.kind,
                    timed_out_after,
                    cid,
                )
            await self._report(error, event, ctx, logged=timed_out_after is not None)
            return False
        retry = self.retry
        attempt = ctx.attempt
        failed_entry = attrs.evolve(entry, attempt=attempt)
        if retry.should_retry(attempt):
            delay = retry.delay(attempt)
            description = _describe(error, timed_out_after)
            log.warning(
                "%s handler failed (conversation %s, attempt %d of %d: %s); retrying in %.2fs",
                ctx.kind,
                cid,
                attempt,
                retry.max_attempts,
                description,
                delay,
            )
            await self._settle(failed_entry, description, dead=False)
            self._retrying[entry.delivery_id] = (
                handler,
                event,
                attrs.evolve(ctx, attempt=attempt + 1),
            )
            return delay
        if timed_out_after is not None:
            log.error(
                "%s handler timed out after %ss (conversation %s); delivery %s is a dead letter "
                "after %d attempt(s)",
                ctx.kind,
                timed_out_after,
                cid,
                entry.delivery_id,
                attempt,
            )
        else:
            log.error(
                "%s handler failed (conversation %s); delivery %s is a dead letter after %d "
                "attempt(s)",
                ctx.kind,
                cid,
                entry.delivery_id,
                attempt,
                exc_info=error,
            )
        await self._settle(failed_entry, _describe(error, timed_out_after), dead=True)
        await self._report(error, event, ctx, logged=True)
        return False

    async def _settle(self, entry: InboxEntry, error: str | None, *, dead: bool) -> None:
        """``done`` / ``failed`` on the inbox; a storage failure is logged, never raised (the
        entry then stays stored and comes back after a restart: at-least-once)."""
        try:
            if error is None:
                await self.inbox.done(entry)
            else:
                await self.inbox.failed(entry, error, dead=dead)
                if dead:
                    stats = await self.inbox.stats()
                    telemetry.inbox_gauge(stats.pending, stats.dead)
        except Exception:
            log.exception("recording the outcome of delivery %s failed", entry.delivery_id)


def _describe(error: BaseException, timed_out_after: float | None) -> str:
    """One line for ``DeadLetter.last_error``: the type and the first line of the message."""
    if timed_out_after is not None:
        return f"timed out after {timed_out_after}s"
    message = str(error).strip().splitlines()
    first = message[0][:300] if message else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


class Background:
    """Tasks handlers started with ``ctx.spawn`` / ``receiver.spawn``: drained on shutdown and
    reported to ``on_error`` when they raise, like handlers."""

    def __init__(self, report: Report) -> None:
        self._report = report
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(
        self, coro: Coroutine[Any, Any, _R], *, ctx: EventContext | None = None
    ) -> asyncio.Task[_R]:
        task = asyncio.get_running_loop().create_task(self._run(coro, ctx))
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # reported already; nobody has to await the task

    async def _run(self, coro: Coroutine[Any, Any, _R], ctx: EventContext | None) -> _R:
        try:
            return await coro
        except Exception as exc:
            event: Webhook | None = None
            if ctx is not None:
                try:
                    event = parse_webhook(dict(ctx.raw))
                except PayloadError:
                    event = None
            log.error(
                "background task of a %s handler failed (conversation %s)",
                ctx.kind if ctx is not None else "webhook",
                ctx.platform_conversation_id if ctx is not None else None,
                exc_info=exc,
            )
            await self._report(exc, event, ctx, logged=True)
            raise

    async def wait(self, timeout: float | None) -> bool:  # noqa: ASYNC109
        """Wait for every tracked task (and those they spawn); ``False`` on timeout."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self._tasks:
            remaining = None if deadline is None else max(0.0, deadline - loop.time())
            _, unfinished = await asyncio.wait(list(self._tasks), timeout=remaining)
            if unfinished:
                return False
        return True

    async def cancel_all(self) -> int:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        return len(tasks)


def context_for_entry(
    entry: InboxEntry, event: Webhook, session: Any, spawner: Background
) -> EventContext:
    """The context of an entry recovered from storage (no request headers survive)."""
    bot_id = entry.raw.get("botId")
    return EventContext(
        entry.conversation_id,
        bot_id if type(bot_id) is str else None,
        datetime.now(UTC),
        entry.dedup_key,
        EMPTY_HEADERS,
        entry.raw,
        session,
        entry.kind,
        False,
        entry.delivery_id,
        entry.attempt,
        spawner=spawner,
    )
