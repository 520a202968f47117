"""What the platform delivers to your webhook (DESIGN §4, API_SPEC §5).

Frozen attrs classes with snake_case attributes; the camelCase wire names live in
:mod:`ultimate_async.converter`.  The platform's payloads are loosely specified, so every field
except the discriminator has a default: a missing or ``null`` field reads as its default and
unknown keys are ignored.  Nothing here imports aiohttp.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import attrs

__all__ = [
    "ActionCall",
    "ActionParam",
    "Alert",
    "BotMessage",
    "Button",
    "CarouselCard",
    "ChatEvent",
    "Escalate",
    "TeamOnlineCheck",
    "TicketAttachment",
    "TicketIntent",
    "TicketReply",
    "UnknownChatEvent",
    "UnknownWebhook",
    "Webhook",
    "WidgetEndSession",
    "WidgetEscalate",
    "WidgetMessage",
]


# --- pieces -------------------------------------------------------------------------------------


@attrs.frozen
class Button:
    """A quick-reply or link button. Send ``text`` back as a visitor message to click it."""

    type: str = "button"
    text: str = ""


@attrs.frozen
class CarouselCard:
    """One card of a carousel message; click its buttons with ``cardIndex`` set."""

    title: str = ""
    description: str | None = None
    image_url: str | None = None
    buttons: list[Button] = attrs.field(factory=list)


@attrs.frozen
class ActionParam:
    """One parameter of an action call. ``value`` is always a list of strings on our side."""

    key: str = ""
    value: list[str] = attrs.field(factory=list)
    save_as: str | None = None
    sanitize: bool = False

    def __repr__(self) -> str:
        value = "'***'" if self.sanitize else repr(self.value)
        return (
            f"ActionParam(key={self.key!r}, value={value}, save_as={self.save_as!r}, "
            f"sanitize={self.sanitize!r})"
        )


@attrs.frozen
class PredictedIntent:
    """An intent the bot recognised; ``value`` is the intent id (absent from ``/api/intents``).

    Ticket replies and the legacy v2 APIs share this model.
    """

    value: str = ""
    name: str = ""
    confidence: float | None = None


#: The intents of a ticket reply: the same model the legacy APIs return.
TicketIntent = PredictedIntent


@attrs.frozen
class TicketAttachment:
    """A file attached to a ticket reply; how to download ``path`` is not documented."""

    path: str = ""


# --- chat events (envelope ``{"botId", "channel", "data": {"eventType", ...}}``) ----------------


@attrs.frozen
class BotMessage:
    """``sendMessage``: the bot says something to the visitor (text, buttons or a carousel)."""

    platform_conversation_id: str | None = None
    type: str = "text"
    text: str = ""
    buttons: list[Button] = attrs.field(factory=list)
    carousel_cards: list[CarouselCard] = attrs.field(factory=list)
    reply_id: str | None = None
    message_id: str | None = None
    confidence: float | None = None


@attrs.frozen
class Escalate:
    """``escalate`` (a request): hand the conversation to a human; the answer says if it worked."""

    platform_conversation_id: str | None = None
    escalate_to: str | None = None


@attrs.frozen
class TeamOnlineCheck:
    """``isTeamOnline`` (a request): answer whether a human team is available."""

    platform_conversation_id: str | None = None
    team_id: str | None = None


@attrs.frozen
class WidgetEscalate:
    """``widgetEscalate``: a widget bot hands over; drive the agent side via ``session.widget``."""

    platform_conversation_id: str | None = None
    escalate_to: str | None = None


@attrs.frozen
class WidgetMessage:
    """``widgetMessage``: the visitor wrote to the human agent of an escalated widget chat."""

    platform_conversation_id: str | None = None
    text: str = ""
    conversation_id: str | None = None


@attrs.frozen
class WidgetEndSession:
    """``widgetEndSession``: the visitor ended the escalated widget chat."""

    platform_conversation_id: str | None = None


@attrs.frozen
class UnknownChatEvent:
    """A chat event whose ``eventType`` this SDK does not know (the platform may add some).

    ``raw`` is the event's ``data`` object as received.
    """

    event_type: str
    raw: dict[str, Any] = attrs.field(factory=dict)
    platform_conversation_id: str | None = None


# --- flat webhooks ------------------------------------------------------------------------------


@attrs.frozen
class TicketReply:
    """The bot's answer to a ticket sent with ``session.tickets.send``."""

    platform_conversation_id: str | None = None
    conversation_id: str | None = None
    text: str = ""
    predicted_intents: list[TicketIntent] = attrs.field(factory=list)
    attachments: list[TicketAttachment] = attrs.field(factory=list)
    bot_id: str | None = None


@attrs.frozen
class ActionCall:
    """An action webhook (a request): run ``name`` and answer with ``ActionResult``s."""

    name: str
    platform_conversation_id: str | None = None
    conversation_id: str | None = None
    params: list[ActionParam] = attrs.field(factory=list)
    bot_id: str | None = None

    def param(self, key: str) -> ActionParam | None:
        """The parameter called ``key``, or ``None``."""
        for p in self.params:
            if p.key == key:
                return p
        return None


@attrs.frozen
class Alert:
    """A real-time alert (enterprise): something failed in the bot. ``data`` is free-form."""

    bot_name: str | None = None
    event: str | None = None
    platform_conversation_id: str | None = None
    conversation_id: str | None = None
    data: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class UnknownWebhook:
    """A body of no known shape; ``raw`` is the whole parsed body."""

    raw: dict[str, Any] = attrs.field(factory=dict)

    @property
    def platform_conversation_id(self) -> str | None:
        value = self.raw.get("platformConversationId")
        return value if isinstance(value, str) else None


ChatEvent: TypeAlias = (
    BotMessage
    | Escalate
    | TeamOnlineCheck
    | WidgetEscalate
    | WidgetMessage
    | WidgetEndSession
    | UnknownChatEvent
)
"""Everything that arrives in the chat envelope."""

Webhook: TypeAlias = ChatEvent | TicketReply | ActionCall | Alert | UnknownWebhook
"""Every shape one webhook endpoint can receive."""
