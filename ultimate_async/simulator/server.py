"""The simulated Ultimate platform: a real aiohttp server plus webhook delivery.

Endpoints (same paths as the real hosts, all on ``sim.base_url``):

* ``POST /converse/chat``, ``/converse/ticket``, ``/agent/converse/send-message-to-widget``:
  ``Authorization`` must equal ``api_key`` exactly (else **401**), the ``botid`` header must equal
  ``bot_id`` (else **404**); a body that is not a JSON object, lacks ``platformConversationId``,
  has an unknown ``eventType``, a ``message`` without ``text``, a ticket ``platform`` other than
  ``PUBLIC_API`` or an agent-side event the widget flow does not allow in the conversation's
  mode (:data:`WIDGET_FLOW`; the state machine is drawn in the package docstring) is a **400**
  with a short text reason.  Accepted requests get an empty **200**; the bot's output follows
  as webhooks.
* Legacy, synchronous: ``POST /api/v2/automation`` and ``/api/gdpr/delete-user-data`` need
  ``Authorization: Basic <legacy_token>`` (the base64 string itself is configurable; it is not
  decoded); ``/api/intents`` takes the raw ``access_token`` or the same Basic header.  The body's
  ``botId`` must be ``bot_id`` (else **404**).  The legacy automation has no webhook round trip:
  ``teamOnline`` steps take their ``online`` branch, actions are skipped, escalations set
  ``forwardToHuman``.

Faults (``Faults.error_rate``) refuse authenticated API requests with 429/503 before they are
processed.  Every request is recorded in ``sim.received`` (``Authorization`` redacted).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import aiohttp
import attrs
from aiohttp import web

from .bot import (
    Action,
    Carousel,
    EscalateStep,
    ScriptedBot,
    Step,
    TeamOnline,
    Text,
    WidgetEscalateStep,
    demo_bot,
    render,
)
from .defaults import DEFAULT_BOT_ID
from .delivery import (
    Authenticator,
    ConversationQueues,
    DeliveryRecord,
    SimulatorStats,
    WebhookSender,
)
from .engine import ChatSession, Engine, Mode, TranscriptEntry
from .faults import FaultInjector, Faults

if TYPE_CHECKING:
    from ..models.webhooks import Webhook

__all__ = ["WIDGET_FLOW", "RecordedRequest", "Simulator"]

log = logging.getLogger("ultimate_async.simulator")

_REDACTED = "<redacted>"
_SECRET_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
_CHAT_EVENTS = frozenset({"startSession", "message", "endSession", "metadata"})

#: The widget escalation flow as one state machine: for each agent-side event, the modes of the
#: conversation it is valid in and the mode it leads to (``None``: stays).  Any other mode -
#: including a conversation that never escalated or has ended - is refused with 400, as the
#: platform refuses an agent ``message`` before ``escalationSuccess``.  The bot's
#: ``widgetEscalate`` step is what moves ``"bot"`` to ``"escalating"``; the visitor's
#: ``endSession`` ends the conversation from any mode (``widgetEndSession`` when escalated).
WIDGET_FLOW: Mapping[str, tuple[frozenset[Mode], Mode | None]] = {
    "escalationQueueUpdate": (frozenset({"escalating"}), None),
    "escalationSuccess": (frozenset({"escalating"}), "agent"),
    "escalationFailed": (frozenset({"escalating"}), "bot"),
    "message": (frozenset({"agent"}), None),
    "agentDisconnect": (frozenset({"agent"}), "bot"),
}
_WIDGET_EVENTS = frozenset(WIDGET_FLOW)
_ALLOWED = {
    "escalating": "after widgetEscalate and before escalationSuccess",
    "agent": "after escalationSuccess",
}
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


@attrs.frozen
class RecordedRequest:
    """One API request the simulator received, with the status it answered.

    ``headers`` has ``Authorization`` (and cookies) redacted; ``json`` is the parsed body
    (``None`` when it was not JSON); ``reason`` is the text of an error answer.
    """

    method: str
    path: str
    headers: Mapping[str, str]
    json: Any
    status: int
    reason: str | None = None


class _Invalid(Exception):
    """A request body the platform refuses (400); the message is the reason."""


@attrs.define
class _Ctx:
    """What a route learned about its request, for :attr:`Simulator.received`."""

    json: Any = None
    reason: str | None = None


Route = Callable[[web.Request, _Ctx], Awaitable[web.Response]]
Auth = Callable[[web.Request, _Ctx], web.Response | None]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _text(status: int, reason: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=reason, headers=headers)


class Simulator:
    """A local Ultimate platform for demos and tests (see the module docstring).

    Usage::

        async with Simulator(webhook_url=url, verifier=SharedSecretHeader("s")) as sim:
            session = Session(sim.api_key, sim.bot_id, base_url=sim.base_url)
            ...
            await sim.wait_idle()       # every pending webhook delivered

    ``bot`` defaults to the built-in demo bot (:func:`demo_bot`).  ``webhook_url`` may be set
    after start; ``action_webhook_url`` (default: ``webhook_url``) receives action calls, for
    setups with separate chat and action webhooks.  ``delivery_attempts``, ``delivery_backoff``,
    ``delivery_timeout`` tune webhook retries (see ``delivery.py``).  ``record=False`` keeps no
    ``received``/``deliveries``/transcripts (for long soak runs).
    """

    def __init__(
        self,
        bot: ScriptedBot | None = None,
        *,
        webhook_url: str | None = None,
        verifier: Authenticator | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str = "sim-key",
        bot_id: str = DEFAULT_BOT_ID,
        faults: Faults | None = None,
        legacy_token: str = "sim-basic",
        access_token: str = "sim-access",
        action_webhook_url: str | None = None,
        delivery_attempts: int = 4,
        delivery_backoff: float = 0.05,
        delivery_timeout: float = 30.0,
        record: bool = True,
    ) -> None:
        self.bot = bot if bot is not None else demo_bot()
        self.webhook_url = webhook_url
        self.action_webhook_url = action_webhook_url
        self.verifier = verifier
        self.host = host
        self.port = port
        self.api_key = api_key
        self.bot_id = bot_id
        self.legacy_token = legacy_token
        self.access_token = access_token
        self.faults = faults if faults is not None else Faults()
        self.stats = SimulatorStats()
        self.received: list[RecordedRequest] = []
        self.deliveries: list[DeliveryRecord] = []
        self._record = record
        self._transcripts: dict[str, list[TranscriptEntry]] = {}
        self._sessions: dict[str, ChatSession] = {}
        self._injector = FaultInjector(self.faults)
        self._delivery = (delivery_attempts, delivery_backoff, delivery_timeout)
        if delivery_attempts < 1:
            raise ValueError("delivery_attempts must be >= 1")
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self._queues: ConversationQueues | None = None
        self._engine: Engine | None = None
        self._base_url: str | None = None
        self._closing = False

    def __repr__(self) -> str:
        where = self._base_url or "not started"
        return f"<Simulator {where} bot_id={self.bot_id!r}>"

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running server (pass it as ``Session(base_url=...)``)."""
        if self._base_url is None:
            raise RuntimeError("the simulator is not running; use 'async with Simulator()'")
        return self._base_url

    @property
    def running(self) -> bool:
        return self._base_url is not None and not self._closing

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("the simulator was already started")
        self._closing = False
        self._http = aiohttp.ClientSession()
        self._queues = ConversationQueues()
        attempts, backoff, timeout = self._delivery
        sender = WebhookSender(
            self._http,
            verifier=self.verifier,
            injector=self._injector,
            stats=self.stats,
            records=self.deliveries if self._record else None,
            attempts=attempts,
            backoff=backoff,
            timeout=timeout,
        )
        self._engine = Engine(
            self.bot,
            self.bot_id,
            sender,
            self._urls,
            self._transcripts if self._record else None,
        )
        # No middleware: aiohttp caches (handler, app) pairs of apps with middleware in a
        # module-level LRU, which would keep every closed simulator (and all it recorded) alive.
        app = web.Application()
        for path, (route, auth) in self._endpoints().items():
            app.router.add_post(path, self._route(route, auth))
        app.router.add_route("*", "/{tail:.*}", self._route(self._unrouted))
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            await self._http.close()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self.port = port
        self._base_url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    async def aclose(self) -> None:
        """Stop serving, cancel pending deliveries, close the HTTP client. Idempotent."""
        if self._closing or self._runner is None:
            return
        self._closing = True
        runner, self._runner = self._runner, None
        try:
            await runner.cleanup()
        finally:
            if self._queues is not None:
                await self._queues.aclose()
            if self._http is not None:
                await self._http.close()
                self._http = None
            self._base_url = None

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def wait_idle(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Wait until every pending webhook delivery (retries included) has finished."""
        if self._queues is None:
            return
        if timeout is None:
            await self._queues.wait_idle()
        else:
            async with asyncio.timeout(timeout):
                await self._queues.wait_idle()

    drain = wait_idle

    # ------------------------------------------------------------------ inspection

    def url(self, path: str) -> str:
        """The full URL of an endpoint path on this simulator."""
        return self.base_url + path

    def transcript(self, conversation_id: str) -> list[TranscriptEntry]:
        """What happened in a conversation, in order (kept after ``endSession``)."""
        return list(self._transcripts.get(conversation_id, ()))

    def variables(self, conversation_id: str) -> dict[str, str]:
        """The session variables of a live chat conversation (metaData, action results)."""
        session = self._sessions.get(conversation_id)
        return dict(session.variables) if session is not None else {}

    def mode(self, conversation_id: str) -> Mode | None:
        """``"bot"``, ``"escalating"`` (widget escalation pending), ``"agent"``, or ``None``."""
        session = self._sessions.get(conversation_id)
        return session.mode if session is not None else None

    def turn_complete(self, events: Sequence[Webhook]) -> bool:
        """Whether the last of ``events`` ended the bot's turn: ``Conversation(until=...)``.

        ``Conversation(session, receiver, until=sim.turn_complete)`` (the pytest fixture's
        default) ends each ``ask()`` the moment the turn's last webhook arrives instead of
        waiting ``settle`` seconds of quiet.  The simulator notes which webhook ends a turn
        before sending it (see ``engine.py``): the last step; a request (``escalate``, an
        action) that is the last step, should it succeed - if it fails, its ``failed`` replies
        come after the turn, for the next read.  A turn that sends nothing (a visitor message
        while an escalation waits) never completes: ``ask()`` raises ``ReplyTimeout``.
        """
        engine = self._engine
        return engine is not None and engine.ends_turn(events)

    @property
    def conversations(self) -> list[str]:
        """Ids of the live chat sessions."""
        return list(self._sessions)

    # ------------------------------------------------------------------ proactive output

    async def push(self, conversation_id: str, *replies: Step | str) -> None:
        """Send bot replies without a visitor message (proactive messages, any step kind).

        Runs in the conversation's order and returns once they were delivered.
        """
        queues, engine = self._require_running()
        session = self._session(conversation_id)
        steps = tuple(Text(r) if isinstance(r, str) else r for r in replies)
        done = asyncio.get_running_loop().create_future()
        turn = engine.begin_turn(conversation_id)

        async def job() -> None:
            try:
                await engine.replies(session, steps, turn)
            finally:
                if not done.done():
                    done.set_result(None)

        queues.submit(conversation_id, job)
        await done

    async def push_message(
        self,
        conversation_id: str,
        text: str,
        *,
        buttons: Iterable[Any] = (),
        reply_id: str | None = None,
        confidence: float | None = None,
    ) -> None:
        """Send one proactive ``sendMessage`` (text, optional buttons) and wait for delivery."""
        await self.push(conversation_id, Text(text, tuple(buttons), reply_id, confidence))

    # ------------------------------------------------------------------ internals

    def _urls(self) -> tuple[str | None, str | None]:
        return self.webhook_url, self.action_webhook_url or self.webhook_url

    def _require_running(self) -> tuple[ConversationQueues, Engine]:
        if self._queues is None or self._engine is None or not self.running:
            raise RuntimeError("the simulator is not running")
        return self._queues, self._engine

    def _session(self, conversation_id: str, *, fresh: bool = False) -> ChatSession:
        session = None if fresh else self._sessions.get(conversation_id)
        if session is None:
            _, engine = self._require_running()
            session = ChatSession(conversation_id, engine.new_id())
            self._sessions[conversation_id] = session
        return session

    def _endpoints(self) -> dict[str, tuple[Route, Auth]]:
        """Each path's route and the authentication checked before it."""
        api, legacy = self._check_api_auth, self._check_legacy_auth
        return {
            "/converse/chat": (self._chat, api),
            "/converse/ticket": (self._ticket, api),
            "/agent/converse/send-message-to-widget": (self._widget, api),
            "/api/v2/automation": (self._automation, legacy),
            "/api/intents": (self._intents, lambda r, c: legacy(r, c, raw=self.access_token)),
            "/api/gdpr/delete-user-data": (
                self._gdpr,
                lambda r, c: legacy(r, c, raw=self.legacy_token),
            ),
        }

    async def _unrouted(self, request: web.Request, ctx: _Ctx) -> web.Response:
        """What the platform answers for an unknown path (404) or a wrong method (405)."""
        if request.path in self._endpoints():
            ctx.reason = "Method Not Allowed"
            return web.Response(
                status=405, text="405: Method Not Allowed", headers={"Allow": "POST"}
            )
        ctx.reason = "Not Found"
        return web.Response(status=404, text="404: Not Found")

    def _route(self, route: Route, auth: Auth | None = None) -> Handler:
        """Count, authenticate, guard and record one endpoint.

        ``auth`` answers first (401/404, then faults and shutdown: 429/503); a route raising
        :class:`_Invalid` answers 400.  The simulator never crashes on bad input.
        """

        async def handle(request: web.Request) -> web.StreamResponse:
            self.stats.api_requests += 1
            ctx = _Ctx()
            try:
                refused = auth(request, ctx) if auth is not None else None
                response = refused if refused is not None else await route(request, ctx)
            except _Invalid as exc:
                response = self._refuse(ctx, 400, str(exc))
            except asyncio.CancelledError:
                raise
            except web.HTTPException as exc:  # e.g. 413 from request.read()
                self._remember(request, exc.status, _Ctx(ctx.json, exc.text))
                raise
            except Exception:
                log.exception("simulator: error handling %s %s", request.method, request.path)
                ctx.reason = "internal simulator error"
                response = _text(500, ctx.reason)
            if response.status < 400:
                ctx.reason = None
            self._remember(request, response.status, ctx)
            return response

        return handle

    def _remember(self, request: web.Request, status: int, ctx: _Ctx) -> None:
        if not self._record:
            return
        headers = {
            k: (_REDACTED if k.lower() in _SECRET_HEADERS else v)
            for k, v in request.headers.items()
        }
        self.received.append(
            RecordedRequest(request.method, request.path, headers, ctx.json, status, ctx.reason)
        )

    @staticmethod
    def _refuse(ctx: _Ctx, status: int, reason: str, **headers: str) -> web.Response:
        ctx.reason = reason
        return _text(status, reason, headers or None)

    def _gate(self, ctx: _Ctx) -> web.Response | None:
        """Faults and shutdown, checked after authentication."""
        if self._closing:
            return self._refuse(ctx, 503, "simulator is shutting down")
        fault = self._injector.api_error()
        if fault is not None:
            self.stats.api_faults += 1
            status, headers = fault
            return self._refuse(ctx, status, "injected fault", **headers)
        return None

    def _check_api_auth(self, request: web.Request, ctx: _Ctx) -> web.Response | None:
        given = request.headers.get("Authorization")
        if given is None or not hmac.compare_digest(_raw(given), _raw(self.api_key)):
            return self._refuse(ctx, 401, "missing or wrong API key")
        if request.headers.get("botid") != self.bot_id:
            return self._refuse(ctx, 404, "bot not found")
        return self._gate(ctx)

    def _check_legacy_auth(
        self, request: web.Request, ctx: _Ctx, *, raw: str | None = None
    ) -> web.Response | None:
        given = request.headers.get("Authorization", "")
        accepted = [f"Basic {self.legacy_token}"] + ([raw] if raw is not None else [])
        ok = False
        for value in accepted:
            ok |= hmac.compare_digest(_raw(given), _raw(value))
        if not ok:
            return self._refuse(ctx, 401, "missing or wrong credentials")
        return self._gate(ctx)

    @staticmethod
    async def _body(request: web.Request, ctx: _Ctx) -> dict[str, Any]:
        raw = await request.read()
        try:
            parsed = json.loads(raw)
        except ValueError:
            raise _Invalid("body is not valid JSON") from None
        ctx.json = parsed
        if not isinstance(parsed, dict):
            raise _Invalid("body must be a JSON object")
        return parsed

    # ------------------------------------------------------------------ converse endpoints

    async def _chat(self, request: web.Request, ctx: _Ctx) -> web.Response:
        body = await self._body(request, ctx)
        cid = _conversation_id(body, "platformConversationId")
        event = body.get("eventType")
        if not isinstance(event, str) or event not in _CHAT_EVENTS:
            raise _Invalid("eventType must be one of startSession, message, endSession, metadata")
        meta = _metadata(body, "metaData")
        text = body.get("text")
        if event == "message" and (not isinstance(text, str) or not text):
            raise _Invalid("message events need a non-empty text")
        if text is not None and not isinstance(text, str):
            raise _Invalid("text must be a string")
        card_index = body.get("cardIndex")
        if card_index is not None and (
            isinstance(card_index, bool) or not isinstance(card_index, int) or card_index < 0
        ):
            raise _Invalid("cardIndex must be a non-negative integer")
        if event == "metadata" and not meta:
            raise _Invalid("metadata events need metaData")

        queues, engine = self._require_running()
        if event == "endSession":
            ended = self._sessions.pop(cid, None)
            if ended is not None:
                turn = engine.begin_turn(cid)
                queues.submit(cid, lambda: engine.end_session(ended, turn))
            return web.Response()
        session = self._session(cid, fresh=event == "startSession")
        for key, value, sanitize in meta:
            session.store(key, value, sanitize)
        if event == "startSession":
            turn = engine.begin_turn(cid)
            queues.submit(cid, lambda: engine.welcome(session, turn))
        elif event == "message":
            assert isinstance(text, str)
            turn = engine.begin_turn(cid)
            queues.submit(cid, lambda: engine.visitor_message(session, text, card_index, turn))
        return web.Response()

    async def _ticket(self, request: web.Request, ctx: _Ctx) -> web.Response:
        body = await self._body(request, ctx)
        cid = _conversation_id(body, "platformConversationId")
        if body.get("platform") != "PUBLIC_API":
            raise _Invalid('platform must be "PUBLIC_API"')
        text = body.get("text", "")
        if not isinstance(text, str):
            raise _Invalid("text must be a string")
        meta = _metadata(body, "metaData" if "metaData" in body else "metadata")
        queues, engine = self._require_running()
        variables = {key: value for key, value, _ in meta}
        queues.submit(cid, lambda: engine.ticket(cid, text, variables))
        return web.Response()

    async def _widget(self, request: web.Request, ctx: _Ctx) -> web.Response:
        body = await self._body(request, ctx)
        cid = _conversation_id(body, "platformConversationId")
        event = body.get("eventType")
        if not isinstance(event, str) or event not in _WIDGET_EVENTS:
            raise _Invalid("eventType must be one of " + ", ".join(sorted(_WIDGET_EVENTS)))
        for key in ("text", "agent", "agentAvatar"):
            if key in body and body[key] is not None and not isinstance(body[key], str):
                raise _Invalid(f"{key} must be a string")
        for key in ("queuePosition", "waitingTime"):
            value = body.get(key)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, str | int | float)
            ):
                raise _Invalid(f"{key} must be a string")
        session = self._sessions.get(cid)
        text = body.get("text")
        if event == "message" and (not isinstance(text, str) or not text):
            raise _Invalid("message events need a non-empty text")
        valid_in, next_mode = WIDGET_FLOW[event]
        if session is None or session.mode not in valid_in:
            allowed = " or ".join(_ALLOWED[mode] for mode in sorted(valid_in))
            now = "not a live chat" if session is None else f"in mode {session.mode!r}"
            raise _Invalid(f"{event} is only allowed {allowed}; {cid!r} is {now}")

        queues, engine = self._require_running()
        if next_mode is not None:
            session.mode = next_mode
        if event == "message":
            engine.note(cid, TranscriptEntry("agent", "message", str(text)))
        elif event == "escalationQueueUpdate":
            detail = ", ".join(
                f"{k}={body[k]}"
                for k in ("queuePosition", "waitingTime")
                if body.get(k) is not None
            )
            engine.note(cid, TranscriptEntry("system", event, f"queue update {detail}".strip()))
        elif event == "escalationSuccess":
            session.agent = body.get("agent") or None
            engine.note(
                cid, TranscriptEntry("system", event, f"{session.agent or 'an agent'} joined")
            )
        else:  # escalationFailed / agentDisconnect: back to the bot, which says so
            session.agent = None
            if event == "escalationFailed":
                engine.note(cid, TranscriptEntry("system", event, "escalation failed"))
                replies = self.bot.escalation_failed
            else:
                engine.note(cid, TranscriptEntry("system", event, "the agent left"))
                replies = self.bot.agent_disconnected
            if replies:
                back = session
                turn = engine.begin_turn(cid)
                queues.submit(cid, lambda: engine.replies(back, replies, turn))
        return web.Response()

    # ------------------------------------------------------------------ legacy endpoints

    async def _automation(self, request: web.Request, ctx: _Ctx) -> web.Response:
        body = await self._body(request, ctx)
        bot_id = body.get("botId")
        if not isinstance(bot_id, str):
            raise _Invalid("botId is required")
        cid = _conversation_id(body, "conversationId")
        event = body.get("eventType")
        if event not in ("startSession", "message", "endSession"):
            raise _Invalid("eventType must be one of startSession, message, endSession")
        text = body.get("text")
        if event == "message" and (not isinstance(text, str) or not text):
            raise _Invalid("message events need a non-empty text")
        meta = _metadata(body, "metaData")
        if bot_id != self.bot_id:
            return self._refuse(ctx, 404, "bot not found")
        variables: dict[str, object] = {key: value for key, value, _ in meta}
        intents: list[dict[str, object]] = []
        if event == "startSession":
            replies = self.bot.welcome
        elif event == "message":
            assert isinstance(text, str)
            turn = self.bot.answer(text)
            replies = turn.replies
            variables["text"] = text
            if turn.intent is not None:
                intents.append(turn.intent.to_wire())
        else:
            replies = ()
        messages: list[dict[str, Any]] = []
        _flatten(replies, variables, messages)
        _, engine = self._require_running()
        engine.note(cid, TranscriptEntry("visitor", str(event), text or ""))
        for message in messages:
            engine.note(cid, TranscriptEntry("bot", "message", message["text"]))
        entities = [{"name": "email", "value": m.group(0)} for m in _EMAIL.finditer(text or "")]
        return web.json_response(
            {
                "messages": messages,
                "confidenceThreshold": 0.7,
                "predictedIntents": intents,
                "entities": entities,
                "languages": [{"value": "eng", "confidence": 0.9}],
            }
        )

    async def _intents(self, request: web.Request, ctx: _Ctx) -> web.Response:
        body = await self._body(request, ctx)
        bot_id = body.get("botId")
        if not isinstance(bot_id, str):
            raise _Invalid("botId is required")
        message = body.get("message")
        if not isinstance(message, str):
            raise _Invalid("message is required")
        if bot_id != self.bot_id:
            return self._refuse(ctx, 404, "bot not found")
        entities = [
            {
                "name": "email",
                "confidence": 1.0,
                "form": m.group(0),
                "index": m.start(),
                "id": "email",
                "sanitize": True,
            }
            for m in _EMAIL.finditer(message)
        ]
        return web.json_response(
            {"intents": [i.to_wire() for i in self.bot.classify(message)], "entities": entities}
        )

    async def _gdpr(self, request: web.Request, ctx: _Ctx) -> web.Response:
        body = await self._body(request, ctx)
        ids = body.get("conversationIds")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
            raise _Invalid("conversationIds must be a non-empty list of strings")
        for cid in ids:
            self._sessions.pop(cid, None)
            self._transcripts.pop(cid, None)
            if self._engine is not None:
                self._engine.forget(cid)
        return web.Response()


