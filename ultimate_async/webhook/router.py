"""Handler tables: one decorator per event kind, so each handler's event type is static.

A :class:`Router` only records handlers; :class:`~ultimate_async.webhook.WebhookReceiver` is a
router that also receives.  ``receiver.include_router(router)`` copies a router's handlers in
and keeps following it, so handlers added to the router later reach the receiver too.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeAlias, TypeVar

from ..errors import HandlerConflictError
from ..models.outbound import ActionResult
from ..models.webhooks import (
    ActionCall,
    Alert,
    BotMessage,
    Escalate,
    TeamOnlineCheck,
    TicketReply,
    UnknownChatEvent,
    UnknownWebhook,
    Webhook,
    WidgetEndSession,
    WidgetEscalate,
    WidgetMessage,
)

if TYPE_CHECKING:
    from .context import EventContext

__all__ = [
    "ActionHandler",
    "AlertHandler",
    "ErrorHandler",
    "EscalateHandler",
    "EventHandler",
    "MessageHandler",
    "Router",
    "TeamOnlineHandler",
    "TicketReplyHandler",
    "UnknownHandler",
    "WidgetEndSessionHandler",
    "WidgetEscalateHandler",
    "WidgetMessageHandler",
]

# Handler types.  Notifications may return anything (ignored); requests' return values answer.
MessageHandler: TypeAlias = Callable[[BotMessage, "EventContext"], Awaitable[object]]
EscalateHandler: TypeAlias = Callable[[Escalate, "EventContext"], Awaitable[bool | None]]
TeamOnlineHandler: TypeAlias = Callable[[TeamOnlineCheck, "EventContext"], Awaitable[bool | None]]
ActionHandler: TypeAlias = Callable[
    [ActionCall, "EventContext"], Awaitable[Iterable[ActionResult | Mapping[str, Any]] | None]
]
WidgetEscalateHandler: TypeAlias = Callable[[WidgetEscalate, "EventContext"], Awaitable[object]]
WidgetMessageHandler: TypeAlias = Callable[[WidgetMessage, "EventContext"], Awaitable[object]]
WidgetEndSessionHandler: TypeAlias = Callable[[WidgetEndSession, "EventContext"], Awaitable[object]]
TicketReplyHandler: TypeAlias = Callable[[TicketReply, "EventContext"], Awaitable[object]]
AlertHandler: TypeAlias = Callable[[Alert, "EventContext"], Awaitable[object]]
UnknownHandler: TypeAlias = Callable[
    [UnknownChatEvent | UnknownWebhook, "EventContext"], Awaitable[object]
]
EventHandler: TypeAlias = Callable[[Webhook, "EventContext"], Awaitable[object]]
"""A ``register()``ed conversation handler: it sees every event kind of its conversation."""
ErrorHandler: TypeAlias = Callable[[BaseException, Any, "EventContext | None"], Awaitable[object]]

_MessageH = TypeVar("_MessageH", bound=MessageHandler)
_EscalateH = TypeVar("_EscalateH", bound=EscalateHandler)
_TeamOnlineH = TypeVar("_TeamOnlineH", bound=TeamOnlineHandler)
_ActionH = TypeVar("_ActionH", bound=ActionHandler)
_WidgetEscalateH = TypeVar("_WidgetEscalateH", bound=WidgetEscalateHandler)
_WidgetMessageH = TypeVar("_WidgetMessageH", bound=WidgetMessageHandler)
_WidgetEndSessionH = TypeVar("_WidgetEndSessionH", bound=WidgetEndSessionHandler)
_TicketReplyH = TypeVar("_TicketReplyH", bound=TicketReplyHandler)
_AlertH = TypeVar("_AlertH", bound=AlertHandler)
_UnknownH = TypeVar("_UnknownH", bound=UnknownHandler)
_ErrorH = TypeVar("_ErrorH", bound=ErrorHandler)
_H = TypeVar("_H", bound=Callable[..., Awaitable[Any]])

#: ``(kind, conversation_id or None, action name or None)``
HandlerKey: TypeAlias = tuple[str, "str | None", "str | None"]

#: The kind of every model, the first element of a :data:`HandlerKey`.
KIND_OF: Final[dict[type[Any], str]] = {
    BotMessage: "message",
    Escalate: "escalate",
    TeamOnlineCheck: "team_online",
    ActionCall: "action",
    WidgetEscalate: "widget_escalate",
    WidgetMessage: "widget_message",
    WidgetEndSession: "widget_end_session",
    TicketReply: "ticket_reply",
    Alert: "alert",
    UnknownChatEvent: "unknown",
    UnknownWebhook: "unknown",
}
#: Kinds whose HTTP answer is decided by the handler (the platform waits for it).
REQUEST_KINDS: Final = frozenset({"escalate", "team_online", "action"})
ERROR_KIND: Final = "error"


def _check_coroutine(handler: object, what: str) -> None:
    call = type(handler).__call__ if callable(handler) else None  # async callables are fine
    if not inspect.iscoroutinefunction(handler) and not inspect.iscoroutinefunction(call):
        raise TypeError(f"{what} handler must be an 'async def' function, got {handler!r}")


def _describe(key: HandlerKey) -> str:
    kind, conversation_id, name = key
    where = f"conversation {conversation_id!r}" if conversation_id else "all conversations"
    named = f" action {name!r}" if name else ""
    return f"on_{kind}{named} for {where}"


class Router:
    """A table of handlers keyed by (event kind, conversation, action name).

    One handler per key: a second one raises :class:`HandlerConflictError` unless it is
    registered with ``replace=True``.  ``conversation_id=None`` is the catch-all for the kind.
    """

    def __init__(self) -> None:
        self._handlers: dict[HandlerKey, Callable[..., Awaitable[Any]]] = {}
        self._parents: list[Router] = []

    def __repr__(self) -> str:
        return f"{type(self).__name__}(handlers={len(self._handlers)})"

    # -- composition --------------------------------------------------------------------------

    def include_router(self, router: Router) -> Router:
        """Add every handler of ``router`` (and, later, those it gains). Returns ``router``."""
        if router is self or self._is_ancestor(router):
            raise ValueError("a router cannot include itself")
        for key, handler in router._handlers.items():
            self._check(key, handler, replace=False)
        for key, handler in router._handlers.items():
            self._add(key, handler, replace=True)
        router._parents.append(self)
        return router

    def _is_ancestor(self, router: Router) -> bool:
        return any(parent is router or parent._is_ancestor(router) for parent in self._parents)

    def _add(self, key: HandlerKey, handler: Callable[..., Awaitable[Any]], replace: bool) -> None:
        existing = self._handlers.get(key)
        if existing is not None and existing is not handler and not replace:
            raise HandlerConflictError(f"{_describe(key)} is already registered")
        for parent in self._parents:  # check the whole chain before changing anything
            parent._check(key, handler, replace)
        self._handlers[key] = handler
        if existing is None:
            self._handler_added(key)
        for parent in self._parents:
            parent._add(key, handler, replace=True)

    def _check(self, key: HandlerKey, handler: object, replace: bool) -> None:
        existing = self._handlers.get(key)
        if existing is not None and existing is not handler and not replace:
            raise HandlerConflictError(f"{_describe(key)} is already registered")
        for parent in self._parents:
            parent._check(key, handler, replace)

    def _handler_added(self, key: HandlerKey) -> None:
        """Hook for the receiver: a key gained its first handler."""

    def _decorator(
        self,
        kind: str,
        conversation_id: str | None,
        name: str | None,
        replace: bool,
    ) -> Callable[[_H], _H]:
        if conversation_id is not None and (
            not isinstance(conversation_id, str) or not conversation_id
        ):
            raise ValueError("conversation_id must be a non-empty string or None")

        def decorate(handler: _H) -> _H:
            _check_coroutine(handler, f"on_{kind}")
            self._add((kind, conversation_id, name), handler, replace)
            return handler

        return decorate

    # -- one decorator per kind ----------------------------------------------------------------

    def on_message(
        self, conversation_id: str | None = None, *, replace: bool = False
    ) -> Callable[[_MessageH], _MessageH]:
        """``sendMessage``: ``async def h(msg: BotMessage, ctx: EventContext) -> None``."""
        return self._decorator("message", conversation_id, None, replace)

    def on_escalate(
        self, conversation_id: str | None = None, *, replace: bool = False
    ) -> Callable[[_EscalateH], _EscalateH]:
        """``escalate`` (request): return ``False`` to answer 409, ``None``/``True`` for 200."""
        return self._decorator("escalate", conversation_id, None, replace)

    def on_team_online(
        self, conversation_id: str | None = None, *, replace: bool = False
    ) -> Callable[[_TeamOnlineH], _TeamOnlineH]:
        """``isTeamOnline`` (request): the returned bool is the answer ``{"isOnline": ...}``."""
        return self._decorator("team_online", conversation_id, None, replace)

    def on_action(
        self, name: str | None = None, *, conversation_id: str | None = None, replace: bool = False
    ) -> Callable[[_ActionH], _ActionH]:
        """An action (request) named ``name`` (all actions when ``None``).

        Return the ``ActionResult`` list to store as session variables.
        """
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError("name must be a non-empty string or None")
        return self._decorator("action", conversation_id, name, replace)

    def on_widget_escalate(
        self, conversation_id: str | None = None, *, replace: bool = False
    ) -> Callable[[_WidgetEscalateH], _WidgetEscalateH]:
        """``widgetEscalate``: the widget bot hands the visitor over to your agents."""
        return self._decorator("widget_escalate", conversation_id, None, replace)

    def on_widget_message(
        self, conversation_id: str | None = None, *, replace: bool = False
    ) -> Callable[[_WidgetMessageH], _WidgetMessageH]:
        """``widgetMessage``: the visitor wrote to the agent of an escalated widget chat."""
        return self._decorator("widget_message", conversation_id, None, replace)

    def on_widget_end_session(
        self, conversation_id: str | None = None, *, replace: bool = False
    ) -> Callable[[_WidgetEndSessionH], _WidgetEndSessionH]:
        """``widgetEndSession``: the visitor closed the escalated widget chat."""
        return self._decorator("widget_end_session", conversation_id, None, replace)

    def on_ticket_reply(
        self, conversation_id: str | None = None, *, replace: bool = False
    ) -> Callable[[_TicketReplyH], _TicketReplyH]:
        """The bot's reply to a ticket."""
        return self._decorator("ticket_reply", conversation_id, None, replace)

    def on_alert(
        self, conversation_id: str | None = None, *, replace: bool = False
    ) -> Callable[[_AlertH], _AlertH]:
        """A real-time alert (enterprise)."""
        return self._decorator("alert", conversation_id, None, replace)

    def on_unknown(
        self, conversation_id: str | None = None, *, replace: bool = False
    ) -> Callable[[_UnknownH], _UnknownH]:
        """An unknown ``eventType`` or body shape (answered 200)."""
        return self._decorator("unknown", conversation_id, None, replace)

    def on_error(
        self, conversation_id: str | None = None, *, replace: bool = False
    ) -> Callable[[_ErrorH], _ErrorH]:
        """``async def h(error, event, ctx)``: a handler raised or timed out.

        Errors raised here are logged, never propagated.
        """
        return self._decorator(ERROR_KIND, conversation_id, None, replace)
