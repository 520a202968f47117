"""One converter, one policy: the rules webhooks are read by apply to every model the SDK reads."""

from __future__ import annotations

from typing import Any

import pytest

from ultimate_async import (
    ActionParam,
    AutomationMessage,
    AutomationReply,
    BotMessage,
    Button,
    CarouselCard,
    IntentsResult,
    PayloadError,
    RecognizedEntity,
)
from ultimate_async.converter import parse_webhook, structure


def test_null_reads_as_each_fields_own_default() -> None:
    raw = {
        "data": {
            "eventType": "sendMessage",
            "type": None,
            "text": None,
            "buttons": [{"type": None, "text": "ok"}],
            "carouselCards": None,
            "confidence": None,
        }
    }
    assert parse_webhook(raw) == BotMessage(type="text", buttons=[Button("button", "ok")])


def test_a_default_factory_gives_each_object_its_own_list() -> None:
    first = structure({"buttons": None}, CarouselCard)
    second = structure({"buttons": None}, CarouselCard)
    assert first.buttons == [] and first.buttons is not second.buttons


@pytest.mark.parametrize(
    ("value", "cls", "reason"),
    [
        ({"confidence": True}, BotMessage, "expected a number, got boolean @ $.confidence"),
        ({"text": 1}, BotMessage, "expected a string, got number @ $.text"),
        ({"buttons": "YES"}, BotMessage, "expected a list, got string @ $.buttons"),
        ({"buttons": [[]]}, BotMessage, "expected an object, got list @ $.buttons[0]"),
        ({"sanitize": "yes"}, ActionParam, "expected a boolean, got string @ $.sanitize"),
        ([], BotMessage, "expected an object, got list @ $"),
    ],
)
def test_wrong_json_types_are_named_per_field(value: Any, cls: type, reason: str) -> None:
    with pytest.raises(PayloadError) as info:
        structure(value, cls)
    assert info.value.errors == [reason]


def test_legacy_replies_follow_the_same_rules() -> None:
    reply = structure(
        {"messages": [{"text": None, "forwardToHuman": True, "newKey": 1}], "entities": None},
        AutomationReply,
    )
    assert reply == AutomationReply(messages=[AutomationMessage(forward_to_human=True)])
    with pytest.raises(PayloadError) as info:
        structure({"entities": [{"name": 5, "index": 1.5, "confidence": "high"}]}, IntentsResult)
    assert info.value.errors == [
        "expected a string, got number @ $.entities[0].name",
        "expected a number, got string @ $.entities[0].confidence",
        "expected an integer, got number @ $.entities[0].index",
    ]
    assert structure({"index": 3, "confidence": 1}, RecognizedEntity) == RecognizedEntity(
        confidence=1.0, index=3
    )
