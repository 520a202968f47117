"""Both halves together: talk to a bot as if its API were request/response.

The platform acknowledges every visitor event with an empty ``200`` and delivers the bot's
answers later, one webhook per message.  :class:`Conversation` hides that: it registers one
observer for its conversation on a :class:`~ultimate_async.webhook.WebhookReceiver`, buffers
every event that arrives, and :meth:`Conversation.ask` sends a message and collects what comes
back until the bot's turn is over.

Nothing on the wire says when a turn is over, so a call either waits until the bot has been
quiet for ``settle`` seconds (the default: safe with any bot, and it costs ``settle`` on every
call), or is told what a complete turn looks like with ``until``: a number of events, or a
predicate over the events collected so far (:data:`TurnEnd`).  The simulator knows where its
turns end (:meth:`~ultimate_async.simulator.Simulator.turn_complete`), so the pytest fixtures
end turns the moment the last event arrives.

Nothing is lost between calls: an event that arrives while nobody waits stays buffered and is
returned by the next :meth:`~Conversation.ask` (or :meth:`~Conversation.events`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, TypeAlias

import attrs

from .errors import ConversationBusyError, ReplyTimeout
from .models.webhooks import BotMessage, Button, CarouselCard, Escalate, Webhook, WidgetEscalate

if TYPE_CHECKING:
    from .models.outbound import MetaDataInput
    from .session import Session
    from .webhook import EventContext, WebhookReceiver
    from .webhook.receiver import Registration

__all__ = ["DEFAULT_SETTLE", "Conversation", "Reply", "TurnEnd"]

_log = logging.getLogger(__name__)

#: Seconds of quiet that end a turn when the caller says nothing else.
DEFAULT_SETTLE = 0.5

#: What ends a turn: a number of events (requests such as ``escalate`` count), or a predicate
#: called with every event collected so far that returns ``True`` once the turn is complete.
TurnEnd: TypeAlias = int | Callable[[Sequence[Webhook]], bool]


def _turn_check(until: TurnEnd | None) -> Callable[[Sequence[Webhook]], bool] | None:
    """``until`` as a predicate (``None``: the turn ends on quiet only)."""
    if until is None or callable(until):
        return until
    if isinstance(until, bool) or not isinstance(until, int) or until < 1:
        raise ValueError(f"until must be a positive number of events or a predicate, not {until!r}")
    count = until
    return lambda events: len(events) >= count


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
    each sees only the events of its own ``conversation_id``.

    ``until`` is the default end of a turn for every call that collects one (``start``, ``ask``,
    ``click``, ``choose_card``, ``receive``); each call may override it.  ``exclusive=True``
    makes the registration take the place of the catch-all handlers for this conversation's
    notifications (by default it only observes; see ``WebhookReceiver.register``).

    One call at a time may wait for events (``start``/``ask``/``click``/``choose_card``/
    ``receive``/``events``): a second one raises
    :class:`~ultimate_async.errors.ConversationBusyError` (whose reply would it be?).
    """

    def __init__(
        self,
        session: Session,
        receiver: WebhookReceiver,
        conversation_id: str | None = None,
        *,
        until: TurnEnd | None = None,
        exclusive: bool = False,
    ) -> None:
        _turn_check(until)  # refuse a bad value here, not at the first ask()
        self.session = session
        self.receiver = receiver
        self.conversation_id = conversation_id if conversation_id is not None else str(uuid.uuid4())
        self.until = until
        self.exclusive = exclusive
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
            self._registration = self.receiver.register(
                self.conversation_id, self._on_event, exclusive=self.exclusive
            )
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

    def _put_back(self, events: list[Webhook]) -> None:
        """Return taken events to the front of the buffer: the next read gets them first."""
        self._buffer.extendleft(reversed(events))

    async def _collect(
        self, within: float, settle: float | None, until: TurnEnd | None
    ) -> tuple[list[Webhook], bool]:
        """One turn's events, and whether the turn completed.

        Without ``until`` the turn ends ``settle`` quiet seconds after the first event, and
        ``within`` bounds the wait for that first event.  With ``until`` it ends as soon as
        ``until`` is met (or after ``settle`` quiet seconds, when given), and ``within`` bounds
        the whole turn.  ``([], False)``: nothing arrived in time.
        """
        done = _turn_check(until)
        quiet = settle if settle is not None else (DEFAULT_SETTLE if done is None else None)
        events: list[Webhook] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        if not await self._wait(within):
            return events, False
        self._take(events)
        delay: float | None
        while True:
            if done is not None:
                try:
                    if done(events):
                        return events, True
                except BaseException:
                    self._put_back(events)  # a failing predicate must not lose events
                    raise
                left = deadline - loop.time()
                delay = left if quiet is None else min(quiet, left)
            else:
                delay = quiet
            if not await self._wait(delay):
                # Quiet for ``settle`` seconds ends a turn; running out of ``within`` does not.
                return events, quiet is not None and delay == quiet
            self._take(events)

    def _claim(self) -> None:
        if self._closed:
            raise RuntimeError(f"conversation {self.conversation_id!r} has ended")
        if self._busy:
            raise ConversationBusyError(
                f"conversation {self.conversation_id!r} is already waiting for events; "
                "await one start/ask/click/choose_card/receive/events at a time"
            )
        self._busy = True

    def _timed_out(self, what: str, timeout: float, since: float) -> ReplyTimeout:
        """A ReplyTimeout naming the deliveries the receiver refused since ``since``.

        ``receiver.refusals`` is receiver-wide (a refused delivery is unverified, so nothing
        tells whose it was), which is why the message says "the receiver", not "this bot".
        """
        refusals = [r for r in self.receiver.refusals if r.at >= since]
        message = f"{what} in conversation {self.conversation_id!r} within {timeout:g}s"
        if refusals:
            last = refusals[-1]
            count = len(refusals)
            message += (
                f"; meanwhile the receiver refused {count} "
                f"deliver{'y' if count == 1 else 'ies'}, the last with {last.status}: "
                f"{last.reason}"
            )
        return ReplyTimeout(message, refusals=refusals)

    async def _turn(
        self,
        what: str,
        within: float,
        settle: float | None,
        until: TurnEnd | None,
        since: float,
    ) -> Reply:
        """Collect a turn for ask()/receive(): raise ReplyTimeout when none (or half) came."""
        until = self.until if until is None else until
        events, complete = await self._collect(within, settle, until)
        if not events:
            raise self._timed_out(what, within, since)
        if not complete:
            self._put_back(events)
            raise self._timed_out(
                f"the turn was not complete ({len(events)} event(s) so far, kept for the next "
                "read)",
                within,
                since,
            )
        return Reply.from_events(events)

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
        settle: float | None = None,
        until: TurnEnd | None = None,
    ) -> Reply:
        """Send ``startSession`` and return the welcome.

        The welcome is whatever arrives until the turn ends (``settle``/``until`` as in
        :meth:`ask`); an empty Reply when nothing arrives within ``timeout``, and what came so
        far when ``until`` was not met by then.
        """
        self._claim()
        try:
            await self._observe()
            await self.session.chat.start_session(self.conversation_id, metadata=metadata)
            self._started = True
            until = self.until if until is None else until
            events, _ = await self._collect(timeout, settle, until)
            return Reply.from_events(events)
        finally:
            self._busy = False

    async def ask(
        self,
        text: str,
        timeout: float = 30.0,  # noqa: ASYNC109 - the documented API
        settle: float | None = None,
        *,
        until: TurnEnd | None = None,
        card_index: int | None = None,
        metadata: MetaDataInput | None = None,
    ) -> Reply:
        """Send ``text`` and return every event of the bot's turn that follows.

        The observer is registered before the message goes out, so a reply that overtakes the
        API's acknowledgement is not missed; events buffered since the last read come first.

        When the turn is over: without ``until`` (here or on the Conversation), once the bot
        has been quiet for ``settle`` seconds (default :data:`DEFAULT_SETTLE`).  With ``until``
        - a number of events, or a predicate over the events so far (:data:`TurnEnd`) - as
        soon as it is met, with no quiet to wait for; ``settle``, if also given, still ends the
        turn after that much quiet.

        Raises :class:`~ultimate_async.errors.ReplyTimeout` when nothing arrives within
        ``timeout`` seconds of the message being accepted, or when ``until`` is not met within
        ``timeout`` (the events so far stay buffered for the next read).  The message names
        the last delivery the receiver refused meanwhile, if any (a wrong secret, say).
        """
        since = time.monotonic()
        self._claim()
        try:
            await self._observe()
            await self.session.chat.send_message(
                self.conversation_id, text, card_index=card_index, metadata=metadata
            )
            self._started = True
            return await self._turn("no reply", timeout, settle, until, since)
        finally:
            self._busy = False

    async def receive(
        self,
        timeout: float = 30.0,  # noqa: ASYNC109 - same meaning as in ask()
        settle: float | None = None,
        *,
        until: TurnEnd | None = None,
    ) -> Reply:
        """Wait for what the bot does next without sending anything (proactive messages, or
        the bot resuming after a human agent left).  Buffered events count; the turn ends and
        :class:`~ultimate_async.errors.ReplyTimeout` is raised as in :meth:`ask`.
        """
        since = time.monotonic()
        self._claim()
        try:
            await self._observe()
            return await self._turn("nothing arrived", timeout, settle, until, since)
        finally:
            self._busy = False

    async def click(
        self,
        button: Button | str,
        timeout: float = 30.0,  # noqa: ASYNC109 - the documented API
        settle: float | None = None,
        *,
        until: TurnEnd | None = None,
    ) -> Reply:
        """Click a (non-link) button: send its text and return the reply (as :meth:`ask`)."""
        return await self.ask(_button_text(button), timeout, settle, until=until)

    async def choose_card(
        self,
        card_index: int,
        button: Button | str,
        timeout: float = 30.0,  # noqa: ASYNC109 - the documented API
        settle: float | None = None,
        *,
        until: TurnEnd | None = None,
    ) -> Reply:
        """Click ``button`` on carousel card ``card_index`` (0-based): text plus ``cardIndex``."""
        if isinstance(card_index, bool) or not isinstance(card_index, int) or card_index < 0:
            raise ValueError("card_index must be a non-negative int")
        return await self.ask(
            _button_text(button), timeout, settle, until=until, card_index=card_index
        )

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
