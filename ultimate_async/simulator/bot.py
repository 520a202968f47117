"""The scripted bot behind the simulator: reply models, rules, and the JSON bot format.

A :class:`ScriptedBot` answers each visitor message with the replies of the first
:class:`Rule` that matches it (or ``fallback``).  Replies are *steps* the simulator runs in
order for that conversation: messages become ``sendMessage`` webhooks, and the request steps
(:class:`TeamOnline`, :class:`EscalateStep`, :class:`Action`) wait for the receiver's answer, so a
script can branch on ``isTeamOnline`` and echo action results in later text.

Text placeholders ``{name}`` (or ``{name|default}``) are filled when the message is sent, from
the conversation's variables: ``metaData`` the visitor sent, action results (by ``key``), and
per turn ``text`` and ``cardIndex``.  Unknown placeholders without a default stay as written.
A failed :class:`EscalateStep` (non-2xx answer) or :class:`Action` (non-2xx, or a body that is not
``{"results": [...]}``) runs its ``failed`` replies and ends the turn.

JSON format (``ScriptedBot.from_json(path)`` / ``from_dict(data)``); wire-style camelCase keys::

    {
      "welcome": ["Hi!", {"text": "How can I help?", "buttons": ["Orders", "Agent"]}],
      "fallback": "Sorry, I did not get that.",
      "rules": [
        {"match": "orders", "replies": ["Your order ships tomorrow."],
         "intent": "Order status", "confidence": 0.93},
        {"match": ["agent", "human"], "replies": [
          {"teamOnline": {"teamId": "support",
                          "online": ["Connecting you.", {"escalate": {"escalateTo": "support"}}],
                          "offline": ["Nobody is online right now."]}}]},
        {"match": "re:^choose", "cardIndex": 1, "replies": ["Express it is."]},
        {"match": "balance", "replies": [
          {"action": {"name": "getBalance", "params": {"userId": "{userId}"},
                      "saveAs": {"userId": "customerId"}, "failed": ["Lookup failed."]}},
          "Your balance is {balance|unknown} EUR."]}
      ],
      "tickets": [{"match": "address", "text": "Address updated.",
                   "intents": [{"name": "Update address", "confidence": 0.92}],
                   "attachments": ["attachments/label.pdf"]}],
      "ticketFallback": {"text": "An agent will reply soon."},
      "escalationFailed": ["No agent could take the chat; I am back."],
      "agentDisconnected": ["The agent left the chat."]
    }

A reply is a string (a text message) or an object with exactly one of these shapes:
``{"text", "buttons"?, "replyId"?, "confidence"?}``; ``{"carousel": [card, ...]}`` with cards
``{"title", "description"?, "imageUrl"?, "buttons"?}``; ``{"teamOnline": {"teamId"?, "online",
"offline"}}``; ``{"escalate": {"escalateTo"?, "failed"?}}``; ``{"widgetEscalate":
{"escalateTo"?}}``; ``{"action": {"name", "params"?, "saveAs"?, "failed"?}}``.  A button is a
string or ``{"text", "type": "button"|"link", "link"?}``.  ``match`` is a keyword
(case-insensitive substring), ``"re:<regex>"`` (searched case-insensitively) or a list of them
(any matches).  Unknown keys are refused with a :class:`ConfigurationError` naming the place.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from typing import Any, Literal, TypeAlias

import attrs

from ..errors import ConfigurationError

__all__ = [
    "Action",
    "Card",
    "Carousel",
    "EscalateStep",
    "Intent",
    "Rule",
    "ScriptedBot",
    "ScriptedButton",
    "Step",
    "TeamOnline",
    "Text",
    "TicketRule",
    "Turn",
    "WidgetEscalateStep",
    "demo_bot",
    "render",
]


def derive_id(*parts: str) -> str:
    """A stable 24-hex id (the platform's ObjectId style) for a piece of script."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=12)
    return digest.hexdigest()


_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.-]*)(?:\|([^{}]*))?\}")


