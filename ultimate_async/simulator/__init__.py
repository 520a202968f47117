"""A local Ultimate platform, so demos and tests run the whole loop offline.

:class:`Simulator` serves the platform's endpoints on a real aiohttp server and delivers the
webhooks of a :class:`ScriptedBot` (signed for the verifier you choose), with optional
:class:`Faults`.  See ``server.py`` for the endpoints and status codes, ``bot.py`` for the bot
rules and the JSON bot format, ``delivery.py`` for ordering and retries, ``engine.py`` for how
steps run and where turns end.

A bot script is made of *steps* (:data:`Step`): :class:`Text`, :class:`Carousel` (of
:class:`Card`), :class:`TeamOnline`, :class:`EscalateStep`, :class:`WidgetEscalateStep`,
:class:`Action`; buttons are :class:`ScriptedButton`.  (The step names differ from the webhook
models ``ultimate_async.Escalate``, ``Button``... on purpose: a step is what the bot *does*, a
model is what your receiver *gets*.)

The widget escalation flow is one state machine per conversation (``sim.mode(id)``)::

    bot ──(bot runs a WidgetEscalateStep: widgetEscalate webhook)──► escalating
    escalating ──escalationQueueUpdate──► escalating
    escalating ──escalationSuccess──► agent
    escalating ──escalationFailed──► bot       (the bot says its escalationFailed replies)
    agent ──message──► agent                   (agent → visitor)
    agent ──agentDisconnect──► bot             (the bot says its agentDisconnected replies)
    any ──visitor endSession──► ended          (widgetEndSession webhook if escalating/agent)

A visitor ``message`` goes to the bot in ``bot`` mode, to the receiver as ``widgetMessage`` in
``agent`` mode, and nowhere (only the transcript) while ``escalating``.  Every agent-side event
(``/agent/converse/send-message-to-widget``) sent in a mode the table has no arrow for - a
conversation that never escalated, one already handed back, one that ended - is refused with
**400** and a reason naming the event and the mode, as the platform refuses an agent
``message`` before ``escalationSuccess`` (``server.WIDGET_FLOW`` is the table in code).

Importing this package is cheap: the server (and aiohttp) load on first use of a name.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .defaults import DEFAULT_BOT_ID

if TYPE_CHECKING:
    from .bot import (
        Action,
        Card,
        Carousel,
        EscalateStep,
        Intent,
        Rule,
        ScriptedBot,
        ScriptedButton,
        Step,
        TeamOnline,
        Text,
        TicketRule,
        Turn,
        WidgetEscalateStep,
        demo_bot,
    )
    from .delivery import DeliveryRecord, SimulatorStats
    from .engine import TranscriptEntry
    from .faults import Faults
    from .server import RecordedRequest, Simulator

__all__ = [
    "DEFAULT_BOT_ID",
    "Action",
    "Card",
    "Carousel",
    "DeliveryRecord",
    "EscalateStep",
    "Faults",
    "Intent",
    "RecordedRequest",
    "Rule",
    "ScriptedBot",
    "ScriptedButton",
    "Simulator",
    "SimulatorStats",
    "Step",
    "TeamOnline",
    "Text",
    "TicketRule",
    "TranscriptEntry",
    "Turn",
    "WidgetEscalateStep",
    "demo_bot",
]

_HOME = {
    "Action": ".bot",
    "Card": ".bot",
    "Carousel": ".bot",
    "EscalateStep": ".bot",
    "Intent": ".bot",
    "Rule": ".bot",
    "ScriptedBot": ".bot",
    "ScriptedButton": ".bot",
    "Step": ".bot",
    "TeamOnline": ".bot",
    "Text": ".bot",
    "TicketRule": ".bot",
    "Turn": ".bot",
    "WidgetEscalateStep": ".bot",
    "demo_bot": ".bot",
    "DeliveryRecord": ".delivery",
    "SimulatorStats": ".delivery",
    "TranscriptEntry": ".engine",
    "Faults": ".faults",
    "RecordedRequest": ".server",
    "Simulator": ".server",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
