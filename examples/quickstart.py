import asyncio

from ultimate_async import Conversation, HmacSignature, Session, WebhookReceiver, WebhookServer
from ultimate_async.simulator import Simulator


async def main() -> None:
    verifier = HmacSignature("webhook-secret")  # how the platform signs its webhooks
    receiver = WebhookReceiver(verifier)
    async with Simulator(verifier=verifier) as platform, WebhookServer(receiver) as server:
        platform.webhook_url = server.url  # for real: the URL you set in the dashboard
        async with (
            Session(platform.api_key, platform.bot_id, base_url=platform.base_url) as session,
            Conversation(session, receiver) as conv,
        ):
            print((await conv.start()).text)
            reply = await conv.ask("Where is my order?")
            print(reply.text, [button.text for button in reply.buttons])


asyncio.run(main())
