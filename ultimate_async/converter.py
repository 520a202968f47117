"""The one cattrs converter: wire JSON <-> the attrs models of :mod:`ultimate_async.models`.

Everything the SDK reads (webhook bodies, legacy API replies) goes through :data:`converter`,
with one policy:

* scalars are strict: text must be a JSON string, a flag a boolean, a number a number (an
  integer is a number; a boolean is not), so a wrong type never passes as something else;
* models are tolerant where the platform is vague: unknown keys are ignored and a missing or
  ``null`` field reads as its default (cattrs generates each model's function with
  ``make_dict_structure_fn``, given one hook per field that knows the field's default);
* an action parameter's ``value`` given as a scalar reads as a one-element list of strings;
* a wrong type raises :class:`~ultimate_async.errors.PayloadError` with one reason per field,
  in wire (camelCase) names, e.g. ``"expected a list, got string @ $.data.buttons"``.  Reasons
  never quote values.

Chat events are dispatched on their ``eventType`` tag (an unknown one becomes
:class:`UnknownChatEvent`); the flat shapes are told apart by their keys (``docs/platform.md``).
No aiohttp in here: the receiver core, the legacy client and the simulator share this module.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from types import UnionType
from typing import Any, Final, TypeVar, Union, get_args, get_origin

import attrs
import cattrs
from cattrs.errors import ClassValidationError, IterableValidationError, IterableValidationNote
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from ._json import loads
from .errors import PayloadError
from .models.webhooks import (
    ActionCall,
    ActionParam,
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

__all__ = [
    "CHAT_EVENT_TYPES",
    "converter",
    "parse_webhook",
    "parse_webhook_body",
    "structure",
    "to_wire",
    "webhook_body",
]

T = TypeVar("T")

#: The ``eventType`` of each chat event class (the envelope's discriminator).
CHAT_EVENT_TYPES: Final[dict[type[Any], str]] = {
    BotMessage: "sendMessage",
    Escalate: "escalate",
    TeamOnlineCheck: "isTeamOnline",
    WidgetEscalate: "widgetEscalate",
    WidgetMessage: "widgetMessage",
    WidgetEndSession: "widgetEndSession",
}

_CAMEL = re.compile(r"_([a-z])")

#: Attributes whose wire name is not simply the camelCase of the attribute.
_SPECIAL_WIRE_NAMES: Final[dict[tuple[type[Any], str], str]] = {(ActionCall, "params"): "data"}


def _wire_name(cls: type[Any], attribute: str) -> str:
    special = _SPECIAL_WIRE_NAMES.get((cls, attribute))
    return special or _CAMEL.sub(lambda m: m.group(1).upper(), attribute)


# --- field hooks ---------------------------------------------------------------------------------
#
# A hook takes the JSON value and the field's type, as cattrs calls it.  Each field gets its own
# hook that knows the field's default (``null`` below: a factory, or ``None`` when ``null`` is an
# error), so the tolerant-input rule costs nothing on a body without nulls and copies nothing.

_Hook = Callable[[Any, Any], Any]
_Null = Callable[[], Any] | None


class _WrongType(TypeError):
    """A value of the wrong JSON type; the message names the types, never the value."""


_JSON_TYPE_NAMES: Final[dict[type[Any], str]] = {
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    list: "list",
    dict: "object",
    type(None): "null",
}


def _json_type(value: object) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def _wrong(expected: str, value: object) -> _WrongType:
    return _WrongType(f"expected {expected}, got {_json_type(value)}")


def _exact(kind: type[Any], expected: str) -> Callable[[_Null], _Hook]:
    """Hooks accepting exactly the JSON type ``kind`` (``True`` is not a number, 1 not text)."""

    def make(null: _Null) -> _Hook:
        def structure_exact(value: Any, _: Any) -> Any:
            if type(value) is kind:
                return value
            if value is None and null is not None:
                return null()
            raise _wrong(expected, value)

        return structure_exact

    return make


def _number(null: _Null) -> _Hook:
    """Hooks for ``float`` fields: a JSON number, an integer one included."""

    def structure_number(value: Any, _: Any) -> float:
        if type(value) is float:
            return value
        if type(value) is int:
            return float(value)
        if value is None and null is not None:
            return null()  # type: ignore[no-any-return]
        raise _wrong("a number", value)

    return structure_number


_SCALARS: Final[dict[Any, Callable[[_Null], _Hook]]] = {
    str: _exact(str, "a string"),
    int: _exact(int, "an integer"),
    bool: _exact(bool, "a boolean"),
    float: _number,
    dict[str, Any]: _exact(dict, "an object"),
}


def _list(type_: Any, conv: cattrs.Converter, null: _Null = None) -> _Hook:
    """A strict list (a string is not a list of characters); errors carry the index."""
    (elem_type,) = get_args(type_)
    elem = conv.get_structure_hook(elem_type)

    def structure_list(value: Any, _: Any) -> list[Any]:
        if type(value) is not list:
            if value is None and null is not None:
                return null()  # type: ignore[no-any-return]
            raise _wrong("a list", value)
        out: list[Any] = []
        try:
            for item in value:
                out.append(elem(item, elem_type))
            return out
        except Exception:  # structure again below, collecting every element's reason
            pass
        errors: list[Exception] = []
        for index, item in enumerate(value):
            try:
                elem(item, elem_type)
            except Exception as exc:
                note = IterableValidationNote(f"Structuring @ index {index}", index, elem_type)
                exc.__notes__ = [*getattr(exc, "__notes__", []), note]
                errors.append(exc)
        raise IterableValidationError("While structuring a list", errors, type_)

    return structure_list


def _scalar_text(value: object) -> str:
    if type(value) is str:
        return value
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is int or type(value) is float:
        return str(value)
    raise _wrong("a string", value)


def _structure_param_value(value: Any, _: Any) -> list[str]:
    """Action parameter values are lists of strings; a scalar is read as a one-element list."""
    if type(value) is list:
        return [_scalar_text(item) for item in value]
    if value is None:
        return []
    return [_scalar_text(value)]


def _is_list(type_: Any) -> bool:
    return get_origin(type_) is list


def _optional_of(type_: Any) -> Any:
    """``X`` for ``X | None``, else ``None``."""
    args = get_args(type_)
    if get_origin(type_) in (Union, UnionType) and len(args) == 2 and type(None) in args:
        return args[0] if args[1] is type(None) else args[1]
    return None


def _none() -> None:
    return None


def _hook(type_: Any, null: _Null, conv: cattrs.Converter) -> _Hook:
    """The hook for ``type_`` reading ``null`` as ``null()`` (``null`` None: an error)."""
    inner = _optional_of(type_)
    if inner is not None:
        type_, null = inner, null or _none
    scalar = _SCALARS.get(type_)
    if scalar is not None:
        return scalar(null)
    if _is_list(type_):
        return _list(type_, conv, null)
    hook = conv.get_structure_hook(type_)
    if null is None:
        return hook

    def structure_nullable(value: Any, cls: Any) -> Any:
        return null() if value is None else hook(value, cls)

    return structure_nullable


def _default(field: attrs.Attribute[Any]) -> _Null:
    """What ``null`` reads as for ``field``: its default (a factory is called each time)."""
    default = field.default
    if default is attrs.NOTHING:
        return None
    factory: Callable[[], Any] | None = getattr(default, "factory", None)
    if isinstance(default, attrs.Factory) and factory is not None:  # type: ignore[arg-type]
        return factory
    return lambda: default


#: Fields read by a hook of their own rather than by their type's.
_FIELD_HOOKS: Final[dict[tuple[type[Any], str], _Hook]] = {
    (ActionParam, "value"): _structure_param_value,
}

#: Each model's generated function, without the check that the value is an object: for
#: :func:`parse_webhook`, which has made it already.
_GENERATED: Final[dict[type[Any], _Hook]] = {}


def _model_hook(cls: Any, conv: cattrs.Converter) -> _Hook:
    """cattrs' generated function for ``cls``: wire names, unknown keys ignored, null = default."""
    attrs.resolve_types(cls)
    fields = {}
    for field in attrs.fields(cls):
        hook = _FIELD_HOOKS.get((cls, field.name)) or _hook(field.type, _default(field), conv)
        fields[field.name] = override(rename=_wire_name(cls, field.name), struct_hook=hook)
    generated = make_dict_structure_fn(cls, conv, **fields)  # type: ignore[arg-type]
    _GENERATED[cls] = generated

    def structure_model(value: Any, _: Any) -> Any:
        if type(value) is not dict:
            raise _wrong("an object", value)
        return generated(value, cls)

    return structure_model


