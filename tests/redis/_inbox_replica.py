"""A RedisInbox replica in its own process, for tests that SIGKILL it.

Usage: ``python _inbox_replica.py URL PARTITIONS LEASE_TTL TAKE``.  It starts a
:class:`RedisInbox`, prints ``held <partitions>`` once it holds some, then takes ``TAKE``
entries without finishing them (printing ``got <delivery_id> <text>`` for each) and waits to be
killed: what it took is exactly the unfinished work a dead replica leaves behind.
"""

from __future__ import annotations

import asyncio
import sys

from ultimate_async.redis import RedisInbox


async def main(url: str, partitions: int, lease_ttl: float, take: int) -> None:
    inbox = RedisInbox(url, partitions=partitions, lease_ttl=lease_ttl)
    await inbox.start()  # returns after the first lease round: alone, it holds them all
    print("held", *sorted(inbox.held), flush=True)
    for _ in range(take):
        entry = await inbox.get()
        print("got", entry.delivery_id, entry.raw["text"], flush=True)
    await asyncio.Event().wait()  # until SIGKILL


if __name__ == "__main__":
    url, partitions, lease_ttl, take = sys.argv[1:5]
    asyncio.run(main(url, int(partitions), float(lease_ttl), int(take)))