def render(template: str, variables: Mapping[str, object]) -> str:
    """Fill ``{name}`` / ``{name|default}`` placeholders; never evaluates anything else."""
    if "{" not in template:
        return template

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in variables:
            return str(variables[name])
        return default if default is not None else match.group(0)

    return _PLACEHOLDER.sub(substitute, template)


# ----------------------------------------------------------------------------- reply models


def _buttons(value: Iterable[ScriptedButton | str]) -> tuple[ScriptedButton, ...]:
    if isinstance(value, str | ScriptedButton):
        value = [value]
    return tuple(b if isinstance(b, ScriptedButton) else ScriptedButton(b) for b in value)


def _replies(value: RepliesInput) -> tuple[Step, ...]:
    """Accept one reply, a string, or any iterable of them."""
    if value is None:
        return ()
    if isinstance(value, (str, *_REPLY_TYPES)):
        value = [value]
    if not isinstance(value, Iterable):
        raise TypeError(f"replies must be a string, a reply or a list of them, not {value!r}")
    out: list[Step] = []
    for item in value:
        if isinstance(item, str):
            out.append(Text(item))
        elif isinstance(item, _REPLY_TYPES):
            out.append(item)
        else:
            raise TypeError(f"not a reply: {item!r}")
    return tuple(out)


def _check_button_type(instance: ScriptedButton, attribute: object, value: str) -> None:
    if value not in ("button", "link"):
        raise ValueError(f"button type must be 'button' or 'link', got {value!r}")


@attrs.frozen
class ScriptedButton:
    """A quick reply. ``type="link"`` buttons are shown but never sent back as text."""

    text: str
    type: Literal["button", "link"] = attrs.field(default="button", validator=_check_button_type)
    link: str | None = None

    def to_wire(self) -> dict[str, str]:
        return {"type": self.type, "text": self.text}


@attrs.frozen
class Text:
    """A ``sendMessage`` of type ``text``, optionally with buttons."""

    text: str
    buttons: tuple[ScriptedButton, ...] = attrs.field(default=(), converter=_buttons)
    reply_id: str | None = None
    confidence: float | None = None


@attrs.frozen
class Card:
    """One carousel card; its buttons are answered with their text plus ``cardIndex``."""

    title: str
    description: str = ""
    image_url: str = ""
    buttons: tuple[ScriptedButton, ...] = attrs.field(default=(), converter=_buttons)


def _cards(value: Iterable[Card]) -> tuple[Card, ...]:
    return tuple(value)


@attrs.frozen
class Carousel:
    """A ``sendMessage`` of type ``carousel``."""

    cards: tuple[Card, ...] = attrs.field(converter=_cards)
    text: str = ""
    reply_id: str | None = None
    confidence: float | None = None


@attrs.frozen
class TeamOnline:
    """Ask the receiver ``isTeamOnline`` and continue with ``online`` or ``offline``."""

    team_id: str | None = None
    online: tuple[Step, ...] = attrs.field(default=(), converter=_replies)
    offline: tuple[Step, ...] = attrs.field(default=(), converter=_replies)


@attrs.frozen
class EscalateStep:
    """An ``escalate`` request (non-widget bots); ``failed`` runs when the answer is not 2xx."""

    escalate_to: str | None = None
    failed: tuple[Step, ...] = attrs.field(default=(), converter=_replies)


@attrs.frozen
class WidgetEscalateStep:
    """A ``widgetEscalate`` notification: the bot hands the widget chat to the customer's agents."""

    escalate_to: str | None = None


