"""The one cattrs converter: wire JSON <-> the attrs models of :mod:`ultimate_async.models`.

Inbound parsing is tolerant where the platform is vague and strict where a wrong type would
hide a bug:

* one endpoint receives every shape; :func:`parse_webhook` tells them apart with plain dict
  checks (API_SPEC §4 "Discriminating") and then calls a pre-built structure function;
* unknown keys are ignored, a missing or ``null`` field reads as its default, an unknown
  ``eventType`` or shape becomes :class:`UnknownChatEvent` / :class:`UnknownWebhook`;
* a wrong type (``buttons`` not a list, a number where text belongs, ``data`` neither an object
  nor a list) raises :class:`~ultimate_async.errors.PayloadError` with one reason per field,
  e.g. ``"expected a list, got str @ $.data.buttons"``.  Reasons never quote the values.

No aiohttp in here: the receiver core and the simulator share this module.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

import attrs
import cattrs
from cattrs.errors import (
    ClassValidationError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from ._json import loads
from .errors import PayloadError
from .models.webhooks import (
    ActionCall,
    ActionParam,
    Alert,
    BotMessage,
    Button,
    CarouselCard,
    Escalate,
    TeamOnlineCheck,
    TicketAttachment,
    TicketIntent,
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

#: Attribute names whose wire name is not simply the camelCase of the attribute.
_SPECIAL_WIRE_NAMES: Final[dict[type[Any], dict[str, str]]] = {ActionCall: {"params": "data"}}


def _wire_name(cls: type[Any], attribute: str) -> str:
    special = _SPECIAL_WIRE_NAMES.get(cls, {}).get(attribute)
    return special or _CAMEL.sub(lambda m: m.group(1).upper(), attribute)


def _attr_wire_name(attribute: str) -> str:
    if attribute == "params":
        return "data"
    return _CAMEL.sub(lambda m: m.group(1).upper(), attribute)


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


# --- the converter ------------------------------------------------------------------------------

converter: Final = cattrs.Converter(detailed_validation=True, forbid_extra_keys=False)
"""The SDK's converter. Hooks below make scalars strict and models tolerant."""


def _structure_str(value: Any, _: Any) -> str:
    if type(value) is str:
        return value
    raise _wrong("a string", value)


def _structure_float(value: Any, _: Any) -> float:
    kind = type(value)
    if kind is float:
        return value  # type: ignore[no-any-return]
    if kind is int:
        return float(value)
    raise _wrong("a number", value)


def _structure_bool(value: Any, _: Any) -> bool:
    if type(value) is bool:
        return value
    raise _wrong("a boolean", value)


def _structure_object(value: Any, _: Any) -> dict[str, Any]:
    if type(value) is dict:
        return value
    raise _wrong("an object", value)


def _scalar_text(value: object) -> str:
    if type(value) is str:
        return value
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) in (int, float):
        return str(value)
    raise _wrong("a string", value)


def _structure_param_value(value: Any, _: Any) -> list[str]:
    """Action parameter values are lists of strings; a scalar is read as a one-element list."""
    if type(value) is list:
        return [_scalar_text(item) for item in value]
    return [_scalar_text(value)]


def _register_exact(exact: Any, hook: Callable[[Any, Any], Any]) -> None:
    """Register a hook for one parametrised generic (singledispatch cannot take those)."""
    converter.register_structure_hook_func(lambda t: bool(t == exact), hook)


converter.register_structure_hook(str, _structure_str)
converter.register_structure_hook(float, _structure_float)
converter.register_structure_hook(bool, _structure_bool)
_register_exact(dict[str, Any], _structure_object)


def _list_hook(elem_type: type[T]) -> Callable[[Any, Any], list[T]]:
    """A strict list hook: a string is not a list of characters; errors carry the index."""
    elem = converter.get_structure_hook(elem_type)

    def structure_list(value: Any, list_type: Any) -> list[T]:
        if type(value) is not list:
            raise _wrong("a list", value)
        try:
            return [elem(item, elem_type) for item in value]
        except Exception:
            pass
        errors: list[Exception] = []
        out: list[T] = []
        for index, item in enumerate(value):
            try:
                out.append(elem(item, elem_type))
            except Exception as exc:
                note = IterableValidationNote(f"Structuring @ index {index}", index, elem_type)
                exc.__notes__ = [*getattr(exc, "__notes__", []), note]
                errors.append(exc)
        raise IterableValidationError("While structuring a list", errors, list_type)

    return structure_list