def _model_unhook(cls: Any, conv: cattrs.Converter) -> Callable[[Any], dict[str, Any]]:
    """Wire names out; ``None`` fields omitted (the platform has no use for explicit nulls)."""
    renames: dict[str, Any] = {
        name: override(rename=_wire_name(cls, name))
        for name in attrs.fields_dict(cls)
        if _wire_name(cls, name) != name
    }
    generated = make_dict_unstructure_fn(cls, conv, **renames)

    def unstructure_model(obj: Any) -> dict[str, Any]:
        return {key: value for key, value in generated(obj).items() if value is not None}

    return unstructure_model


def _is(type_: Any) -> Callable[[Any], bool]:
    return lambda t: bool(t == type_)


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(detailed_validation=True, forbid_extra_keys=False)
    for type_, scalar in _SCALARS.items():
        conv.register_structure_hook_func(_is(type_), scalar(None))
    conv.register_structure_hook_factory(_is_list, _list)
    conv.register_structure_hook_factory(
        lambda t: _optional_of(t) is not None, lambda t, c: _hook(t, _none, c)
    )
    conv.register_structure_hook_factory(attrs.has, _model_hook)
    conv.register_unstructure_hook(UnknownChatEvent, lambda event: dict(event.raw))
    conv.register_unstructure_hook(UnknownWebhook, lambda event: dict(event.raw))
    conv.register_unstructure_hook_factory(attrs.has, _model_unhook)
    return conv


