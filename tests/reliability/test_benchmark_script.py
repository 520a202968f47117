"""``make reliability`` runs ``benchmarks/reliability.py``: keep its long-run code working."""

from __future__ import annotations

import asyncio

from benchmarks.reliability import (
    END,
    START,
    SoakConfig,
    merged,
    report,
    run_hostile,
    run_soak,
    run_verifier_attacks,
)

DURABILITY = (
    "<!-- durability:start -->\n## Durable delivery\n\n| a | b |\n<!-- durability:end -->\n"
)
REDIS = "## Several replicas on Redis\n\n- written by hand\n"


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


def test_the_report_keeps_the_other_scripts_sections() -> None:
    """``RELIABILITY.md`` is shared: durability.py writes a marked section, people add more."""
    old_ours = "# Reliability figures\n\n| old | figures |\n\nNo problem found.\n"
    # a file from before our markers: the old report on top, the others below
    first = merged(f"{old_ours}\n{DURABILITY}\n{REDIS}", "# Reliability figures\n\n| new |\n")
    assert first == f"{START}\n# Reliability figures\n\n| new |\n{END}\n\n{DURABILITY}\n{REDIS}"
    # then only what is between our markers changes, wherever the section is
    second = merged(first, "# Reliability figures\n\n| newer |")
    assert second == first.replace("| new |", "| newer |")
    moved = f"# Title\n\n{DURABILITY}\n{START}\nold\n{END}\n\n{REDIS}"
    assert merged(moved, "fresh") == f"# Title\n\n{DURABILITY}\n{START}\nfresh\n{END}\n\n{REDIS}"
    assert merged(None, "fresh") == merged(old_ours, "fresh") == f"{START}\nfresh\n{END}\n"
