"""The framework-neutral webhook receiver: bytes and headers in, a :class:`WebhookResponse` out.

Per delivery (DESIGN §3): verify the raw bytes (401) → parse (400) → de-duplicate (200, not
run again) → *requests* (``isTeamOnline``, ``escalate``, actions) are answered inline by their
handler's return value; *notifications* are acked at once and run in per-conversation order
(or awaited with ``ack="after_handler"``).  With an :class:`~ultimate_async.bus.EventBus`,
notifications of a conversation held by another replica are forwarded there.

HTTP frameworks only adapt: :mod:`ultimate_async.webhook.aiohttp` is a few lines over
:meth:`WebhookReceiver.handle`.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from multidict import CIMultiDict, CIMultiDictProxy

from ..bus import EventBus
from ..converter import parse_webhook, parse_webhook_body
from ..errors import (
    BackendUnavailableError,
    ConfigurationError,
    HandlerConflictError,
    PayloadError,
    SignatureError,
)
from ..models.outbound import ActionResult
from ..models.webhooks import ActionCall, Webhook
from . import response as r
from .context import EventContext
from .dedup import DedupKey, Deduplicator, MemoryDeduplicator, default_dedup_key
from .ordering import KeyedExecutor
from .response import WebhookResponse
from .router import ERROR_KIND, KIND_OF, REQUEST_KINDS, EventHandler, Router, _check_coroutine
from .verify import Verifier

if TYPE_CHECKING:
    from ..session import Session

__all__ = ["AckMode", "Registration", "WebhookReceiver"]

log = logging.getLogger("ultimate_async.webhook")


class _Closable(Protocol):
    async def aclose(self) -> None: ...


AckMode = Literal["on_receive", "after_handler"]

_EMPTY_HEADERS: Final = CIMultiDictProxy(CIMultiDict[str]())
_CI_HEADERS: Final = (CIMultiDictProxy, CIMultiDict)

#: (handler, event, context) - one unit of work in a conversation's queue.
_Job = tuple[Callable[..., Awaitable[Any]], Webhook, EventContext]


class _Default(enum.Enum):
    DEDUP = enum.auto()


class Registration:
    """A handler observing every event of one conversation (from :meth:`WebhookReceiver.register`).

    ``remove()`` stops it (idempotent); ``await ready()`` returns once other replicas can
    route this conversation's events here (at once without a bus).
    """

    def __init__(self, receiver: WebhookReceiver, conversation_id: str, handler: EventHandler):
        self.receiver = receiver
        self.conversation_id = conversation_id
        self.handler = handler
        self._active = True

    def __repr__(self) -> str:
        state = "active" if self._active else "removed"
        return f"Registration(conversation_id={self.conversation_id!r}, {state})"

    @property
    def active(self) -> bool:
        return self._active

    def remove(self) -> None:
        """Stop observing; releases the conversation when nothing else holds it."""
        self.receiver._unregister(self)

    async def ready(self) -> None:
        """Wait until the bus announced this conversation (raises if the bus is unreachable)."""
        await self.receiver._ready(self.conversation_id)


class WebhookReceiver(Router):
    """Verifies, parses, de-duplicates and dispatches webhook deliveries.

    ``verifier`` is required: Ultimate documents no signing scheme, so even "no verification"
    must be chosen explicitly (:class:`~ultimate_async.webhook.verify.NoVerification`).
    ``session`` is only handed to handlers via ``ctx.session``; it is borrowed and never closed
    unless ``close_session=True``.  ``dedup=None`` disables de-duplication; ``bus=None`` means a
    single replica.
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
        if handler_timeout is not None and handler_timeout <= 0:
            raise ConfigurationError("handler_timeout must be positive or None")
        if request_timeout <= 0:
            raise ConfigurationError("request_timeout must be positive")
        if max_body_size <= 0:
            raise ConfigurationError("max_body_size must be positive")
        if drain_timeout < 0:
            raise ConfigurationError("drain_timeout must not be negative")
        if max_concurrency < 1:
            raise ConfigurationError("max_concurrency must be at least 1")
        self.verifier = verifier
        self.session = session
        self.ack: AckMode = ack
        self.max_concurrency = max_concurrency
        self.handler_timeout = handler_timeout
        self.request_timeout = request_timeout
        self.dedup: Deduplicator | None = MemoryDeduplicator() if dedup is _Default.DEDUP else dedup
        self.bus = bus
        self.max_body_size = max_body_size
        self.drain_timeout = drain_timeout
        self.dedup_key = dedup_key
        self.close_session = close_session
        #: How many queued or running handlers the last :meth:`aclose` had to cancel.
        self.cancelled_on_close = 0

        self._after = ack == "after_handler"
        self._executor: KeyedExecutor[_Job] = KeyedExecutor(self._run_job, max_concurrency)
        self._registrations: dict[str, Registration] = {}
        self._holds: dict[str, int] = {}
        self._bus_tasks: dict[str, asyncio.Task[BaseException | None]] = {}
        self._started = False
        self._bus_started = False
        self._start_lock = asyncio.Lock()
        self._closing = False
        self._close_task: asyncio.Task[None] | None = None
        self._requests = 0
        self._requests_idle: asyncio.Event | None = None

    def __repr__(self) -> str:
        return (
            f"WebhookReceiver(verifier={self.verifier!r}, ack={self.ack!r}, "
            f"handlers={len(self._handlers)}, registrations={len(self._registrations)})"
        )

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> WebhookReceiver:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def closing(self) -> bool:
        """True once :meth:`aclose` began: new deliveries are answered 503."""
        return self._closing

    @property
    def pending(self) -> int:
        """Handlers queued or running (requests answered inline included)."""
        return self._executor.pending + self._requests

    @property
    def active_conversations(self) -> int:
        """Conversations with queued or running handlers; 0 once everything drained."""
        return self._executor.active_keys

    async def start(self) -> None:
        """Start the bus (if any) and announce held conversations. Called on first delivery."""
        if self._started:
            return
        async with self._start_lock:
            if self._started:
                return
            if self.bus is not None:
                if not self._bus_started:
                    await self.bus.start(self._deliver_forwarded)
                    self._bus_started = True
                for conversation_id in list(self._holds):
                    if conversation_id in self._holds:  # not released while we announced
                        await self.bus.hold(conversation_id)
            self._started = True

    async def drain(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Wait for queued and running handlers, still accepting deliveries.

        Returns ``False`` when ``timeout`` ran out first.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        if not await self._executor.wait_idle(timeout):
            return False
        while self._requests:
            if self._requests_idle is None or self._requests_idle.is_set():
                self._requests_idle = asyncio.Event()
            remaining = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                async with asyncio.timeout(remaining):
                    await self._requests_idle.wait()
            except TimeoutError:
                return self._requests == 0
            if not await self._executor.wait_idle(
                None if deadline is None else max(0.0, deadline - loop.time())
            ):
                return False
        if self._bus_tasks:  # pending hold/release announcements are part of "settled"
            remaining = None if deadline is None else max(0.0, deadline - loop.time())
            _, unfinished = await asyncio.wait(list(self._bus_tasks.values()), timeout=remaining)
            if unfinished:
                return False
        return True

    async def aclose(self) -> None:
        """Stop accepting (503), drain up to ``drain_timeout``, cancel and count the rest,
        close the bus and the de-duplicator, and the session when ``close_session=True``.

        Idempotent; concurrent callers wait for the same shutdown.
        """
        if self._close_task is None:
            self._close_task = asyncio.ensure_future(self._shutdown())
        await asyncio.shield(self._close_task)

    async def _shutdown(self) -> None:
        self._closing = True
        if self._bus_tasks:
            await asyncio.gather(*self._bus_tasks.values(), return_exceptions=True)
        # Leave the bus before draining: other replicas stop routing here, and whatever they
        # already forwarded is delivered into our queues, so the drain below covers it.
        await self._close_quietly("bus", self.bus)
        if not await self.drain(self.drain_timeout):
            left = await self._executor.cancel_all()
            self.cancelled_on_close = left
            log.warning(
                "webhook receiver shutdown: cancelled %d unfinished handler(s) after %.1fs",
                left,
                self.drain_timeout,
            )
        await self._close_quietly("dedup", self.dedup)
        if self.close_session and self.session is not None:
            await self._close_quietly("session", self.session)

    @staticmethod
    async def _close_quietly(name: str, resource: _Closable | None) -> None:
        """Close one resource; a failure is logged, never allowed to stop the shutdown."""
        if resource is None:
            return
        try:
            await resource.aclose()
        except Exception:
            log.exception("closing the webhook %s failed", name)

    # -- registration --------------------------------------------------------------------------

    def register(
        self, conversation_id: str, handler: EventHandler, *, replace: bool = False
    ) -> Registration:
        """Observe every event of ``conversation_id`` (requests too, in arrival order).

        For notifications it takes the place of the catch-all handler; it never decides a
        request's HTTP answer.
        """
        if not isinstance(conversation_id, str) or not conversation_id:
            raise ValueError("conversation_id must be a non-empty string")
        _check_coroutine(handler, "register()")
        existing = self._registrations.get(conversation_id)
        if existing is not None and not replace:
            raise HandlerConflictError(
                f"a handler is already registered for conversation {conversation_id!r}"
            )
        registration = Registration(self, conversation_id, handler)
        self._registrations[conversation_id] = registration
        if existing is not None:
            existing._active = False  # the hold passes to the new registration
        else:
            self._hold(conversation_id)
        return registration

    def _unregister(self, registration: Registration) -> None:
        conversation_id = registration.conversation_id
        if self._registrations.get(conversation_id) is registration:
            del self._registrations[conversation_id]
            self._unhold(conversation_id)
        registration._active = False

    def _handler_added(self, key: tuple[str, str | None, str | None]) -> None:
        if key[1] is not None:
            self._hold(key[1])

    def _hold(self, conversation_id: str) -> None:
        count = self._holds.get(conversation_id, 0)
        self._holds[conversation_id] = count + 1
        if count == 0:
            self._announce(conversation_id, hold=True)

    def _unhold(self, conversation_id: str) -> None:
        count = self._holds[conversation_id] - 1
        if count:
            self._holds[conversation_id] = count
        else:
            del self._holds[conversation_id]
            self._announce(conversation_id, hold=False)

    def _announce(self, conversation_id: str, *, hold: bool) -> None:
        if self.bus is None or not self._bus_started:
            return  # start() announces everything held when the bus starts
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # changed from sync code: re-announce on the next start()
            self._started = False
            return
        previous = self._bus_tasks.get(conversation_id)
        task = asyncio.ensure_future(self._bus_call(conversation_id, hold, previous))
        self._bus_tasks[conversation_id] = task

        def forget(done: asyncio.Task[BaseException | None]) -> None:
            if self._bus_tasks.get(conversation_id) is done:
                del self._bus_tasks[conversation_id]

        task.add_done_callback(forget)

    async def _bus_call(
        self,
        conversation_id: str,
        hold: bool,
        previous: asyncio.Task[BaseException | None] | None,
    ) -> BaseException | None:
        if previous is not None:  # keep hold/release of one conversation in order
            await asyncio.wait([previous])
        assert self.bus is not None
        try:
            if hold:
                await self.bus.hold(conversation_id)
            else:
                await self.bus.release(conversation_id)
        except Exception as exc:
            log.debug("bus %s failed for a conversation", "hold" if hold else "release")
            return exc
        return None

    async def _ready(self, conversation_id: str) -> None:
        if self.bus is None:
            return
        await self.start()
        task = self._bus_tasks.get(conversation_id)
        if task is not None:
            error = await asyncio.shield(task)
            if error is not None:
                raise error

    # -- delivery ------------------------------------------------------------------------------

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
        if self._closing:
            return r.CLOSING
        if len(body) > self.max_body_size:
            return r.TOO_LARGE
        if type(headers) is not CIMultiDictProxy and not isinstance(headers, _CI_HEADERS):
            headers = CIMultiDictProxy(CIMultiDict(headers))
        try:
            self.verifier.verify(body, headers, path_token=path_token)
        except SignatureError as exc:
            log.warning("webhook delivery rejected (401): %s", exc)
            return r.UNAUTHORIZED
        except Exception as exc:  # a custom verifier's bug must not become a 500 with details
            log.error(
                "webhook verifier %s raised %s", type(self.verifier).__name__, type(exc).__name__
            )
            return r.UNAUTHORIZED
        try:
            raw, event = parse_webhook_body(body)
        except PayloadError as exc:
            log.warning("webhook delivery refused (400): %s", "; ".join(exc.errors))
            return WebhookResponse.error(400, "invalid payload", exc.errors)
        if not self._started:
            try:
                await self.start()
            except BackendUnavailableError:
                log.debug("event bus unavailable at start", exc_info=True)
                return r.BACKEND_UNAVAILABLE
        kind = KIND_OF[type(event)]
        conversation_id = event.platform_conversation_id
        requested = kind in REQUEST_KINDS
        dedup = self.dedup
        key = None if requested or dedup is None else self.dedup_key(raw)
        ctx = self._context(conversation_id, raw, key, headers, kind)
        if key is not None:
            assert dedup is not None
            try:
                fresh = await dedup.claim(key)
            except BackendUnavailableError:
                log.debug("de-duplication backend unavailable", exc_info=True)
                return r.BACKEND_UNAVAILABLE
            if not fresh:
                log.debug("duplicate %s delivery ignored (conversation %s)", kind, conversation_id)
                return r.ACK
        if requested:
            await self._observe(event, ctx)
            return await self._answer(kind, event, ctx)
        bus = self.bus
        if bus is not None and conversation_id is not None and conversation_id not in self._holds:
            try:
                forwarded = await bus.forward(conversation_id, raw)
            except BackendUnavailableError:
                log.debug("event bus unavailable for forwarding", exc_info=True)
                await self._forget(key)
                return r.BACKEND_UNAVAILABLE
            except Exception:  # a bus bug must not become a 500 nor lose the event: retry it
                log.exception(
                    "forwarding a %s event failed (conversation %s)", kind, conversation_id
                )
                await self._forget(key)
                return r.BACKEND_UNAVAILABLE
            if forwarded:
                return r.ACK
        handler = self._notification_handler(kind, conversation_id)
        if handler is None:
            log.debug("no handler for a %s event (conversation %s)", kind, conversation_id)
            return r.ACK
        if not self._after:  # ack="on_receive": the hot path of every notification
            self._executor.submit(conversation_id, (handler, event, ctx))
            return r.ACK
        return await self._run_before_ack(handler, event, ctx, key)

    async def _forget(self, key: str | None) -> None:
        if key is None or self.dedup is None:
            return
        try:
            await self.dedup.forget(key)
        except Exception:
            log.debug("could not forget a de-duplication key", exc_info=True)

    def _notification_handler(
        self, kind: str, conversation_id: str | None
    ) -> Callable[..., Awaitable[Any]] | None:
        handlers = self._handlers
        if conversation_id is not None:
            handler = handlers.get((kind, conversation_id, None))
            if handler is not None:
                return handler
            registration = self._registrations.get(conversation_id)
            if registration is not None:
                return registration.handler
        return handlers.get((kind, None, None))

    async def _run_before_ack(
        self,
        handler: Callable[..., Awaitable[Any]],
        event: Webhook,
        ctx: EventContext,
        key: str | None,
    ) -> WebhookResponse:
        """``ack="after_handler"``: queue in conversation order, answer once the handler ran."""
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._executor.submit(ctx.platform_conversation_id, (handler, event, ctx), waiter)
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

    async def _observe(self, event: Webhook, ctx: EventContext) -> None:
        """Give a request's copy to the conversation's registered observer (here or remote)."""
        conversation_id = ctx.platform_conversation_id
        if conversation_id is None:
            return
        if self.bus is not None and conversation_id not in self._holds:
            try:
                await self.bus.forward(conversation_id, ctx.raw)
            except Exception:
                log.debug("could not forward a request's observation copy", exc_info=True)
            return
        self._observe_here(conversation_id, event, ctx)

    def _observe_here(self, conversation_id: str, event: Webhook, ctx: EventContext) -> None:
        """Queue a request's copy for this conversation's ``register()``ed observer, if any."""
        registration = self._registrations.get(conversation_id)
        if registration is not None:
            self._executor.submit(conversation_id, (registration.handler, event, ctx))

    def _context(
        self,
        conversation_id: str | None,
        raw: Mapping[str, Any],
        key: str | None,
        headers: Mapping[str, str],
        kind: str,
        *,
        forwarded: bool = False,
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
        )

    def _decision_handler(
        self, kind: str, conversation_id: str | None, name: str | None
    ) -> Callable[..., Awaitable[Any]] | None:
        handlers = self._handlers
        if name is not None:
            if conversation_id is not None:
                handler = handlers.get((kind, conversation_id, name))
                if handler is not None:
                    return handler
        if conversation_id is not None:
            handler = handlers.get((kind, conversation_id, None))
            if handler is not None:
                return handler
        if name is not None:
            handler = handlers.get((kind, None, name))
            if handler is not None:
                return handler
        return handlers.get((kind, None, None))

    async def _answer(self, kind: str, event: Webhook, ctx: EventContext) -> WebhookResponse:
        name = event.name if isinstance(event, ActionCall) else None
        handler = self._decision_handler(kind, ctx.platform_conversation_id, name)
        if kind == "team_online":
            if handler is None:
                return r.OFFLINE
            ok, result = await self._call_request(handler, event, ctx)
            return r.ONLINE if ok and result else r.OFFLINE
        if kind == "escalate":
            if handler is None:
                return r.ACK
            ok, result = await self._call_request(handler, event, ctx)
            if not ok:
                return r.HANDLER_FAILED
            return r.ESCALATION_FAILED if result is False else r.ACK
        # actions
        if handler is None:
            return r.NO_RESULTS
        ok, result = await self._call_request(handler, event, ctx)
        if not ok:
            return r.HANDLER_FAILED
        try:
            results = _results_to_wire(result)
        except TypeError as exc:
            await self._report(exc, event, ctx)
            return r.HANDLER_FAILED
        return WebhookResponse.json(200, {"results": results})

    async def _call_request(
        self, handler: Callable[..., Awaitable[Any]], event: Webhook, ctx: EventContext
    ) -> tuple[bool, Any]:
        self._requests += 1
        try:
            async with asyncio.timeout(self.request_timeout) as scope:
                result = await handler(event, ctx)
        except Exception as exc:
            if isinstance(exc, TimeoutError) and scope.expired():
                log.error(
                    "%s handler timed out after %ss (conversation %s)",
                    ctx.kind,
                    self.request_timeout,
                    ctx.platform_conversation_id,
                )
                await self._report(exc, event, ctx, logged=True)
            else:
                await self._report(exc, event, ctx)
            return False, None
        finally:
            self._requests -= 1
            if self._requests == 0 and self._requests_idle is not None:
                self._requests_idle.set()
        return True, result

    async def _run_job(self, job: _Job) -> bool:
        handler, event, ctx = job
        timeout = self.handler_timeout
        try:
            if timeout is None:
                await handler(event, ctx)
            else:
                async with asyncio.timeout(timeout) as scope:
                    await handler(event, ctx)
        except Exception as exc:
            if timeout is not None and isinstance(exc, TimeoutError) and scope.expired():
                log.error(
                    "%s handler timed out after %ss (conversation %s)",
                    ctx.kind,
                    timeout,
                    ctx.platform_conversation_id,
                )
                await self._report(exc, event, ctx, logged=True)
            else:
                await self._report(exc, event, ctx)
            return False
        return True

    async def _report(
        self, error: BaseException, event: Any, ctx: EventContext | None, *, logged: bool = False
    ) -> None:
        """Log a handler failure once and pass it to the matching ``on_error`` handler."""
        conversation_id = ctx.platform_conversation_id if ctx is not None else None
        if not logged:
            log.error(
                "%s handler failed (conversation %s)",
                ctx.kind if ctx is not None else "event",
                conversation_id,
                exc_info=error,
            )
        handler = None
        if conversation_id is not None:
            handler = self._handlers.get((ERROR_KIND, conversation_id, None))
        if handler is None:
            handler = self._handlers.get((ERROR_KIND, None, None))
        if handler is None:
            return
        try:
            await handler(error, event, ctx)
        except Exception:
            log.exception("on_error handler failed (conversation %s)", conversation_id)

    async def _deliver_forwarded(self, conversation_id: str, raw: Mapping[str, Any]) -> None:
        """The bus hands us an event another replica received for a conversation we hold."""
        if self._close_task is not None and self._close_task.done():
            log.debug("forwarded event dropped: receiver closed")
            return
        try:
            event = parse_webhook(dict(raw))
        except PayloadError as exc:
            log.warning("forwarded event refused: %s", "; ".join(exc.errors))
            return
        kind = KIND_OF[type(event)]
        ctx = self._context(conversation_id, raw, None, _EMPTY_HEADERS, kind, forwarded=True)
        if kind in REQUEST_KINDS:  # the receiving replica answered; we only observe
            self._observe_here(conversation_id, event, ctx)
            return
        handler = self._notification_handler(kind, conversation_id)
        if handler is None:
            log.debug("no handler for a forwarded %s event", kind)
            return
        self._executor.submit(conversation_id, (handler, event, ctx))


def _results_to_wire(result: object) -> list[Any]:
    if result is None:
        return []
    if isinstance(result, ActionResult | Mapping) or not isinstance(result, Iterable):
        raise TypeError("an action handler must return a list of ActionResult (or None)")
    out: list[Any] = []
    for item in result:
        if isinstance(item, ActionResult):
            out.append(item.to_wire())
        elif isinstance(item, Mapping) and "key" in item:
            out.append(dict(item))
        else:
            raise TypeError("an action handler must return a list of ActionResult (or None)")
    return out
