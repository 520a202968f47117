"""Fixtures for the sending tests: an instant retry policy (the fake platform is suite-wide,
in ``tests/conftest.py``)."""

from __future__ import annotations

import pytest

from ultimate_async._retry import RetryPolicy


class SleepRecorder:
    """An injectable ``sleep`` that records the requested delays and returns at once.

    It also keeps a fake monotonic clock (``clock``) that each sleep moves forward, so a policy
    given both sees time pass exactly as the delays say (the shared 429 cool-down reads it).
    """

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        self.now += delay


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def instant_retry(sleeps: SleepRecorder) -> RetryPolicy:
    """The default policy, but sleeping instantly and with a fixed jitter factor (0.75)."""
    return RetryPolicy(sleep=sleeps, random=lambda: 0.5, clock=sleeps.clock)