converter: Final = _make_converter()
"""The SDK's converter: strict scalars, tolerant models, wire names (see the module docstring)."""


def _generated(cls: type[Any]) -> _Hook:
    converter.get_structure_hook(cls)  # generates (and records) the function
    return _GENERATED[cls]


#: The tagged union of chat events: ``eventType`` -> (class, its structure function).  (cattrs'
#: ``configure_tagged_union`` with a default keeps every unknown tag it is given in a
#: ``defaultdict``: memory a sender of random ``eventType`` values could grow without bound.)
_CHAT_EVENTS: Final[dict[str, tuple[type[Any], _Hook]]] = {
    tag: (cls, _generated(cls)) for cls, tag in CHAT_EVENT_TYPES.items()
}
_ACTION: Final = _generated(ActionCall)
_ALERT: Final = _generated(Alert)
_TICKET: Final = _generated(TicketReply)


# --- errors -------------------------------------------------------------------------------------


def _format(exc: BaseException) -> str:
    if isinstance(exc, _WrongType):
        return str(exc)
    if isinstance(exc, KeyError):
        return "required field missing"
    return "invalid value"


def _reasons(exc: BaseException, path: str) -> list[str]:
    """Like ``cattrs.transform_error`` but with wire (camelCase) names and no values quoted."""
    errors: list[str] = []
    if isinstance(exc, IterableValidationError):
        with_notes, without = exc.group_exceptions()
        for sub, inote in with_notes:
            errors.extend(_reasons(sub, f"{path}[{inote.index!r}]"))
        errors.extend(f"{_format(sub)} @ {path}" for sub in without)
    elif isinstance(exc, ClassValidationError):
        cnotes, cwithout = exc.group_exceptions()
        for sub, cnote in cnotes:
            errors.extend(_reasons(sub, f"{path}.{_wire_name(exc.cl, cnote.name)}"))
        errors.extend(f"{_format(sub)} @ {path}" for sub in cwithout)
    else:
        errors.append(f"{_format(exc)} @ {path}")
    return errors


