"""The :class:`Inbox` contract, run on every implementation in ``conftest.INBOX_CASES``.

What a receiver relies on: put order per conversation, de-duplication atomic with the put,
done entries gone, failed ones kept with their attempt count, dead letters listed / replayed /
purged, and what was not done handed out again first after a restart.
"""

from __future__ import annotations

import asyncio

import pytest
from _inbox_cases import InboxCase, putter

from ultimate_async.inbox import DeadLetter, Inbox, InboxEntry, InboxStats


async def take(inbox: Inbox, count: int) -> list[InboxEntry]:
    return [await asyncio.wait_for(inbox.get(), 5.0) for _ in range(count)]


async def nothing_more(inbox: Inbox, wait: float = 0.2) -> bool:
    try:
        await asyncio.wait_for(inbox.get(), wait)
    except TimeoutError:
        return True
    return False


def texts(entries: list[InboxEntry]) -> list[str]:
    return [entry.raw["data"]["text"] for entry in entries]


async def test_an_inbox_satisfies_the_protocol(inbox: Inbox) -> None:
    assert isinstance(inbox, Inbox)


async def test_entries_come_out_in_put_order_per_conversation(inbox: Inbox) -> None:
    put = putter(inbox)
    ids = [await put(f"c{i % 3}", f"m{i}") for i in range(30)]
    assert len(set(ids)) == 30 and None not in ids
    got = await take(inbox, 30)
    for conversation in ("c0", "c1", "c2"):
        mine = [e for e in got if e.conversation_id == conversation]
        assert texts(mine) == [f"m{i}" for i in range(30) if f"c{i % 3}" == conversation]
    first = got[0]
    assert first.delivery_id in ids
    assert first.kind == "sendMessage"
    assert first.attempt == 1
    assert first.stored_at > 0


async def test_concurrent_puts_keep_order_within_a_conversation(inbox: Inbox) -> None:
    put = putter(inbox)
    # Started in this order; each awaits its own commit (group commit on SQLite).
    ids = await asyncio.gather(*(put("c", f"m{i}") for i in range(50)))
    got = await take(inbox, 50)
    assert [e.delivery_id for e in got] == ids
    assert texts(got) == [f"m{i}" for i in range(50)]


async def test_raw_round_trips_and_conversation_may_be_none(inbox: Inbox) -> None:
    raw = {"eventType": "alert", "data": {"nested": [1, 2.5, "é", None, True]}}
    await inbox.put(conversation_id=None, kind="alert", raw=raw, dedup_key=None)
    (entry,) = await take(inbox, 1)
    assert entry.conversation_id is None
    assert entry.raw == raw
    assert entry.dedup_key is None


async def test_a_duplicate_key_is_not_stored_twice(inbox: Inbox) -> None:
    put = putter(inbox)
    assert await put("c", "first", key="k1") is not None
    assert await put("c", "again", key="k1") is None
    assert await put("c", "other", key="k2") is not None
    assert await put("c", "no key") is not None
    assert await put("c", "no key") is not None  # no key: never a duplicate
    assert texts(await take(inbox, 4)) == ["first", "other", "no key", "no key"]
    assert (await inbox.stats()).pending == 4


async def test_concurrent_duplicates_store_exactly_one(inbox: Inbox) -> None:
    put = putter(inbox)
    results = await asyncio.gather(*(put("c", f"try{i}", key="same") for i in range(20)))
    assert len([r for r in results if r is not None]) == 1
    assert (await inbox.stats()).pending == 1


async def test_a_done_key_stays_seen(inbox: Inbox) -> None:
    put = putter(inbox)
    await put("c", "once", key="k")
    (entry,) = await take(inbox, 1)
    await inbox.done(entry)
    assert await inbox.stats() == InboxStats(pending=0, dead=0)
    assert await put("c", "redelivered", key="k") is None
    assert await nothing_more(inbox)


async def test_failed_keeps_the_entry_and_counts_the_attempt(
    inbox_case: InboxCase, inbox: Inbox
) -> None:
    put = putter(inbox)
    await put("c", "flaky")
    (entry,) = await take(inbox, 1)
    await inbox.failed(entry, "RuntimeError: CRM down", dead=False)
    # The dispatcher retries a not-dead entry itself: it is not handed out again meanwhile.
    assert await nothing_more(inbox)
    assert await inbox.stats() == InboxStats(pending=1, dead=0)
    # A restart resumes from the recorded attempt count.
    await inbox.aclose()
    inbox = await inbox_case.open()
    (again,) = await take(inbox, 1)
    assert again.delivery_id == entry.delivery_id
    assert again.attempt == 2
    await inbox.done(again)
    assert await inbox.stats() == InboxStats(pending=0, dead=0)