def _tolerant(hook: Callable[[Mapping[str, Any], Any], T]) -> Callable[[Any, Any], T]:
    """Refuse non-objects; read ``null`` fields as their defaults by dropping them first."""

    def structure(value: Any, cls: Any) -> T:
        if type(value) is not dict:
            raise _wrong("an object", value)
        if None in value.values():
            value = {k: v for k, v in value.items() if v is not None}
        return hook(value, cls)

    return structure


def _register_model(cls: type[Any]) -> None:
    attrs.resolve_types(cls)
    renames: dict[str, Any] = {}
    for field in attrs.fields(cls):
        wire = _wire_name(cls, field.name)
        if field.name == "value" and cls is ActionParam:
            renames[field.name] = override(struct_hook=_structure_param_value)
        elif wire != field.name:
            renames[field.name] = override(rename=wire)
    base = make_dict_structure_fn(cls, converter, _cattrs_forbid_extra_keys=False, **renames)
    converter.register_structure_hook(cls, _tolerant(base))
    wire_names: dict[str, Any] = {
        name: override(rename=_wire_name(cls, name))
        for name in attrs.fields_dict(cls)
        if _wire_name(cls, name) != name
    }
    unstructure = make_dict_unstructure_fn(cls, converter, **wire_names)

    def unstructure_without_none(obj: Any) -> dict[str, Any]:
        return {k: v for k, v in unstructure(obj).items() if v is not None}

    converter.register_unstructure_hook(cls, unstructure_without_none)


# Leaves first: a model's structure function looks its field hooks up when it is built.
for _leaf in (Button, TicketIntent, TicketAttachment, ActionParam):
    _register_model(_leaf)
_register_exact(list[Button], _list_hook(Button))
_register_model(CarouselCard)
for _elem in (CarouselCard, TicketIntent, TicketAttachment, ActionParam):
    _register_exact(list[_elem], _list_hook(_elem))  # type: ignore[valid-type]
for _model in (*CHAT_EVENT_TYPES, TicketReply, ActionCall, Alert):
    _register_model(_model)

converter.register_unstructure_hook(UnknownChatEvent, lambda event: dict(event.raw))
converter.register_unstructure_hook(UnknownWebhook, lambda event: dict(event.raw))


# --- fast path ----------------------------------------------------------------------------------
#
# cattrs' detailed validation builds a result dict, guards every field and collects errors: most
# of the cost of a delivery's structuring.  For each webhook model we also generate a straight-
# line function that accepts only what the cattrs path accepts and builds the same object.  On
# anything unusual (a wrong type, a missing required field) it gives up, and the cattrs path
# runs to produce the field-level reasons: the fast path never decides that a body is invalid.
# Why not a second cattrs converter with detailed_validation=False?  Measured (callgrind, the
# whole handle() of a sendMessage delivery): 202k instructions against 182k with this path; the
# per-field hook calls, not the error collection, are what costs.


class _NotFast(Exception):
    """The fast path gives up; the cattrs path decides."""


_FAST: dict[type[Any], Callable[[Any], Any]] = {}


def _fast_field(cls: type[Any], field: Any, n: int, env: dict[str, Any]) -> list[str] | None:
    """Source lines setting ``a{n}`` from ``o`` for one field, or None when not supported."""
    wire = _wire_name(cls, field.name)
    lines = [f"    v = o.get({wire!r})"]
    default = field.default
    if default is attrs.NOTHING:
        lines.append("    if v is None: raise _NotFast")
    elif isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        if default.takes_self:
            return None
        env[f"f{n}"] = default.factory
        lines.append(f"    if v is None: a{n} = f{n}()")
    else:
        env[f"d{n}"] = default
        lines.append(f"    if v is None: a{n} = d{n}")
    kind = field.type
    if cls is ActionParam and field.name == "value":
        env["_param_value"] = _structure_param_value
        lines.append(f"    else: a{n} = _param_value(v, None)")  # strict itself
        return lines
    elif kind in (str, str | None):
        lines.append(f"    elif type(v) is str: a{n} = v")
    elif kind in (float, float | None):
        lines.append(f"    elif type(v) is float: a{n} = v")
        lines.append(f"    elif type(v) is int: a{n} = float(v)")
    elif kind is bool:
        lines.append(f"    elif type(v) is bool: a{n} = v")
    elif kind == dict[str, Any]:
        lines.append(f"    elif type(v) is dict: a{n} = v")
    elif getattr(kind, "__origin__", None) is list and kind.__args__[0] in _FAST:
        env[f"s{n}"] = _FAST[kind.__args__[0]]
        lines.append(f"    elif type(v) is list: a{n} = [s{n}(x) for x in v]")
    else:
        return None
    lines.append("    else: raise _NotFast")
    return lines


