"""``make reliability`` runs ``benchmarks/reliability.py``: keep its long-run code working."""

from __future__ import annotations

import asyncio

from benchmarks.reliability import (
    SoakConfig,
    report,
    run_hostile,
    run_soak,
    run_verifier_attacks,
)


def test_long_run_code_paths_work_in_miniature() -> None:
    hostile = run_hostile(20, 10, seed=1)
    assert hostile.tried > 500  # the exhaustive lists run in full, on both JSON paths
    assert hostile.server_errors == 0 and hostile.problems == []
    attacks = run_verifier_attacks()
    assert attacks.tried == attacks.statuses[401] > 40
    soak = asyncio.run(run_soak(SoakConfig(conversations=5, turns=1, replies=1)))
    assert soak.problems == []
    text = report(hostile, attacks, soak, 1.0, {"WARNING": 3})
    assert "| Soak: lost (must be 0)" in text and "No problem found." in text
