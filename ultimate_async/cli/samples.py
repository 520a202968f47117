"""Realistic sample webhooks, one per kind the receiver knows (for ``trigger``).

Built with the payload builders of :mod:`ultimate_async.testing`, so a sample is exactly what the
platform sends and what the receiver's parser accepts; the CLI adds nothing of its own.
"""

from __future__ import annotations

import uuid
from typing import Any, Final

__all__ = ["SAMPLE_KINDS", "sample"]

#: Every kind ``trigger`` can send (``buttons`` and ``carousel`` are bot messages too).
SAMPLE_KINDS: Final = (
    "message",
    "buttons",
    "carousel",
    "escalate",
    "team_online",
    "action",
    "widget_escalate",
    "widget_message",
    "widget_end_session",
    "ticket_reply",
    "alert",
)


def sample(
    kind: str,
    conversation_id: str | None = None,
    *,
    text: str | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """The JSON body of one ``kind`` webhook for ``conversation_id`` (default: a fresh id)."""
    from .. import testing as t

    cid = conversation_id or f"trigger-{uuid.uuid4().hex[:12]}"
    if kind == "message":
        return t.make_bot_message(cid, text or "Hello! How can I help you today?")
    if kind == "buttons":
        return t.make_bot_message(
            cid, text or "Did that answer your question?", buttons=["Yes", "No"]
        )
    if kind == "carousel":
        cards = [
            {
                "title": title,
                "description": f"The {title.lower()} plan",
                "imageUrl": f"https://example.com/{title.lower()}.png",
                "buttons": [f"Choose {title}"],
            }
            for title in ("Basic", "Premium")
        ]
        return t.make_bot_message(cid, text or "Pick a plan", carousel_cards=cards)
    if kind == "escalate":
        return t.make_escalate(cid)
    if kind == "team_online":
        return t.make_team_online_check(cid)
    if kind == "action":
        return t.make_action_call(cid, name or "lookup_order", {"order_id": "A-1001"})
    if kind == "widget_escalate":
        return t.make_widget_escalate(cid)
    if kind == "widget_message":
        return t.make_widget_message(cid, text or "Can I talk to a person, please?")
    if kind == "widget_end_session":
        return t.make_widget_end_session(cid)
    if kind == "ticket_reply":
        return t.make_ticket_reply(
            cid, text or "Thanks for writing! Your order ships tomorrow.", intents=[("order", 0.92)]
        )
    if kind == "alert":
        return {
            "botName": "Sample bot",
            "event": name or "test",
            "conversationId": uuid.uuid4().hex[:24],
            "platformConversationId": cid,
            "data": {"httpStatus": 500, "endpointUrl": "https://example.com/orders"},
        }
    raise ValueError(f"unknown sample kind {kind!r}; expected one of {', '.join(SAMPLE_KINDS)}")
