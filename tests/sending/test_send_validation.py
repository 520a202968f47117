"""Bad arguments fail with a ValueError naming the argument, and nothing is sent."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from ultimate_async.errors import ConfigurationError
from ultimate_async.models.outbound import MetaData
from ultimate_async.session import Session

BAD_CALLS: list[tuple[str, Callable[[Session], Awaitable[None]], str]] = [
    ("empty conversation_id", lambda s: s.chat.start_session(""), "conversation_id"),
    ("blank conversation_id", lambda s: s.chat.end_session("   "), "conversation_id"),
    ("non-str conversation_id", lambda s: s.chat.end_session(42), "conversation_id"),  # type: ignore[arg-type]
    ("empty text", lambda s: s.chat.send_message("c1", ""), "text"),
    ("blank text", lambda s: s.chat.send_message("c1", " \n"), "text"),
    ("None text", lambda s: s.chat.send_message("c1", None), "text"),  # type: ignore[arg-type]
    ("negative card_index", lambda s: s.chat.send_message("c1", "x", card_index=-1), "card_index"),
    ("bool card_index", lambda s: s.chat.send_message("c1", "x", card_index=True), "card_index"),
    (
        "non-str metadata value",
        lambda s: s.chat.send_message("c1", "x", metadata={"age": 42}),  # type: ignore[arg-type]
        "metadata",
    ),
    (
        "non-str metadata key",
        lambda s: s.chat.start_session("c1", metadata={1: "x"}),  # type: ignore[arg-type]
        "metadata",
    ),
    (
        "MetaData with a non-str value",
        lambda s: s.chat.send_metadata("c1", [MetaData("k", 3)]),  # type: ignore[arg-type]
        "metadata",
    ),
    (
        "metadata items not MetaData",
        lambda s: s.chat.send_metadata("c1", [("k", "v")]),  # type: ignore[list-item]
        "metadata",
    ),
    ("metadata as a string", lambda s: s.chat.send_metadata("c1", "k=v"), "metadata"),  # type: ignore[arg-type]
    ("empty send_metadata", lambda s: s.chat.send_metadata("c1", {}), "metadata"),
    ("ticket empty text", lambda s: s.tickets.send("t1", ""), "text"),
    ("ticket empty id", lambda s: s.tickets.send("", "x"), "conversation_id"),
    ("agent_message empty text", lambda s: s.widget.agent_message("w1", ""), "text"),
    ("widget empty id", lambda s: s.widget.escalation_failed(""), "conversation_id"),
    (
        "queue_position wrong type",
        lambda s: s.widget.queue_update("w1", queue_position=1.5),  # type: ignore[arg-type]
        "queue_position",
    ),
]


@pytest.mark.parametrize(("name", "call", "argument"), BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
async def test_invalid_arguments_raise_and_send_nothing(
    platform: Any, name: str, call: Callable[[Session], Awaitable[None]], argument: str
) -> None:
    async with Session("key", "bot", base_url=platform.url) as session:
        with pytest.raises(ValueError, match=argument):
            await call(session)
        await session.chat.end_session("still-works")
    assert [r.json()["platformConversationId"] for r in platform.requests] == ["still-works"]


def test_sanitized_metadata_value_is_not_in_the_error() -> None:
    from ultimate_async.models.outbound import metadata_to_wire

    with pytest.raises(ValueError) as info:
        metadata_to_wire({"ssn": 123456789})  # type: ignore[arg-type]
    assert "123456789" not in str(info.value)
    assert "ssn" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"api_key": "", "bot_id": "b"}, "api_key"),
        ({"api_key": "k", "bot_id": ""}, "bot_id"),
        ({"api_key": "k", "bot_id": "b", "base_url": "ftp://x"}, "base_url"),
        ({"api_key": "k", "bot_id": "b", "base_url": "mars"}, "base_url"),
    ],
)
def test_bad_construction_is_a_configuration_error(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        Session(**kwargs)
