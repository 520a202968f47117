"""Two receiver replicas behind one webhook URL, sharing Redis.

In production you run several copies of your webhook receiver behind a load balancer, so a
conversation's webhooks may reach any copy, not the one where your code awaits the reply.
Give every replica the same Redis and the receivers sort it out:

- ``RedisDeduplicator``: a delivery (or the platform's retry of it) is handled once, by
  whichever replica gets it first;
- ``RedisEventBus``: a replica announces the conversations it holds (a ``Conversation`` waiting
  for replies, a ``register()``ed handler); a replica receiving an event for one of them
  forwards it to the holder.

Here both replicas live in one process for the demo (in production: one process per replica,
same code, same ``REDIS_URL``), and the simulated platform delivers every webhook to replica B
while the conversation waits on replica A.  Set ``REDIS_URL`` to use your Redis; without it
the example starts a throwaway ``redis-server`` (the binary must be on PATH).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ultimate_async import (
    Conversation,
    HmacSignature,
    Reply,
    Session,
    WebhookReceiver,
    WebhookServer,
)
from ultimate_async.redis import RedisDeduplicator, RedisEventBus
from ultimate_async.simulator import Simulator


def replica(verifier: HmacSignature, redis_url: str) -> WebhookReceiver:
    """What every replica runs: the usual receiver, plus the shared Redis."""
    return WebhookReceiver(
        verifier,
        dedup=RedisDeduplicator(redis_url),
        bus=RedisEventBus(redis_url),
    )


async def main(redis_url: str) -> None:
    verifier = HmacSignature("webhook-secret")
    a, b = replica(verifier, redis_url), replica(verifier, redis_url)
    async with (
        Simulator(verifier=verifier) as platform,
        WebhookServer(a) as server_a,
        WebhookServer(b) as server_b,
    ):
        print(f"replica A serves {server_a.url}")
        print(f"replica B serves {server_b.url}")
        platform.webhook_url = server_b.url  # the load balancer sends everything to B
        print("the platform delivers every webhook to replica B")
        async with (
            Session(platform.api_key, platform.bot_id, base_url=platform.base_url) as session,
            Conversation(session, a) as conv,  # held by A: B forwards its events to A
        ):
            print(f"conversation {conv.conversation_id} waits on replica A")
            welcome = await conv.start()
            show(welcome)
            print("you (asking on A): Where is my order?")
            reply = await conv.ask("Where is my order?")
            show(reply)
        to_b = sum(d.url == server_b.url for d in platform.deliveries)
        read_on_a = len(welcome.events) + len(reply.events)
    print(f"done: {to_b} webhooks delivered to replica B, {read_on_a} read on replica A")


def show(reply: Reply) -> None:
    for message in reply.messages:
        print(f"bot (delivered to B, read on A): {message.text}")


@asynccontextmanager
async def throwaway_redis(binary: str) -> AsyncIterator[str]:
    """A private redis-server on a free local port, without persistence, stopped at the end."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = await asyncio.create_subprocess_exec(
        *(binary, "--port", str(port), "--bind", "127.0.0.1"),
        *("--save", "", "--appendonly", "no"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert server.stdout is not None
        async with asyncio.timeout(10):
            while b"Ready to accept connections" not in (line := await server.stdout.readline()):
                if not line:
                    raise RuntimeError(f"redis-server did not start on port {port}")
        print(f"redis: started a throwaway redis-server on port {port}")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        if server.returncode is None:
            server.terminate()
        await server.communicate()


async def with_throwaway_redis(binary: str) -> None:
    async with throwaway_redis(binary) as redis_url:
        await main(redis_url)


if __name__ == "__main__":
    redis_url = os.environ.get("REDIS_URL")
    binary = shutil.which("redis-server")
    if redis_url:
        asyncio.run(main(redis_url))
    elif binary is not None:
        asyncio.run(with_throwaway_redis(binary))
    else:
        print("two_replicas.py needs Redis: set REDIS_URL or install redis-server", file=sys.stderr)
        sys.exit(2)
