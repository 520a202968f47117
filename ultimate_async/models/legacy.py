"""Replies of the legacy synchronous v2 APIs on chat.ultimate.ai, and how we read them.

The documentation of these endpoints is thin (``docs/platform.md``), so reading is tolerant: unknown
keys are ignored and ``null`` reads as the field's default.  What does not fit at all (a list
where an object belongs, text where a number belongs) raises ``ResponseDecodeError`` listing
every field-level reason, instead of handing the caller a half-filled object.  These rules are
the SDK's one converter's (:mod:`ultimate_async.converter`), the same as for webhooks.
"""

from __future__ import annotations

from typing import TypeVar

import attrs

from ..converter import structure
from ..errors import PayloadError, ResponseDecodeError
from .webhooks import PredictedIntent

__all__ = [
    "AutomationButton",
    "AutomationMessage",
    "AutomationReply",
    "DetectedLanguage",
    "Entity",
    "IntentsResult",
    "PredictedIntent",
    "RecognizedEntity",
    "structure_legacy",
]

T = TypeVar("T")


@attrs.frozen
class AutomationButton:
    """A reply button; a ``link`` button opens a URL and must not be sent back as text.

    :ivar text: The label; send it back as the next message to click a non-link button.
    :ivar link: The URL a link button opens; ``None`` for an answer button.
    """

    text: str = ""
    link: str | None = None

    @property
    def is_link(self) -> bool:
        """Whether this button opens ``link`` rather than answering the bot."""
        return bool(self.link)


@attrs.frozen
class AutomationMessage:
    """One bot message of an automation reply.

    :ivar text: The message text.
    :ivar forward_to_human: Whether the bot asks to hand the conversation to a human.
    :ivar buttons: The message's buttons.
    """

    text: str = ""
    forward_to_human: bool = False
    buttons: list[AutomationButton] = attrs.Factory(list)


@attrs.frozen
class Entity:
    """An entity extracted from the visitor's message by ``/api/v2/automation``.

    :ivar name: The entity's name, e.g. ``"email"``.
    :ivar value: The text recognised as that entity.
    """

    name: str = ""
    value: str = ""


@attrs.frozen
class DetectedLanguage:
    """A guess of the language the visitor writes in.

    :ivar value: An ISO 639-3 code such as ``"eng"``.
    :ivar confidence: How sure the guess is, from 0 to 1, when given.
    """

    value: str = ""
    confidence: float | None = None


@attrs.frozen
class AutomationReply:
    """The synchronous answer of ``POST /api/v2/automation``.

    :ivar messages: The bot's messages, in order (see :attr:`text`).
    :ivar confidence_threshold: The bot's threshold for trusting an intent, when given.
    :ivar predicted_intents: The intents recognised in the visitor's message.
    :ivar entities: The entities extracted from it.
    :ivar languages: Guesses of its language.
    """

    messages: list[AutomationMessage] = attrs.Factory(list)
    confidence_threshold: float | None = None
    predicted_intents: list[PredictedIntent] = attrs.Factory(list)
    entities: list[Entity] = attrs.Factory(list)
    languages: list[DetectedLanguage] = attrs.Factory(list)

    @property
    def text(self) -> str:
        """The non-empty message texts joined with newlines."""
        return "\n".join(m.text for m in self.messages if m.text)

    @property
    def forward_to_human(self) -> bool:
        """Whether any message asks for an escalation to a human agent."""
        return any(m.forward_to_human for m in self.messages)


@attrs.frozen
class RecognizedEntity:
    """An entity found by ``POST /api/intents`` (the field types are undocumented).

    :ivar name: The entity's name, e.g. ``"email"``.
    :ivar confidence: How sure the recognition is, from 0 to 1, when given.
    :ivar form: The text recognised, when given.
    :ivar index: The entity's position in the message, when given.
    :ivar id: The entity's id, when given.
    :ivar sanitize: Whether the value is personal data.
    """

    name: str = ""
    confidence: float | None = None
    form: str | None = None
    index: int | None = None
    id: str | None = None
    sanitize: bool = False


@attrs.frozen
class IntentsResult:
    """The answer of ``POST /api/intents``.

    :ivar intents: The intents recognised in the message.
    :ivar entities: The entities found in it.
    """

    intents: list[PredictedIntent] = attrs.Factory(list)
    entities: list[RecognizedEntity] = attrs.Factory(list)


def structure_legacy(raw: object, cls: type[T], what: str) -> T:
    """Read a decoded JSON body as ``cls``; raise ``ResponseDecodeError`` naming every bad field.

    The one converter of :mod:`ultimate_async.converter` reads these replies with the policy it
    applies to webhooks.  ``what`` names the call in the error message (e.g.
    ``"POST /api/v2/automation reply"``).
    """
    try:
        return structure(raw, cls)
    except PayloadError as exc:
        raise ResponseDecodeError(f"unexpected {what}", exc.errors) from None