def _make_fast(cls: type[Any]) -> None:
    env: dict[str, Any] = {"_NotFast": _NotFast, "cls": cls}
    lines = [
        "def fast(o):",
        "    if type(o) is not dict: raise _NotFast",
    ]
    fields = attrs.fields(cls)
    for n, field in enumerate(fields):
        if not field.init or field.kw_only or field.validator or field.converter:
            return
        field_lines = _fast_field(cls, field, n, env)
        if field_lines is None:
            return
        lines.extend(field_lines)
    lines.append(f"    return cls({', '.join(f'a{n}' for n in range(len(fields)))})")
    exec(compile("\n".join(lines), f"<fast structure {cls.__name__}>", "exec"), env)
    _FAST[cls] = env["fast"]


for _model in (Button, TicketIntent, TicketAttachment, ActionParam, CarouselCard):
    _make_fast(_model)
for _model in (*CHAT_EVENT_TYPES, TicketReply, ActionCall, Alert):
    _make_fast(_model)


def _hook(cls: type[T]) -> Callable[[Any, Any], T]:
    """The structure function parse_webhook uses: fast when it can be, cattrs otherwise."""
    slow = converter.get_structure_hook(cls)
    fast = _FAST.get(cls)
    if fast is None:
        return slow

    def structure(value: Any, cls: Any) -> T:
        try:
            return fast(value)  # type: ignore[no-any-return]
        except Exception:  # any doubt: let cattrs decide and explain
            return slow(value, cls)  # type: ignore[no-any-return]

    return structure


_CHAT_HOOKS: Final[dict[str, tuple[type[Any], Callable[[Any, Any], Any]]]] = {
    event_type: (cls, _hook(cls)) for cls, event_type in CHAT_EVENT_TYPES.items()
}
_ACTION_HOOK: Final = _hook(ActionCall)
_ALERT_HOOK: Final = _hook(Alert)
_TICKET_HOOK: Final = _hook(TicketReply)


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
            errors.extend(_reasons(sub, f"{path}.{_attr_wire_name(cnote.name)}"))
        errors.extend(f"{_format(sub)} @ {path}" for sub in cwithout)
    else:
        errors.append(f"{_format(exc)} @ {path}")
    return errors


def _structure(hook: Callable[[Any, Any], T], value: Any, cls: type[T], path: str) -> T:
    try:
        return hook(value, cls)
    except PayloadError:
        raise
    except Exception as exc:
        raise PayloadError(_reasons(exc, path)) from None


# --- parsing ------------------------------------------------------------------------------------


def parse_webhook(raw: object) -> Webhook:
    """Structure one parsed JSON body into its model.

    Raises :class:`PayloadError` with field-level reasons when the body cannot be a webhook.
    """
    if type(raw) is not dict:
        raise PayloadError([f"expected a JSON object, got {_json_type(raw)} @ $"])
    data = raw.get("data")
    if type(data) is dict and "eventType" in data:
        event_type = data["eventType"]
        if type(event_type) is not str:
            raise PayloadError(
                [f"expected a string, got {_json_type(event_type)} @ $.data.eventType"]
            )
        entry = _CHAT_HOOKS.get(event_type)
        if entry is not None:
            return _structure(entry[1], data, entry[0], "$.data")  # type: ignore[no-any-return]
        pcid = data.get("platformConversationId")
        return UnknownChatEvent(event_type, data, pcid if type(pcid) is str else None)
    if data is not None and type(data) is not dict and type(data) is not list:
        raise PayloadError([f"expected an object or a list, got {_json_type(data)} @ $.data"])
    if type(raw.get("name")) is str and (data is None or type(data) is list):
        return _structure(_ACTION_HOOK, raw, ActionCall, "$")
    if "botName" in raw and "event" in raw:
        return _structure(_ALERT_HOOK, raw, Alert, "$")
    if "predictedIntents" in raw or ("text" in raw and "conversationId" in raw and data is None):
        return _structure(_TICKET_HOOK, raw, TicketReply, "$")
    return UnknownWebhook(raw)


def parse_webhook_body(body: bytes) -> tuple[dict[str, Any], Webhook]:
    """Decode and structure a raw webhook body: ``(parsed_dict, model)``.

    Raises :class:`PayloadError` for invalid JSON (the reason names the position, not content).
    """
    try:
        raw = loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else "malformed"
        raise PayloadError([f"invalid JSON ({_safe_json_error(detail)}) @ $"]) from None
    event = parse_webhook(raw)
    return raw, event


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