def _params(value: Mapping[str, str | Sequence[str]]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    items = value.items() if isinstance(value, Mapping) else value
    return tuple(
        (str(key), (val,) if isinstance(val, str) else tuple(str(v) for v in val))
        for key, val in items
    )


def _save_as(value: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    items = value.items() if isinstance(value, Mapping) else value
    return tuple((str(k), str(v)) for k, v in items)


@attrs.frozen
class Action:
    """Call the action webhook ``name``; its ``results`` become conversation variables.

    ``params`` values are templates (``{userId}``); ``save_as`` maps a param key to the
    ``saveAs`` name sent with it.  ``failed`` runs when the receiver does not answer 2xx with a
    valid ``{"results": [...]}`` body.
    """

    name: str
    params: tuple[tuple[str, tuple[str, ...]], ...] = attrs.field(default=(), converter=_params)
    save_as: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_save_as)
    failed: tuple[Step, ...] = attrs.field(default=(), converter=_replies)


Step: TypeAlias = Text | Carousel | TeamOnline | EscalateStep | WidgetEscalateStep | Action
#: What a ``replies`` argument accepts: one reply, a string (a text message), or a list of them.
RepliesInput: TypeAlias = "Step | str | Iterable[Step | str] | None"
_REPLY_TYPES = (Text, Carousel, TeamOnline, EscalateStep, WidgetEscalateStep, Action)

# ----------------------------------------------------------------------------- rules

#: A keyword (case-insensitive substring), a regex, ``"re:<regex>"``, or a list of them.
MatchInput: TypeAlias = "str | re.Pattern[str] | Iterable[str | re.Pattern[str]]"


def _matchers(value: MatchInput) -> tuple[str | re.Pattern[str], ...]:
    if isinstance(value, str | re.Pattern):
        value = [value]
    if not isinstance(value, Iterable):
        raise TypeError(f"match must be a keyword, a regex or a list of them, not {value!r}")
    out: list[str | re.Pattern[str]] = []
    for item in value:
        if isinstance(item, re.Pattern):
            out.append(item)
        elif isinstance(item, str):
            if item.startswith("re:"):
                out.append(re.compile(item[3:], re.IGNORECASE))
            else:
                out.append(item.casefold())
        else:
            raise TypeError(f"not a keyword or regex: {item!r}")
    return tuple(out)


def _matches(matchers: tuple[str | re.Pattern[str], ...], text: str) -> bool:
    folded: str | None = None
    for m in matchers:
        if isinstance(m, str):
            if folded is None:
                folded = text.casefold()
            if m in folded:
                return True
        elif m.search(text):
            return True
    return False


@attrs.frozen
class Intent:
    """A predicted intent; ``value`` (the intent id) is derived from the name unless given."""

    name: str
    confidence: float = 1.0
    value: str = attrs.field(
        default=attrs.Factory(lambda self: derive_id("intent", self.name), takes_self=True)
    )

    def to_wire(self) -> dict[str, object]:
        return {"value": self.value, "name": self.name, "confidence": self.confidence}


@attrs.frozen
class Rule:
    """Answer a visitor message that ``match``es with ``replies``.

    ``card_index`` restricts the rule to a carousel choice of that card; ``intent`` and
    ``confidence`` are what the platform reports for the match (``sendMessage.confidence``,
    legacy ``predictedIntents``, ``/api/intents``).
    """

    match: tuple[str | re.Pattern[str], ...] = attrs.field(converter=_matchers)
    replies: tuple[Step, ...] = attrs.field(converter=_replies)
    card_index: int | None = None
    intent: str | None = None
    confidence: float = 0.9

    def matches(self, text: str, card_index: int | None = None) -> bool:
        if self.card_index is not None and self.card_index != card_index:
            return False
        return _matches(self.match, text)


def _strings(value: str | Iterable[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _intents(value: Iterable[Intent | str]) -> tuple[Intent, ...]:
    return tuple(i if isinstance(i, Intent) else Intent(i) for i in value)


@attrs.frozen
class TicketRule:
    """Answer a ticket whose text ``match``es with one flat ticket reply."""

    match: tuple[str | re.Pattern[str], ...] = attrs.field(converter=_matchers)
    text: str
    intents: tuple[Intent, ...] = attrs.field(default=(), converter=_intents)
    attachments: tuple[str, ...] = attrs.field(default=(), converter=_strings)

    def matches(self, text: str) -> bool:
        return _matches(self.match, text)


@attrs.frozen
class Turn:
    """What the bot does for one visitor message."""

    replies: tuple[Step, ...]
    intent: Intent | None = None
    confidence: float = 0.3


def _ticket_fallback(value: TicketRule | str) -> TicketRule:
    return value if isinstance(value, TicketRule) else TicketRule((), value)


class ScriptedBot:
    """A rule-based bot: first matching rule wins, else ``fallback``."""

    def __init__(
        self,
        welcome: RepliesInput = None,
        rules: Iterable[Rule] = (),
        fallback: RepliesInput = "Sorry, I did not get that.",
        *,
        tickets: Iterable[TicketRule] = (),
        ticket_fallback: TicketRule | str = "Thank you for your message. An agent will reply soon.",
        escalation_failed: RepliesInput = (),
        agent_disconnected: RepliesInput = (),
    ) -> None:
        self.welcome = _replies(welcome)
        self.rules = tuple(rules)
        self.fallback = _replies(fallback)
        self.tickets = tuple(tickets)
        self.ticket_fallback = _ticket_fallback(ticket_fallback)
        self.escalation_failed = _replies(escalation_failed)
        self.agent_disconnected = _replies(agent_disconnected)

    def __repr__(self) -> str:
        return f"<ScriptedBot rules={len(self.rules)} tickets={len(self.tickets)}>"

    def answer(self, text: str, card_index: int | None = None) -> Turn:
        """The turn for a visitor message (a button click is just its text)."""
        for rule in self.rules:
            if rule.matches(text, card_index):
                intent = Intent(rule.intent, rule.confidence) if rule.intent else None
                return Turn(rule.replies, intent, rule.confidence)
        return Turn(self.fallback)

    def classify(self, text: str) -> list[Intent]:
        """Intents of every matching rule that names one, best first (``/api/intents``)."""
        seen: dict[str, Intent] = {}
        for rule in self.rules:
            if rule.intent and rule.intent not in seen and _matches(rule.match, text):
                seen[rule.intent] = Intent(rule.intent, rule.confidence)
        return sorted(seen.values(), key=lambda i: -i.confidence)

    def answer_ticket(self, text: str) -> TicketRule:
        for rule in self.tickets:
            if rule.matches(text):
                return rule
        return self.ticket_fallback

    # ------------------------------------------------------------------------- JSON

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> ScriptedBot:
        """Load a bot from a JSON file (format in this module's docstring)."""
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cannot read bot file {os.fspath(path)!r}: {exc}") from exc
        return cls.from_dict(data, source=os.fspath(path))

    @classmethod
    def from_dict(cls, data: object, *, source: str = "bot") -> ScriptedBot:
        """Build a bot from already-parsed JSON (format in this module's docstring)."""
        try:
            return _load_bot(data, source)
        except _LoadError as exc:
            raise ConfigurationError(str(exc)) from None
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"{source}: {exc}") from None


def demo_bot() -> ScriptedBot:
    """The built-in demo bot (``demo_bot.json`` next to this module); used by ``demo``."""
    text = resources.files(__package__).joinpath("demo_bot.json").read_text(encoding="utf-8")
    return ScriptedBot.from_dict(json.loads(text), source="demo_bot.json")


# ----------------------------------------------------------------------------- JSON loading


class _LoadError(Exception):
    pass


def _obj(
    value: object, where: str, allowed: set[str], required: frozenset[str] | set[str] = frozenset()
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _LoadError(f"{where}: expected an object, got {type(value).__name__}")
    unknown = set(value) - allowed
    if unknown:
        raise _LoadError(f"{where}: unknown key(s) {', '.join(sorted(map(repr, unknown)))}")
    missing = required - set(value)
    if missing:
        raise _LoadError(f"{where}: missing key(s) {', '.join(sorted(map(repr, missing)))}")
    return value


def _str(value: object, where: str, *, optional: bool = False) -> str:
    if value is None and optional:
        return ""
    if not isinstance(value, str):
        raise _LoadError(f"{where}: expected a string, got {type(value).__name__}")
    return value


def _opt_str(value: object, where: str) -> str | None:
    return None if value is None else _str(value, where)


def _num(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _LoadError(f"{where}: expected a number, got {type(value).__name__}")
    return float(value)


def _list(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise _LoadError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def _load_button(value: object, where: str) -> ScriptedButton:
    if isinstance(value, str):
        return ScriptedButton(value)
    obj = _obj(value, where, {"text", "type", "link"}, {"text"})
    kind = obj.get("type", "button")
    if kind not in ("button", "link"):
        raise _LoadError(f"{where}.type: must be 'button' or 'link', got {kind!r}")
    return ScriptedButton(
        _str(obj["text"], f"{where}.text"), kind, _opt_str(obj.get("link"), where)
    )


def _load_buttons(value: object, where: str) -> tuple[ScriptedButton, ...]:
    if value is None:
        return ()
    return tuple(_load_button(b, f"{where}[{i}]") for i, b in enumerate(_list(value, where)))


def _load_replies(value: object, where: str) -> tuple[Step, ...]:
    if value is None:
        return ()
    if isinstance(value, str | dict):
        value = [value]
    return tuple(_load_reply(r, f"{where}[{i}]") for i, r in enumerate(_list(value, where)))


def _load_reply(value: object, where: str) -> Step:
    if isinstance(value, str):
        return Text(value)
    if not isinstance(value, dict):
        raise _LoadError(f"{where}: expected a string or an object")
    if "text" in value:
        obj = _obj(value, where, {"text", "buttons", "replyId", "confidence"})
        conf = obj.get("confidence")
        return Text(
            _str(obj["text"], f"{where}.text"),
            _load_buttons(obj.get("buttons"), f"{where}.buttons"),
            _opt_str(obj.get("replyId"), f"{where}.replyId"),
            None if conf is None else _num(conf, f"{where}.confidence"),
        )
    kinds = {"carousel", "teamOnline", "escalate", "widgetEscalate", "action"}
    present = kinds & set(value)
    if len(present) != 1:
        raise _LoadError(
            f"{where}: a reply needs 'text' or exactly one of {', '.join(sorted(kinds))}"
        )
    kind = present.pop()
    body = value[kind]
    here = f"{where}.{kind}"
    if kind == "carousel":
        obj = _obj(value, where, {"carousel", "text", "replyId", "confidence"})
        conf = obj.get("confidence")
        return Carousel(
            [_load_card(c, f"{here}[{i}]") for i, c in enumerate(_list(body, here))],
            _str(obj.get("text", ""), f"{where}.text"),
            _opt_str(obj.get("replyId"), f"{where}.replyId"),
            None if conf is None else _num(conf, f"{where}.confidence"),
        )
    _obj(value, where, {kind})
    if kind == "teamOnline":
        obj = _obj(body, here, {"teamId", "online", "offline"})
        return TeamOnline(
            _opt_str(obj.get("teamId"), f"{here}.teamId"),
            _load_replies(obj.get("online"), f"{here}.online"),
            _load_replies(obj.get("offline"), f"{here}.offline"),
        )
    if kind == "escalate":
        if body is True or body is None:
            return EscalateStep()
        if isinstance(body, str):
            return EscalateStep(body)
        obj = _obj(body, here, {"escalateTo", "failed"})
        return EscalateStep(
            _opt_str(obj.get("escalateTo"), f"{here}.escalateTo"),
            _load_replies(obj.get("failed"), f"{here}.failed"),
        )
    if kind == "widgetEscalate":
        if body is True or body is None:
            return WidgetEscalateStep()
        if isinstance(body, str):
            return WidgetEscalateStep(body)
        obj = _obj(body, here, {"escalateTo"})
        return WidgetEscalateStep(_opt_str(obj.get("escalateTo"), f"{here}.escalateTo"))
    obj = _obj(body, here, {"name", "params", "saveAs", "failed"}, {"name"})
    params = obj.get("params") or {}
    if not isinstance(params, dict) or not all(
        isinstance(v, str) or (isinstance(v, list) and all(isinstance(s, str) for s in v))
        for v in params.values()
    ):
        raise _LoadError(f"{here}.params: expected an object of strings or lists of strings")
    save_as = obj.get("saveAs") or {}
    if not isinstance(save_as, dict) or not all(isinstance(v, str) for v in save_as.values()):
        raise _LoadError(f"{here}.saveAs: expected an object of strings")
    return Action(
        _str(obj["name"], f"{here}.name"),
        params,
        save_as,
        _load_replies(obj.get("failed"), f"{here}.failed"),
    )


def _load_card(value: object, where: str) -> Card:
    obj = _obj(value, where, {"title", "description", "imageUrl", "buttons"}, {"title"})
    return Card(
        _str(obj["title"], f"{where}.title"),
        _str(obj.get("description"), f"{where}.description", optional=True),
        _str(obj.get("imageUrl"), f"{where}.imageUrl", optional=True),
        _load_buttons(obj.get("buttons"), f"{where}.buttons"),
    )


def _load_match(value: object, where: str) -> tuple[str | re.Pattern[str], ...]:
    items = [value] if isinstance(value, str) else _list(value, where)
    for i, item in enumerate(items):
        _str(item, f"{where}[{i}]")
    try:
        return _matchers(items)
    except re.error as exc:
        raise _LoadError(f"{where}: bad regex: {exc}") from None


def _load_rule(value: object, where: str) -> Rule:
    obj = _obj(value, where, {"match", "replies", "cardIndex", "intent", "confidence"}, {"match"})
    card_index = obj.get("cardIndex")
    if card_index is not None and (isinstance(card_index, bool) or not isinstance(card_index, int)):
        raise _LoadError(f"{where}.cardIndex: expected an integer")
    return Rule(
        _load_match(obj["match"], f"{where}.match"),
        _load_replies(obj.get("replies"), f"{where}.replies"),
        card_index=card_index,
        intent=_opt_str(obj.get("intent"), f"{where}.intent"),
        confidence=_num(obj.get("confidence", 0.9), f"{where}.confidence"),
    )


def _load_intent(value: object, where: str) -> Intent:
    if isinstance(value, str):
        return Intent(value)
    obj = _obj(value, where, {"name", "confidence", "value"}, {"name"})
    name = _str(obj["name"], f"{where}.name")
    confidence = _num(obj.get("confidence", 1.0), f"{where}.confidence")
    if "value" in obj:
        return Intent(name, confidence, _str(obj["value"], f"{where}.value"))
    return Intent(name, confidence)


def _load_ticket(value: object, where: str, *, fallback: bool = False) -> TicketRule:
    if fallback and isinstance(value, str):
        return TicketRule((), value)
    keys = {"text", "intents", "attachments"} | (set() if fallback else {"match"})
    obj = _obj(value, where, keys, {"text"} | (set() if fallback else {"match"}))
    attachments = obj.get("attachments") or []
    return TicketRule(
        () if fallback else _load_match(obj["match"], f"{where}.match"),
        _str(obj["text"], f"{where}.text"),
        [
            _load_intent(x, f"{where}.intents[{i}]")
            for i, x in enumerate(_list(obj.get("intents") or [], f"{where}.intents"))
        ],
        [
            _str(a, f"{where}.attachments[{i}]")
            for i, a in enumerate(_list(attachments, f"{where}.attachments"))
        ],
    )


def _load_bot(data: object, source: str) -> ScriptedBot:
    obj = _obj(
        data,
        source,
        {
            "welcome",
            "rules",
            "fallback",
            "tickets",
            "ticketFallback",
            "escalationFailed",
            "agentDisconnected",
        },
    )
    kwargs: dict[str, Any] = {}
    if "fallback" in obj:
        kwargs["fallback"] = _load_replies(obj["fallback"], f"{source}.fallback")
    if "ticketFallback" in obj:
        kwargs["ticket_fallback"] = _load_ticket(
            obj["ticketFallback"], f"{source}.ticketFallback", fallback=True
        )
    return ScriptedBot(
        welcome=_load_replies(obj.get("welcome"), f"{source}.welcome"),
        rules=[
            _load_rule(r, f"{source}.rules[{i}]")
            for i, r in enumerate(_list(obj.get("rules") or [], f"{source}.rules"))
        ],
        tickets=[
            _load_ticket(t, f"{source}.tickets[{i}]")
            for i, t in enumerate(_list(obj.get("tickets") or [], f"{source}.tickets"))
        ],
        escalation_failed=_load_replies(obj.get("escalationFailed"), f"{source}.escalationFailed"),
        agent_disconnected=_load_replies(
            obj.get("agentDisconnected"), f"{source}.agentDisconnected"
        ),
        **kwargs,
    )
