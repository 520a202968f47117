"""Replies of the legacy synchronous v2 APIs on chat.ultimate.ai, and how we read them.

The documentation of these endpoints is thin (API_SPEC §3.5), so reading is tolerant: unknown
keys are ignored and ``null`` reads as the field's default.  What does not fit at all (a list
where an object belongs, text where a number belongs) raises ``ResponseDecodeError`` listing
every field-level reason, instead of handing the caller a half-filled object.

This module has its own small cattrs converter: the shared webhook converter belongs to the
receiving half and is tuned for webhooks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.cols import is_sequence, list_structure_factory
from cattrs.gen import make_dict_structure_fn, override

from ..errors import ResponseDecodeError
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
    """A reply button; a ``link`` button opens a URL and must not be sent back as text."""

    text: str = ""
    link: str | None = None

    @property
    def is_link(self) -> bool:
        """Whether this button opens ``link`` rather than answering the bot."""
        return bool(self.link)


@attrs.frozen
class AutomationMessage:
    """One bot message; ``forward_to_human`` means the bot asks for an escalation."""

    text: str = ""
    forward_to_human: bool = False
    buttons: list[AutomationButton] = attrs.Factory(list)


@attrs.frozen
class Entity:
    """An entity extracted from the visitor's message by ``/api/v2/automation``."""

    name: str = ""
    value: str = ""


@attrs.frozen
class DetectedLanguage:
    """A language guess; ``value`` is an ISO 639-3 code such as ``"eng"``."""

    value: str = ""
    confidence: float | None = None


@attrs.frozen
class AutomationReply:
    """The synchronous answer of ``POST /api/v2/automation``."""

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
    """An entity found by ``POST /api/intents`` (field types are undocumented; read leniently)."""

    name: str = ""
    confidence: float | None = None
    form: str | None = None
    index: int | None = None
    id: str | None = None
    sanitize: bool = False


@attrs.frozen
class IntentsResult:
    """The answer of ``POST /api/intents``."""

    intents: list[PredictedIntent] = attrs.Factory(list)
    entities: list[RecognizedEntity] = attrs.Factory(list)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _structure_str(value: object, _: type) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # an id or entity value sent as a number
    raise ValueError(f"expected a string, got {type(value).__name__}")


def _structure_float(value: object, _: type) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"expected a number, got {type(value).__name__}")


def _structure_int(value: object, _: type) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ValueError(f"expected an integer, got {type(value).__name__}")


def _structure_bool(value: object, _: type) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError(f"expected a boolean, got {type(value).__name__}")


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=False)
    converter.register_structure_hook(str, _structure_str)
    converter.register_structure_hook(float, _structure_float)
    converter.register_structure_hook(int, _structure_int)
    converter.register_structure_hook(bool, _structure_bool)

    def list_factory(type_: Any, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
        # cattrs would happily iterate a string or a dict; the wire says array.
        inner = list_structure_factory(type_, conv)

        def structure(value: Any, t: Any) -> Any:
            if not isinstance(value, list):
                raise ValueError(f"expected an array, got {type(value).__name__}")
            return inner(value, t)

        return structure

    def attrs_factory(cls: type[Any], conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
        renames = {a.name: override(rename=_camel(a.name)) for a in attrs.fields(cls)}
        inner = make_dict_structure_fn(cls, conv, **renames)  # type: ignore[arg-type]

        def structure(value: Any, t: Any) -> Any:
            if not isinstance(value, Mapping):
                raise ValueError(f"expected an object, got {type(value).__name__}")
            # null reads as "absent", so the attribute's default applies.
            return inner({k: v for k, v in value.items() if v is not None}, t)

        return structure

    converter.register_structure_hook_factory(is_sequence, list_factory)
    converter.register_structure_hook_factory(attrs.has, attrs_factory)
    return converter


_converter = _make_converter()


def structure_legacy(raw: object, cls: type[T], what: str) -> T:
    """Read a decoded JSON body as ``cls``; raise ``ResponseDecodeError`` naming every bad field.

    ``what`` names the call in the error message (e.g. ``"POST /api/v2/automation reply"``).
    """
    try:
        return _converter.structure(raw, cls)
    except Exception as exc:  # cattrs raises class/iterable validation groups or plain errors
        reasons = cattrs.transform_error(exc, path="$", format_exception=_describe)
        # cattrs names attributes; the server (and the reader of the error) speaks wire names.
        reasons = [_ATTR_IN_PATH.sub(lambda m: "." + _camel(m.group(1)), r) for r in reasons]
        raise ResponseDecodeError(f"unexpected {what}", reasons) from exc


_ATTR_IN_PATH = re.compile(r"\.([a-z][a-z0-9_]*)")


def _describe(exc: BaseException, type_: type | None) -> str:
    if isinstance(exc, KeyError):
        return "required field missing"
    if isinstance(exc, ValueError | TypeError) and str(exc).startswith("expected "):
        return str(exc)  # our own hooks' messages are already precise
    name = getattr(type_, "__name__", None) or str(type_)
    return f"invalid value, expected {name}"
