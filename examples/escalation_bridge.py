"""Hand a widget chat over to a human agent and back, through the widget escalation API.

When the bot decides a human should take over it sends ``widgetEscalate``; from then on the
visitor's messages arrive as ``widgetMessage`` webhooks and *your* agent desk answers with
``session.widget.*`` (queue update, success, messages, disconnect).  Here the agent desk is a
tiny stand-in that answers by itself, and a scripted visitor plays the other side.
"""

from __future__ import annotations

import asyncio
import uuid

from _platform import platform

from ultimate_async import (
    BotMessage,
    EventContext,
    Router,
    TeamOnlineCheck,
    WebhookReceiver,
    WebhookServer,
    WidgetEndSession,
    WidgetEscalate,
    WidgetMessage,
)

bridge = Router()
handed_over = asyncio.Event()  # the agent has joined
finished = asyncio.Event()  # the agent left and the bot took over again


@bridge.on_team_online()
async def team_online(check: TeamOnlineCheck, ctx: EventContext) -> bool:
    return True  # ask your agent desk whether anyone is available


@bridge.on_widget_escalate()
async def take_over(event: WidgetEscalate, ctx: EventContext) -> None:
    cid, widget = ctx.conversation_id, ctx.api.widget  # typed: no None checks needed
    print(f"desk> escalation to {event.escalate_to!r}: queueing the visitor")
    await widget.queue_update(cid, queue_position=1, waiting_time=1)
    await widget.escalation_success(cid, agent="Sam", agent_avatar="https://example.com/sam.png")
    await widget.agent_message(cid, "Hi, I'm Sam. How can I help?")
    print("agent> Hi, I'm Sam. How can I help?")
    handed_over.set()


@bridge.on_widget_message()
async def relay_to_agent(event: WidgetMessage, ctx: EventContext) -> None:
    print(f"desk> visitor wrote: {event.text!r}")
    answer = "Sure, I moved your delivery to Saturday. Have a nice day!"
    await ctx.api.widget.agent_message(ctx.conversation_id, answer)
    print(f"agent> {answer}")
    await ctx.api.widget.agent_disconnect(ctx.conversation_id)
    print("desk> agent disconnected")


@bridge.on_widget_end_session()
async def visitor_left(event: WidgetEndSession, ctx: EventContext) -> None:
    print("desk> the visitor closed the chat")


@bridge.on_message()
async def bot_says(message: BotMessage, ctx: EventContext) -> None:
    print(f"bot> {message.text}")
    if handed_over.is_set():
        finished.set()  # the bot speaks again once the agent has left


async def main() -> None:
    async with platform() as target, target.session() as session:
        receiver = WebhookReceiver(target.verifier, session=session)  # handlers get ctx.session
        receiver.include_router(bridge)
        async with WebhookServer(receiver, host=target.host, port=target.port) as server:
            target.webhook_is(server.url)
            # The visitor's side; in production the vendor's chat widget sends these.
            cid = str(uuid.uuid4())
            print("visitor> I'd like to talk to someone on live chat")
            await session.chat.send_message(cid, "I'd like to talk to someone on live chat")
            await asyncio.wait_for(handed_over.wait(), 10)
            print("visitor> Can you deliver on Saturday instead?")
            await session.chat.send_message(cid, "Can you deliver on Saturday instead?")
            await asyncio.wait_for(finished.wait(), 10)
            await session.chat.end_session(cid)
    print("done: handed over to a human and back")


if __name__ == "__main__":
    asyncio.run(main())
