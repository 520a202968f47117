"""Request answers: ``isTeamOnline``, ``escalate`` and actions, decided inline by a handler.

The platform waits on these deliveries for its answer, so they are never stored nor retried:
the decision handler runs within ``request_timeout`` and its return value becomes the HTTP
response (step 3 of "A delivery" in ``docs/architecture.md``).  ``handler_timeout`` does not
apply here: it bounds notification handlers, which run after the answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from .. import telemetry
from ..models.outbound import ActionResult
from ..models.webhooks import ActionCall, Webhook
from . import response as r
from .context import EventContext
from .reporting import Report
from .response import WebhookResponse
from .router import HandlerKey

__all__ = ["RequestAnswers", "results_to_wire"]

log = logging.getLogger("ultimate_async.webhook")

Handler = Callable[..., Awaitable[Any]]


class RequestAnswers:
    """Finds a request's decision handler, runs it within ``timeout``, shapes the answer.

    ``timeout`` is set by the receiver's ``request_timeout`` setter and read at every request.
    """

    def __init__(self, handlers: Mapping[HandlerKey, Handler], report: Report) -> None:
        self._handlers = handlers
        self.timeout = 10.0
        self._report = report
        self.in_flight = 0
        self._idle: asyncio.Event | None = None

    def decision_handler(
        self, kind: str, conversation_id: str | None, name: str | None
    ) -> Handler | None:
        """Conversation and action name first, then conversation, then name, then catch-all."""
        handlers = self._handlers
        if name is not None and conversation_id is not None:
            handler = handlers.get((kind, conversation_id, name))
            if handler is not None:
                return handler
        if conversation_id is not None:
            handler = handlers.get((kind, conversation_id, None))
            if handler is not None:
                return handler
        if name is not None:
            handler = handlers.get((kind, None, name))
            if handler is not None:
                return handler
        return handlers.get((kind, None, None))

    async def answer(self, kind: str, event: Webhook, ctx: EventContext) -> WebhookResponse:
        name = event.name if isinstance(event, ActionCall) else None
        handler = self.decision_handler(kind, ctx.platform_conversation_id, name)
        if kind == "team_online":
            if handler is None:
                return r.OFFLINE
            ok, result = await self._call(handler, event, ctx)
            return r.ONLINE if ok and result else r.OFFLINE
        if kind == "escalate":
            if handler is None:
                return r.ACK
            ok, result = await self._call(handler, event, ctx)
            if not ok:
                return r.HANDLER_FAILED
            return r.ESCALATION_FAILED if result is False else r.ACK
        # actions
        if handler is None:
            return r.NO_RESULTS
        ok, result = await self._call(handler, event, ctx)
        if not ok:
            return r.HANDLER_FAILED
        try:
            results = results_to_wire(result)
        except TypeError as exc:
            await self._report(exc, event, ctx)
            return r.HANDLER_FAILED
        return WebhookResponse.json(200, {"results": results})

    async def _call(self, handler: Handler, event: Webhook, ctx: EventContext) -> tuple[bool, Any]:
        self.in_flight += 1
        timeout = self.timeout
        try:
            with telemetry.handler_run(ctx.kind, ctx.platform_conversation_id, 1):
                async with asyncio.timeout(timeout) as scope:
                    result = await handler(event, ctx)
        except Exception as exc:
            if isinstance(exc, TimeoutError) and scope.expired():
                log.error(
                    "%s handler timed out after %ss (conversation %s)",
                    ctx.kind,
                    timeout,
                    ctx.platform_conversation_id,
                )
                await self._report(exc, event, ctx, logged=True)
            else:
                await self._report(exc, event, ctx)
            return False, None
        finally:
            self.in_flight -= 1
            if self.in_flight == 0 and self._idle is not None:
                self._idle.set()
        return True, result

    async def wait_idle(self, timeout: float | None) -> bool:  # noqa: ASYNC109
        """Wait until no request handler runs; ``False`` when ``timeout`` ran out first."""
        if self.in_flight == 0:
            return True
        if self._idle is None or self._idle.is_set():
            self._idle = asyncio.Event()
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return self.in_flight == 0
        return True


def results_to_wire(result: object) -> list[Any]:
    """An action handler's return value as the ``results`` list of the answer."""
    if result is None:
        return []
    if isinstance(result, ActionResult | Mapping) or not isinstance(result, Iterable):
        raise TypeError("an action handler must return a list of ActionResult (or None)")
    out: list[Any] = []
    for item in result:
        if isinstance(item, ActionResult):
            out.append(item.to_wire())
        elif isinstance(item, Mapping) and "key" in item:
            out.append(dict(item))
        else:
            raise TypeError("an action handler must return a list of ActionResult (or None)")
    return out
