"""Both halves together: talk to a bot as if its API were request/response.

The platform acknowledges every visitor event with an empty ``200`` and delivers the bot's
answers later, one webhook per message.  :class:`Conversation` hides that: it registers one
observer for its conversation on a :class:`~ultimate_async.webhook.WebhookReceiver`, buffers
every event that arrives, and :meth:`Conversation.ask` sends a message and collects what comes
back until the bot has been quiet for ``settle`` seconds.

Nothing is lost between calls: an event that arrives while nobody waits stays buffered and is
returned by the next :meth:`~Conversation.ask` (or :meth:`~Conversation.events`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING

import attrs

from .errors import ReplyTimeout
from .models.webhooks import BotMessage, Button, CarouselCard, Escalate, Webhook, WidgetEscalate

if TYPE_CHECKING:
    from .models.outbound import MetaDataInput
    from .session import Session
    from .webhook import EventContext, WebhookReceiver
    from .webhook.receiver import Registration

__all__ = ["Conversation", "Reply"]

_log = logging.getLogger(__name__)


@attrs.frozen
class Reply:
    """Everything the bot did in answer to one visitor event.

    ``events`` keeps every event in arrival order (requests such as ``escalate`` or actions
    included); the other fields are views of it: the bot messages, their non-empty texts joined
    with ``"\\n"``, their buttons and carousel cards concatenated, and whether the bot escalated.
    """

    events: list[Webhook] = attrs.field(factory=list)
    messages: list[BotMessage] = attrs.field(factory=list)
    text: str = ""
    buttons: list[Button] = attrs.field(factory=list)
    carousel_cards: list[CarouselCard] = attrs.field(factory=list)
    escalated: bool = False

    @classmethod
    def from_events(cls, events: list[Webhook]) -> Reply:
        """Build the views of ``events`` once, so reading a reply costs nothing."""
        messages: list[BotMessage] = []
        buttons: list[Button] = []
        cards: list[CarouselCard] = []
        texts: list[str] = []
        escalated = False
        for event in events:
            if isinstance(event, BotMessage):
                messages.append(event)
                if event.text:
                    texts.append(event.text)
                buttons.extend(event.buttons)
                cards.extend(event.carousel_cards)
            elif isinstance(event, Escalate | WidgetEscalate):
                escalated = True
        return cls(events, messages, "\n".join(texts), buttons, cards, escalated)


def _wake(fut: asyncio.Future[bool], value: bool) -> None:
    if not fut.done():
        fut.set_result(value)


class Conversation:
    """One visitor's conversation with the bot, over ``session`` (out) and ``receiver`` (in).

    Use it as an async context manager: on exit it sends ``endSession`` (when the session was
    started) and stops observing.  Many conversations can share one session and one receiver;
    each sees only the events of its own ``conversation_id``.  One call at a time may wait for
    events on a conversation (``start``/``ask``/``click``/``choose_card``/``events``).
    """

    def __init__(
        self,
        session: Session,
        receiver: WebhookReceiver,
        conversation_id: str | None = None,
    ) -> None:
        self.session = session
        self.receiver = receiver
        self.conversation_id = conversation_id if conversation_id is not None else str(uuid.uuid4())
        self._buffer: deque[Webhook] = deque()
        self._waiter: asyncio.Future[bool] | None = None
        self._registration: Registration | None = None
        self._ready = False
        self._busy = False
        self._started = False
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "started" if self._started else "new"
        return f"<Conversation {self.conversation_id!r} {state}>"

    async def __aenter__(self) -> Conversation:
        await self._observe()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            await self.end()
            return
        # Do not mask the body's exception with a failing endSession.
        try:
            await self.end()
        except Exception:
            # The body's exception is the one worth seeing; keep this one for debugging.
            _log.debug("endSession failed for %s", self.conversation_id, exc_info=True)

    @property
    def started(self) -> bool:
        """True once an event created the session on the platform (so exit sends endSession)."""
        return self._started

    # -- receiving --------------------------------------------------------------------------

    async def _observe(self) -> None:
        """Register the one observer of this conversation and wait until it can be routed to."""
        if self._closed:
            raise RuntimeError(f"conversation {self.conversation_id!r} has ended")
        if self._registration is None:
            self._registration = self.receiver.register(self.conversation_id, self._on_event)
        if not self._ready:
            await self._registration.ready()
            self._ready = True

    async def _on_event(self, event: Webhook, ctx: EventContext) -> None:
        # The receiver's per-conversation FIFO calls this in arrival order: keep it tiny.
        self._buffer.append(event)
        if self._waiter is not None:
            _wake(self._waiter, True)

    async def _wait(self, delay: float | None) -> bool:
        """Wait up to ``delay`` seconds (None: forever) for an event; True if one is buffered."""
        if self._buffer:
            return True
        if self._closed or (delay is not None and delay <= 0):
            return False
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        self._waiter = fut
        handle = None if delay is None else loop.call_later(delay, _wake, fut, False)
        try:
            return await fut
        finally:
            if handle is not None:
                handle.cancel()
            self._waiter = None

    def _take(self, into: list[Webhook]) -> None:
        buffer = self._buffer
        while buffer:
            into.append(buffer.popleft())

    async def _collect(self, first_within: float, settle: float) -> list[Webhook]:
        """Events until ``settle`` quiet seconds after the first; [] if none in ``first_within``."""
        events: list[Webhook] = []
        if not await self._wait(first_within):
            return events
        self._take(events)
        while await self._wait(settle):
            self._take(events)
        return events

    def _claim(self) -> None:
        if self._closed:
            raise RuntimeError(f"conversation {self.conversation_id!r} has ended")
        if self._busy:
            raise RuntimeError(
                f"conversation {self.conversation_id!r} is already waiting for events; "
                "await one start/ask/click/choose_card/events at a time"
            )
        self._busy = True

    # -- sending ----------------------------------------------------------------------------

    async def send(
        self,
        text: str,
        *,
        card_index: int | None = None,
        metadata: MetaDataInput | None = None,
    ) -> None:
        """Send a visitor message without waiting; answers are buffered for the next read."""
        await self._observe()
        await self.session.chat.send_message(
            self.conversation_id, text, card_index=card_index, metadata=metadata
        )
        self._started = True

    async def send_metadata(self, metadata: MetaDataInput) -> None:
        """Attach session parameters without a visitor message."""
        await self._observe()
        await self.session.chat.send_metadata(self.conversation_id, metadata)
        self._started = True

    async def start(
        self,
        metadata: MetaDataInput | None = None,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109 - the documented API
        settle: float = 0.5,
    ) -> Reply:
        """Send ``startSession`` and return the welcome (an empty Reply if none in ``timeout``)."""
        self._claim()
        try:
            await self._observe()
            await self.session.chat.start_session(self.conversation_id, metadata=metadata)
            self._started = True
            return Reply.from_events(await self._collect(timeout, settle))
        finally:
            self._busy = False

    async def ask(
        self,
        text: str,
        timeout: float = 30.0,  # noqa: ASYNC109 - the documented API
        settle: float = 0.5,
        *,
        card_index: int | None = None,
        metadata: MetaDataInput | None = None,
    ) -> Reply:
        """Send ``text`` and return every event that follows until the bot is quiet.

        The observer is registered before the message goes out, so a reply that overtakes the
        API's acknowledgement is not missed; events buffered since the last read come first.
        Collection ends ``settle`` seconds after the last event.  Raises
        :class:`~ultimate_async.errors.ReplyTimeout` when nothing arrives within ``timeout``
        seconds of the message being accepted.
        """
        self._claim()
        try:
            await self._observe()
            await self.session.chat.send_message(
                self.conversation_id, text, card_index=card_index, metadata=metadata
            )
            self._started = True
            events = await self._collect(timeout, settle)
        finally:
            self._busy = False
        if not events:
            raise ReplyTimeout(
                f"no reply in conversation {self.conversation_id!r} within {timeout:g}s"
            )
        return Reply.from_events(events)

    async def receive(
        self,
        timeout: float = 30.0,  # noqa: ASYNC109 - same meaning as in ask()
        settle: float = 0.5,
    ) -> Reply:
        """Wait for what the bot does next without sending anything (proactive messages, or
        the bot resuming after a human agent left).  Buffered events count; raises
        :class:`~ultimate_async.errors.ReplyTimeout` when nothing arrives within ``timeout``.
        """
        self._claim()
        try:
            await self._observe()
            events = await self._collect(timeout, settle)
        finally:
            self._busy = False
        if not events:
            raise ReplyTimeout(
                f"nothing arrived in conversation {self.conversation_id!r} within {timeout:g}s"
            )
        return Reply.from_events(events)

    async def click(
        self,
        button: Button | str,
        timeout: float = 30.0,  # noqa: ASYNC109 - the documented API
        settle: float = 0.5,
    ) -> Reply:
        """Click a (non-link) button: send its text and return the reply."""
        return await self.ask(_button_text(button), timeout, settle)

    async def choose_card(
        self,
        card_index: int,
        button: Button | str,
        timeout: float = 30.0,  # noqa: ASYNC109 - the documented API
        settle: float = 0.5,
    ) -> Reply:
        """Click ``button`` on carousel card ``card_index`` (0-based): text plus ``cardIndex``."""
        if isinstance(card_index, bool) or not isinstance(card_index, int) or card_index < 0:
            raise ValueError("card_index must be a non-negative int")
        return await self.ask(_button_text(button), timeout, settle, card_index=card_index)

    def events(self, *, timeout: float | None = None) -> AsyncIterator[Webhook]:
        """Iterate over every event of this conversation as it arrives (buffered ones first).

        Iteration ends when the conversation ends or, with ``timeout``, after that many quiet
        seconds.  Breaking out of the loop leaves nothing behind: unread events stay buffered.
        """
        return _EventIterator(self, timeout)

    async def _next_event(self, quiet: float | None) -> Webhook:
        if self._closed:  # ended: hand out what is left, then stop
            if self._buffer:
                return self._buffer.popleft()
            raise StopAsyncIteration
        self._claim()
        try:
            await self._observe()
            if not await self._wait(quiet) or not self._buffer:  # quiet, or woken by end()
                raise StopAsyncIteration
            return self._buffer.popleft()
        finally:
            self._busy = False

    async def end(self) -> None:
        """Send ``endSession`` (if the session was started) and stop observing. Idempotent."""
        if self._closed:
            return
        self._closed = True
        waiter = self._waiter
        if waiter is not None:
            _wake(waiter, False)
        try:
            if self._started:
                self._started = False
                await self.session.chat.end_session(self.conversation_id)
        finally:
            registration, self._registration = self._registration, None
            if registration is not None:
                registration.remove()


class _EventIterator:
    """``async for`` over a conversation; each step is one short read, so breaking is free."""

    __slots__ = ("_conversation", "_timeout")

    def __init__(self, conversation: Conversation, timeout: float | None) -> None:
        self._conversation = conversation
        self._timeout = timeout

    def __aiter__(self) -> _EventIterator:
        return self

    async def __anext__(self) -> Webhook:
        return await self._conversation._next_event(self._timeout)


def _button_text(button: Button | str) -> str:
    if isinstance(button, str):
        return button
    if button.type == "link":
        raise ValueError(f"button {button.text!r} is a link: open it, do not send it to the bot")
    return button.text
