"""Test your integration without the platform: signed webhook deliveries and a pytest plugin.

Payload builders (``make_bot_message`` & co.) return the JSON the platform would POST;
:func:`make_delivery` turns one into the exact ``(body, headers)`` your verifier accepts (for
any HTTP test client), and :func:`deliver` hands it straight to ``receiver.handle()``.

The pytest plugin (registered with the package; install ``ultimate_async[testing]``, which
brings pytest-asyncio, and it works in pytest-asyncio's ``strict`` and ``auto`` modes alike)
provides:

* ``ultimate_simulator`` - a running :class:`~ultimate_async.simulator.Simulator` (built-in demo
  bot; override the ``ultimate_bot`` fixture to script your own);
* ``ultimate_session`` - a :class:`~ultimate_async.Session` pointed at the simulator;
* ``ultimate_receiver`` - a :class:`~ultimate_async.webhook.WebhookReceiver` served on a free
  local port and configured as the simulator's webhook URL, signed with ``ultimate_verifier``;
  its handlers get ``ctx.session`` = ``ultimate_session``, so a handler that answers through
  the API (the widget API after ``widgetEscalate``, say) talks to the simulator;
* ``ultimate_conversation`` - an open :class:`~ultimate_async.Conversation` over both, whose
  turns end the moment the simulator's last webhook of the turn arrives
  (``until=simulator.turn_complete``): no ``settle`` seconds to wait in every test.

The fixtures are function-scoped and run on the test's own event loop.

pytest imports this module in every run of every project that has ultimate_async installed,
so it imports nothing heavy at module level: aiohttp and the simulator load inside fixtures.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

from .simulator.defaults import DEFAULT_BOT_ID

if TYPE_CHECKING:
    from .conversation import Conversation
    from .models.webhooks import Webhook
    from .session import Session
    from .simulator import ScriptedBot, Simulator
    from .webhook import EventContext, Router, WebhookReceiver, WebhookResponse
    from .webhook.verify import Verifier

__all__ = [
    "DEFAULT_BOT_ID",
    "deliver",
    "make_action_call",
    "make_bot_message",
    "make_delivery",
    "make_escalate",
    "make_team_online_check",
    "make_ticket_reply",
    "make_widget_end_session",
    "make_widget_escalate",
    "make_widget_message",
    "observe_all",
    "record_all",
]

ButtonSpec = str | Mapping[str, Any]


def _button(spec: ButtonSpec) -> dict[str, Any]:
    if isinstance(spec, str):
        return {"type": "button", "text": spec}
    return dict(spec)


def _envelope(data: dict[str, Any], bot_id: str) -> dict[str, Any]:
    return {"botId": bot_id, "channel": "chat", "data": data}


def make_bot_message(
    conversation_id: str,
    text: str = "",
    *,
    buttons: Sequence[ButtonSpec] = (),
    carousel_cards: Sequence[Mapping[str, Any]] = (),
    message_id: str | None = None,
    reply_id: str | None = None,
    confidence: float | None = None,
    bot_id: str = DEFAULT_BOT_ID,
) -> dict[str, Any]:
    """A ``sendMessage`` webhook. Buttons may be plain strings (quick replies) or wire dicts.

    ``carousel_cards`` are wire dicts (``title``, ``description``, ``imageUrl``, ``buttons``);
    their ``buttons`` may be strings too.  ``message_id`` defaults to a fresh uuid, so two
    builds are never de-duplicated against each other.
    """
    cards = []
    for card in carousel_cards:
        wire = dict(card)
        wire["buttons"] = [_button(b) for b in card.get("buttons", ())]
        cards.append(wire)
    data: dict[str, Any] = {
        "eventType": "sendMessage",
        "platformConversationId": conversation_id,
        "type": "carousel" if cards else "text",
        "text": text,
        "buttons": [_button(b) for b in buttons],
        "carouselCards": cards,
        "messageId": message_id if message_id is not None else uuid.uuid4().hex,
    }
    if reply_id is not None:
        data["replyId"] = reply_id
    if confidence is not None:
        data["confidence"] = confidence
    return _envelope(data, bot_id)


def make_escalate(
    conversation_id: str, *, escalate_to: str | None = None, bot_id: str = DEFAULT_BOT_ID
) -> dict[str, Any]:
    """An ``escalate`` request (answered inline by ``on_escalate``)."""
    data: dict[str, Any] = {"eventType": "escalate", "platformConversationId": conversation_id}
    if escalate_to is not None:
        data["escalateTo"] = escalate_to
    return _envelope(data, bot_id)


def make_team_online_check(
    conversation_id: str | None = None,
    *,
    team_id: str | None = None,
    bot_id: str = DEFAULT_BOT_ID,
) -> dict[str, Any]:
    """An ``isTeamOnline`` request (answered inline by ``on_team_online``)."""
    data: dict[str, Any] = {"eventType": "isTeamOnline"}
    if conversation_id is not None:
        data["platformConversationId"] = conversation_id
    if team_id is not None:
        data["teamId"] = team_id
    return _envelope(data, bot_id)


def make_widget_escalate(
    conversation_id: str, *, escalate_to: str | None = None, bot_id: str = DEFAULT_BOT_ID
) -> dict[str, Any]:
    """A ``widgetEscalate`` notification: the widget bot hands the visitor to a human."""
    data: dict[str, Any] = {
        "eventType": "widgetEscalate",
        "platformConversationId": conversation_id,
    }
    if escalate_to is not None:
        data["escalateTo"] = escalate_to
    return _envelope(data, bot_id)


def make_widget_message(
    conversation_id: str, text: str, *, bot_id: str = DEFAULT_BOT_ID
) -> dict[str, Any]:
    """A ``widgetMessage`` notification: the visitor writes to the human agent."""
    return _envelope(
        {"eventType": "widgetMessage", "platformConversationId": conversation_id, "text": text},
        bot_id,
    )


def make_widget_end_session(
    conversation_id: str, *, bot_id: str = DEFAULT_BOT_ID
) -> dict[str, Any]:
    """A ``widgetEndSession`` notification: the visitor left the escalated chat."""
    return _envelope(
        {"eventType": "widgetEndSession", "platformConversationId": conversation_id}, bot_id
    )


def make_ticket_reply(
    conversation_id: str,
    text: str,
    *,
    intents: Iterable[tuple[str, float]] = (),
    attachments: Iterable[str] = (),
    platform_id: str | None = None,
    bot_id: str = DEFAULT_BOT_ID,
) -> dict[str, Any]:
    """A ticket webhook (the bot's reply to ``session.tickets.send``).

    ``intents`` are ``(name, confidence)`` pairs; the intent id (``value``) is derived from the
    name.  ``platform_id`` is the platform's internal ``conversationId``.
    """
    return {
        "botId": bot_id,
        "conversationId": platform_id if platform_id is not None else uuid.uuid4().hex[:24],
        "platformConversationId": conversation_id,
        "text": text,
        "predictedIntents": [
            {"value": f"intent-{name}", "name": name, "confidence": confidence}
            for name, confidence in intents
        ],
        "attachments": [{"path": path} for path in attachments],
    }


def make_action_call(
    conversation_id: str,
    name: str,
    params: Mapping[str, str | Sequence[str]] | None = None,
    *,
    save_as: Mapping[str, str] | None = None,
    bot_id: str = DEFAULT_BOT_ID,
) -> dict[str, Any]:
    """An action webhook (answered inline by ``on_action(name)``).

    ``params`` maps each key to a string or a list of strings; ``save_as`` maps a key to the
    session variable its result should be saved as.
    """
    data = []
    for key, value in (params or {}).items():
        param: dict[str, Any] = {
            "key": key,
            "value": [value] if isinstance(value, str) else list(value),
        }
        if save_as and key in save_as:
            param["saveAs"] = save_as[key]
        data.append(param)
    return {
        "botId": bot_id,
        "conversationId": uuid.uuid4().hex[:24],
        "platformConversationId": conversation_id,
        "name": name,
        "data": data,
    }


def make_delivery(
    payload: Mapping[str, Any] | bytes,
    verifier: Verifier,
    url: str = "http://127.0.0.1/webhook",
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a delivery of ``payload`` that ``verifier`` accepts.

    Uses the verifier's sender side (``verifier.authenticate``), so it signs exactly as the
    simulator does: HMAC headers for ``HmacSignature``, the secret header for
    ``SharedSecretHeader``.  (For ``UrlToken`` the secret is in the URL, not the headers: call
    ``verifier.authenticate(url, body)`` yourself for the URL.)
    """
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    _, headers = verifier.authenticate(url, body)
    return body, {"Content-Type": "application/json", **headers}


async def deliver(
    receiver: WebhookReceiver,
    payload: Mapping[str, Any] | bytes,
    verifier: Verifier,
) -> WebhookResponse:
    """Hand ``payload`` to ``receiver.handle()`` exactly as a signed HTTP delivery would.

    The quickest unit test of your handlers: no server, no simulator.  ``verifier`` signs the
    delivery (pass the one the receiver verifies with); ``UrlToken``'s path token is filled in.
    """
    from urllib.parse import unquote

    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    url, headers = verifier.authenticate("http://127.0.0.1/webhook", body)
    token = unquote(url.rstrip("/").rpartition("/")[2]) if verifier.uses_path_token else None
    headers = {"Content-Type": "application/json", **headers}
    return await receiver.handle(body, headers, path_token=token)


def observe_all(
    receiver: Router,
    observer: Callable[[Webhook, EventContext], object],
    *,
    team_online: bool = True,
) -> None:
    """Register one catch-all handler for every event kind of ``receiver`` that calls ``observer``.

    ``observer(event, ctx)`` is a plain (non-async) callable, e.g. ``list.append``-like code,
    a counter or ``queue.put_nowait``; its return value is ignored.  The requests get neutral
    answers: ``isTeamOnline`` answers ``team_online``, actions return no results, escalations
    are accepted.  Raises :class:`~ultimate_async.errors.HandlerConflictError` if ``receiver``
    (any :class:`~ultimate_async.webhook.Router`) already has a catch-all handler for a kind.

    The kinds are the router's own (``router.KIND_OF``), so a kind added there is observed here
    without a change.
    """
    from .webhook.router import KIND_OF

    async def notification(event: Any, ctx: EventContext) -> None:
        observer(event, ctx)

    async def online(event: Any, ctx: EventContext) -> bool:
        observer(event, ctx)
        return team_online

    async def action(event: Any, ctx: EventContext) -> list[Any]:
        observer(event, ctx)
        return []

    answers: dict[str, Callable[..., Any]] = {"team_online": online, "action": action}
    for kind in dict.fromkeys(KIND_OF.values()):
        getattr(receiver, f"on_{kind}")()(answers.get(kind, notification))


def record_all(receiver: Router, *, team_online: bool = True) -> list[tuple[Webhook, EventContext]]:
    """Record every event ``receiver`` dispatches: the returned list fills as they arrive.

    Each entry is ``(event, ctx)``; the answers to requests are those of :func:`observe_all`::

        seen = record_all(receiver)
        await deliver(receiver, make_bot_message("c1", "hi"), verifier)
        await receiver.drain()          # notifications run after the 200 by default
        [(message, ctx)] = seen
    """
    seen: list[tuple[Webhook, EventContext]] = []
    observe_all(receiver, lambda event, ctx: seen.append((event, ctx)), team_online=team_online)
    return seen


# --- the pytest plugin --------------------------------------------------------------------------
# Registered through the ``pytest11`` entry point.  Everything below must import cheaply and never
# fail: without pytest (a user importing the builders elsewhere) the fixtures are simply absent.

try:
    import pytest
except ImportError:  # pragma: no cover - the builders work without pytest
    pytest = None  # type: ignore[assignment]

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - plain pytest (e.g. anyio or pytest-aiohttp only)
    pytest_asyncio = None  # type: ignore[assignment]

_F = TypeVar("_F", bound=Callable[..., Any])


def _async_fixture(func: _F) -> _F:
    """``pytest_asyncio.fixture`` when installed (works in strict and auto mode)."""
    if pytest_asyncio is not None:
        return cast(_F, pytest_asyncio.fixture(func))
    return cast(_F, pytest.fixture(func))


if pytest is not None:

    @pytest.fixture
    def ultimate_bot() -> ScriptedBot | None:
        """The bot the simulator runs: ``None`` = the built-in demo bot. Override to script one."""
        return None

    @pytest.fixture
    def ultimate_verifier() -> Verifier:
        """How the simulator signs and the receiver verifies: HMAC with a fresh random secret."""
        from .webhook.verify import HmacSignature

        return HmacSignature(secrets.token_hex(16))

    @_async_fixture
    async def ultimate_simulator(
        ultimate_bot: ScriptedBot | None, ultimate_verifier: Verifier
    ) -> AsyncIterator[Simulator]:
        """A running simulator on a free 127.0.0.1 port (``base_url``, ``api_key``, ``bot_id``)."""
        from .simulator import Simulator

        async with Simulator(ultimate_bot, verifier=ultimate_verifier) as simulator:
            yield simulator

    @_async_fixture
    async def ultimate_session(ultimate_simulator: Simulator) -> AsyncIterator[Session]:
        """A :class:`Session` whose API calls go to the simulator."""
        from .session import Session

        sim = ultimate_simulator
        async with Session(sim.api_key, sim.bot_id, base_url=sim.base_url) as session:
            yield session

    @_async_fixture
    async def ultimate_receiver(
        ultimate_simulator: Simulator, ultimate_verifier: Verifier, ultimate_session: Session
    ) -> AsyncIterator[WebhookReceiver]:
        """A receiver served on a free port and set as the simulator's webhook URL.

        Handlers get ``ctx.session`` = ``ultimate_session`` (pointed at the simulator).
        """
        from .webhook import WebhookReceiver, WebhookServer

        receiver = WebhookReceiver(ultimate_verifier, session=ultimate_session)
        async with WebhookServer(receiver, host="127.0.0.1", port=0) as server:
            ultimate_simulator.webhook_url = server.url
            yield receiver

    @_async_fixture
    async def ultimate_conversation(
        ultimate_simulator: Simulator,
        ultimate_session: Session,
        ultimate_receiver: WebhookReceiver,
    ) -> AsyncIterator[Conversation]:
        """An open :class:`Conversation` with the simulator's bot (ended after the test).

        Its turns end when the simulator's last webhook of the turn arrives
        (``until=ultimate_simulator.turn_complete``); pass ``settle=`` or ``until=`` to an
        ``ask()`` to decide otherwise.
        """
        from .conversation import Conversation

        async with Conversation(
            ultimate_session, ultimate_receiver, until=ultimate_simulator.turn_complete
        ) as conversation:
            yield conversation
