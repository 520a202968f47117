"""The whole loop under faults: nothing lost, nothing handled twice, nothing left behind.

A short soak (200 conversations x 10 bot messages, duplicates, latency jitter, 429/503 on the
API) runs in ``make test``; ``make reliability`` runs 1,000 x 21 with the same code
(``benchmarks.reliability.run_soak``).
"""

from __future__ import annotations

import gc
import weakref

from benchmarks.reliability import SoakConfig, run_soak, run_soak_traced
from ultimate_async.session import Session
from ultimate_async.simulator import Simulator

SHORT = SoakConfig(conversations=200, turns=3, replies=3)


async def test_short_soak_loses_nothing_and_leaves_nothing() -> None:
    result = await run_soak(SHORT)
    assert result.problems == [], "\n".join(result.problems)
    # the faults really happened, so the guarantees were exercised
    assert result.duplicates_injected >= 0.10 * result.distinct_messages
    assert result.api_faults > 0
    # every distinct bot message handled exactly once, in order, by its conversation and by
    # the catch-all handler (a Conversation observes, it does not take the handler's place)
    assert result.distinct_messages == SHORT.conversations * SHORT.expected_per_conversation
    assert result.handled == result.handled_by_handler == result.distinct_messages
    assert result.lost == result.handled_twice == result.out_of_order == 0
    # every ask answered (none timed out), nothing stray, nothing left open
    assert result.asks == SHORT.conversations * SHORT.turns and result.ask_timeouts == 0
    assert result.stray_events == result.leftover_tasks == 0
    assert result.leftover_fds <= 0
    assert result.seconds < 20


async def test_short_soak_memory_returns_to_baseline() -> None:
    """Python memory after a run (everything closed and dropped) is back where it started.

    A warm-up run first fills one-time caches (imports, cattrs hooks, aiohttp internals).
    """
    await run_soak(SoakConfig(conversations=20, turns=1, replies=1))
    result = await run_soak_traced(SHORT)
    assert result.problems == []
    assert result.traced_growth is not None
    assert result.traced_growth < 512 * 1024, f"{result.traced_growth} bytes survived the run"


async def test_a_closed_simulator_is_released() -> None:
    """Once closed and dropped, a Simulator (and all it recorded) can be garbage collected.

    Users start one per test; each keeps every delivery and request it recorded, so a
    simulator kept alive after ``aclose()`` is a leak proportional to the traffic it saw.
    """
    async with Simulator() as sim, Session(sim.api_key, sim.bot_id, base_url=sim.base_url) as api:
        await api.chat.start_session("c1")  # serve one request
        await sim.wait_idle(timeout=5)
        ref = weakref.ref(sim)
    del sim, api
    gc.collect()
    assert ref() is None, "something still references the closed Simulator"
