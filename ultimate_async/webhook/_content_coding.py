"""Request bodies sent with ``Content-Encoding``: gzip and deflate, decoded with a size cap.

Nothing says Ultimate compresses its deliveries, but an aiohttp app decodes them, so the
httptools backend of ``WebhookServer`` does too: a proxy in between may compress.  The cap
applies to the decoded size (a small compressed body must not inflate into gigabytes).
"""

from __future__ import annotations

import zlib
from typing import Final

from .response import TOO_LARGE, WebhookResponse

__all__ = ["SUPPORTED", "ContentCodingError", "decode", "supported", "unsupported"]

#: ``Content-Encoding`` values understood (case-insensitive), with zlib's ``wbits`` for each.
SUPPORTED: Final = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": 0}


class ContentCodingError(ValueError):
    """The body does not decode; ``status`` is the HTTP answer (400, 413 or 415)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status

    @property
    def response(self) -> WebhookResponse:
        """The answer both ``WebhookServer`` backends give."""
        if self.status == 413:
            return TOO_LARGE
        message = "unsupported content encoding" if self.status == 415 else "invalid body"
        return WebhookResponse.error(self.status, message, [str(self)])


def supported(coding: str) -> bool:
    """Whether a ``Content-Encoding`` value is one :func:`decode` understands."""
    name = coding.strip().lower()
    return name in ("", "identity") or name in SUPPORTED


def unsupported(coding: str) -> ContentCodingError:
    return ContentCodingError(415, f"unsupported Content-Encoding: {coding!r}")


def decode(coding: str, body: bytes, limit: int) -> bytes:
    """``body`` decoded from ``coding`` ("identity" passes through), at most ``limit`` bytes."""
    name = coding.strip().lower()
    if name in ("", "identity"):
        return body
    wbits = SUPPORTED.get(name)
    if wbits is None:
        raise unsupported(coding)
    if wbits == 0:  # "deflate" is zlib-wrapped by the RFC; raw deflate is common in practice
        zlib_header = len(body) >= 2 and body[0] & 0x0F == 8 and (body[0] << 8 | body[1]) % 31 == 0
        wbits = zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS
    decompressor = zlib.decompressobj(wbits)
    try:
        data = decompressor.decompress(body, limit + 1)
        if len(data) > limit:
            raise ContentCodingError(413, "payload too large")
        if decompressor.unconsumed_tail or decompressor.unused_data or not decompressor.eof:
            raise ContentCodingError(400, f"truncated or trailing {name} data")
    except zlib.error as exc:
        raise ContentCodingError(400, f"invalid {name} data: {exc}") from None
    return data
