"""The webhook every receiver benchmark posts, shared by servers, load generators and tests."""

from __future__ import annotations

import json
from typing import Any

SECRET = "s3cret"
PATH = "/webhook"
BOT_ID = "618a30beee4e8e87d2f94015"
#: Distinct conversation ids the load generators cycle through.
CONVERSATIONS = 1000


def send_message(conversation_id: str, message_id: str) -> dict[str, Any]:
    """A ``sendMessage`` webhook of the shape of the test fixture ``chat_send_message_text.json``
    (in ``tests/fixtures/webhooks``), with the benchmarks' own values."""
    return {
        "botId": BOT_ID,
        "channel": "chat",
        "data": {
            "eventType": "sendMessage",
            "platformConversationId": conversation_id,
            "type": "text",
            "replyId": "618a30be1c2ffe001ab1078f",
            "messageId": message_id,
            "confidence": 0.93,
            "text": "Hello, this is a bot text message",
            "buttons": [],
            "carouselCards": [],
        },
    }


def send_message_body(conversation_id: str, message_id: str) -> bytes:
    return json.dumps(send_message(conversation_id, message_id), separators=(",", ":")).encode()


def auth_headers() -> dict[str, str]:
    return {"Authorization": SECRET, "Content-Type": "application/json"}


#: The client benchmarks send this visitor message to the sink.
CLIENT_TEXT = "Hello, I would like to know where my order is"