# ---------------------------------------------------------------------- validation helpers


def _raw(value: str) -> bytes:
    """Header text as bytes for a constant-time compare (odd characters never raise)."""
    return value.encode("utf-8", "surrogateescape")


def _conversation_id(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise _Invalid(f"{key} is required (a non-empty string)")
    return value


def _metadata(body: Mapping[str, Any], key: str) -> list[tuple[str, str, bool]]:
    raw = body.get(key)
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _Invalid(f"{key} must be a list of {{key, value}} objects")
    out: list[tuple[str, str, bool]] = []
    for i, item in enumerate(raw):
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("key"), str)
            or not isinstance(item.get("value"), str)
        ):
            raise _Invalid(f"{key}[{i}] needs string key and value")
        sanitize = item.get("sanitize", False)
        if not isinstance(sanitize, bool):
            raise _Invalid(f"{key}[{i}].sanitize must be a boolean")
        out.append((item["key"], item["value"], sanitize))
    return out


def _flatten(
    replies: Iterable[Step], variables: Mapping[str, object], out: list[dict[str, Any]]
) -> None:
    """Bot replies as legacy ``messages`` (the synchronous API has no webhook round trip)."""
    for step in replies:
        if isinstance(step, Text):
            out.append(
                {
                    "text": render(step.text, variables),
                    "forwardToHuman": False,
                    "buttons": [_legacy_button(b.text, b.link, variables) for b in step.buttons],
                }
            )
        elif isinstance(step, Carousel):
            for card in step.cards:
                text = render(card.title, variables)
                if card.description:
                    text += "\n" + render(card.description, variables)
                out.append(
                    {
                        "text": text,
                        "forwardToHuman": False,
                        "buttons": [
                            _legacy_button(b.text, b.link, variables) for b in card.buttons
                        ],
                    }
                )
        elif isinstance(step, TeamOnline):
            _flatten(step.online, variables, out)
        elif isinstance(step, EscalateStep | WidgetEscalateStep):
            if out:
                out[-1]["forwardToHuman"] = True
            else:
                out.append({"text": "", "forwardToHuman": True, "buttons": []})
        elif isinstance(step, Action):
            continue


def _legacy_button(text: str, link: str | None, variables: Mapping[str, object]) -> dict[str, str]:
    button = {"text": render(text, variables)}
    if link is not None:
        button["link"] = link
    return button
