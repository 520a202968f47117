"""ScriptedBot rules, placeholders and the JSON bot format."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from ultimate_async.errors import ConfigurationError
from ultimate_async.simulator import (
    Action,
    Carousel,
    EscalateStep,
    Rule,
    ScriptedBot,
    ScriptedButton,
    TeamOnline,
    Text,
    TicketRule,
    WidgetEscalateStep,
    demo_bot,
)
from ultimate_async.simulator.bot import render


def test_keyword_rules_match_case_insensitive_substrings_first_rule_wins() -> None:
    bot = ScriptedBot(rules=[Rule("refund", "R"), Rule(["order", "parcel"], "O")])
    assert bot.answer("I want a REFUND for my order").replies == (Text("R"),)
    assert bot.answer("where is my Parcel").replies == (Text("O"),)
    assert bot.answer("hello").replies == (Text("Sorry, I did not get that."),)


def test_regex_rules_from_patterns_and_re_prefix() -> None:
    bot = ScriptedBot(
        rules=[Rule(re.compile(r"^\d{4}$"), "pin"), Rule("re:^no\\b", "no")], fallback="?"
    )
    assert bot.answer("1234").replies == (Text("pin"),)
    assert bot.answer("12345").replies == (Text("?"),)
    assert bot.answer("No thanks").replies == (Text("no"),)
    assert bot.answer("nothing").replies == (Text("?"),)


def test_card_index_restricts_a_rule_to_that_card() -> None:
    bot = ScriptedBot(rules=[Rule("pick", "zero", card_index=0), Rule("pick", "any")])
    assert bot.answer("pick", 0).replies == (Text("zero"),)
    assert bot.answer("pick", 3).replies == (Text("any"),)
    assert bot.answer("pick").replies == (Text("any"),)


def test_turn_reports_intent_and_confidence() -> None:
    bot = ScriptedBot(rules=[Rule("refund", "R", intent="Refund", confidence=0.8)])
    turn = bot.answer("refund")
    assert turn.intent is not None and turn.intent.name == "Refund"
    assert turn.confidence == 0.8
    assert bot.answer("x").intent is None
    assert [i.name for i in bot.classify("refund")] == ["Refund"]


def test_render_fills_known_placeholders_and_defaults_only() -> None:
    values = {"name": "Ann", "n": 3}
    assert render("Hi {name}, {n} items", values) == "Hi Ann, 3 items"
    assert render("{missing|none} {missing}", values) == "none {missing}"
    assert render("{name.__class__} {0} {}", values) == "{name.__class__} {0} {}"


def test_replies_accept_strings_and_lists() -> None:
    rule = Rule("x", ["a", Text("b", buttons=["c", ScriptedButton("d", "link")])])
    assert rule.replies == (
        Text("a"),
        Text("b", (ScriptedButton("c"), ScriptedButton("d", "link"))),
    )
    with pytest.raises(ValueError):
        ScriptedButton("x", "submit")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Rule("x", [42])  # type: ignore[list-item]


DOC_EXAMPLE: dict[str, Any] = {
    "welcome": ["Hi!", {"text": "How can I help?", "buttons": ["Orders", "Agent"]}],
    "fallback": "Sorry, I did not get that.",
    "rules": [
        {
            "match": "orders",
            "replies": ["Your order ships tomorrow."],
            "intent": "Order status",
            "confidence": 0.93,
        },
        {
            "match": ["agent", "human"],
            "replies": [
                {
                    "teamOnline": {
                        "teamId": "support",
                        "online": ["Connecting you.", {"escalate": {"escalateTo": "support"}}],
                        "offline": ["Nobody is online right now."],
                    }
                }
            ],
        },
        {"match": "re:^choose", "cardIndex": 1, "replies": ["Express it is."]},
        {
            "match": "balance",
            "replies": [
                {
                    "action": {
                        "name": "getBalance",
                        "params": {"userId": "{userId}"},
                        "saveAs": {"userId": "customerId"},
                        "failed": ["Lookup failed."],
                    }
                },
                "Your balance is {balance|unknown} EUR.",
            ],
        },
        {
            "match": "live",
            "replies": [
                {"widgetEscalate": {"escalateTo": "support"}},
                {"carousel": [{"title": "T", "buttons": [{"text": "L", "type": "link"}]}]},
            ],
        },
    ],
    "tickets": [
        {
            "match": "address",
            "text": "Address updated.",
            "intents": [{"name": "Update address", "confidence": 0.92}],
            "attachments": ["attachments/label.pdf"],
        }
    ],
    "ticketFallback": {"text": "An agent will reply soon."},
    "escalationFailed": ["No agent could take the chat; I am back."],
    "agentDisconnected": ["The agent left the chat."],
}


def test_from_json_loads_the_documented_format(tmp_path: Path) -> None:
    path = tmp_path / "bot.json"
    path.write_text(json.dumps(DOC_EXAMPLE), encoding="utf-8")
    bot = ScriptedBot.from_json(path)
    assert bot.welcome == (Text("Hi!"), Text("How can I help?", ("Orders", "Agent")))
    assert bot.answer("my orders").intent is not None
    (team,) = bot.answer("human please").replies
    assert team == TeamOnline(
        "support", ["Connecting you.", EscalateStep("support")], ["Nobody is online right now."]
    )
    assert bot.answer("choose", 1).replies == (Text("Express it is."),)
    action, echo = bot.answer("balance").replies
    assert action == Action(
        "getBalance", {"userId": "{userId}"}, {"userId": "customerId"}, "Lookup failed."
    )
    assert echo == Text("Your balance is {balance|unknown} EUR.")
    widget, carousel = bot.answer("live").replies
    assert widget == WidgetEscalateStep("support")
    assert isinstance(carousel, Carousel) and carousel.cards[0].buttons == (
        ScriptedButton("L", "link"),
    )
    ticket = bot.answer_ticket("new address")
    assert ticket.text == "Address updated." and ticket.attachments == ("attachments/label.pdf",)
    assert ticket.intents[0].confidence == 0.92
    assert bot.answer_ticket("other").text == "An agent will reply soon."
    assert bot.escalation_failed == (Text("No agent could take the chat; I am back."),)
    assert bot.agent_disconnected == (Text("The agent left the chat."),)


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ([], "expected an object"),
        ({"rulez": []}, "unknown key(s) 'rulez'"),
        ({"rules": [{"replies": []}]}, "bot.rules[0]: missing key(s) 'match'"),
        ({"rules": [{"match": "x", "replies": [{"txt": "a"}]}]}, "bot.rules[0].replies[0]"),
        ({"rules": [{"match": "re:(", "replies": []}]}, "bad regex"),
        ({"rules": [{"match": "x", "cardIndex": "1"}]}, "cardIndex"),
        ({"welcome": [{"text": "a", "buttons": [{"text": "b", "type": "x"}]}]}, "type"),
        ({"welcome": [{"action": {"params": {}}}]}, "missing key(s) 'name'"),
        ({"welcome": [{"action": {"name": "a", "params": {"k": 1}}}]}, "params"),
        ({"welcome": [{"escalate": {}, "action": {"name": "a"}}]}, "exactly one"),
        ({"tickets": [{"match": "x"}]}, "missing key(s) 'text'"),
        ({"welcome": [{"text": 5}]}, "welcome[0].text: expected a string"),
    ],
)
def test_from_dict_names_the_place_of_an_error(data: Any, where: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        ScriptedBot.from_dict(data)
    assert where in str(info.value)


def test_from_json_reports_unreadable_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{", encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"bad\.json"):
        ScriptedBot.from_json(bad)
    with pytest.raises(ConfigurationError, match=r"missing\.json"):
        ScriptedBot.from_json(tmp_path / "missing.json")


def test_demo_bot_covers_the_scripted_journey() -> None:
    bot = demo_bot()
    kinds = {type(r).__name__ for rule in bot.rules for r in rule.replies}
    assert {"Text", "Carousel", "TeamOnline", "Action"} <= kinds
    nested = {
        type(r).__name__
        for rule in bot.rules
        for step in rule.replies
        if isinstance(step, TeamOnline)
        for r in step.online
    }
    assert {"EscalateStep", "WidgetEscalateStep"} <= nested
    assert bot.tickets and all(t.intents for t in bot.tickets)
    assert isinstance(bot.tickets[0], TicketRule)
