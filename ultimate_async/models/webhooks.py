"""What the platform delivers to your webhook (the shapes are listed in ``docs/platform.md``).

Frozen attrs classes with snake_case attributes; the camelCase wire names live in
:mod:`ultimate_async.converter`.  The platform's payloads are loosely specified, so every field
except the discriminator has a default: a missing or ``null`` field reads as its default and
unknown keys are ignored.  Each class's docstring describes its fields (``help(BotMessage)``).

The classes keep an instance ``__dict__`` (``slots=False``): one is built per delivery, and a
frozen slotted class's ``__init__`` sets each field through ``object.__setattr__``, which is
slower than filling the instance dict.  Nothing here imports aiohttp.
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
    "TicketReply",
    "UnknownChatEvent",
    "UnknownWebhook",
    "Webhook",
    "WidgetEndSession",
    "WidgetEscalate",
    "WidgetMessage",
]


# --- pieces -------------------------------------------------------------------------------------


@attrs.frozen(slots=False)
class Button:
    """A quick-reply or link button of a bot message.

    :ivar type: ``"button"`` (a quick reply: send ``text`` back as the visitor's message to click
        it) or ``"link"`` (opens a URL; do not send it back).
    :ivar text: The label shown to the visitor.
    """

    type: str = "button"
    text: str = ""


@attrs.frozen(slots=False)
class CarouselCard:
    """One card of a carousel message; click its buttons with ``cardIndex`` set.

    :ivar title: The card's heading.
    :ivar description: Text under the title, if any.
    :ivar image_url: The card's picture (wire ``imageUrl``), if any.
    :ivar buttons: The card's buttons; to click one, send its text with this card's 0-based
        index as ``card_index``.
    """

    title: str = ""
    description: str | None = None
    image_url: str | None = None
    buttons: list[Button] = attrs.field(factory=list)


@attrs.frozen(slots=False)
class ActionParam:
    """One parameter of an action call; its ``repr`` masks ``value`` when ``sanitize`` is set.

    :ivar key: The parameter's name as configured in the action.
    :ivar value: Its values, always a list of strings here (a scalar on the wire reads as a
        one-element list; numbers and booleans as their JSON text).
    :ivar save_as: The session variable the bot stores the result under (wire ``saveAs``), if
        configured.
    :ivar sanitize: Whether the value is personal data: keep it out of logs.
    """

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


@attrs.frozen(slots=False)
class PredictedIntent:
    """An intent the bot recognised (in ticket replies and the legacy v2 APIs).

    :ivar value: The intent's id (absent from ``/api/intents`` answers: then ``""``).
    :ivar name: The intent's name as shown in the dashboard.
    :ivar confidence: How sure the bot is, from 0 to 1, when given.
    """

    value: str = ""
    name: str = ""
    confidence: float | None = None


@attrs.frozen(slots=False)
class TicketAttachment:
    """A file attached to a ticket reply.

    :ivar path: The attachment's path on the platform (how to download it is not documented).
    """

    path: str = ""


# --- chat events (envelope ``{"botId", "channel", "data": {"eventType", ...}}``) ----------------


@attrs.frozen(slots=False)
class BotMessage:
    """``sendMessage``: the bot says something to the visitor (text, buttons or a carousel).

    :ivar platform_conversation_id: The conversation, by the id your side gave it when it
        started the chat (wire ``platformConversationId``).
    :ivar type: ``"text"`` (text, possibly with ``buttons``) or ``"carousel"``.
    :ivar text: The message; ``""`` for a carousel.
    :ivar buttons: Quick replies and links under a text message.
    :ivar carousel_cards: The cards of a carousel message.
    :ivar reply_id: The dashboard reply that produced the message, if given.
    :ivar message_id: The platform's id of this message; the receiver de-duplicates on it.
    :ivar confidence: The bot's confidence in its reply, from 0 to 1, when given.
    """

    platform_conversation_id: str | None = None
    type: str = "text"
    text: str = ""
    buttons: list[Button] = attrs.field(factory=list)
    carousel_cards: list[CarouselCard] = attrs.field(factory=list)
    reply_id: str | None = None
    message_id: str | None = None
    confidence: float | None = None


@attrs.frozen(slots=False)
class Escalate:
    """``escalate`` (a request): hand the conversation to a human; the answer says if it worked.

    :ivar platform_conversation_id: The conversation, by the id your side gave it.
    :ivar escalate_to: The team or queue configured in the dashboard, when one is.
    """

    platform_conversation_id: str | None = None
    escalate_to: str | None = None


@attrs.frozen(slots=False)
class TeamOnlineCheck:
    """``isTeamOnline`` (a request): answer whether a human team is available.

    :ivar platform_conversation_id: The conversation, when the platform sends it (often not).
    :ivar team_id: The team asked about, when one is configured.
    """

    platform_conversation_id: str | None = None
    team_id: str | None = None


@attrs.frozen(slots=False)
class WidgetEscalate:
    """``widgetEscalate``: a widget bot hands over; drive the agent side via ``session.widget``.

    :ivar platform_conversation_id: The conversation, by the id your side gave it.
    :ivar escalate_to: The team or queue configured in the dashboard, when one is.
    """

    platform_conversation_id: str | None = None
    escalate_to: str | None = None


@attrs.frozen(slots=False)
class WidgetMessage:
    """``widgetMessage``: the visitor wrote to the human agent of an escalated widget chat.

    :ivar platform_conversation_id: The conversation, by the id your side gave it.
    :ivar text: What the visitor wrote.
    :ivar conversation_id: The platform's internal id of the conversation, when sent.
    """

    platform_conversation_id: str | None = None
    text: str = ""
    conversation_id: str | None = None


@attrs.frozen(slots=False)
class WidgetEndSession:
    """``widgetEndSession``: the visitor ended the escalated widget chat.

    :ivar platform_conversation_id: The conversation, by the id your side gave it.
    """

    platform_conversation_id: str | None = None


@attrs.frozen(slots=False)
class UnknownChatEvent:
    """A chat event whose ``eventType`` this SDK does not know (the platform may add some).

    :ivar event_type: The ``eventType`` as received.
    :ivar raw: The event's whole ``data`` object as received.
    :ivar platform_conversation_id: ``raw["platformConversationId"]`` when it is a string.
    """

    event_type: str
    raw: dict[str, Any] = attrs.field(factory=dict)
    platform_conversation_id: str | None = None


# --- flat webhooks ------------------------------------------------------------------------------


@attrs.frozen(slots=False)
class TicketReply:
    """The bot's answer to a ticket sent with ``session.tickets.send``.

    :ivar platform_conversation_id: The ticket's conversation, by the id your side gave it.
    :ivar conversation_id: The platform's internal id of the conversation.
    :ivar text: The reply to send to the customer.
    :ivar predicted_intents: The intents the bot recognised in the ticket.
    :ivar attachments: Files attached to the reply.
    :ivar bot_id: The bot that answered.
    """

    platform_conversation_id: str | None = None
    conversation_id: str | None = None
    text: str = ""
    predicted_intents: list[PredictedIntent] = attrs.field(factory=list)
    attachments: list[TicketAttachment] = attrs.field(factory=list)
    bot_id: str | None = None


@attrs.frozen(slots=False)
class ActionCall:
    """An action webhook (a request): run ``name`` and answer with ``ActionResult``s.

    ``platform_conversation_id`` is the conversation's id as your side created it (the one the
    chat API takes, and ``ctx.conversation_id``); ``conversation_id`` is the platform's internal
    id for it, sent by some deployments only, which you can ignore.

    :ivar name: The action's name as configured in the dashboard, e.g. ``"lookUpOrder"``.
    :ivar platform_conversation_id: The conversation, by the id your side gave it.
    :ivar conversation_id: The platform's internal id of the conversation, when sent.
    :ivar params: The action's parameters (wire ``data``); see :meth:`value` and :meth:`param`.
    :ivar bot_id: The bot running the action.
    """

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

    def value(self, key: str, default: str | None = None) -> str | None:
        """The first value of parameter ``key`` (``call.value("userId")``), else ``default``."""
        for p in self.params:
            if p.key == key:
                return p.value[0] if p.value else default
        return default

    def values(self, key: str) -> list[str]:
        """Every value of parameter ``key``; ``[]`` when it is absent."""
        for p in self.params:
            if p.key == key:
                return list(p.value)
        return []


@attrs.frozen(slots=False)
class Alert:
    """A real-time alert (enterprise): something failed in the bot.

    :ivar bot_name: The bot's name.
    :ivar event: What happened (the platform does not publish the values).
    :ivar platform_conversation_id: The conversation, by the id your side gave it, when any.
    :ivar conversation_id: The platform's internal id of the conversation, when any.
    :ivar data: Free-form details, e.g. ``httpStatus`` and ``endpointUrl`` of a failed backend
        call, as received.
    """

    bot_name: str | None = None
    event: str | None = None
    platform_conversation_id: str | None = None
    conversation_id: str | None = None
    data: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen(slots=False)
class UnknownWebhook:
    """A body of no known shape, answered 200 and passed to ``on_unknown`` handlers.

    :ivar raw: The whole parsed body.
    """

    raw: dict[str, Any] = attrs.field(factory=dict)

    @property
    def platform_conversation_id(self) -> str | None:
        """``raw["platformConversationId"]`` when it is a string."""
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
