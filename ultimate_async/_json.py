"""JSON on the hot paths: orjson when installed (the ``speed`` extra), the stdlib otherwise.

Both produce compact UTF-8 bytes, so the wire format does not depend on what is installed.
One difference remains visible: orjson refuses integers beyond 64 bits, which then read as
invalid JSON (a webhook answered 400) instead of arbitrary-precision ints.
"""

from __future__ import annotations

import json
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


def _stdlib_loads(data: bytes | str) -> Any:
    try:
        return json.loads(data, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
