"""Run every benchmark, print one table of medians and ratios, and check the issue's targets.

``python -m benchmarks.run`` (``make bench``, a few minutes), ``--quick`` (``make bench-quick``,
about a minute) or ``--smoke`` (seconds; only proves every variant works). Results also go to
``benchmarks/results/latest.md`` and ``latest.json``. Benchmarks are not tests: a missed target
is reported as MISS, not an error; the exit status is 1 only when a variant failed to run or
answered wrongly.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks import harness, instructions, replicas, report
from benchmarks.results import Settings, VariantRun
from benchmarks.variants import (
    CLIENT_BASELINE,
    CLIENTS,
    RECEIVER_BASELINE,
    RECEIVERS,
    Variant,
    missing_modules,
    sdk_client_problem,
    sdk_receiver_problem,
)

RESULTS_DIR = Path(__file__).resolve().parent / "results"


MODES = {
    "full": Settings("full", 5, 5.0, 64, 20_000, 64, 100_000, 100_000, 1_000_000),
    "quick": Settings("quick", 2, 2.0, 64, 10_000, 64, 20_000, 10_000, 100_000, ask_n=100,
                      instruction_deliveries=300),
    "smoke": Settings("smoke", 1, 1.0, 8, 50, 8, 1_000, 1_000, 3_000, ask_n=10,
                      smoke_requests=30, use_wrk=False),
}  # fmt: skip


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _rotation(items: Sequence[VariantRun], rep: int) -> list[VariantRun]:
    """A B C, B C A, C A B, ...: interleaved, and no variant always runs first."""
    live = [r for r in items if r.problem is None and r.skipped is None]
    if not live:
        return []
    shift = rep % len(live)
    return live[shift:] + live[:shift]


# --- receiver -----------------------------------------------------------------------------------


def bench_receivers(settings: Settings, variants: Sequence[Variant]) -> list[VariantRun]:
    wrk = harness.find_wrk() if settings.use_wrk else None
    sdk_problem = sdk_receiver_problem()
    runs = [VariantRun(v) for v in variants]
    servers: dict[str, harness.Server] = {}
    with ExitStack() as stack:
        for run in runs:
            v = run.variant
            if missing := missing_modules(v):
                run.skipped = f"not installed: {', '.join(missing)}"
                continue
            if v.sdk and sdk_problem:
                run.skipped = sdk_problem
                continue
            try:
                servers[v.key] = stack.enter_context(harness.server(v.module, v.args))
            except RuntimeError as exc:
                run.problem = str(exc)
        tag = uuid.uuid4().hex[:8]

        def load(run: VariantRun, label: str, seconds: float) -> harness.LoadResult:
            srv = servers[run.variant.key]
            run_id = f"{tag}{label}"
            if settings.smoke_requests:
                return harness.run_loadgen(
                    srv.url,
                    requests=settings.smoke_requests,
                    connections=settings.connections,
                    run_id=run_id,
                )
            if wrk:
                return harness.run_wrk(
                    wrk, srv.url, seconds=seconds, connections=settings.connections, run_id=run_id
                )
            return harness.run_loadgen(
                srv.url, seconds=seconds, connections=settings.connections, run_id=run_id
            )

        if not settings.smoke_requests:
            for run in _rotation(runs, 0):
                _log(f"  warm-up {run.variant.key}")
                try:
                    run.requests += load(run, "w", 1.0).requests
                except Exception as exc:
                    run.problem = f"warm-up failed: {exc}"
        for rep in range(settings.reps):
            for run in _rotation(runs, rep):
                srv = servers[run.variant.key]
                try:
                    cpu_before = srv.cpu_seconds()
                    result = load(run, f"r{rep}", settings.seconds)
                    cpu = srv.cpu_seconds() - cpu_before
                except Exception as exc:
                    run.problem = f"load failed: {exc}"
                    continue
                cpu_us = cpu / result.requests * 1e6 if result.requests else float("nan")
                _log(
                    f"  rep {rep + 1}/{settings.reps} {run.variant.key:12s} "
                    f"{result.rps:9.0f} req/s  p99 {result.p99_ms:6.2f} ms  "
                    f"{cpu_us:6.1f} us CPU/req  ({result.tool})"
                )
                run.cpu_us.append(cpu_us)
                run.rps.append(result.rps)
                run.p50_ms.append(result.p50_ms)
                run.p99_ms.append(result.p99_ms)
                run.requests += result.requests
                run.errors += result.errors
                run.info["tool"] = result.tool
        for run in runs:
            srv_ = servers.get(run.variant.key)
            if srv_ is None or run.problem:
                continue
            stats = srv_.settled_stats(expected_handled=run.requests)
            run.handled = stats["handled"]
            run.info.update(loop=stats["loop"], orjson=stats["orjson"])
            if run.errors:
                run.problem = f"{run.errors} failed or non-2xx requests"
            elif run.handled < run.requests:
                run.problem = f"only {run.handled} of {run.requests} deliveries reached a handler"
    return runs


# --- client -------------------------------------------------------------------------------------


def bench_clients(settings: Settings, variants: Sequence[Variant]) -> list[VariantRun]:
    sdk_problem = sdk_client_problem()
    runs = [VariantRun(v) for v in variants]
    for run in runs:
        if missing := missing_modules(run.variant):
            run.skipped = f"not installed: {', '.join(missing)}"
        elif run.variant.sdk and sdk_problem:
            run.skipped = sdk_problem
    sink_args = () if missing_modules(Variant("", "", "", needs=("uvloop",))) else ("--uvloop",)
    with harness.server("benchmarks.servers.sink", sink_args) as sink:
        for rep in range(settings.reps):
            for run in _rotation(runs, rep):
                v = run.variant
                args = ["--variant", v.module, "--url", sink.url, *v.args]
                args += ["--n", str(settings.client_n)]
                args += ["--concurrency", str(settings.client_concurrency)]
                try:
                    result = harness.run_module_json("benchmarks.client", args)
                except RuntimeError as exc:
                    run.problem = str(exc)
                    continue
                _log(
                    f"  rep {rep + 1}/{settings.reps} {v.key:12s} {result['rps']:9.0f} posts/s"
                    f"  {result['cpu_us']:6.1f} us CPU/post  ({result['seconds']:.2f} s)"
                )
                run.rps.append(result["rps"])
                run.cpu_us.append(result["cpu_us"])
                run.errors += result["errors"]
                run.requests += result["n"]
                run.info.update(loop=result["loop"], orjson=result["orjson"])
                if result["errors"]:
                    run.problem = f"{result['errors']} sends failed"
        handled = sink.settled_stats()["handled"]
    expected = sum(r.requests + settings.client_concurrency * len(r.rps) for r in runs)
    if handled < expected:
        for run in runs:
            run.problem = run.problem or f"sink saw {handled} of {expected} posts"
    return runs


# --- memory -------------------------------------------------------------------------------------


def bench_memory(settings: Settings) -> dict[str, Any]:
    problem = sdk_receiver_problem()
    if problem:
        return {"skipped": problem}
    out: dict[str, Any] = {}
    try:
        out["register"] = harness.run_module_json(
            "benchmarks.memory",
            ["register", "--conversations", str(settings.register_conversations)],
            cpu=harness.SERVER_CPU,
        )
        out["deliver"] = harness.run_module_json(
            "benchmarks.memory",
            [
                "deliver",
                "--conversations",
                str(settings.deliver_conversations),
                "--deliveries",
                str(settings.deliveries),
            ],
            cpu=harness.SERVER_CPU,
        )
        out["deliver_no_dedup"] = harness.run_module_json(
            "benchmarks.memory",
            [
                "deliver",
                "--no-dedup",
                "--conversations",
                str(settings.deliver_conversations),
                "--deliveries",
                str(settings.deliveries),
            ],
            cpu=harness.SERVER_CPU,
        )
    except RuntimeError as exc:
        out["problem"] = str(exc)
        return out
    deliver = out["deliver"]
    if not deliver["drained"] or deliver["handled"] < settings.deliveries:
        out["problem"] = f"only {deliver['handled']} of {settings.deliveries} deliveries handled"
    elif set(deliver["statuses"]) != {"200"}:
        out["problem"] = f"unexpected statuses {deliver['statuses']}"
    return out


# --- ask (Conversation) -------------------------------------------------------------------------


def bench_ask(settings: Settings) -> dict[str, Any]:
    """``Conversation.ask()`` p50 round trip vs a hand-written POST + Future, interleaved.

    Both talk to the same echo bot (``benchmarks.servers.echo_bot``, CPU 0); each repetition runs
    each side in a fresh process (CPU 1) asking ``ask_n`` questions one after another.
    """
    try:
        from ultimate_async.conversation import Conversation  # noqa: F401
    except Exception as exc:
        return {"skipped": f"ultimate_async.conversation not usable yet ({exc})"}
    problem = sdk_receiver_problem() or sdk_client_problem()
    if problem:
        return {"skipped": problem}
    out: dict[str, Any] = {"baseline_p50_ms": [], "sdk_p50_ms": [], "baseline_cpu_us": []}
    out["sdk_cpu_us"] = []
    bot_args = () if missing_modules(Variant("", "", "", needs=("uvloop",))) else ("--uvloop",)
    with harness.server("benchmarks.servers.echo_bot", bot_args) as bot:
        for rep in range(settings.reps):
            order = ["hand", "sdk"] if rep % 2 == 0 else ["sdk", "hand"]
            for variant in order:
                args = ["--variant", variant, "--bot", bot.url, "--n", str(settings.ask_n)]
                if variant == "sdk":
                    args.append("--no-speed")
                try:
                    result = harness.run_module_json("benchmarks.ask", args)
                except RuntimeError as exc:
                    out["problem"] = str(exc)
                    return out
                side = "baseline" if variant == "hand" else "sdk"
                out[f"{side}_p50_ms"].append(result["p50_ms"])
                out[f"{side}_cpu_us"].append(result["cpu_us"])
                _log(
                    f"  rep {rep + 1}/{settings.reps} ask {variant:5s} p50 "
                    f"{result['p50_ms']:.3f} ms  p99 {result['p99_ms']:.3f} ms  "
                    f"{result['cpu_us']:.0f} us CPU/ask"
                )
    return out


# --- main ---------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="about a minute")
    mode.add_argument("--smoke", action="store_true", help="seconds: only check everything runs")
    parser.add_argument("--reps", type=int, help="interleaved repetitions per variant")
    parser.add_argument("--seconds", type=float, help="seconds of load per receiver repetition")
    parser.add_argument("--no-wrk", action="store_true", help="use the Python load generator")
    parser.add_argument(
        "--only",
        default="receiver,client,memory,ask,replicas,instructions",
        help="comma-separated sections: receiver, client, memory, ask, replicas, instructions",
    )
    parser.add_argument("--variants", default="", help="comma-separated variant keys to run")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR, help="where to write results")
    args = parser.parse_args(argv)

    base = MODES["smoke" if args.smoke else "quick" if args.quick else "full"]
    settings = Settings(**{**asdict(base)})
    if args.reps:
        settings.reps = args.reps
    if args.seconds:
        settings.seconds = args.seconds
    if args.no_wrk:
        settings.use_wrk = False
    sections = {s.strip() for s in args.only.split(",") if s.strip()}
    chosen = {s.strip() for s in args.variants.split(",") if s.strip()}

    def pick(variants: Sequence[Variant], baseline: str) -> list[Variant]:
        if not chosen:
            return list(variants)
        return [v for v in variants if v.key in chosen or v.key == baseline]

    machine = report.machine_info()
    machine["loadavg_start"] = report.loadavg()
    started = time.time()
    results: dict[str, Any] = {"settings": asdict(settings), "machine": machine}
    receivers: list[VariantRun] = []
    clients: list[VariantRun] = []
    if "receiver" in sections:
        _log(f"receiver benchmarks ({settings.mode})")
        receivers = bench_receivers(settings, pick(RECEIVERS, RECEIVER_BASELINE))
    if "client" in sections:
        _log(f"client benchmarks ({settings.mode})")
        clients = bench_clients(settings, pick(CLIENTS, CLIENT_BASELINE))
    memory: dict[str, Any] = {}
    if "memory" in sections:
        _log("memory benchmarks")
        memory = bench_memory(settings)
    ask: dict[str, Any] = {}
    if "ask" in sections:
        ask = bench_ask(settings)
    replicas_result: dict[str, Any] = {}
    if "replicas" in sections:
        _log(f"replicas benchmark ({settings.mode})")
        replicas_result = replicas.bench_replicas(settings)
    counted: dict[str, Any] = {}
    if "instructions" in sections and settings.mode != "smoke":  # minutes under valgrind
        _log("instructions per delivery (callgrind)")
        counted = instructions.measure(settings.instruction_deliveries)
    machine["loadavg_end"] = report.loadavg()
    machine["wall_seconds"] = round(time.time() - started, 1)

    extra = [*replicas.render(replicas_result), *instructions.render(counted)]
    text = report.render(
        settings, receivers, clients, memory, ask, machine, extra, instructions=counted
    )
    print(text)
    results.update(
        receivers=[report.run_dict(r) for r in receivers],
        clients=[report.run_dict(r) for r in clients],
        memory=memory,
        ask=ask,
        replicas=replicas_result,
        instructions=counted,
        targets=report.targets_dict(settings, receivers, clients, memory, ask, counted),
    )
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "latest.md").write_text(text + "\n")
    (args.output / "latest.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    _log(f"written {args.output / 'latest.md'} and latest.json")
    failed = [r for r in (*receivers, *clients) if r.problem]
    problems = (memory, ask, replicas_result, *counted.get("rows", {}).values())
    if failed or any(part.get("problem") for part in problems):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
