"""The shapes every benchmark module shares: a run's settings and results, and table helpers.

``run.py`` measures, ``report.py`` renders and ``replicas.py``/``instructions.py`` add their
sections; all of them import these from here, so none of them imports another one back.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.variants import Variant


@dataclass
class Settings:
    mode: str
    reps: int
    seconds: float
    connections: int
    client_n: int
    client_concurrency: int
    register_conversations: int
    deliver_conversations: int
    deliveries: int
    ask_n: int = 300
    smoke_requests: int = 0
    use_wrk: bool = True
    #: Deliveries counted under callgrind per server (benchmarks/instructions.py).
    instruction_deliveries: int = 1000


@dataclass
class VariantRun:
    """All repetitions of one variant; ``problem`` says why it did not run or was wrong."""

    variant: Variant
    rps: list[float] = field(default_factory=list)
    p50_ms: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    #: CPU time of the process under test per request, in microseconds.
    cpu_us: list[float] = field(default_factory=list)
    requests: int = 0
    handled: int | None = None
    errors: int = 0
    info: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None and self.skipped is None and bool(self.rps)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def _fmt(value: float, spec: str) -> str:
    return "-" if math.isnan(value) else format(value, spec)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines
