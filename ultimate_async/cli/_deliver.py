"""Post a webhook body to someone's receiver, signed as their verifier expects (``trigger``,
``replay``).  Signing goes through the verifier's own sender side, like the simulator's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ._common import CommandError

if TYPE_CHECKING:
    import aiohttp

    from ..webhook.verify import Verifier

__all__ = ["Answer", "post_signed"]


class Answer:
    """The receiver's HTTP answer: status, reason phrase and body text."""

    __slots__ = ("body", "reason", "status")

    def __init__(self, status: int, reason: str, body: str) -> None:
        self.status = status
        self.reason = reason
        self.body = body

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def lines(self) -> str:
        """``HTTP 200 OK`` then the body (if any), as printed."""
        head = f"HTTP {self.status} {self.reason}".rstrip()
        return f"{head}\n{self.body}" if self.body else head


async def post_signed(
    http: aiohttp.ClientSession,
    url: str,
    body: bytes,
    signer: Verifier | None,
    headers: Mapping[str, str] | None = None,
) -> Answer:
    """POST ``body`` to ``url`` signed by ``signer`` (unsigned when ``None``).

    A connection failure is a :class:`CommandError` naming ``url`` as given: a ``UrlToken``
    signer puts the secret in the URL actually posted to, which must not reach the terminal.
    """
    import aiohttp

    target, auth = signer.authenticate(url, body) if signer is not None else (url, {})
    sent = {"Content-Type": "application/json", **(headers or {}), **auth}
    try:
        async with http.post(target, data=body, headers=sent, allow_redirects=False) as resp:
            return Answer(resp.status, resp.reason or "", await resp.text(errors="replace"))
    except (aiohttp.ClientError, TimeoutError) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
        raise CommandError(f"cannot deliver to {url}: {reason}") from None