def structure(value: object, cls: type[T], path: str = "$") -> T:
    """Read decoded JSON as ``cls`` with the SDK's policy.

    Raises :class:`PayloadError` whose ``errors`` name every bad field (``"... @ $.a.b"``).
    """
    try:
        result: T = converter.get_structure_hook(cls)(value, cls)
    except Exception as exc:
        raise PayloadError(_reasons(exc, path)) from None
    return result


# --- parsing ------------------------------------------------------------------------------------


def parse_webhook(raw: object) -> Webhook:
    """Structure one parsed JSON body into its model.

    Raises :class:`PayloadError` with field-level reasons when the body cannot be a webhook.
    """
    if type(raw) is not dict:
        raise PayloadError([f"expected a JSON object, got {_json_type(raw)} @ $"])
    data = raw.get("data")
    generated: Callable[[dict[str, Any], Any], Any]
    if type(data) is dict and "eventType" in data:
        event_type = data["eventType"]
        if type(event_type) is not str:
            raise PayloadError(
                [f"expected a string, got {_json_type(event_type)} @ $.data.eventType"]
            )
        entry = _CHAT_EVENTS.get(event_type)
        if entry is None:
            pcid = data.get("platformConversationId")
            return UnknownChatEvent(event_type, data, pcid if type(pcid) is str else None)
        cls, generated = entry
        value, path = data, "$.data"
    else:
        if data is not None and type(data) is not dict and type(data) is not list:
            raise PayloadError([f"expected an object or a list, got {_json_type(data)} @ $.data"])
        if type(raw.get("name")) is str and (data is None or type(data) is list):
            cls, generated = ActionCall, _ACTION
        elif "botName" in raw and "event" in raw:
            cls, generated = Alert, _ALERT
        elif "predictedIntents" in raw or (
            "text" in raw and "conversationId" in raw and data is None
        ):
            cls, generated = TicketReply, _TICKET
        else:
            return UnknownWebhook(raw)
        value, path = raw, "$"
    try:
        return generated(value, cls)  # type: ignore[no-any-return]
    except Exception as exc:
        raise PayloadError(_reasons(exc, path)) from None


def parse_webhook_body(body: bytes) -> tuple[dict[str, Any], Webhook]:
    """Decode and structure a raw webhook body: ``(parsed_dict, model)``.

    Raises :class:`PayloadError` for invalid JSON (the reason names the position, not content).
    """
    try:
        raw = loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else "malformed"
        raise PayloadError([f"invalid JSON ({_safe_json_error(detail)}) @ $"]) from None
    return raw, parse_webhook(raw)


_JSON_ERROR_POSITION = re.compile(r"line \d+ column \d+ \(char \d+\)")


def _safe_json_error(detail: str) -> str:
    """Keep only the position of a JSON error: some decoders quote the offending text."""
    match = _JSON_ERROR_POSITION.search(detail)
    return match.group(0) if match else "malformed"


# --- unstructuring ------------------------------------------------------------------------------


def to_wire(model: Any) -> dict[str, Any]:
    """A model as its wire object: camelCase names, ``None`` fields omitted.

    For chat events this is the ``data`` object (with ``eventType``); see :func:`webhook_body`.
    """
    out: dict[str, Any] = converter.unstructure(model)
    event_type = CHAT_EVENT_TYPES.get(type(model))
    if event_type is not None:
        return {"eventType": event_type, **out}
    return out


def webhook_body(
    event: Webhook, *, bot_id: str | None = None, channel: str | None = "chat"
) -> dict[str, Any]:
    """The full body the platform would POST for ``event`` (chat events get the envelope)."""
    if isinstance(event, UnknownWebhook):
        return dict(event.raw)
    if isinstance(event, UnknownChatEvent):
        data: dict[str, Any] = {"eventType": event.event_type, **event.raw}
    elif type(event) in CHAT_EVENT_TYPES:
        data = to_wire(event)
    else:
        body = to_wire(event)
        if bot_id is not None:
            body.setdefault("botId", bot_id)
        return body
    envelope: dict[str, Any] = {}
    if bot_id is not None:
        envelope["botId"] = bot_id
    if channel is not None:
        envelope["channel"] = channel
    envelope["data"] = data
    return envelope
