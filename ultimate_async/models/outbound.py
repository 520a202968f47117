"""What we send to the platform: session parameters (``MetaData``) and action results.

Both are tiny frozen attrs classes.  Their ``repr`` masks ``value`` when ``sanitize=True`` so a
logged request or a failing test never prints the PII the flag is meant to protect.  Wire
serialization is a plain dict (``to_wire``) built by hand: it runs on the send hot path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeAlias

import attrs

__all__ = [
    "ActionResult",
    "MetaData",
    "MetaDataInput",
    "add_metadata",
    "metadata_to_wire",
    "require_nonempty",
    "sanitized_values",
]

_MASK = "'***'"


def _masked_repr(self: MetaData | ActionResult) -> str:
    value = _MASK if self.sanitize else repr(self.value)
    suffix = ", sanitize=True" if self.sanitize else ""
    return f"{type(self).__name__}(key={self.key!r}, value={value}{suffix})"


def _to_wire(self: MetaData | ActionResult) -> dict[str, Any]:
    """The ``{key, value[, sanitize]}`` wire object (``sanitize`` only when true)."""
    if self.sanitize:
        return {"key": self.key, "value": self.value, "sanitize": True}
    return {"key": self.key, "value": self.value}


@attrs.frozen(repr=False)
class MetaData:
    """One session parameter sent with ``metaData``; ``sanitize=True`` marks PII.

    ``sanitize`` goes on the wire only when ``True``.

    :ivar key: The parameter's name, as dialogues and actions refer to it.
    :ivar value: Its value (the platform stores strings).
    :ivar sanitize: Whether the value is personal data: the platform hides it, and this class's
        ``repr`` masks it.
    """

    key: str
    value: str
    sanitize: bool = False

    __repr__ = _masked_repr
    to_wire = _to_wire


@attrs.frozen(repr=False)
class ActionResult:
    """One session variable returned from an action webhook (``{"results": [...]}``).

    :ivar key: The session variable to set (usually the parameter's ``save_as``).
    :ivar value: Its value: usually a string, but the platform stores any JSON value.
    :ivar sanitize: Whether the value is personal data: the platform hides it, and this class's
        ``repr`` masks it.
    """

    key: str
    value: Any
    sanitize: bool = False

    __repr__ = _masked_repr
    to_wire = _to_wire


#: What every ``metadata=`` parameter accepts.
MetaDataInput: TypeAlias = Mapping[str, str] | Iterable[MetaData]


def metadata_to_wire(metadata: MetaDataInput, argument: str = "metadata") -> list[dict[str, Any]]:
    """Validate ``metadata`` and build the wire ``metaData`` list.

    Raises ``ValueError`` naming ``argument`` for a non-string key or value, so a bad call fails
    before anything is sent (the platform only stores strings).
    """
    out: list[dict[str, Any]] = []
    if isinstance(metadata, Mapping):
        for key, value in metadata.items():
            if type(key) is not str or type(value) is not str:
                _bad_metadata(argument, key, value)
            out.append({"key": key, "value": value})
        return out
    if isinstance(metadata, str | bytes):
        raise ValueError(f"{argument} must be a mapping or an iterable of MetaData, not a string")
    for item in metadata:
        if not isinstance(item, MetaData):
            raise ValueError(
                f"{argument} items must be MetaData instances, got {type(item).__name__}"
            )
        if not isinstance(item.key, str) or not isinstance(item.value, str):
            _bad_metadata(argument, item.key, item.value)
        out.append(item.to_wire())
    return out


def sanitized_values(wire: list[dict[str, Any]]) -> list[str]:
    """The values of a wire ``metaData`` list marked ``sanitize``: never shown in an error."""
    return [item["value"] for item in wire if item.get("sanitize")]


def require_nonempty(name: str, value: object) -> str:
    """``value`` if it is a non-blank string; else a ``ValueError`` naming argument ``name``."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


def add_metadata(body: dict[str, Any], key: str, metadata: MetaDataInput) -> list[str]:
    """Put ``metadata`` on ``body`` under ``key``; return its sanitized values (to redact)."""
    wire = body[key] = metadata_to_wire(metadata)
    return sanitized_values(wire)


def _bad_metadata(argument: str, key: object, value: object) -> None:
    # Name the offending key and the types only: a value may be PII.
    shown = repr(key) if isinstance(key, str) else f"of type {type(key).__name__}"
    raise ValueError(
        f"{argument}: keys and values must be str (key {shown} has a {type(value).__name__} value)"
    )
