"""What the simulated platform does inside one conversation: run the bot's steps in order.

The HTTP layer (``server.py``) validates a request, updates the conversation state that must be
visible to the *next* request at once (e.g. ``escalationSuccess``), and submits a job to the
conversation's FIFO queue.  The jobs below run there: they turn bot replies into webhooks, wait
for request answers (``isTeamOnline``, ``escalate``, actions) and branch on them.

Semantics where the platform is undocumented: a failed :class:`EscalateStep` or :class:`Action`
runs its ``failed`` replies and ends the turn (the remaining replies are skipped); a visitor
message while a widget escalation waits for ``escalationSuccess`` reaches neither bot nor agent
(it is only recorded); after a non-widget ``escalate`` the bot keeps answering (the customer's
CRM owns the chat from then on).

Turns: everything the simulator sends for one visitor event (or one agent-side event, or one
``push``) is a *turn*, and the engine notes which webhook ends it *before* sending that webhook,
so :meth:`Engine.ends_turn` can answer the moment the receiver hands the event on - no quiet
period to wait out.  The last step of a turn ends it.  A request step (``escalate``, an action)
that is the last step is noted as the end before its answer is known: should it fail, its
``failed`` replies still follow (the last of them noted as an end too), but a caller that stopped
at the request reads them next.  A turn begins when its cause is accepted (:meth:`begin_turn`).
(The platform itself marks nothing: this is what the simulator knows because it runs the bot.)
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import attrs

from .bot import (
    Action,
    Carousel,
    EscalateStep,
    ScriptedBot,
    Step,
    TeamOnline,
    Text,
    TicketRule,
    WidgetEscalateStep,
    derive_id,
    render,
)
from .delivery import Outcome, WebhookSender

if TYPE_CHECKING:
    from ..models.webhooks import Webhook

__all__ = ["ChatSession", "Engine", "Mode", "TranscriptEntry"]

Mode = Literal["bot", "escalating", "agent"]

_MASK = "***"

#: The model each chat webhook kind becomes in a receiver: how a turn's end is recognised there.
_MODEL_OF = {
    "sendMessage": "BotMessage",
    "escalate": "Escalate",
    "isTeamOnline": "TeamOnlineCheck",
    "widgetEscalate": "WidgetEscalate",
    "widgetMessage": "WidgetMessage",
    "widgetEndSession": "WidgetEndSession",
    "action": "ActionCall",
}


@attrs.define
class _Turn:
    """What one turn sent so far: webhooks by model (to number them) and the turn-ending keys.

    A webhook's key is its ``messageId`` when it has one, else ``"<Model>#<n>"`` (the n-th of
    that model in the turn): both are visible to a receiver that got the same webhooks.
    """

    counts: dict[str, int] = attrs.field(factory=dict)
    ends: set[str] = attrs.field(factory=set)

    def sent(self, kind: str, payload: Mapping[str, Any], last: bool) -> None:
        model = _MODEL_OF[kind]
        data = payload.get("data")
        message_id = data.get("messageId") if isinstance(data, dict) else None
        if isinstance(message_id, str) and message_id:
            key = message_id
        else:
            n = self.counts[model] = self.counts.get(model, 0) + 1
            key = f"{model}#{n}"
        if last:
            self.ends.add(key)


@attrs.frozen
class TranscriptEntry:
    """One line of a conversation as the simulator saw it.

    ``sender`` is ``"visitor"``, ``"bot"``, ``"agent"`` or ``"system"``; ``kind`` the event
    (``"message"``, ``"carousel"``, ``"startSession"``, ``"escalate"``, ``"action"``, ...).
    """

    sender: str
    kind: str
    text: str = ""
    buttons: tuple[str, ...] = ()

    def __str__(self) -> str:
        line = f"{self.sender}: {self.text}" if self.text else f"{self.sender}: [{self.kind}]"
        if self.buttons:
            line += "  " + " ".join(f"[{b}]" for b in self.buttons)
        return line


@attrs.define(eq=False)
class ChatSession:
    """State of one chat conversation on the simulated platform."""

    conversation_id: str
    internal_id: str
    variables: dict[str, str] = attrs.field(factory=dict)
    sanitized: set[str] = attrs.field(factory=set)
    mode: Mode = "bot"
    agent: str | None = None
    #: The turn being run (set by each job as it starts; jobs of a conversation run in order).
    turn: _Turn | None = None

    def store(self, key: str, value: str, sanitize: bool = False) -> None:
        self.variables[key] = value
        if sanitize:
            self.sanitized.add(key)
        else:
            self.sanitized.discard(key)


def _wire_value(value: object) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


class Engine:
    """Runs bot steps for conversations; one instance per running simulator."""

    def __init__(
        self,
        bot: ScriptedBot,
        bot_id: str,
        sender: WebhookSender,
        urls: Callable[[], tuple[str | None, str | None]],
        transcripts: dict[str, list[TranscriptEntry]] | None,
    ) -> None:
        self.bot = bot
        self.bot_id = bot_id
        self.sender = sender
        self._urls = urls
        self._transcripts = transcripts
        self._ids = itertools.count(1)
        self._id_prefix = os.urandom(5).hex()
        self._turns: dict[str, _Turn] = {}

    # ------------------------------------------------------------------ helpers

    def new_id(self) -> str:
        """A unique 24-hex id (``messageId``, internal ``conversationId``)."""
        return f"{self._id_prefix}{next(self._ids):014x}"

    def note(self, conversation_id: str, entry: TranscriptEntry) -> None:
        if self._transcripts is not None:
            self._transcripts.setdefault(conversation_id, []).append(entry)

    def _chat_envelope(self, data: dict[str, Any]) -> dict[str, Any]:
        return {"botId": self.bot_id, "channel": "chat", "data": data}

    # ------------------------------------------------------------------ turns

    def begin_turn(self, conversation_id: str) -> _Turn:
        """A new turn, begun when its cause is *accepted* (before the API answers 200).

        From then on :meth:`ends_turn` looks at this turn only, so events of an earlier turn
        (still buffered by the caller, or still being delivered) never end the new one.  The
        job that runs the turn is handed the object and notes its webhooks there.
        """
        turn = self._turns[conversation_id] = _Turn()
        return turn

    def forget(self, conversation_id: str) -> None:
        """Drop what the engine keeps about a conversation that ended."""
        self._turns.pop(conversation_id, None)

    async def _send(
        self,
        url: str | None,
        payload: dict[str, Any],
        *,
        session: ChatSession,
        kind: str,
        last: bool,
        request: bool = False,
    ) -> Outcome:
        """Send a chat webhook, noting first (so no receiver can be faster) if it ends the turn."""
        if session.turn is not None:
            session.turn.sent(kind, payload, last)
        return await self.sender.send(
            url, payload, conversation_id=session.conversation_id, kind=kind, request=request
        )

    def ends_turn(self, events: Sequence[Webhook]) -> bool:
        """Whether the last of ``events`` (as a receiver parsed them) ended the bot's turn.

        ``events`` are those collected since the turn began (so request webhooks, which carry
        no id, can be told apart by their place among those of their kind).
        """
        if not events:
            return False
        last = events[-1]
        conversation_id = getattr(last, "platform_conversation_id", None)
        turn = self._turns.get(conversation_id) if isinstance(conversation_id, str) else None
        if turn is None:
            return False
        model = type(last).__name__
        message_id = getattr(last, "message_id", None)
        if isinstance(message_id, str) and message_id:
            return message_id in turn.ends
        n = sum(1 for event in events if type(event).__name__ == model)
        return f"{model}#{n}" in turn.ends

    # ------------------------------------------------------------------ jobs

    async def visitor_message(
        self, session: ChatSession, text: str, card_index: int | None, turn: _Turn
    ) -> None:
        """Route a visitor message by the conversation's mode at the time it is processed."""
        session.turn = turn
        self.note(
            session.conversation_id,
            TranscriptEntry(
                "visitor",
                "message",
                text if card_index is None else f"{text} (card #{card_index})",
            ),
        )
        if session.mode == "agent":
            await self._send(
                self._urls()[0],
                self._chat_envelope(
                    {
                        "eventType": "widgetMessage",
                        "platformConversationId": session.conversation_id,
                        "conversationId": session.internal_id,
                        "text": text,
                    }
                ),
                session=session,
                kind="widgetMessage",
                last=True,
            )
            return
        if session.mode == "escalating":
            self.note(
                session.conversation_id,
                TranscriptEntry("system", "waiting", "(waiting for an agent; message not routed)"),
            )
            return
        answer = self.bot.answer(text, card_index)
        turn_vars: dict[str, object] = {"text": text}
        if card_index is not None:
            turn_vars["cardIndex"] = card_index
        await self.run(session, answer.replies, turn_vars, answer.confidence)

    async def welcome(self, session: ChatSession, turn: _Turn) -> None:
        session.turn = turn
        self.note(session.conversation_id, TranscriptEntry("visitor", "startSession"))
        await self.run(session, self.bot.welcome, {}, 1.0)

    async def replies(self, session: ChatSession, replies: Sequence[Step], turn: _Turn) -> None:
        """Proactive replies or the bot's answer to an agent-side widget event (one turn)."""
        session.turn = turn
        await self.run(session, replies, {}, 1.0)

    async def end_session(self, session: ChatSession, turn: _Turn) -> None:
        session.turn = turn
        cid = session.conversation_id
        self.note(cid, TranscriptEntry("visitor", "endSession"))
        try:
            if session.mode in ("escalating", "agent"):
                session.mode = "bot"
                await self._send(
                    self._urls()[0],
                    self._chat_envelope(
                        {"eventType": "widgetEndSession", "platformConversationId": cid}
                    ),
                    session=session,
                    kind="widgetEndSession",
                    last=True,
                )
        finally:
            if self._turns.get(cid) is turn:  # not a turn begun since (a new startSession)
                del self._turns[cid]

    async def ticket(self, conversation_id: str, text: str, variables: Mapping[str, str]) -> None:
        self.note(conversation_id, TranscriptEntry("visitor", "ticket", text))
        rule: TicketRule = self.bot.answer_ticket(text)
        values: dict[str, object] = {**variables, "text": text}
        reply = render(rule.text, values)
        payload = {
            "botId": self.bot_id,
            "conversationId": derive_id("ticket", conversation_id),
            "platformConversationId": conversation_id,
            "text": reply,
            "predictedIntents": [i.to_wire() for i in rule.intents],
            "attachments": [{"path": p} for p in rule.attachments],
        }
        self.note(conversation_id, TranscriptEntry("bot", "ticketReply", reply))
        await self.sender.send(
            self._urls()[0], payload, conversation_id=conversation_id, kind="ticketReply"
        )

    # ------------------------------------------------------------------ steps

    async def run(
        self,
        session: ChatSession,
        replies: Sequence[Step],
        turn_vars: Mapping[str, object],
        confidence: float,
        *,
        tail: bool = True,
    ) -> bool:
        """Run ``replies`` in order; ``False`` when a failed step ended the turn.

        ``tail``: nothing follows these replies in the turn, so the last one can end it.
        """
        final = len(replies) - 1
        for i, step in enumerate(replies):
            if not await self._step(session, step, turn_vars, confidence, tail and i == final):
                return False
        return True

    def _values(self, session: ChatSession, turn_vars: Mapping[str, object]) -> dict[str, object]:
        return {**session.variables, **turn_vars}

    async def _step(
        self,
        session: ChatSession,
        step: Step,
        turn_vars: Mapping[str, object],
        confidence: float,
        last: bool,
    ) -> bool:
        """Run one step; ``last``: no later step of the turn follows it (when it succeeds)."""
        cid = session.conversation_id
        chat_url, action_url = self._urls()
        if isinstance(step, Text | Carousel):
            await self._send_message(session, step, turn_vars, confidence, last)
            return True
        if isinstance(step, TeamOnline):
            data: dict[str, Any] = {"eventType": "isTeamOnline", "platformConversationId": cid}
            if step.team_id is not None:
                data["teamId"] = step.team_id
            outcome = await self._send(
                chat_url,
                self._chat_envelope(data),
                session=session,
                kind="isTeamOnline",
                request=True,
                last=last and not step.online and not step.offline,
            )
            answer = outcome.json() if outcome.ok else None
            online = isinstance(answer, dict) and answer.get("isOnline") is True
            self.note(
                cid,
                TranscriptEntry(
                    "system", "isTeamOnline", f"team {'online' if online else 'offline'}"
                ),
            )
            branch = step.online if online else step.offline
            return await self.run(session, branch, turn_vars, confidence, tail=last)
        if isinstance(step, EscalateStep):
            data = {"eventType": "escalate", "platformConversationId": cid}
            if step.escalate_to is not None:
                data["escalateTo"] = step.escalate_to
            outcome = await self._send(
                chat_url,
                self._chat_envelope(data),
                session=session,
                kind="escalate",
                request=True,
                last=last,
            )
            if outcome.ok:
                self.note(cid, TranscriptEntry("system", "escalate", "escalated"))
                return True
            self.note(
                cid, TranscriptEntry("system", "escalate", f"escalation failed ({outcome.status})")
            )
            await self._failed(session, step.failed, turn_vars, confidence)
            return False
        if isinstance(step, WidgetEscalateStep):
            # Set before sending: the receiver may answer escalationSuccess before we see the 200.
            session.mode = "escalating"
            data = {"eventType": "widgetEscalate", "platformConversationId": cid}
            if step.escalate_to is not None:
                data["escalateTo"] = step.escalate_to
            self.note(cid, TranscriptEntry("system", "widgetEscalate", "handing over to an agent"))
            outcome = await self._send(
                chat_url,
                self._chat_envelope(data),
                session=session,
                kind="widgetEscalate",
                last=last,
            )
            if not outcome.ok and session.mode == "escalating":
                session.mode = "bot"
                return False
            return True
        return await self._action(session, step, turn_vars, confidence, action_url, last)

    async def _failed(
        self,
        session: ChatSession,
        replies: Sequence[Step],
        turn_vars: Mapping[str, object],
        confidence: float,
    ) -> None:
        """A failed request's replies, which end the turn.

        The request was already noted as the end when it was the last step (it ends the turn
        when it succeeds), and stays so: a receiver that stopped there always stopped there,
        and gets these replies as what comes next.
        """
        await self.run(session, replies, turn_vars, confidence)

    async def _send_message(
        self,
        session: ChatSession,
        step: Text | Carousel,
        turn_vars: Mapping[str, object],
        confidence: float,
        last: bool,
    ) -> None:
        values = self._values(session, turn_vars)
        cid = session.conversation_id
        data: dict[str, Any] = {"eventType": "sendMessage", "platformConversationId": cid}
        if isinstance(step, Text):
            text = render(step.text, values)
            buttons = [{"type": b.type, "text": render(b.text, values)} for b in step.buttons]
            data.update(type="text", text=text, buttons=buttons, carouselCards=[])
            self.note(
                cid, TranscriptEntry("bot", "message", text, tuple(b["text"] for b in buttons))
            )
            reply_id = step.reply_id or derive_id("reply", step.text)
        else:
            cards: list[dict[str, Any]] = [
                {
                    "title": render(card.title, values),
                    "description": render(card.description, values),
                    "imageUrl": card.image_url,
                    "buttons": [
                        {"type": b.type, "text": render(b.text, values)} for b in card.buttons
                    ],
                }
                for card in step.cards
            ]
            text = render(step.text, values)
            data.update(type="carousel", text=text, buttons=[], carouselCards=cards)
            self.note(
                cid,
                TranscriptEntry(
                    "bot",
                    "carousel",
                    text,
                    tuple(
                        f"#{i} {card['title']}: {b['text']}"
                        for i, card in enumerate(cards)
                        for b in card["buttons"]
                    ),
                ),
            )
            reply_id = step.reply_id or derive_id("carousel", *(c.title for c in step.cards))
        data["replyId"] = reply_id
        data["messageId"] = self.new_id()
        data["confidence"] = step.confidence if step.confidence is not None else confidence
        await self._send(
            self._urls()[0],
            self._chat_envelope(data),
            session=session,
            kind="sendMessage",
            last=last,
        )

    async def _action(
        self,
        session: ChatSession,
        step: Action,
        turn_vars: Mapping[str, object],
        confidence: float,
        url: str | None,
        last: bool,
    ) -> bool:
        values = self._values(session, turn_vars)
        save_as = dict(step.save_as)
        params: list[dict[str, Any]] = []
        for key, raw_values in step.params:
            param: dict[str, Any] = {"key": key, "value": [render(v, values) for v in raw_values]}
            if key in save_as:
                param["saveAs"] = save_as[key]
            params.append(param)
        payload = {
            "botId": self.bot_id,
            "conversationId": session.internal_id,
            "platformConversationId": session.conversation_id,
            "name": step.name,
            "data": params,
        }
        cid = session.conversation_id
        outcome = await self._send(
            url, payload, session=session, kind="action", request=True, last=last
        )
        results = _results(outcome.json()) if outcome.ok else None
        if outcome.ok and not outcome.body:
            results = []
        if results is None:
            self.note(
                cid, TranscriptEntry("system", "action", f"{step.name} failed ({outcome.status})")
            )
            await self._failed(session, step.failed, turn_vars, confidence)
            return False
        shown = []
        for key, value, sanitize in results:
            session.store(key, value, sanitize)
            shown.append(f"{key}={_MASK if sanitize else value}")
        self.note(cid, TranscriptEntry("system", "action", f"{step.name} -> {', '.join(shown)}"))
        return True


def _results(answer: object) -> list[tuple[str, str, bool]] | None:
    """``{"results": [{key, value, sanitize?}]}`` as triples, or ``None`` when malformed."""
    if not isinstance(answer, dict):
        return None
    items = answer.get("results", [])
    if items is None:
        return []
    if not isinstance(items, list):
        return None
    out: list[tuple[str, str, bool]] = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            return None
        out.append((item["key"], _wire_value(item.get("value")), item.get("sanitize") is True))
    return out
