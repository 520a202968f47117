"""``Session``: send chat, ticket and widget-escalation events to the platform.

Every call is one JSON POST answered by an empty 200; what the bot does arrives later by
webhook (see ``WebhookReceiver``).  The bodies are built as plain dicts right here — no
converter on the send path — because sending is the hot path of every integration.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import aiohttp

from ._http import Transport, TransportClient
from ._json import dumps
from ._retry import RetryPolicy
from .errors import ConfigurationError
from .models.outbound import (
    MetaDataInput,
    add_metadata,
    metadata_to_wire,
    require_nonempty,
    sanitized_values,
)

__all__ = ["ChatAPI", "Session", "TicketsAPI", "WidgetAPI"]

DEFAULT_RETRY: Final = RetryPolicy()

#: Region presets accepted as ``base_url``.
REGIONS: Final[dict[str, str]] = {
    "eu": "https://api.ultimate.ai",
    "us": "https://api.us.ultimate.ai",
}


def _require_text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} must not be empty")
    return value


def _optional_str(name: str, value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # the wire type is a string; ints are a convenience
    raise ValueError(f"{name} must be a string, got {type(value).__name__}")


class ChatAPI:
    """``POST /converse/chat``: the visitor's side of a chat (``session.chat``)."""

    __slots__ = ("_metadata_key", "_transport", "_url")

    def __init__(self, transport: Transport, metadata_key: str) -> None:
        self._transport = transport
        self._url = transport.url("/converse/chat")
        self._metadata_key = metadata_key

    async def start_session(
        self, conversation_id: str, *, metadata: MetaDataInput | None = None
    ) -> None:
        """Start a session; the welcome arrives by webhook (optional: a message starts one too)."""
        body: dict[str, Any] = {
            "platformConversationId": require_nonempty("conversation_id", conversation_id),
            "eventType": "startSession",
        }
        hidden: Sequence[str] = ()
        if metadata is not None:
            hidden = add_metadata(body, self._metadata_key, metadata)
        await self._transport.post(
            self._url,
            dumps(body),
            redact=hidden,
            call="chat.start_session",
            conversation_id=conversation_id,
        )

    async def send_message(
        self,
        conversation_id: str,
        text: str,
        *,
        card_index: int | None = None,
        metadata: MetaDataInput | None = None,
    ) -> None:
        """Send a visitor message; for a button click send its ``text`` (+ ``card_index``)."""
        body: dict[str, Any] = {
            "platformConversationId": require_nonempty("conversation_id", conversation_id),
            "eventType": "message",
            "text": _require_text("text", text),
        }
        if card_index is not None:
            if not isinstance(card_index, int) or isinstance(card_index, bool) or card_index < 0:
                raise ValueError(f"card_index must be an int >= 0, got {card_index!r}")
            body["cardIndex"] = card_index
        hidden: Sequence[str] = ()
        if metadata is not None:
            hidden = add_metadata(body, self._metadata_key, metadata)
        await self._transport.post(
            self._url,
            dumps(body),
            redact=hidden,
            call="chat.send_message",
            conversation_id=conversation_id,
        )

    async def send_metadata(self, conversation_id: str, metadata: MetaDataInput) -> None:
        """Attach session parameters without a message (``eventType: metadata``)."""
        body: dict[str, Any] = {
            "platformConversationId": require_nonempty("conversation_id", conversation_id),
            "eventType": "metadata",
        }
        wire = metadata_to_wire(metadata)
        if not wire:
            raise ValueError("metadata must not be empty")
        body[self._metadata_key] = wire
        await self._transport.post(
            self._url,
            dumps(body),
            redact=sanitized_values(wire),
            call="chat.send_metadata",
            conversation_id=conversation_id,
        )

    async def end_session(self, conversation_id: str) -> None:
        """End and delete the session (otherwise the platform times it out)."""
        body = {
            "platformConversationId": require_nonempty("conversation_id", conversation_id),
            "eventType": "endSession",
        }
        await self._transport.post(
            self._url, dumps(body), call="chat.end_session", conversation_id=conversation_id
        )


class TicketsAPI:
    """``POST /converse/ticket``: email/ticket automation (``session.tickets``)."""

    __slots__ = ("_metadata_key", "_transport", "_url")

    def __init__(self, transport: Transport, metadata_key: str) -> None:
        self._transport = transport
        self._url = transport.url("/converse/ticket")
        self._metadata_key = metadata_key

    async def send(
        self,
        conversation_id: str,
        text: str,
        *,
        metadata: MetaDataInput | None = None,
        platform: str = "PUBLIC_API",
    ) -> None:
        """Submit a ticket; the single reply arrives on the ticket webhook."""
        body: dict[str, Any] = {
            "platformConversationId": require_nonempty("conversation_id", conversation_id),
            "text": _require_text("text", text),
            "platform": require_nonempty("platform", platform),
        }
        hidden: Sequence[str] = ()
        if metadata is not None:
            hidden = add_metadata(body, self._metadata_key, metadata)
        await self._transport.post(
            self._url,
            dumps(body),
            redact=hidden,
            call="tickets.send",
            conversation_id=conversation_id,
        )


