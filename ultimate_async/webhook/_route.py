"""Which requests are the webhook's: ``path``, and ``path/{token}`` for a path-token verifier.

Both HTTP backends of :class:`~ultimate_async.webhook.WebhookServer` route through this, the
way aiohttp's router matches the routes :func:`~ultimate_async.webhook.setup_webhook` adds.
"""

from __future__ import annotations

from typing import Final

from yarl import URL

__all__ = ["ALLOWED_METHODS", "WebhookRoute"]

#: What the webhook path answers; anything else is a 405 naming these.
ALLOWED_METHODS: Final = ("GET", "HEAD", "POST")

NOT_MATCHED: Final = (False, None)


def _unquote_token(segment: str) -> str:
    # ``URL.path_safe`` leaves only %2F and %25 encoded; aiohttp's router decodes them the same.
    if "%" not in segment:
        return segment
    return segment.replace("%2F", "/").replace("%25", "%")


class WebhookRoute:
    """``match(path_safe)`` -> ``(matched, path token)``; ``match_target`` takes the raw target."""

    __slots__ = ("path", "prefix")

    def __init__(self, path: str, *, uses_path_token: bool) -> None:
        if not path.startswith("/"):
            raise ValueError("path must start with '/'")
        self.path = path.rstrip("/") or "/"
        self.prefix = self.path.rstrip("/") + "/" if uses_path_token else None

    def match(self, path_safe: str) -> tuple[bool, str | None]:
        """Match a decoded path (``%2F`` and ``%25`` still encoded, as ``URL.path_safe``)."""
        if path_safe == self.path:
            return True, None
        prefix = self.prefix
        if prefix is not None and path_safe.startswith(prefix):
            token = path_safe[len(prefix) :]
            if token and not any(c in token for c in "/{}"):
                return True, _unquote_token(token)
        return NOT_MATCHED

    def match_target(self, target: str) -> tuple[bool, str | None]:
        """Match a raw request target (origin or absolute form), as aiohttp's parser reads it.

        Raises ``ValueError`` for a target that is not a URL at all.
        """
        if target == self.path:  # the usual case: nothing to decode
            return True, None
        if target.startswith("/"):
            path, _, _ = target.partition("?")
            path, _, _ = path.partition("#")
            return self.match(URL.build(path=path, encoded=True).path_safe)
        return self.match(URL(target, encoded=True).path_safe)
