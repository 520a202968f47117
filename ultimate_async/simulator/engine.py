"""What the simulated platform does inside one conversation: run the bot's steps in order.

The HTTP layer (``server.py``) validates a request, updates the conversation state that must be
visible to the *next* request at once (e.g. ``escalationSuccess``), and submits a job to the
conversation's FIFO queue.  The jobs below run there: they turn bot replies into webhooks, wait
for request answers (``isTeamOnline``, ``escalate``, actions) and branch on them.

Semantics where the platform is undocumented: a failed :class:`Escalate` or :class:`Action`
runs its ``failed`` replies and ends the turn (the remaining replies are skipped); a visitor
message while a widget escalation waits for ``escalationSuccess`` reaches neither bot nor agent
(it is only recorded); after a non-widget ``escalate`` the bot keeps answering (the customer's
CRM owns the chat from then on).
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import attrs

from .bot import (
    Action,
    Carousel,
    Escalate,
    Reply,
    ScriptedBot,
    TeamOnline,
    Text,
    TicketRule,
    WidgetEscalate,
    derive_id,
    render,
)
from .delivery import WebhookSender

__all__ = ["ChatSession", "Engine", "Mode", "TranscriptEntry"]

Mode = Literal["bot", "escalating", "agent"]

_MASK = "***"


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

    # ------------------------------------------------------------------ helpers

    def new_id(self) -> str:
        """A unique 24-hex id (``messageId``, internal ``conversationId``)."""
        return f"{self._id_prefix}{next(self._ids):014x}"

    def note(self, conversation_id: str, entry: TranscriptEntry) -> None:
        if self._transcripts is not None:
            self._transcripts.setdefault(conversation_id, []).append(entry)

    def _chat_envelope(self, data: dict[str, Any]) -> dict[str, Any]:
        return {"botId": self.bot_id, "channel": "chat", "data": data}

    # ------------------------------------------------------------------ jobs

    async def visitor_message(
        self, session: ChatSession, text: str, card_index: int | None
    ) -> None:
        """Route a visitor message by the conversation's mode at the time it is processed."""
        self.note(
            session.conversation_id,
            TranscriptEntry(
                "visitor",
                "message",
                text if card_index is None else f"{text} (card #{card_index})",
            ),
        )
        if session.mode == "agent":
            await self.sender.send(
                self._urls()[0],
                self._chat_envelope(
                    {
                        "eventType": "widgetMessage",
                        "platformConversationId": session.conversation_id,
                        "conversationId": session.internal_id,
                        "text": text,
                    }
                ),
                conversation_id=session.conversation_id,
                kind="widgetMessage",
            )
            return
        if session.mode == "escalating":
            self.note(
                session.conversation_id,
                TranscriptEntry("system", "waiting", "(waiting for an agent; message not routed)"),
            )
            return
        turn = self.bot.answer(text, card_index)
        turn_vars: dict[str, object] = {"text": text}
        if card_index is not None:
            turn_vars["cardIndex"] = card_index
        await self.run(session, turn.replies, turn_vars, turn.confidence)

    async def welcome(self, session: ChatSession) -> None:
        self.note(session.conversation_id, TranscriptEntry("visitor", "startSession"))
        await self.run(session, self.bot.welcome, {}, 1.0)

    async def replies(self, session: ChatSession, replies: Sequence[Reply]) -> None:
        """Proactive replies or the bot's answer to an agent-side widget event."""
        await self.run(session, replies, {}, 1.0)

    async def end_session(self, session: ChatSession) -> None:
        self.note(session.conversation_id, TranscriptEntry("visitor", "endSession"))
        if session.mode in ("escalating", "agent"):
            session.mode = "bot"
            await self.sender.send(
                self._urls()[0],
                self._chat_envelope(
                    {
                        "eventType": "widgetEndSession",
                        "platformConversationId": session.conversation_id,
                    }
                ),
                conversation_id=session.conversation_id,
                kind="widgetEndSession",
            )

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
        replies: Sequence[Reply],
        turn_vars: Mapping[str, object],
        confidence: float,
    ) -> bool:
        """Run ``replies`` in order; ``False`` when a failed step ended the turn."""
        for step in replies:
            if not await self._step(session, step, turn_vars, confidence):
                return False
        return True

    def _values(self, session: ChatSession, turn_vars: Mapping[str, object]) -> dict[str, object]:
        return {**session.variables, **turn_vars}

    async def _step(
        self,
        session: ChatSession,
        step: Reply,
        turn_vars: Mapping[str, object],
        confidence: float,
    ) -> bool:
        cid = session.conversation_id
        chat_url, action_url = self._urls()
        if isinstance(step, Text | Carousel):
            await self._send_message(session, step, turn_vars, confidence)
            return True
        if isinstance(step, TeamOnline):
            data: dict[str, Any] = {"eventType": "isTeamOnline", "platformConversationId": cid}
            if step.team_id is not None:
                data["teamId"] = step.team_id
            outcome = await self.sender.send(
                chat_url,
                self._chat_envelope(data),
                conversation_id=cid,
                kind="isTeamOnline",
                request=True,
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
            return await self.run(session, branch, turn_vars, confidence)
        if isinstance(step, Escalate):
            data = {"eventType": "escalate", "platformConversationId": cid}
            if step.escalate_to is not None:
                data["escalateTo"] = step.escalate_to
            outcome = await self.sender.send(
                chat_url,
                self._chat_envelope(data),
                conversation_id=cid,
                kind="escalate",
                request=True,
            )
            if outcome.ok:
                self.note(cid, TranscriptEntry("system", "escalate", "escalated"))
                return True
            self.note(
                cid, TranscriptEntry("system", "escalate", f"escalation failed ({outcome.status})")
            )
            await self.run(session, step.failed, turn_vars, confidence)
            return False
        if isinstance(step, WidgetEscalate):
            # Set before sending: the receiver may answer escalationSuccess before we see the 200.
            session.mode = "escalating"
            data = {"eventType": "widgetEscalate", "platformConversationId": cid}
            if step.escalate_to is not None:
                data["escalateTo"] = step.escalate_to
            self.note(cid, TranscriptEntry("system", "widgetEscalate", "handing over to an agent"))
            outcome = await self.sender.send(
                chat_url, self._chat_envelope(data), conversation_id=cid, kind="widgetEscalate"
            )
            if not outcome.ok and session.mode == "escalating":
                session.mode = "bot"
                return False
            return True
        return await self._action(session, step, turn_vars, confidence, action_url)

    async def _send_message(
        self,
        session: ChatSession,
        step: Text | Carousel,
        turn_vars: Mapping[str, object],
        confidence: float,
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
        await self.sender.send(
            self._urls()[0], self._chat_envelope(data), conversation_id=cid, kind="sendMessage"
        )

    async def _action(
        self,
        session: ChatSession,
        step: Action,
        turn_vars: Mapping[str, object],
        confidence: float,
        url: str | None,
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
        outcome = await self.sender.send(
            url, payload, conversation_id=cid, kind="action", request=True
        )
        results = _results(outcome.json()) if outcome.ok else None
        if outcome.ok and not outcome.body:
            results = []
        if results is None:
            self.note(
                cid, TranscriptEntry("system", "action", f"{step.name} failed ({outcome.status})")
            )
            await self.run(session, step.failed, turn_vars, confidence)
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
