"""JSON on the hot paths: orjson when installed (the ``speed`` extra), the stdlib otherwise.

Both produce compact UTF-8 bytes, so the wire format does not depend on what is installed.
One difference remains visible: orjson refuses integers beyond 64 bits, which then read as
invalid JSON (a webhook answered 400) instead of arbitrary-precision ints.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
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


#: One decoder for every call: ``json.loads(data, parse_constant=...)`` would build a new
#: ``JSONDecoder`` (and its scanner) per call, about as costly as decoding a webhook.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)
#: The decoder's scanner (set by ``JSONDecoder.__init__``; ``decode`` calls it between two
#: whitespace matches).
_SCAN_ONCE: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]

#: Where a lone UTF-16 surrogate could come from in the decoded text: a ``\\uD800``-``\\uDFFF``
#: escape, or a surrogate code point (bytes are decoded with ``surrogatepass``, as json.loads does).
_SURROGATE_HINT = re.compile(r"\\u[dD][89a-fA-F]|[\ud800-\udfff]")


def _stdlib_loads(data: bytes | str) -> Any:
    """``json.loads`` semantics (encoding detection, ``surrogatepass``, BOM refusal) plus ours."""
    if type(data) is bytes and data[:2] == b'{"':  # a JSON object in UTF-8: no detection needed
        text = data.decode("utf-8", "surrogatepass")
    elif isinstance(data, str):
        if data.startswith("\ufeff"):
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", data, 0)
        text = data
    elif isinstance(data, bytes | bytearray):
        text = data.decode(json.detect_encoding(data), "surrogatepass")
    else:
        kind = type(data).__name__
        raise TypeError(f"the JSON object must be str, bytes or bytearray, not {kind}")
    try:
        value = _decode(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    # Both membership tests are O(1) or memchr-fast; the regex only runs on bodies with an
    # escape or non-ASCII text, and the full walk only when a surrogate may be there.
    if ("\\" in text or not text.isascii()) and _SURROGATE_HINT.search(text):
        _refuse_lone_surrogates(value)
    return value


def _decode(text: str) -> Any:
    """``_DECODER.decode(text)``.  A document that starts with an object goes to the scanner at
    once: ``decode`` wraps it in two regular-expression matches for the surrounding whitespace,
    a good part of its cost on a webhook body.  Anything else (whitespace around the value, an
    error to report) is left to ``decode``."""
    if text[:1] == "{":
        try:
            value, end = _SCAN_ONCE(text, 0)
        except StopIteration:  # (a value missing inside: decode names it)
            pass
        else:
            if end == len(text):
                return value
    return _DECODER.decode(text)


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