class WidgetAPI:
    """``POST /agent/converse/send-message-to-widget``: the human agent's side of a widget
    escalation (``session.widget``), after a ``widgetEscalate`` webhook."""

    __slots__ = ("_transport", "_url")

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._url = transport.url("/agent/converse/send-message-to-widget")

    async def _send(
        self, call: str, conversation_id: str, event_type: str, **fields: str | None
    ) -> None:
        body: dict[str, Any] = {
            "platformConversationId": require_nonempty("conversation_id", conversation_id),
            "eventType": event_type,
        }
        for key, value in fields.items():
            if value is not None:
                body[key] = value
        await self._transport.post(
            self._url, dumps(body), call=call, conversation_id=conversation_id
        )

    async def queue_update(
        self,
        conversation_id: str,
        *,
        queue_position: str | int | None = None,
        waiting_time: str | int | None = None,
    ) -> None:
        """Tell the visitor where they are in the queue (``escalationQueueUpdate``).

        Both values are strings on the wire; ints are converted.
        """
        await self._send(
            "widget.queue_update",
            conversation_id,
            "escalationQueueUpdate",
            queuePosition=_optional_str("queue_position", queue_position),
            waitingTime=_optional_str("waiting_time", waiting_time),
        )

    async def escalation_success(
        self,
        conversation_id: str,
        *,
        agent: str | None = None,
        agent_avatar: str | None = None,
    ) -> None:
        """An agent took the chat (``escalationSuccess``); two-way messaging opens."""
        await self._send(
            "widget.escalation_success",
            conversation_id,
            "escalationSuccess",
            agent=_optional_str("agent", agent),
            agentAvatar=_optional_str("agent_avatar", agent_avatar),
        )

    async def agent_message(self, conversation_id: str, text: str) -> None:
        """Show the agent's ``text`` to the visitor (only after ``escalation_success``)."""
        await self._send(
            "widget.agent_message", conversation_id, "message", text=_require_text("text", text)
        )

    async def escalation_failed(self, conversation_id: str) -> None:
        """No agent could take the chat (``escalationFailed``); the bot resumes."""
        await self._send("widget.escalation_failed", conversation_id, "escalationFailed")

    async def agent_disconnect(self, conversation_id: str) -> None:
        """The agent ended the chat (``agentDisconnect``)."""
        await self._send("widget.agent_disconnect", conversation_id, "agentDisconnect")


class Session(TransportClient):
    """A client for the Ultimate chat, ticket and widget-escalation APIs.

    One ``Session`` serves any number of concurrent calls over one connection pool
    (``connector_limit`` connections).  It binds nothing to an event loop until first used;
    use it as ``async with Session(...) as session`` or call :meth:`aclose`.  A borrowed
    ``http_session`` is never closed by us.  After ``aclose()`` every call raises
    ``RuntimeError``.

    ``base_url`` is a full URL (it may carry a path prefix, e.g.
    ``https://{subdomain}.zendesk.com/ai-agents/api``) or a region preset: ``"eu"``
    (``Session.EU``, the default host) or ``"us"`` (``Session.US``).  ``timeout`` bounds a whole
    attempt; ``connect_timeout`` (default: ``timeout``) bounds opening the connection.
    ``metadata_key`` is the wire name of the metadata array (``"metaData"``; some older
    deployments spell it ``"metadata"``).
    """

    EU: Final = REGIONS["eu"]
    US: Final = REGIONS["us"]

    __slots__ = ("_transport", "bot_id", "chat", "tickets", "widget")

    def __init__(
        self,
        api_key: str,
        bot_id: str,
        *,
        base_url: str = "https://api.ultimate.ai",
        timeout: float | None = 10.0,
        connect_timeout: float | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        http_session: aiohttp.ClientSession | None = None,
        connector_limit: int = 100,
        metadata_key: str = "metaData",
    ) -> None:
        if not isinstance(api_key, str) or not api_key:
            raise ConfigurationError("Session needs an api_key (the Custom CRM API key)")
        if not isinstance(bot_id, str) or not bot_id:
            raise ConfigurationError("Session needs a bot_id")
        base_url = REGIONS.get(base_url.lower(), base_url)
        if not base_url.startswith(("http://", "https://")):
            raise ConfigurationError(
                f"base_url must be an http(s) URL or one of {sorted(REGIONS)}, got {base_url!r}"
            )
        self.bot_id = bot_id
        self._transport = Transport(
            base_url,
            headers={
                "Authorization": api_key,
                "botid": bot_id,
                "Content-Type": "application/json",
            },
            timeout=timeout,
            connect_timeout=connect_timeout,
            retry=retry,
            http_session=http_session,
            connector_limit=connector_limit,
            secrets=(api_key,),
        )
        self.chat: Final = ChatAPI(self._transport, metadata_key)
        self.tickets: Final = TicketsAPI(self._transport, metadata_key)
        self.widget: Final = WidgetAPI(self._transport)

    @property
    def base_url(self) -> str:
        """The API root every endpoint path is appended to."""
        return self._transport.base_url

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy in force."""
        return self._transport.retry

    def __repr__(self) -> str:
        state = " closed" if self.closed else ""
        return f"<Session bot_id={self.bot_id!r} base_url={self.base_url!r}{state}>"
