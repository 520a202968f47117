"""JSON on the hot paths: orjson when installed (the ``speed`` extra), the stdlib otherwise.

Both produce compact UTF-8 bytes, so the wire format does not depend on what is installed.
One difference remains visible: orjson refuses integers beyond 64 bits, which then read as
invalid JSON (a webhook answered 400) instead of arbitrary-precision ints.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["dumps", "loads", "orjson_available"]

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None  # type: ignore[assignment,unused-ignore]

#: Whether the fast encoder is in use (shown by the benchmarks).
orjson_available: bool = _orjson is not None


def dumps(obj: Any) -> bytes:
    """Encode ``obj`` as compact UTF-8 JSON bytes."""
    if _orjson is not None:
        encoded: bytes = _orjson.dumps(obj)
        return encoded
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(data: bytes | str) -> Any:
    """Decode JSON; raises ``ValueError`` (or ``UnicodeDecodeError``) on invalid input.

    The stdlib path is made to refuse what orjson refuses: ``NaN``/``Infinity`` literals, and
    nesting deep enough to exhaust the recursion limit (a ``RecursionError`` would otherwise
    escape as a server error).
    """
    if _orjson is not None:
        return _orjson.loads(data)
    return _stdlib_loads(data)


#: Where a lone UTF-16 surrogate could come from: a ``\\uD800``-``\\uDFFF`` escape, or (bytes
#: are decoded with ``surrogatepass``) a CESU-style ``ED A0..BF`` sequence.
_SURROGATE_HINT_BYTES = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")
_SURROGATE_HINT_STR = re.compile(r"\\u[dD][89a-fA-F]|[\ud800-\udfff]")


def _stdlib_loads(data: bytes | str) -> Any:
    try:
        value = json.loads(data, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    hint = _SURROGATE_HINT_BYTES if isinstance(data, bytes) else _SURROGATE_HINT_STR
    if hint.search(data):  # type: ignore[arg-type]  # the pattern matches the data's type
        _refuse_lone_surrogates(value)
    return value


def _refuse_lone_surrogates(value: Any) -> None:
    """Such strings cannot be encoded again (to forward, store or print): refuse them here."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode()
            except UnicodeEncodeError:
                raise ValueError("JSON contains a lone UTF-16 surrogate") from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
