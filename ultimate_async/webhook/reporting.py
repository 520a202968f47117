"""How a failed handler is reported: one log record, then the matching ``on_error`` handler."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from .context import EventContext
from .router import ERROR_KIND, HandlerKey

__all__ = ["Report", "reporter"]

log = logging.getLogger("ultimate_async.webhook")

#: ``await report(error, event, ctx, logged=False)``
Report = Callable[..., Awaitable[None]]


def reporter(handlers: Mapping[HandlerKey, Callable[..., Awaitable[Any]]]) -> Report:
    """A ``report`` function over a live handler table (handlers added later are found)."""

    async def report(
        error: BaseException, event: Any, ctx: EventContext | None, *, logged: bool = False
    ) -> None:
        """Log a handler failure (unless the caller did) and pass it to ``on_error``."""
        conversation_id = ctx.platform_conversation_id if ctx is not None else None
        if not logged:
            log.error(
                "%s handler failed (conversation %s)",
                ctx.kind if ctx is not None else "event",
                conversation_id,
                exc_info=error,
            )
        handler = None
        if conversation_id is not None:
            handler = handlers.get((ERROR_KIND, conversation_id, None))
        if handler is None:
            handler = handlers.get((ERROR_KIND, None, None))
        if handler is None:
            return
        try:
            await handler(error, event, ctx)
        except Exception:
            log.exception("on_error handler failed (conversation %s)", conversation_id)

    return report
