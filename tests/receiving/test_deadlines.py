"""The body-read deadlines of the ASGI front end: late waits are cancelled, others never are."""

from __future__ import annotations

import asyncio
import time

from ultimate_async._deadlines import Deadlines


async def _wait(deadlines: Deadlines, seconds: float) -> str:
    task = asyncio.current_task()
    assert task is not None
    deadlines.enter(task)
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        if not deadlines.expired(task):
            raise
        return "timed out"
    finally:
        deadlines.leave(task)
    return "done"


async def test_a_wait_past_its_deadline_is_cancelled_within_a_second() -> None:
    deadlines = Deadlines(0.2)
    started = time.monotonic()
    late, prompt = await asyncio.gather(_wait(deadlines, 10.0), _wait(deadlines, 0.01))
    assert (late, prompt) == ("timed out", "done")
    assert 0.2 <= time.monotonic() - started < 2.0


async def test_a_cancellation_from_elsewhere_is_not_taken_for_the_deadline() -> None:
    deadlines = Deadlines(60.0)
    waiting = asyncio.ensure_future(_wait(deadlines, 10.0))
    await asyncio.sleep(0.01)
    waiting.cancel()
    try:
        await waiting
    except asyncio.CancelledError:
        pass
    else:  # pragma: no cover - the point of the test
        raise AssertionError("the cancellation was swallowed as a timeout")


async def test_no_timeout_means_no_deadline() -> None:
    deadlines = Deadlines(None)
    assert await _wait(deadlines, 0.01) == "done"
