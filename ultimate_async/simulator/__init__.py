"""A local Ultimate platform, so demos and tests run the whole loop offline.

:class:`Simulator` serves the platform's endpoints on a real aiohttp server and delivers the
webhooks of a :class:`ScriptedBot` (signed for the verifier you choose), with optional
:class:`Faults`.  See ``server.py`` for the endpoints and status codes, ``bot.py`` for the bot
rules and the JSON bot format, ``delivery.py`` for ordering and retries.
"""

from __future__ import annotations

from .bot import (
    Action,
    Button,
    Card,
    Carousel,
    Escalate,
    Intent,
    Reply,
    Rule,
    ScriptedBot,
    TeamOnline,
    Text,
    TicketRule,
    Turn,
    WidgetEscalate,
    demo_bot,
)
from .delivery import DeliveryRecord, SimulatorStats
from .engine import TranscriptEntry
from .faults import Faults
from .server import RecordedRequest, Simulator

__all__ = [
    "Action",
    "Button",
    "Card",
    "Carousel",
    "DeliveryRecord",
    "Escalate",
    "Faults",
    "Intent",
    "RecordedRequest",
    "Reply",
    "Rule",
    "ScriptedBot",
    "Simulator",
    "SimulatorStats",
    "TeamOnline",
    "Text",
    "TicketRule",
    "TranscriptEntry",
    "Turn",
    "WidgetEscalate",
    "demo_bot",
]
