"""The framework-neutral webhook receiver: bytes and headers in, a :class:`WebhookResponse` out.

Per delivery (DESIGN §3): verify the raw bytes (401) → parse (400) → *requests*
(``isTeamOnline``, ``escalate``, actions) are answered inline by their handler's return value
(:mod:`.answers`); *notifications* of a conversation another replica holds are forwarded there
(:mod:`.membership`), the others are stored in the inbox, de-duplicated by the same step, and
acknowledged; the dispatcher runs them in per-conversation order with retries (:mod:`.dispatch`).
With an inbox shared by the replicas (``RedisInbox``) a notification is always stored by the
replica that received it, before the ``200``, and the holder only gets an observation copy for
its ``register()`` observer: a holder dying with the copy in hand loses nothing acknowledged.
``ack="after_handler"`` runs the handler before answering instead, without storing.
Start and shutdown are :mod:`.lifecycle`'s.  This module is the pipeline and the public face.

HTTP frameworks only adapt: every front end is a few lines over :meth:`WebhookReceiver.handle`.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

from multidict import CIMultiDict, CIMultiDictProxy

from .. import telemetry
from ..bus import EventBus, LocalEventBus
from ..converter import parse_webhook, parse_webhook_body
from ..errors import BackendUnavailableError, ConfigurationError, PayloadError, SignatureError
from ..inbox.base import Inbox, InboxEntry
from ..inbox.retry import HandlerRetry
from ..models.webhooks import Webhook
from . import response as r
from .answers import RequestAnswers
from .context import EventContext
from .dedup import DedupKey, Deduplicator, MemoryDeduplicator, default_dedup_key
from .dispatch import (
    EMPTY_HEADERS,
    Background,
    Dispatcher,
    context_for_entry,
)
from .headers import RawHeaders
from .lifecycle import Lifecycle
from .membership import Membership, Registration
from .refusals import Refusal, new_refusals
from .reporting import reporter
from .response import WebhookResponse
from .router import KIND_OF, REQUEST_KINDS, EventHandler, Router, _check_coroutine
from .verify import Verifier

if TYPE_CHECKING:
    from ..session import Session

__all__ = ["AckMode", "Registration", "WebhookReceiver"]

log = logging.getLogger("ultimate_async.webhook")

AckMode = Literal["on_receive", "after_handler"]

_CI_HEADERS: Final = (CIMultiDictProxy, CIMultiDict, RawHeaders)
_DEFAULT_RETRY: Final = HandlerRetry()
_R = TypeVar("_R")


class _Default(enum.Enum):
    DEDUP = enum.auto()


def _observer_key(conversation_id: str) -> Hashable:
    """Observers queue apart from handlers: a handler in retry backoff never delays them."""
    return ("observe", conversation_id)


def _positive_or_none(name: str, value: float | None) -> float | None:
    if value is not None and value <= 0:
        raise ConfigurationError(f"{name} must be positive or None")
    return value


def _put_method(inbox: Inbox) -> Callable[..., Awaitable[InboxEntry | str | None]]:
    """``inbox.put_and_take`` when it has one (see the ``Inbox`` contract): the stored entry comes
    straight back to the dispatcher, without the pump's round trip.  Not when a subclass
    overrides ``put`` only: that ``put`` is what it means to be called."""

    def owner(name: str) -> type | None:
        return next((c for c in type(inbox).__mro__ if name in c.__dict__), None)

    if owner("put_and_take") not in (None, owner("put")):
        return inbox.put
    return getattr(inbox, "put_and_take", inbox.put)


class WebhookReceiver(Router):
    """Verifies, parses, stores and dispatches webhook deliveries.

    ``verifier`` is required: Ultimate documents no signing scheme, so even "no verification"
    must be chosen explicitly (:class:`~ultimate_async.webhook.verify.NoVerification`).
    ``session`` is only handed to handlers via ``ctx.session`` / ``ctx.api``; it is borrowed
    and never closed unless ``close_session=True``.

    Two timeouts, for two kinds of handler: ``request_timeout`` bounds the handlers of
    *requests* (``on_team_online``, ``on_escalate``, ``on_action``), whose return value is the
    HTTP answer the platform waits for; ``handler_timeout`` (default none) bounds each attempt
    of a *notification* handler (``on_message``, ``on_widget_*``, ...), which runs after the
    ``200`` and is retried when it times out.

    ``inbox`` keeps every acknowledged notification until its handler is done (default: a
    :class:`~ultimate_async.inbox.MemoryInbox` using ``dedup``); the receiver starts it in
    :meth:`start` and closes it in :meth:`aclose`.  ``retry`` says how a failing
    notification handler is tried again (``HandlerRetry.none()`` never retries).  ``dedup=None``
    turns de-duplication off; a durable inbox de-duplicates by itself.  ``bus`` routes events
    between replicas (default: :class:`~ultimate_async.bus.LocalEventBus`, one process).

    ``ack``, ``max_concurrency``, ``dedup``, ``dedup_key``, ``bus``, ``inbox``, ``retry`` and
    ``max_body_size`` are read-only after construction (setting one raises
    :class:`AttributeError`); ``verifier``, ``session``, the three timeouts and
    ``close_session`` may be changed at any time and apply to the next delivery.
    """

    def __init__(
        self,
        verifier: Verifier | None = None,
        *,
        session: Session | None = None,
        ack: AckMode = "on_receive",
        max_concurrency: int = 100,
        handler_timeout: float | None = None,
        request_timeout: float = 10.0,
        dedup: Deduplicator | _Default | None = _Default.DEDUP,
        bus: EventBus | None = None,
        max_body_size: int = 1_048_576,
        drain_timeout: float = 10.0,
        dedup_key: DedupKey = default_dedup_key,
        close_session: bool = False,
        inbox: Inbox | None = None,
        retry: HandlerRetry = _DEFAULT_RETRY,
    ) -> None:
        super().__init__()
        if verifier is None:
            raise ConfigurationError(
                "WebhookReceiver needs a verifier: Ultimate documents no webhook signature, so "
                "pick one explicitly (SharedSecretHeader, HmacSignature, UrlToken, or "
                "NoVerification() for local development)"
            )
        if ack not in ("on_receive", "after_handler"):
            raise ConfigurationError("ack must be 'on_receive' or 'after_handler'")
        if ack == "after_handler" and inbox is not None:
            raise ConfigurationError(
                "ack='after_handler' answers after the handler ran and stores nothing: "
                "it cannot be combined with an inbox"
            )
        if max_body_size <= 0:
            raise ConfigurationError("max_body_size must be positive")
        if max_concurrency < 1:
            raise ConfigurationError("max_concurrency must be at least 1")
        if not isinstance(retry, HandlerRetry):
            raise ConfigurationError("retry must be a HandlerRetry")
        self.verifier = verifier
        self.session = session
        self.close_session = close_session
        #: The most recent refused deliveries (401/400/413/503), oldest first, at most 100.
        self.refusals = new_refusals()

        self._ack: AckMode = ack
        self._after = ack == "after_handler"
        self._max_concurrency = max_concurrency
        self._dedup: Deduplicator | None = (
            MemoryDeduplicator() if dedup is _Default.DEDUP else dedup
        )
        self._dedup_key = dedup_key
        self._dedup_off = dedup is None
        self._bus: EventBus = bus if bus is not None else LocalEventBus()
        self._forwards = bool(getattr(self._bus, "forwards", True))
        self._max_body_size = max_body_size
        self._retry = retry
        if inbox is None:
            from ..inbox.memory import MemoryInbox  # (the inbox package imports webhook.dedup)

            inbox = MemoryInbox(dedup=self._dedup)
        self._inbox: Inbox = inbox
        self._put = _put_method(inbox)
        self._warned_kinds: set[str] = set()

        report = reporter(self._handlers)
        self._background = Background(report)
        self._answers = RequestAnswers(self._handlers, report)
        self._dispatcher = Dispatcher(
            inbox=inbox,
            retry=retry,
            max_concurrency=max_concurrency,
            lookup=self._notification_handler,
            report=report,
            make_context=self._entry_context,
            pump_lost=self._restart_needed,
        )
        self._life = Lifecycle(
            membership=(membership := Membership(self._bus, self.start, self._restart_needed)),
            dispatcher=self._dispatcher,
            answers=self._answers,
            background=self._background,
            deliver=self._deliver_forwarded,
            drain_timeout=lambda: self._drain_timeout,
            closables=self._closables,
        )
        self._membership = membership
        self._registrations = membership.registrations
        self._holds = membership.holds
        self.handler_timeout = handler_timeout
        self.request_timeout = request_timeout
        self.drain_timeout = drain_timeout

    def __repr__(self) -> str:
        return (
            f"WebhookReceiver(verifier={self.verifier!r}, ack={self._ack!r}, "
            f"handlers={len(self._handlers)}, registrations={len(self._registrations)})"
        )

    # -- settings -------------------------------------------------------------------------------

    @property
    def ack(self) -> AckMode:
        """``"on_receive"`` (store, answer, then run) or ``"after_handler"``. Read-only."""
        return self._ack

    @property
    def max_concurrency(self) -> int:
        """At most this many handlers run at once, over all conversations. Read-only."""
        return self._max_concurrency

    @property
    def dedup(self) -> Deduplicator | None:
        """The de-duplicator (``None``: off). Read-only."""
        return self._dedup

    @property
    def dedup_key(self) -> DedupKey:
        """How a delivery's de-duplication key is found. Read-only."""
        return self._dedup_key

    @property
    def bus(self) -> EventBus:
        """How replicas share events (``LocalEventBus``: a single one). Read-only."""
        return self._bus

    @property
    def inbox(self) -> Inbox:
        """Where acknowledged notifications wait for their handler. Read-only."""
        return self._inbox

    @property
    def retry(self) -> HandlerRetry:
        """How failing notification handlers are retried. Read-only."""
        return self._retry

    @property
    def max_body_size(self) -> int:
        """Larger bodies are refused with 413 (front ends enforce it while reading). Read-only."""
        return self._max_body_size

    @property
    def handler_timeout(self) -> float | None:
        """Seconds one attempt of a *notification* handler may take (``None``: no limit).

        A timed-out attempt counts as a failure and is retried like a raise.  It does not
        apply to request handlers: see :attr:`request_timeout`.
        """
        return self._handler_timeout

    @handler_timeout.setter
    def handler_timeout(self, value: float | None) -> None:
        self._handler_timeout = self._dispatcher.handler_timeout = _positive_or_none(
            "handler_timeout", value
        )

    @property
    def request_timeout(self) -> float:
        """Seconds a *request* handler (``on_team_online``, ``on_escalate``, ``on_action``)
        may take before the platform gets the fallback answer (offline / 500)."""
        return self._request_timeout

    @request_timeout.setter
    def request_timeout(self, value: float) -> None:
        if value is None or value <= 0:
            raise ConfigurationError("request_timeout must be positive")
        self._request_timeout = self._answers.timeout = value

    @property
    def drain_timeout(self) -> float:
        """Seconds :meth:`aclose` waits for handlers before cancelling them."""
        return self._drain_timeout

    @drain_timeout.setter
    def drain_timeout(self, value: float) -> None:
        if value is None or value < 0:
            raise ConfigurationError("drain_timeout must not be negative")
        self._drain_timeout = value

    # -- lifecycle (see .lifecycle) ---------------------------------------------------------------

    async def __aenter__(self) -> WebhookReceiver:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def closing(self) -> bool:
        """True from :meth:`aclose` until the next :meth:`start`: deliveries get 503."""
        return self._life.closing

    @property
    def cancelled_on_close(self) -> int:
        """How many queued or running handlers the last :meth:`aclose` had to cancel."""
        return self._life.cancelled_on_close

    @property
    def pending(self) -> int:
        """Handlers queued or running (requests and background tasks included), and entries
        recovered from a non-shared inbox at start that are still to run."""
        return self._dispatcher.pending + self._answers.in_flight + len(self._background)

    @property
    def active_conversations(self) -> int:
        """Conversations with queued or running handlers; 0 once everything drained."""
        return self._dispatcher.executor.active_keys

    async def start(self) -> None:
        """Join the bus, open the inbox (recovered entries first) and start dispatching.

        Front ends call it when they start serving; otherwise the first delivery does.  After
        :meth:`aclose` it opens the receiver again: same handlers, empty queues.
        """
        await self._life.start()

    async def drain(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Wait for queued and running handlers, still accepting deliveries.

        That includes the entries a non-shared inbox kept from before :meth:`start` (recovered
        first); with a shared inbox, what this replica has taken.  Returns ``False`` when
        ``timeout`` ran out first.
        """
        return await self._life.drain(timeout)

    async def aclose(self) -> None:
        """Stop accepting (503), drain up to ``drain_timeout``, cancel and count the rest, close
        the bus, the inbox, the de-duplicator, and the session when ``close_session=True``.

        Idempotent; concurrent callers wait for the same shutdown.  :meth:`start` reopens.
        """
        await self._life.aclose()

    def _restart_needed(self) -> None:
        self._life.restart_needed()

    def _closables(self) -> list[tuple[str, Any]]:
        closables: list[tuple[str, Any]] = [("inbox", self._inbox), ("dedup", self._dedup)]
        if self.close_session:
            closables.append(("session", self.session))
        return closables

    # -- background work ------------------------------------------------------------------------

    def spawn(
        self, coro: Coroutine[Any, Any, _R], *, ctx: EventContext | None = None
    ) -> asyncio.Task[_R]:
        """Run ``coro`` as a tracked background task (``ctx.spawn`` is the same with its context).

        Shutdown drains it like a handler and cancels it after ``drain_timeout``; an exception
        is logged and passed to ``on_error`` (with ``ctx``'s event when given).
        """
        return self._background.spawn(coro, ctx=ctx)

    # -- registration ---------------------------------------------------------------------------

    def register(
        self,
        conversation_id: str,
        handler: EventHandler,
        *,
        replace: bool = False,
        exclusive: bool = False,
    ) -> Registration:
        """Observe every event of ``conversation_id`` (requests too, in arrival order).

        An observer never steals: the kind handlers (``on_message`` ..., conversation-specific
        first, else catch-all) still run for the same notifications, and it never decides a
        request's answer.  With ``exclusive=True`` it takes the catch-all handlers' place for
        this conversation's notifications (a conversation-specific handler still wins), and is
        then retried like a handler; not with an inbox shared by replicas (``RedisInbox``),
        where the replica owning the conversation's partition runs the kind handlers and the
        registration observes.  A second registration for the conversation raises
        :class:`~ultimate_async.errors.HandlerConflictError` unless ``replace=True``.
        """
        if not isinstance(conversation_id, str) or not conversation_id:
            raise ValueError("conversation_id must be a non-empty string")
        _check_coroutine(handler, "register()")
        return self._membership.register(
            conversation_id, handler, replace=replace, exclusive=exclusive
        )

    def _handler_added(self, key: tuple[str, str | None, str | None]) -> None:
        if key[1] is not None:
            self._membership.hold(key[1])

    def _notification_handler(
        self, kind: str, conversation_id: str | None
    ) -> Callable[..., Awaitable[Any]] | None:
        """Conversation-specific handler, else an exclusive registration, else the catch-all.

        With a shared inbox a registration only observes (its replica may not own the entry's
        partition, and runs it as an observation copy either way), so it never replaces the
        catch-all there: running it from the inbox too would run it twice.
        """
        handlers = self._handlers
        if conversation_id is not None:
            handler = handlers.get((kind, conversation_id, None))
            if handler is not None:
                return handler
            registration = self._registrations.get(conversation_id)
            if registration is not None and registration.exclusive and not self._dispatcher.shared:
                return registration.handler
        return handlers.get((kind, None, None))

    # -- refusals -------------------------------------------------------------------------------

    def note_refusal(self, status: int, reason: str, *, outcome: str | None = None) -> None:
        """Record a refused delivery: ``receiver.refusals``, a WARNING, the delivery metric.

        Front ends call it for what they refuse before :meth:`handle` sees the body (a body
        over ``max_body_size`` while reading); ``reason`` must not quote the body or a secret.
        """
        self.refusals.append(Refusal(status, reason, time.monotonic()))
        if status == 401:
            log.warning("webhook delivery rejected (401): %s", reason)
        else:
            log.warning("webhook delivery refused (%d): %s", status, reason)
        if outcome is None:
            outcome = _OUTCOMES.get(status, "unavailable")
        telemetry.delivery("unknown", outcome, status=status)

    # -- delivery -------------------------------------------------------------------------------

    async def handle(
        self,
        body: bytes,
        headers: Mapping[str, str],
        *,
        path_token: str | None = None,
    ) -> WebhookResponse:
        """Process one delivery and return the HTTP answer. Never raises for bad input.

        ``path_token`` is the last URL segment when the verifier is a
        :class:`~ultimate_async.webhook.verify.UrlToken`.  Header names are case-insensitive.
        """
        if not self._life.open:
            if self._life.closing:
                self.note_refusal(503, "the receiver is shutting down", outcome="closing")
                return r.CLOSING
            try:
                await self.start()
            except BackendUnavailableError:
                log.debug("event bus unavailable at start", exc_info=True)
                self.note_refusal(503, "the event bus is unavailable")
                return r.BACKEND_UNAVAILABLE
            except Exception:  # e.g. the inbox cannot open its storage: never a 500
                log.exception("starting the webhook receiver failed")
                self.note_refusal(503, "the receiver could not start")
                return r.BACKEND_UNAVAILABLE
        if len(body) > self._max_body_size:
            self.note_refusal(413, f"body of {len(body)} bytes over max_body_size")
            return r.TOO_LARGE
        if type(headers) is not CIMultiDictProxy and not isinstance(headers, _CI_HEADERS):
            headers = CIMultiDictProxy(CIMultiDict(headers))
        try:
            self.verifier.verify(body, headers, path_token=path_token)
        except SignatureError as exc:
            self.note_refusal(401, str(exc))
            return r.UNAUTHORIZED
        except Exception as exc:  # a custom verifier's bug must not become a 500 with details
            log.error(
                "webhook verifier %s raised %s", type(self.verifier).__name__, type(exc).__name__
            )
            self.note_refusal(401, f"the verifier raised {type(exc).__name__}")
            return r.UNAUTHORIZED
        try:
            raw, event = parse_webhook_body(body)
        except PayloadError as exc:
            self.note_refusal(400, "invalid payload: " + "; ".join(exc.errors))
            return WebhookResponse.error(400, "invalid payload", exc.errors)
        kind = KIND_OF[type(event)]
        conversation_id = event.platform_conversation_id
        if kind in REQUEST_KINDS:
            ctx = self._context(conversation_id, raw, None, headers, kind, False, None)
            await self._observe_request(event, ctx)
            telemetry.delivery(kind, "accepted")
            return await self._answers.answer(kind, event, ctx)
        if conversation_id is not None and self._forwards and conversation_id not in self._holds:
            if self._dispatcher.shared:
                return await self._store_then_forward(kind, conversation_id, event, raw, headers)
            try:
                forwarded = await self._bus.forward(conversation_id, raw)
            except BackendUnavailableError:
                log.debug("event bus unavailable for forwarding", exc_info=True)
                self.note_refusal(503, "the event bus is unavailable")
                return r.BACKEND_UNAVAILABLE
            except Exception:  # a bus bug must not become a 500 nor lose the event: retry it
                log.exception(
                    "forwarding a %s event failed (conversation %s)", kind, conversation_id
                )
                self.note_refusal(503, "forwarding to the event bus failed")
                return r.BACKEND_UNAVAILABLE
            if forwarded:
                telemetry.delivery(kind, "accepted")
                return r.ACK
        key = None if self._dedup_off else self._dedup_key(raw)
        # The common case (on_receive, a kind handler, no observer) skips _accept's look-ups.
        handler = None
        if conversation_id is not None:
            if conversation_id in self._registrations:
                return await self._accept(kind, conversation_id, event, raw, key, headers, False)
            handler = self._handlers.get((kind, conversation_id, None))
        if handler is None:
            handler = self._handlers.get((kind, None, None))
        if handler is None or self._after:
            return await self._accept(kind, conversation_id, event, raw, key, headers, False)
        return await self._store_and_dispatch(
            kind, conversation_id, event, raw, key, headers, False, handler, None, False
        )

    async def _store_then_forward(
        self,
        kind: str,
        conversation_id: str,
        event: Webhook,
        raw: Mapping[str, Any],
        headers: Mapping[str, str],
    ) -> WebhookResponse:
        """A notification of a conversation this replica does not hold, with a shared inbox.

        Stored first (the ``200`` promises it is), so whichever replica owns its partition runs
        its kind handlers; the holder, if another replica holds it, then gets an observation
        copy for its ``register()`` observer or ``Conversation`` waiter.  That copy is best
        effort: the event is safe in the inbox whatever happens to it.
        """
        key = None if self._dedup_off else self._dedup_key(raw)
        # No handler: the replica owning the entry's partition finds it when it runs the entry.
        return await self._store_and_dispatch(
            kind, conversation_id, event, raw, key, headers, False, None, None, True
        )

    def _not_stored(
        self, exc: Exception, kind: str, conversation_id: str | None
    ) -> WebhookResponse:
        """The inbox could not store a notification: 503, so the platform may try again."""
        if isinstance(exc, BackendUnavailableError):
            log.debug("inbox unavailable", exc_info=True)
            self.note_refusal(503, f"the inbox is unavailable ({exc})")
        else:
            log.error(
                "storing a %s event failed (conversation %s)", kind, conversation_id, exc_info=exc
            )
            self.note_refusal(503, "storing the event failed")
        return r.BACKEND_UNAVAILABLE

    async def _accept(
        self,
        kind: str,
        conversation_id: str | None,
        event: Webhook,
        raw: Mapping[str, Any],
        key: str | None,
        headers: Mapping[str, str],
        forwarded: bool,
    ) -> WebhookResponse:
        """A notification this replica handles: observe it, store it, acknowledge it."""
        registration = (
            self._registrations.get(conversation_id) if conversation_id is not None else None
        )
        handler = self._notification_handler(kind, conversation_id)
        if handler is None and registration is None:
            self._no_handler(kind, conversation_id)
            return r.ACK
        if self._after:
            return await self._run_before_ack(
                kind, conversation_id, event, raw, key, headers, forwarded, handler, registration
            )
        return await self._store_and_dispatch(
            kind, conversation_id, event, raw, key, headers, forwarded, handler, registration, False
        )

    async def _store_and_dispatch(
        self,
        kind: str,
        conversation_id: str | None,
        event: Webhook,
        raw: Mapping[str, Any],
        key: str | None,
        headers: Mapping[str, str],
        forwarded: bool,
        handler: Callable[..., Awaitable[Any]] | None,
        registration: Registration | None,
        copy_to_holder: bool,
    ) -> WebhookResponse:
        """Store a notification, then hand it to the dispatcher and acknowledge it.

        The one place a notification is stored (the ``200`` promises it is, so nothing runs or
        is observed before), so duplicates, failed stores and accepted deliveries are logged
        and counted alike whichever path it came by.  A ``registration`` that does not handle
        the event gets an observation copy.  ``copy_to_holder`` (shared inbox, a conversation
        another replica may hold): then forward one on the bus, best effort, as the stored
        entry is safe whatever happens to the copy.  Positional arguments: every notification
        comes through here.
        """
        try:
            stored = await self._put(
                conversation_id=conversation_id, kind=kind, raw=raw, dedup_key=key
            )
        except Exception as exc:
            return self._not_stored(exc, kind, conversation_id)
        if stored is None:  # (with a shared inbox: stored, and forwarded, when it first came)
            log.debug("duplicate %s delivery ignored (conversation %s)", kind, conversation_id)
            telemetry.delivery(kind, "duplicate")
            return r.ACK
        delivery_id = stored if isinstance(stored, str) else stored.delivery_id
        ctx = self._context(conversation_id, raw, key, headers, kind, forwarded, delivery_id)
        if registration is not None and registration.handler is not handler:
            self._dispatcher.submit(
                _observer_key(registration.conversation_id),
                (registration.handler, event, ctx, None),
            )
        self._dispatcher.stored(stored, event, ctx, handler)
        if copy_to_holder and conversation_id is not None:
            try:
                await self._bus.forward(conversation_id, raw)
            except Exception:
                log.debug(
                    "could not forward an observation copy of a stored %s event (conversation %s)",
                    kind,
                    conversation_id,
                    exc_info=True,
                )
        telemetry.delivery(kind, "accepted")
        return r.ACK

    def _no_handler(self, kind: str, conversation_id: str | None) -> None:
        if kind in self._warned_kinds:
            log.debug("no handler for a %s event (conversation %s)", kind, conversation_id)
        else:
            self._warned_kinds.add(kind)
            log.warning(
                "no handler for a %s event (conversation %s): acknowledged and dropped; "
                "add one with @receiver.on_%s() (logged at DEBUG from now on)",
                kind,
                conversation_id,
                kind,
            )
        telemetry.delivery(kind, "accepted")

    async def _run_before_ack(
        self,
        kind: str,
        conversation_id: str | None,
        event: Webhook,
        raw: Mapping[str, Any],
        key: str | None,
        headers: Mapping[str, str],
        forwarded: bool,
        handler: Callable[..., Awaitable[Any]] | None,
        registration: Registration | None,
    ) -> WebhookResponse:
        """``ack="after_handler"``: queue in conversation order, answer once the handler ran.

        Nothing is stored (the platform's retry of a 500 is the retry), so de-duplication is
        the receiver's: a claim, forgotten again when the handler failed.
        """
        dedup = self._dedup
        if key is not None and dedup is not None:
            try:
                fresh = await dedup.claim(key)
            except BackendUnavailableError:
                log.debug("de-duplication backend unavailable", exc_info=True)
                self.note_refusal(503, "the de-duplication backend is unavailable")
                return r.BACKEND_UNAVAILABLE
            if not fresh:
                log.debug("duplicate %s delivery ignored (conversation %s)", kind, conversation_id)
                telemetry.delivery(kind, "duplicate")
                return r.ACK
        ctx = self._context(conversation_id, raw, key, headers, kind, forwarded, None)
        if registration is not None and registration.handler is not handler:
            self._dispatcher.submit(
                _observer_key(registration.conversation_id),
                (registration.handler, event, ctx, None),
            )
        telemetry.delivery(kind, "accepted")
        if handler is None:
            return r.ACK
        if forwarded:  # the receiving replica has answered already: nobody waits here
            self._dispatcher.submit(conversation_id, (handler, event, ctx, None))
            return r.ACK
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._dispatcher.submit(conversation_id, (handler, event, ctx, None), waiter)
        try:
            ok = await waiter
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if waiter.cancelled() and (task is None or not task.cancelling()):
                await self._forget(key)
                return r.CLOSING  # cancelled by shutdown: let the platform retry
            raise
        if ok:
            return r.ACK
        await self._forget(key)
        return r.HANDLER_FAILED

    async def _forget(self, key: str | None) -> None:
        if key is None or self._dedup is None:
            return
        try:
            await self._dedup.forget(key)
        except Exception:
            log.debug("could not forget a de-duplication key", exc_info=True)

    async def _observe_request(self, event: Webhook, ctx: EventContext) -> None:
        """Give a request's copy to the conversation's registered observer (here or remote)."""
        conversation_id = ctx.platform_conversation_id
        if conversation_id is None:
            return
        if self._forwards and conversation_id not in self._holds:
            try:
                await self._bus.forward(conversation_id, ctx.raw)
            except Exception:
                log.debug("could not forward a request's observation copy", exc_info=True)
            return
        self._observe_here(conversation_id, event, ctx)

    def _observe_here(self, conversation_id: str, event: Webhook, ctx: EventContext) -> None:
        """Queue a request's copy for this conversation's ``register()``ed observer, if any."""
        registration = self._registrations.get(conversation_id)
        if registration is not None:
            self._dispatcher.submit(
                _observer_key(conversation_id), (registration.handler, event, ctx, None)
            )

    def _context(
        self,
        conversation_id: str | None,
        raw: Mapping[str, Any],
        key: str | None,
        headers: Mapping[str, str],
        kind: str,
        forwarded: bool,
        delivery_id: str | None,
    ) -> EventContext:
        bot_id = raw.get("botId")
        return EventContext(
            conversation_id,
            bot_id if type(bot_id) is str else None,
            datetime.now(UTC),
            key,
            headers,
            raw,
            self.session,
            kind,
            forwarded,
            delivery_id,
            1,
            self._background,
        )

    def _entry_context(self, entry: InboxEntry, event: Webhook) -> EventContext:
        return context_for_entry(entry, event, self.session, self._background)

    async def _deliver_forwarded(self, conversation_id: str, raw: Mapping[str, Any]) -> None:
        """The bus hands us an event another replica received for a conversation we hold."""
        if self._life.closed:
            log.debug("forwarded event dropped: receiver closed")
            return
        try:
            event = parse_webhook(dict(raw))
        except PayloadError as exc:
            log.warning("forwarded event refused: %s", "; ".join(exc.errors))
            return
        kind = KIND_OF[type(event)]
        # The receiving replica answered a request, and stored a notification in a shared
        # inbox (its partition's owner runs the kind handlers): we only observe.
        if kind in REQUEST_KINDS or self._dispatcher.shared:
            ctx = self._context(conversation_id, raw, None, EMPTY_HEADERS, kind, True, None)
            self._observe_here(conversation_id, event, ctx)
            return
        key = None if self._dedup_off else self._dedup_key(raw)
        response = await self._accept(kind, conversation_id, event, raw, key, EMPTY_HEADERS, True)
        if response.status >= 500:
            log.error("a %s event forwarded by another replica was lost", kind)


_OUTCOMES: Final = {
    401: "unauthorized",
    400: "invalid",
    413: "too_large",
}
