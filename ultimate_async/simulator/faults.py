"""Faults the simulator can inject, so tests see the failures a real platform may produce.

All randomness comes from :class:`random.Random` instances seeded from ``Faults.seed``: with a
seed, the same sequence of requests and deliveries sees the same faults.  The API side and the
delivery side draw from separate generators, so adding a visitor request does not shift which
deliveries get duplicated.
"""

from __future__ import annotations

import random

import attrs

__all__ = ["FaultInjector", "Faults"]


def _check_rate(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be between 0 and 1, got {value!r}")


def _check_latency(
    instance: object, attribute: attrs.Attribute[tuple[float, float]], value: tuple[float, float]
) -> None:
    low, high = value
    if low < 0 or high < low:
        raise ValueError(f"latency must be (min, max) with 0 <= min <= max, got {value!r}")


def _check_statuses(
    instance: object, attribute: attrs.Attribute[tuple[int, ...]], value: tuple[int, ...]
) -> None:
    if not value or any(not 400 <= status <= 599 for status in value):
        raise ValueError(f"error_statuses must be 4xx/5xx codes, got {value!r}")


def _pair(value: tuple[float, float] | list[float]) -> tuple[float, float]:
    low, high = value
    return (float(low), float(high))


def _statuses(value: tuple[int, ...] | list[int]) -> tuple[int, ...]:
    return tuple(value)


@attrs.frozen
class Faults:
    """What goes wrong, and how often.

    ``latency``: each webhook delivery attempt waits a uniform ``(min, max)`` seconds first.
    ``duplicate_rate``: chance that a delivered ``sendMessage`` is delivered a second time (same
    body, same ``messageId``) right after the first.
    ``error_rate``: chance that an API request is refused with one of ``error_statuses``
    (``429``/``503``) *before* it is processed, with ``Retry-After: retry_after`` when set, so a
    client retry is always safe.
    ``seed``: makes the draws reproducible.
    """

    latency: tuple[float, float] = attrs.field(
        default=(0.0, 0.0), converter=_pair, validator=_check_latency
    )
    duplicate_rate: float = attrs.field(default=0.0, validator=_check_rate)
    error_rate: float = attrs.field(default=0.0, validator=_check_rate)
    error_statuses: tuple[int, ...] = attrs.field(
        default=(429, 503), converter=_statuses, validator=_check_statuses
    )
    retry_after: float | None = None
    seed: int | str | None = None


class FaultInjector:
    """Draws the faults of one :class:`Faults` configuration."""

    def __init__(self, faults: Faults | None) -> None:
        self.faults = faults if faults is not None else Faults()
        seed = self.faults.seed
        self._api_rng = random.Random(None if seed is None else f"{seed}/api")
        self._delivery_rng = random.Random(None if seed is None else f"{seed}/delivery")

    @property
    def active(self) -> bool:
        """Whether any fault can happen at all (lets the hot path skip the draws)."""
        f = self.faults
        return f.latency[1] > 0 or f.duplicate_rate > 0 or f.error_rate > 0

    def api_error(self) -> tuple[int, dict[str, str]] | None:
        """``(status, headers)`` to refuse this API request with, or ``None`` to process it."""
        f = self.faults
        if f.error_rate <= 0 or self._api_rng.random() >= f.error_rate:
            return None
        status = self._api_rng.choice(f.error_statuses)
        headers: dict[str, str] = {}
        if f.retry_after is not None:
            value = f.retry_after
            headers["Retry-After"] = str(int(value)) if float(value).is_integer() else str(value)
        return status, headers

    def latency(self) -> float:
        """Seconds to wait before the next delivery attempt."""
        low, high = self.faults.latency
        if high <= 0:
            return 0.0
        return self._delivery_rng.uniform(low, high)

    def duplicate(self) -> bool:
        """Whether to deliver the message just delivered once more."""
        rate = self.faults.duplicate_rate
        return rate > 0 and self._delivery_rng.random() < rate
