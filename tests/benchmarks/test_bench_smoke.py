"""Smoke test of the benchmark harness: every variant starts and does the real work.

Benchmarks are not tests: nothing here asserts speed. What a developer relies on when running
``make bench`` is that each server variant answers correctly and its handler really runs, that
each client loop completes its posts, that the memory benchmark drives the SDK receiver to the
end, and that the report is produced. Tiny loads, the Python load generator (no wrk needed).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks import harness, replicas, run
from benchmarks.variants import CLIENTS, RECEIVERS, Variant, missing_modules

REQUESTS = 20


def _skip_if_missing(variant: Variant) -> None:
    missing = missing_modules(variant)
    if missing:
        pytest.skip(f"{variant.key}: {', '.join(missing)} not installed (the bench/speed extras)")


@pytest.mark.parametrize("variant", RECEIVERS, ids=lambda v: v.key)
def test_receiver_variant_answers_and_runs_its_handler(variant: Variant) -> None:
    _skip_if_missing(variant)
    with harness.server(variant.module, variant.args) as server:
        result = harness.run_loadgen(server.url, requests=REQUESTS, connections=4, run_id="smoke")
        stats = server.settled_stats(expected_handled=REQUESTS)
    assert result.errors == 0
    assert result.requests == REQUESTS
    assert stats["handled"] == REQUESTS
    if "--uvloop" in variant.args:
        assert "uvloop" in stats["loop"]
    if "--no-speed" in variant.args:
        assert stats["orjson"] is False


def test_receiver_refuses_a_wrong_secret() -> None:
    """The SDK row measures the verified pipeline, not a short-circuit: bad secrets get 401."""
    with harness.server("benchmarks.servers.sdk", ("--no-speed",)) as server:
        wrong = harness.run_loadgen(server.url + "/x", requests=4, connections=2)
        result = _post(server.url, secret="wrong")
        stats = server.settled_stats()
    assert wrong.errors == 4  # unknown path: 404s are counted as failures
    assert result == 401
    assert stats["handled"] == 0


def _post(url: str, *, secret: str) -> int:
    import urllib.error
    import urllib.request

    from benchmarks.payloads import PATH, send_message_body

    request = urllib.request.Request(
        url + PATH,
        data=send_message_body("conv-1", "m-1"),
        headers={"Authorization": secret, "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture(scope="module")
def sink() -> Iterator[harness.Server]:
    with harness.server("benchmarks.servers.sink") as server:
        yield server


@pytest.mark.parametrize("variant", CLIENTS, ids=lambda v: v.key)
def test_client_loop_completes(variant: Variant, sink: harness.Server) -> None:
    _skip_if_missing(variant)
    before = sink.stats()["handled"]
    args = ["--variant", variant.module, "--url", sink.url, *variant.args]
    result = harness.run_module_json(
        "benchmarks.client", [*args, "--n", "50", "--concurrency", "8"]
    )
    after = sink.settled_stats(expected_handled=before + 58)["handled"]
    assert result["errors"] == 0
    assert result["n"] == 50
    assert after - before == 50 + 8  # the timed posts plus one warm-up round


def test_memory_benchmark_drives_the_receiver() -> None:
    register = harness.run_module_json(
        "benchmarks.memory", ["register", "--conversations", "1000"], cpu=harness.SERVER_CPU
    )
    deliver = harness.run_module_json(
        "benchmarks.memory",
        ["deliver", "--conversations", "1000", "--deliveries", "3000"],
        cpu=harness.SERVER_CPU,
    )
    assert register["held"] == 1000  # the receiver really held every registration measured
    assert register["left_after_remove"] == 0
    assert deliver["drained"] is True
    assert deliver["handled"] == 3000
    assert deliver["statuses"] == {"200": 3000 + 1000}  # the timed deliveries and the warm-up


@pytest.mark.parametrize("variant", ["hand", "sdk"])
def test_ask_round_trip_completes(variant: str) -> None:
    """Each ask really went through the bot and back (the bot delivered one webhook per ask)."""
    from benchmarks.ask import WARMUP

    with harness.server("benchmarks.servers.echo_bot") as bot:
        args = ["--variant", variant, "--bot", bot.url, "--n", "5"]
        result = harness.run_module_json("benchmarks.ask", args)
        stats = bot.settled_stats(expected_handled=WARMUP + 5)
    assert result["n"] == 5
    assert 0 < result["p50_ms"] <= result["p99_ms"]
    assert stats["handled"] == WARMUP + 5


def test_memory_without_dedup_keeps_no_per_conversation_state() -> None:
    deliver = harness.run_module_json(
        "benchmarks.memory",
        ["deliver", "--no-dedup", "--conversations", "1000", "--deliveries", "2000"],
        cpu=harness.SERVER_CPU,
    )
    assert deliver["dedup_keys"] == 0
    assert deliver["handled"] == 2000


def test_run_writes_a_report(tmp_path: Path) -> None:
    code = run.main(
        ["--smoke", "--only", "receiver,memory", "--variants", "sdk", "--output", str(tmp_path)]
    )
    report = (tmp_path / "latest.md").read_text()
    data = json.loads((tmp_path / "latest.json").read_text())
    assert code == 0
    assert "| bare aiohttp (read body, 200) |" in report
    assert "### Targets (issue #5)" in report
    assert [r["key"] for r in data["receivers"]] == ["bare", "sdk"]
    assert all(r["handled"] >= r["requests"] > 0 for r in data["receivers"])


def test_replicas_route_through_redis_and_report_the_ratio(tmp_path: Path) -> None:
    """Issue #6 row: both replicas claim in Redis, B's half is forwarded to A, all handled."""
    problem = replicas.redis_problem()
    if problem:
        if os.environ.get("ULTIMATE_ASYNC_REQUIRE_REDIS") == "1":
            pytest.fail(f"{problem}; ULTIMATE_ASYNC_REQUIRE_REDIS=1 requires the Redis benchmark")
        pytest.skip(problem)
    code = run.main(["--smoke", "--only", "replicas", "--output", str(tmp_path)])
    report = (tmp_path / "latest.md").read_text()
    data = json.loads((tmp_path / "latest.json").read_text())["replicas"]
    each = run.MODES["smoke"].smoke_requests
    checks = data["checks"]
    assert code == 0, data.get("problem")
    assert checks["baseline_handled"] == checks["baseline_requests"] == 2 * each
    assert checks["replicas_handled"] == checks["replicas_requests"] == 2 * each
    assert checks["forwarded_in"] == checks["posted_to_b"] == each
    assert checks["dedup_claims"] == 2 * each  # every delivery to the pair claimed in Redis
    assert checks["catch_all"] == 0
    assert data["ratio"] > 0
    assert "### Replicas (issue #6)" in report


def test_replicas_without_redis_server_is_skipped_with_a_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ULTIMATE_ASYNC_REDIS_SERVER", "")  # pretend there is no binary
    code = run.main(["--smoke", "--only", "replicas", "--output", str(tmp_path)])
    report = (tmp_path / "latest.md").read_text()
    assert code == 0  # a missing binary is not a failed benchmark
    assert f"Skipped: {replicas.REDIS_MISSING}." in report


def test_parse_wrk_output() -> None:
    sample = """Running 3s test @ http://127.0.0.1:1/webhook
  1 threads and 64 connections
  Latency Distribution
     50%    2.34ms
     75%    2.44ms
     90%    2.68ms
     99%  474.91us
  79174 requests in 3.01s, 8.38MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:  26315.42
"""
    result = harness.parse_wrk(sample)
    assert result.requests == 79174
    assert result.rps == pytest.approx(26315.42)
    assert result.p50_ms == pytest.approx(2.34)
    assert result.p99_ms == pytest.approx(0.47491)
    assert result.errors == 8
