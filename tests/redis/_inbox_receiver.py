"""A receiver replica in its own process: real WebhookServer, RedisInbox + RedisEventBus.

Usage: ``python _inbox_receiver.py REDIS_URL NAME SECRET``.  Every ``on_message`` call is
recorded *before* the handler returns, as ``{"r": NAME, "c": cid, "t": text, "d": delivery id}``
pushed to the Redis list ``handled`` (so the record outlives a SIGKILL; an entry recorded but
not yet done when the process dies is handled again by the survivor: at-least-once).  Prints
``ready <url> <replica id>`` once serving, then serves until killed.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import redis.asyncio as aioredis

from ultimate_async.inbox import HandlerRetry
from ultimate_async.redis import RedisEventBus, RedisInbox
from ultimate_async.webhook import EventContext, SharedSecretHeader, WebhookReceiver, WebhookServer


async def main(url: str, name: str, secret: str) -> None:
    inbox = RedisInbox(url, partitions=8, lease_ttl=0.5, max_backoff=0.2)
    receiver = WebhookReceiver(
        SharedSecretHeader(secret),
        inbox=inbox,
        bus=RedisEventBus(url, block_timeout=0.2, max_backoff=0.2),
        retry=HandlerRetry(max_attempts=3, backoff_base=0.05, backoff_max=0.2),
    )
    recorder = aioredis.Redis.from_url(url)

    @receiver.on_message()
    async def record(event: Any, ctx: EventContext) -> None:
        await recorder.rpush(
            "handled",
            json.dumps(
                {
                    "r": name,
                    "c": ctx.platform_conversation_id,
                    "t": event.text,
                    "d": ctx.delivery_id,
                }
            ),
        )

    server = WebhookServer(receiver, port=0)
    await server.start()
    print("ready", server.url, inbox.replica_id, flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
