"""Scripted journeys: what a backend sees on its webhook for each visitor action."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from ultimate_async.simulator import (
    Action,
    Card,
    Carousel,
    EscalateStep,
    Intent,
    Rule,
    ScriptedBot,
    ScriptedButton,
    TeamOnline,
    Text,
    TicketRule,
    WidgetEscalateStep,
)


async def test_welcome_is_delivered_on_start_session(client: Any, recorder: Any) -> None:
    await client.start("c1")
    first, second = recorder.of("c1")
    assert first.kind == second.kind == "sendMessage"
    assert first.data["text"] == "Hi, I'm Ada, the Acme demo bot."
    assert [b["text"] for b in second.data["buttons"]][:2] == ["Track my order", "Shipping options"]
    assert {"type": "link", "text": "Help center"} in second.data["buttons"]


async def test_question_answered_with_buttons_then_a_click_continues(
    client: Any, recorder: Any
) -> None:
    await client.say("c1", "Where is my order?")
    shipped, question = recorder.of("c1")
    assert "shipped" in shipped.data["text"]
    assert shipped.data["confidence"] == 0.93
    assert question.data["buttons"] == [
        {"type": "button", "text": "Yes"},
        {"type": "button", "text": "No"},
    ]
    await client.say("c1", question.data["buttons"][0]["text"])
    assert recorder.texts("c1")[-1].startswith("Great!")


async def test_message_without_start_session_creates_the_session(client: Any) -> None:
    await client.say("fresh", "hello there")
    assert client.sim.mode("fresh") == "bot"
    assert [str(e) for e in client.sim.transcript("fresh")] == [
        "visitor: hello there",
        "bot: Sorry, I did not get that.",
    ]


async def test_carousel_card_choice_uses_card_index(client: Any, recorder: Any) -> None:
    await client.say("c1", "shipping options?")
    (carousel,) = recorder.of("c1")
    assert carousel.data["type"] == "carousel"
    assert carousel.data["text"] == "" and carousel.data["buttons"] == []
    cards = carousel.data["carouselCards"]
    assert [c["title"] for c in cards] == ["Standard shipping", "Express shipping"]
    assert set(cards[0]) == {"title", "description", "imageUrl", "buttons"}
    for index, expected in ((1, "Express"), (0, "Standard")):
        button = cards[index]["buttons"][0]["text"]
        await client.say("c1", button, cardIndex=index)
        assert recorder.texts("c1")[-1].startswith(expected)
    await client.say("c1", "Choose express")  # no cardIndex: no card rule applies
    assert recorder.texts("c1")[-1] == "Sorry, I did not get that."


async def test_action_results_become_variables_the_bot_echoes(client: Any, recorder: Any) -> None:
    recorder.action_results = [
        {"key": "balance", "value": "17.50"},
        {"key": "currency", "value": "USD"},
    ]
    await client.chat("a1", "startSession", metaData=[{"key": "userId", "value": "u-7"}])
    await client.say("a1", "What is my balance?")
    action = next(d for d in recorder.of("a1") if d.kind == "action")
    assert action.payload["name"] == "getBalance"
    assert action.payload["botId"] == client.sim.bot_id
    assert re.fullmatch(r"[0-9a-f]{24}", action.payload["conversationId"])
    assert action.payload["data"] == [{"key": "userId", "value": ["u-7"], "saveAs": "customerId"}]
    assert "eventType" not in action.payload
    assert recorder.texts("a1")[-1] == "Your balance is 17.50 USD."
    assert client.sim.variables("a1") == {"userId": "u-7", "balance": "17.50", "currency": "USD"}


async def test_a_failed_action_runs_its_failed_replies_and_ends_the_turn(
    client: Any, recorder: Any
) -> None:
    async def refuse(delivery: Any) -> web.Response | None:
        return web.Response(status=500) if delivery.kind == "action" else None

    recorder.hook = refuse
    await client.say("a2", "balance please")
    assert recorder.texts("a2") == ["Sorry, I could not look up your balance right now."]
    assert recorder.kinds("a2") == ["action", "sendMessage"]  # requests are not retried


async def test_sanitized_action_results_are_masked_in_the_transcript(
    client: Any, recorder: Any
) -> None:
    recorder.action_results = [{"key": "balance", "value": "99.99", "sanitize": True}]
    await client.say("a3", "balance")
    lines = [str(e) for e in client.sim.transcript("a3")]
    assert "system: getBalance -> balance=***" in lines
    assert not any("99.99" in line for line in lines if line.startswith("system"))


async def test_team_online_then_escalate(client: Any, recorder: Any) -> None:
    await client.say("e1", "I want to talk to a human")
    assert recorder.kinds("e1") == ["sendMessage", "isTeamOnline", "sendMessage", "escalate"]
    check, escalate = recorder.of("e1")[1], recorder.of("e1")[3]
    assert check.payload == {
        "botId": client.sim.bot_id,
        "channel": "chat",
        "data": {"eventType": "isTeamOnline", "platformConversationId": "e1", "teamId": "support"},
    }
    assert escalate.data == {
        "eventType": "escalate",
        "platformConversationId": "e1",
        "escalateTo": "support",
    }
    assert recorder.texts("e1")[-1] == "Connecting you to an agent now."


async def test_team_offline_takes_the_offline_branch(client: Any, recorder: Any) -> None:
    recorder.team_online = False
    await client.say("e2", "agent please")
    assert recorder.kinds("e2") == ["sendMessage", "isTeamOnline", "sendMessage"]
    assert recorder.texts("e2")[-1].startswith("Sorry, nobody is online")


async def test_a_malformed_team_online_answer_counts_as_offline(client: Any, recorder: Any) -> None:
    async def weird(delivery: Any) -> web.Response | None:
        if delivery.kind == "isTeamOnline":
            return web.json_response({"isOnline": "yes"})
        return None

    recorder.hook = weird
    await client.say("e3", "human")
    assert recorder.texts("e3")[-1].startswith("Sorry, nobody is online")


async def test_a_refused_escalation_runs_the_failed_replies(client: Any, recorder: Any) -> None:
    async def refuse(delivery: Any) -> web.Response | None:
        return web.Response(status=409) if delivery.kind == "escalate" else None

    recorder.hook = refuse
    await client.say("e4", "human")
    assert recorder.kinds("e4")[-2:] == ["escalate", "sendMessage"]
    assert recorder.texts("e4")[-1].startswith("Sorry, the hand-over failed")
    assert client.sim.stats.failed == 1


async def test_widget_escalation_flow(client: Any, recorder: Any) -> None:
    sim = client.sim
    await client.start("w1")
    await client.say("w1", "live chat please")
    assert recorder.kinds("w1")[-3:] == ["isTeamOnline", "sendMessage", "widgetEscalate"]
    assert recorder.of("w1")[-1].data == {
        "eventType": "widgetEscalate",
        "platformConversationId": "w1",
        "escalateTo": "support",
    }
    assert sim.mode("w1") == "escalating"
    before = len(recorder.of("w1"))

    # before escalationSuccess: agent messages are refused, visitor messages go nowhere
    assert (await client.widget("w1", "message", text="hi"))[0] == 400
    await client.say("w1", "hello?")
    assert len(recorder.of("w1")) == before

    assert (await client.widget("w1", "escalationQueueUpdate", queuePosition="1"))[0] == 200
    assert (await client.widget("w1", "escalationSuccess", agent="Sam"))[0] == 200
    assert sim.mode("w1") == "agent"
    assert (await client.widget("w1", "message", text="Hi, I'm Sam."))[0] == 200

    await client.say("w1", "Can you deliver on Saturday?")
    message = recorder.of("w1")[-1]
    assert message.kind == "widgetMessage"
    assert message.payload["channel"] == "chat"
    assert message.data["text"] == "Can you deliver on Saturday?"
    assert re.fullmatch(r"[0-9a-f]{24}", message.data["conversationId"])

    transcript = [str(e) for e in sim.transcript("w1")]
    assert "system: Sam joined" in transcript
    assert "agent: Hi, I'm Sam." in transcript
    assert transcript[-1] == "visitor: Can you deliver on Saturday?"

    await client.chat("w1", "endSession")
    await sim.wait_idle(timeout=5)
    assert recorder.of("w1")[-1].data == {
        "eventType": "widgetEndSession",
        "platformConversationId": "w1",
    }
    assert sim.mode("w1") is None
    assert (await client.widget("w1", "message", text="anyone?"))[0] == 400


async def test_agent_disconnect_and_escalation_failed_return_control_to_the_bot(
    client: Any, recorder: Any
) -> None:
    sim = client.sim
    await client.say("w2", "live chat")
    await client.widget("w2", "escalationSuccess")
    await client.widget("w2", "agentDisconnect")
    await sim.wait_idle(timeout=5)
    assert sim.mode("w2") == "bot"
    assert recorder.texts("w2")[-1].startswith("The agent has left the chat")
    await client.say("w2", "track my order")
    assert "shipped" in recorder.texts("w2")[-2]

    await client.say("w3", "live chat")
    await client.widget("w3", "escalationFailed")
    await sim.wait_idle(timeout=5)
    assert sim.mode("w3") == "bot"
    assert recorder.texts("w3")[-1].startswith("Sorry, no agent could take your chat")


async def test_end_session_without_escalation_sends_nothing_and_forgets(
    client: Any, recorder: Any
) -> None:
    await client.chat("s1", "startSession", metaData=[{"key": "orderId", "value": "Z-9"}])
    await client.chat("s1", "endSession")
    await client.sim.wait_idle(timeout=5)
    assert recorder.kinds("s1") == ["sendMessage", "sendMessage"]
    assert client.sim.variables("s1") == {}
    await client.say("s1", "order?")
    assert "#A-1001" in recorder.texts("s1")[-2]  # the old orderId is gone


async def test_metadata_becomes_template_variables(client: Any, recorder: Any) -> None:
    await client.chat("m1", "metadata", metaData=[{"key": "orderId", "value": "B-42"}])
    await client.say("m1", "track order")
    assert recorder.texts("m1")[0] == ("Your order #B-42 shipped yesterday and arrives tomorrow.")


async def test_ticket_reply_carries_intents_and_attachments(client: Any, recorder: Any) -> None:
    body = {"platformConversationId": "t1", "text": "Update my address", "platform": "PUBLIC_API"}
    assert (await client.post("/converse/ticket", body))[0] == 200
    await client.sim.wait_idle(timeout=5)
    (reply,) = recorder.of("t1")
    assert reply.kind == "ticketReply"
    payload = reply.payload
    assert set(payload) == {
        "botId",
        "conversationId",
        "platformConversationId",
        "text",
        "predictedIntents",
        "attachments",
    }
    assert payload["text"] == "We have updated your shipping address."
    (intent,) = payload["predictedIntents"]
    assert intent["name"] == "Update address" and intent["confidence"] == 0.92
    assert re.fullmatch(r"[0-9a-f]{24}", intent["value"])
    assert payload["attachments"] == [{"path": "attachments/label.pdf"}]

    await client.post("/converse/ticket", {**body, "platformConversationId": "t2", "text": "hm"})
    await client.sim.wait_idle(timeout=5)
    (fallback,) = recorder.of("t2")
    assert fallback.payload["predictedIntents"] == [] and fallback.payload["attachments"] == []


async def test_several_messages_per_visitor_message_and_custom_bot(
    make_sim: Any, recorder: Any, make_client: Any
) -> None:
    bot = ScriptedBot(
        welcome=Text("Hello {name|stranger}", buttons=["A", ScriptedButton("Docs", "link")]),
        rules=[
            Rule(re.compile(r"^\d+$"), ["You sent number {text}", "Twice!", "Thrice!"]),
            Rule("card", Carousel([Card("One", buttons=["pick"]), Card("Two", buttons=["pick"])])),
            Rule("pick", "picked card {cardIndex}", card_index=1),
            Rule(
                "go",
                [
                    Action("lookup", params={"q": "{text}"}, failed="lookup failed"),
                    TeamOnline(online=WidgetEscalateStep(), offline=EscalateStep("queue")),
                ],
            ),
        ],
        tickets=[TicketRule("re:refund", "ok {text}", intents=[Intent("Refund", 0.5)])],
    )
    sim = await make_sim(bot, webhook_url=recorder.url)
    client = make_client(sim)
    await client.start("b1")
    assert recorder.texts("b1") == ["Hello stranger"]
    await client.say("b1", "123")
    assert recorder.texts("b1")[1:] == ["You sent number 123", "Twice!", "Thrice!"]
    ids = [d.data["messageId"] for d in recorder.of("b1")]
    assert len(set(ids)) == len(ids) == 4
    await client.say("b1", "pick", cardIndex=1)
    assert recorder.texts("b1")[-1] == "picked card 1"
    recorder.team_online = False
    await client.say("b1", "go")
    assert recorder.kinds("b1")[-3:] == ["action", "isTeamOnline", "escalate"]
    assert recorder.of("b1")[-1].data["escalateTo"] == "queue"
    assert recorder.of("b1")[-3].payload["data"] == [{"key": "q", "value": ["go"]}]


async def test_push_message_sends_a_proactive_message(client: Any, recorder: Any) -> None:
    await client.sim.push_message("p1", "Your parcel is out for delivery", buttons=["Track"])
    (pushed,) = recorder.of("p1")  # push returns after delivery
    assert pushed.data["text"] == "Your parcel is out for delivery"
    assert pushed.data["buttons"] == [{"type": "button", "text": "Track"}]
    await client.sim.push("p1", "one", Text("two", confidence=0.5))
    assert recorder.texts("p1")[-2:] == ["one", "two"]
    assert recorder.of("p1")[-1].data["confidence"] == 0.5


async def test_start_session_again_restarts_with_a_fresh_session(
    client: Any, recorder: Any
) -> None:
    await client.chat("r1", "startSession", metaData=[{"key": "orderId", "value": "X"}])
    await client.start("r1")
    assert client.sim.variables("r1") == {}
    assert len(recorder.of("r1")) == 4  # the welcome twice
