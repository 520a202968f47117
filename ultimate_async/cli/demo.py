"""``demo``: the whole round trip on one machine, printed as a transcript.

A simulator plays the platform and its bot; a ``WebhookReceiver`` served on a free local port
(HMAC-signed deliveries) plays your backend.  A scripted customer walks through every kind of
exchange; each step checks what it expected and prints ✓ or ✗, and the exit code says whether
all of them passed.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, TextIO

from ._common import EXIT_FAILURE, EXIT_OK, one_line, run

if TYPE_CHECKING:
    from ..conversation import Reply

__all__ = ["command", "run_demo"]

BALANCE = "42.50"


class StepFailed(Exception):
    """A journey step did not see what it expected."""


def expect(condition: object, message: str) -> None:
    if not condition:
        raise StepFailed(message)


class Transcript:
    """Prints the conversation readably and counts the steps that failed."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.passed = 0
        self.failed = 0

    def line(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def visitor(self, text: str) -> None:
        self.line(f"   visitor > {text}")

    def agent(self, text: str) -> None:
        self.line(f"   agent   > {text}")

    def note(self, text: str) -> None:
        self.line(f"             ({text})")

    def reply(self, reply: Reply) -> None:
        from ..models.webhooks import (
            ActionCall,
            BotMessage,
            Escalate,
            TeamOnlineCheck,
            WidgetEscalate,
            WidgetMessage,
        )

        for event in reply.events:
            if isinstance(event, BotMessage):
                if event.text:
                    self.line(f"   bot     > {event.text}")
                if event.buttons:
                    self.line("             " + _buttons(event.buttons))
                for index, card in enumerate(event.carousel_cards):
                    about = f" - {card.description}" if card.description else ""
                    self.line(f"             card {index}: {card.title}{about}")
                    if card.buttons:
                        self.line("                     " + _buttons(card.buttons))
            elif isinstance(event, TeamOnlineCheck):
                self.note("the bot asked isTeamOnline; our on_team_online handler answered")
            elif isinstance(event, ActionCall):
                params = ", ".join(f"{p.key}={'/'.join(p.value)}" for p in event.params)
                self.note(f"the bot called action {event.name}({params}); on_action answered")
            elif isinstance(event, Escalate | WidgetEscalate):
                target = f" to {event.escalate_to}" if event.escalate_to else ""
                self.note(f"the bot escalated{target}: {_kind(event)}")
            elif isinstance(event, WidgetMessage):
                self.note(f"widgetMessage for the agent: {event.text!r}")
            else:
                self.note(f"event {_kind(event)}")

    async def step(self, title: str, body: Callable[[], Awaitable[str]]) -> None:
        number = self.passed + self.failed + 1
        self.line(f"{number}. {title}")
        started = time.perf_counter()
        try:
            summary = await body()
        except StepFailed as error:
            self.failed += 1
            self.line(f"   ✗ {error}")
        except Exception as error:
            self.failed += 1
            self.line(f"   ✗ {type(error).__name__}: {one_line(error)}")
        else:
            self.passed += 1
            took = (time.perf_counter() - started) * 1000
            self.line(f"   ✓ {summary} ({took:.0f} ms)")
        self.line()


def _buttons(buttons: Iterable[Any]) -> str:
    return " ".join(f"[{b.text}{' ↗' if b.type == 'link' else ''}]" for b in buttons)


def _kind(event: object) -> str:
    return type(event).__name__


async def run_demo(out: TextIO, *, wait: float = 5.0, settle: float = 0.3) -> bool:
    """Run the journey, printing to ``out``; True when every step passed."""
    from ..conversation import Conversation
    from ..legacy import LegacyClient
    from ..models.outbound import ActionResult
    from ..models.webhooks import (
        ActionCall,
        TeamOnlineCheck,
        TicketReply,
        WidgetEscalate,
        WidgetMessage,
    )
    from ..session import Session
    from ..simulator import Simulator
    from ..webhook import EventContext, WebhookReceiver, WebhookServer
    from ..webhook.verify import HmacSignature

    t = Transcript(out)
    timeout = wait
    verifier = HmacSignature(secrets.token_hex(16))
    receiver = WebhookReceiver(verifier)
    tickets: dict[str, asyncio.Future[TicketReply]] = {}

    # -- your backend: the handlers the platform calls -----------------------------------------
    @receiver.on_team_online()
    async def team_online(check: TeamOnlineCheck, ctx: EventContext) -> bool:
        return True  # our (imaginary) support team is always in

    @receiver.on_action("getBalance")
    async def get_balance(call: ActionCall, ctx: EventContext) -> list[ActionResult]:
        return [ActionResult("balance", BALANCE), ActionResult("currency", "EUR")]

    @receiver.on_ticket_reply()
    async def ticket_reply(reply: TicketReply, ctx: EventContext) -> None:
        waiter = tickets.get(reply.platform_conversation_id or "")
        if waiter is not None and not waiter.done():
            waiter.set_result(reply)

    async with Simulator(verifier=verifier) as sim, WebhookServer(receiver, port=0) as server:
        sim.webhook_url = server.url
        t.line("ultimate_async demo: the whole round trip on this machine")
        t.line(f"   platform (simulator)  {sim.base_url}")
        t.line(f"   webhook receiver      {server.url}  (HMAC-SHA256 signed deliveries)")
        t.line()
        async with (
            Session(sim.api_key, sim.bot_id, base_url=sim.base_url) as session,
            Conversation(session, receiver) as conv,
        ):
            state: dict[str, Reply] = {}

            async def welcome() -> str:
                t.visitor("(opens the chat: startSession)")
                reply = await conv.start(timeout=timeout, settle=settle)
                t.reply(reply)
                expect(reply.messages, "no welcome message arrived")
                expect(reply.buttons, "the welcome has no buttons")
                return f"welcome: {len(reply.messages)} messages, {len(reply.buttons)} buttons"

            async def question() -> str:
                t.visitor("Where is my order?")
                reply = await conv.ask("Where is my order?", timeout, settle)
                t.reply(reply)
                expect("shipped" in reply.text, f"unexpected answer {reply.text!r}")
                expect(reply.buttons, "the answer has no buttons")
                state["question"] = reply
                return f"answered with {len(reply.buttons)} buttons"

            async def click() -> str:
                button = next(b for b in state["question"].buttons if b.text == "Yes")
                t.visitor(f"(clicks [{button.text}])")
                reply = await conv.click(button, timeout, settle)
                t.reply(reply)
                expect("Great" in reply.text, f"unexpected answer {reply.text!r}")
                return "the button text went back as a message"

            async def carousel() -> str:
                t.visitor("Which shipping options do you have?")
                reply = await conv.ask("Which shipping options do you have?", timeout, settle)
                t.reply(reply)
                expect(len(reply.carousel_cards) >= 2, "no carousel arrived")
                index = 1
                button = reply.carousel_cards[index].buttons[0]
                t.visitor(f"(clicks [{button.text}] on card {index})")
                chosen = await conv.choose_card(index, button, timeout, settle)
                t.reply(chosen)
                expect("Express" in chosen.text, f"unexpected answer {chosen.text!r}")
                return f"card {index} chosen with cardIndex"

            async def action() -> str:
                t.visitor("What is my balance?")
                reply = await conv.ask("What is my balance?", timeout, settle)
                t.reply(reply)
                expect(
                    any(isinstance(e, ActionCall) for e in reply.events), "no action call arrived"
                )
                expect(BALANCE in reply.text, f"the bot did not echo our result: {reply.text!r}")
                return "on_action's ActionResults were echoed by the bot"

            async def escalation() -> str:
                t.visitor("Can I talk to someone on live chat?")
                reply = await conv.ask("Can I talk to someone on live chat?", timeout, settle)
                t.reply(reply)
                expect(
                    any(isinstance(e, TeamOnlineCheck) for e in reply.events),
                    "no isTeamOnline check arrived",
                )
                expect(
                    reply.escalated and any(isinstance(e, WidgetEscalate) for e in reply.events),
                    "no widgetEscalate arrived",
                )
                cid = conv.conversation_id
                t.agent("(queue update: position 1, about 2 minutes)")
                await session.widget.queue_update(cid, queue_position=1, waiting_time=2)
                t.agent("(Sam joins: escalationSuccess)")
                await session.widget.escalation_success(cid, agent="Sam")
                t.agent("Hi, I'm Sam from Acme support. How can I help?")
                await session.widget.agent_message(
                    cid, "Hi, I'm Sam from Acme support. How can I help?"
                )
                t.visitor("Can you deliver on Saturday?")
                to_agent = await conv.ask("Can you deliver on Saturday?", timeout, settle)
                t.reply(to_agent)
                expect(
                    any(isinstance(e, WidgetMessage) for e in to_agent.events),
                    "the visitor's message did not reach the agent (no widgetMessage)",
                )
                t.agent("Done, Saturday it is. Bye!")
                await session.widget.agent_message(cid, "Done, Saturday it is. Bye!")
                t.agent("(leaves: agentDisconnect)")
                await session.widget.agent_disconnect(cid)
                back = await conv.receive(timeout, settle)
                t.reply(back)
                expect(back.messages, "the bot did not resume after the agent left")
                return "handed to a human through the widget API and back"

            async def ticket() -> str:
                ticket_id = str(uuid.uuid4())
                waiter = asyncio.get_running_loop().create_future()
                tickets[ticket_id] = waiter
                text = "Please update the shipping address of my order."
                t.visitor(f"(email) {text}")
                await session.tickets.send(ticket_id, text)
                try:
                    async with asyncio.timeout(timeout):
                        reply = await waiter
                finally:
                    del tickets[ticket_id]
                t.line(f"   bot     > (ticket reply) {reply.text}")
                intents = ", ".join(f"{i.name} {i.confidence}" for i in reply.predicted_intents)
                if intents:
                    t.note(f"predicted intents: {intents}")
                expect("address" in reply.text, f"unexpected ticket reply {reply.text!r}")
                return "on_ticket_reply received the answer"

            async def legacy() -> str:
                token = sim.legacy_token  # the simulator's stand-in for base64(email:password)
                async with LegacyClient(basic_token=token, base_url=sim.base_url) as client:
                    t.visitor("(v2 automation API) Where is my order?")
                    answer = await client.automation(
                        sim.bot_id, str(uuid.uuid4()), "message", text="Where is my order?"
                    )
                for message in answer.messages:
                    t.line(f"   bot     > {message.text}")
                expect(answer.messages, "the automation call returned no messages")
                intent = answer.predicted_intents[0].name if answer.predicted_intents else None
                return "synchronous reply" + (f", intent {intent!r}" if intent else "")

            await t.step("Welcome", welcome)
            await t.step("A question answered with buttons", question)
            await t.step("A button click", click)
            await t.step("A carousel choice", carousel)
            await t.step("An action answered by our handler", action)
            await t.step("Team online, then a human agent via the widget API", escalation)
            await t.step("A ticket answered on the ticket webhook", ticket)
            await t.step("The legacy v2 automation API", legacy)
    total = t.passed + t.failed
    if t.failed:
        t.line(f"✗ {t.failed} of {total} steps failed")
    else:
        t.line(f"✓ all {total} steps passed")
    return not t.failed


def command(args: argparse.Namespace) -> int:
    out = sys.stdout
    reconfigure = getattr(out, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="replace")  # ✓/✗ on a terminal that cannot show them
    ok = run(run_demo(out, wait=args.timeout))
    return EXIT_OK if ok else EXIT_FAILURE