async def test_dead_letters_are_listed_and_not_handed_out(inbox: Inbox) -> None:
    put = putter(inbox)
    await put("c", "poison", key="p")
    await put("c", "next")
    poison, following = await take(inbox, 2)
    await inbox.failed(poison, "ValueError: bad", dead=False)
    await inbox.failed(attrs_evolve(poison, 2), "ValueError: bad again", dead=True)
    await inbox.done(following)
    assert await inbox.stats() == InboxStats(pending=0, dead=1)
    letters = [letter async for letter in inbox.dead_letters()]
    assert len(letters) == 1
    letter = letters[0]
    assert isinstance(letter, DeadLetter)
    assert letter.delivery_id == poison.delivery_id
    assert letter.conversation_id == "c"
    assert letter.kind == "sendMessage"
    assert letter.attempts == 2
    assert letter.last_error == "ValueError: bad again"
    assert letter.raw["data"]["text"] == "poison"
    assert await nothing_more(inbox)
    # Still seen while it is a dead letter: a redelivery is not stored again.
    assert await put("c", "poison", key="p") is None


def attrs_evolve(entry: InboxEntry, attempt: int) -> InboxEntry:
    import attrs

    return attrs.evolve(entry, attempt=attempt)


async def test_replay_puts_a_dead_letter_at_the_end_of_its_conversation(inbox: Inbox) -> None:
    put = putter(inbox)
    await put("c", "poison")
    await put("c", "second")
    poison, second = await take(inbox, 2)
    await inbox.failed(poison, "boom", dead=True)
    await put("c", "third")
    (third,) = await take(inbox, 1)
    await inbox.replay(poison.delivery_id)
    (replayed,) = await take(inbox, 1)
    assert replayed.delivery_id == poison.delivery_id
    assert replayed.attempt == 1
    assert replayed.raw["data"]["text"] == "poison"
    assert await inbox.stats() == InboxStats(pending=3, dead=0)
    for entry in (second, third, replayed):
        await inbox.done(entry)
    assert await inbox.stats() == InboxStats(pending=0, dead=0)
    with pytest.raises(LookupError):
        await inbox.replay(poison.delivery_id)  # no longer a dead letter


async def test_purge_drops_one_dead_letter(inbox: Inbox) -> None:
    put = putter(inbox)
    await put("c", "a")
    await put("d", "b")
    a, b = await take(inbox, 2)
    await inbox.failed(a, "x", dead=True)
    await inbox.failed(b, "y", dead=True)
    assert [x.delivery_id async for x in inbox.dead_letters()] == [a.delivery_id, b.delivery_id]
    await inbox.purge(a.delivery_id)
    assert [x.delivery_id async for x in inbox.dead_letters()] == [b.delivery_id]
    assert await inbox.stats() == InboxStats(pending=0, dead=1)
    with pytest.raises(LookupError):
        await inbox.purge(a.delivery_id)
    with pytest.raises(LookupError):
        await inbox.replay("no-such-id")
    with pytest.raises(LookupError):
        await inbox.purge("no-such-id")


async def test_unfinished_entries_come_first_after_a_restart(
    inbox_case: InboxCase, inbox: Inbox
) -> None:
    put = putter(inbox)
    for i in range(5):
        await put(f"c{i % 2}", f"m{i}", key=f"k{i}")
    got = await take(inbox, 3)
    await inbox.done(got[0])  # m0 done; m1, m2 running; m3, m4 waiting
    await inbox.aclose()
    inbox = await inbox_case.open()
    assert await inbox.stats() == InboxStats(pending=4, dead=0)
    recovered = await take(inbox, 4)
    assert texts(recovered) == ["m1", "m2", "m3", "m4"]
    assert [e.delivery_id for e in recovered[:2]] == [e.delivery_id for e in got[1:]]
    assert await nothing_more(inbox)
    # De-duplication survives the restart too.
    assert await put_again(inbox, "k0") is None
    assert await put_again(inbox, "k4") is None


async def put_again(inbox: Inbox, key: str) -> str | None:
    return await putter(inbox)("c0", "again", key=key)


async def test_start_and_aclose_are_idempotent(inbox_case: InboxCase, inbox: Inbox) -> None:
    await inbox.start()
    await putter(inbox)("c", "m")
    await inbox.aclose()
    await inbox.aclose()
    inbox = await inbox_case.open()
    assert texts(await take(inbox, 1)) == ["m"]


async def test_a_waiting_get_receives_a_later_put(inbox: Inbox) -> None:
    waiter = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await putter(inbox)("c", "late")
    entry = await asyncio.wait_for(waiter, 5)
    assert texts([entry]) == ["late"]
