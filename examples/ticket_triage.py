"""Route ticket replies by the intent the bot predicted.

``session.tickets.send`` submits an email/ticket; the bot's answer arrives once, on the ticket
webhook, with ``predicted_intents``.  Confident answers for intents we trust are sent to the
customer straight away; everything else goes to a human queue with the bot's draft attached.
"""

from __future__ import annotations

import asyncio
import uuid

from _platform import platform

from ultimate_async import EventContext, TicketReply, WebhookReceiver, WebhookServer

TRUSTED_INTENTS = {"Update address", "Refund request"}  # the bot may answer these alone
CONFIDENCE = 0.85

TICKETS = {
    "Please change the shipping address of order A-1001 to 5 Main St.": "auto",
    "I want a refund for the broken kettle.": "auto",
    "Your product made my cat sad.": "human",
}

routed: dict[str, str] = {}  # ticket id -> where it went
all_routed = asyncio.Event()


def route(reply: TicketReply) -> str:
    best = max(reply.predicted_intents, key=lambda i: i.confidence or 0.0, default=None)
    if best and best.name in TRUSTED_INTENTS and (best.confidence or 0.0) >= CONFIDENCE:
        return "auto"
    return "human"


async def main() -> None:
    async with platform() as target, target.session() as session:
        receiver = WebhookReceiver(target.verifier)
        texts: dict[str, str] = {}

        @receiver.on_ticket_reply()
        async def triage(reply: TicketReply, ctx: EventContext) -> None:
            ticket = reply.platform_conversation_id or "?"
            routed[ticket] = decision = route(reply)
            intents = ", ".join(f"{i.name} ({i.confidence})" for i in reply.predicted_intents)
            print(f"ticket: {texts.get(ticket, ticket)!r}")
            print(f"  intents: {intents or 'none'}")
            if decision == "auto":
                print(f"  -> sent to the customer: {reply.text!r}")
            else:
                print(f"  -> human queue, with the bot's draft: {reply.text!r}")
            if len(routed) == len(TICKETS):
                all_routed.set()

        async with WebhookServer(receiver, host=target.host, port=target.port) as server:
            target.webhook_is(server.url)
            for text in TICKETS:
                ticket = str(uuid.uuid4())
                texts[ticket] = text
                await session.tickets.send(ticket, text, metadata={"channel": "email"})
            await asyncio.wait_for(all_routed.wait(), 10)

    expected = {ticket: TICKETS[text] for ticket, text in texts.items()}
    if target.simulated and routed != expected:
        raise SystemExit(f"unexpected routing: {routed}")
    print(
        f"done: {sum(v == 'auto' for v in routed.values())} answered automatically, "
        f"{sum(v == 'human' for v in routed.values())} for a human"
    )


if __name__ == "__main__":
    asyncio.run(main())
