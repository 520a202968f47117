"""Turn measurements into one markdown report: tables of medians and ratios, targets PASS/MISS."""

from __future__ import annotations

import datetime as dt
import math
import platform
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from benchmarks.instructions import targets as instruction_targets
from benchmarks.results import Settings, VariantRun, _fmt, _table, median

MiB = 1024 * 1024


def paired_ratio(
    run: VariantRun | None, base: VariantRun | None, attr: str = "rps", *, invert: bool = False
) -> float:
    """Median over repetitions of value/baseline (or baseline/value), each pair back to back."""
    if run is None or base is None or not run.ok or not base.ok:
        return math.nan
    pairs = list(zip(getattr(run, attr), getattr(base, attr), strict=False))
    if invert:
        return median([b / a for a, b in pairs if a])
    return median([a / b for a, b in pairs if b])


def cpu_ratio(run: VariantRun | None, base: VariantRun | None) -> float:
    """Throughput ratio implied by CPU time per request (what a dedicated core would do)."""
    return paired_ratio(run, base, "cpu_us", invert=True)


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout
        wrk = wrk.splitlines()[0].split(" [")[0] if wrk else "-"
    except OSError:
        wrk = "-"
    import os

    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": {
            name: _version(name)
            for name in (
                "ultimate_async",
                "aiohttp",
                "attrs",
                "cattrs",
                "orjson",
                "uvloop",
                "fastapi",
                "uvicorn",
                "pydantic",
                "httptools",
            )
        },
        "wrk": wrk,
    }


# --- targets ------------------------------------------------------------------------------------


@dataclass
class TargetResult:
    description: str
    measured: str
    verdict: str  # PASS, MISS or n/a


def _by_key(runs: Sequence[VariantRun]) -> dict[str, VariantRun]:
    return {r.variant.key: r for r in runs}


def _ratio_target(
    description: str,
    run: VariantRun | None,
    base: VariantRun | None,
    bound: float,
    *,
    attr: str = "rps",
    at_most: bool = False,
) -> TargetResult:
    if run is None or base is None:
        return TargetResult(description, "not measured", "n/a")
    if not run.ok or not base.ok:
        why = run.skipped or run.problem or base.skipped or base.problem or "no data"
        return TargetResult(description, f"not measured ({why.splitlines()[0][:80]})", "n/a")
    value = paired_ratio(run, base, attr)
    ok = value <= bound if at_most else value >= bound
    return TargetResult(description, f"{value:.2f}x", "PASS" if ok else "MISS")


def evaluate_targets(
    settings: Settings,
    receivers: Sequence[VariantRun],
    clients: Sequence[VariantRun],
    memory: dict[str, Any],
    ask: dict[str, Any],
    instructions: dict[str, Any] | None = None,
) -> list[TargetResult]:
    rx = _by_key(receivers)
    cx = _by_key(clients)
    out: list[TargetResult] = []
    if receivers:
        bare, fastapi = rx.get("bare"), rx.get("fastapi")
        # Targets are judged on the receiver we ship standalone (WebhookServer); the embedded
        # rows (setup_webhook in an aiohttp.web app) are reported beside them.
        out += [
            _ratio_target("receiver: WebhookServer (no speed extra) >= 0.70x bare aiohttp req/s",
                          rx.get("server"), bare, 0.70),
            _ratio_target("receiver: WebhookServer (no speed extra) >= 2.5x FastAPI req/s",
                          rx.get("server"), fastapi, 2.5),
            _ratio_target("receiver: WebhookServer + speed extra >= 1.0x bare aiohttp",
                          rx.get("server_speed"), bare, 1.0),
            _ratio_target("receiver: WebhookServer p99 ack latency <= 1.5x bare p99",
                          rx.get("server"), bare, 1.5, attr="p99_ms", at_most=True),
            _ratio_target("receiver: WebhookServer + speed extra p99 <= 1.5x bare p99",
                          rx.get("server_speed"), bare, 1.5, attr="p99_ms", at_most=True),
            # Beyond the targets: the same pipeline mounted in an aiohttp.web app.
            _ratio_target("(beyond the targets) embedded setup_webhook >= 0.70x bare",
                          rx.get("sdk"), bare, 0.70),
        ]  # fmt: skip
    if instructions:
        out += [TargetResult(*target) for target in instruction_targets(instructions)]
    if clients:
        raw = cx.get("raw")
        out += [
            _ratio_target("client: SDK send_message (no speed extra) >= 0.90x raw aiohttp",
                          cx.get("sdk"), raw, 0.90),
            _ratio_target("client: SDK send_message + speed extra >= 1.2x raw aiohttp",
                          cx.get("sdk_speed"), raw, 1.2),
        ]  # fmt: skip
    if ask:
        if "sdk_p50_ms" in ask and "baseline_p50_ms" in ask:
            pairs = [a / b for a, b in zip(ask["sdk_p50_ms"], ask["baseline_p50_ms"], strict=False)]
            value = median(pairs)
            out.append(
                TargetResult(
                    "ask(): Conversation.ask() p50 <= 1.3x hand-written round trip",
                    f"{value:.2f}x",
                    "PASS" if value <= 1.3 else "MISS",
                )
            )
        else:
            out.append(
                TargetResult(
                    "ask(): Conversation.ask() p50 <= 1.3x hand-written round trip",
                    f"not measured ({ask.get('skipped', ask.get('problem', '?'))})",
                    "n/a",
                )
            )
    if memory:
        reg, dlv = memory.get("register"), memory.get("deliver")
        why = memory.get("skipped") or memory.get("problem")
        if reg:
            per = reg["bytes_per_conversation"]
            out.append(
                TargetResult(
                    f"memory: <= 1 KiB per idle registered conversation "
                    f"({reg['conversations']:,} registrations)",
                    f"{per:,.0f} B",
                    "PASS" if per <= 1024 else "MISS",
                )
            )
        else:
            out.append(TargetResult("memory: <= 1 KiB per registration", f"({why})", "n/a"))
        if dlv:
            growth = dlv["growth"] / MiB
            out.append(
                TargetResult(
                    f"memory: RSS growth <= 20 MB after {dlv['deliveries']:,} deliveries over "
                    f"{dlv['conversations']:,} conversations",
                    f"{growth:+.1f} MiB",
                    "PASS" if dlv["growth"] <= 20 * MiB and not memory.get("problem") else "MISS",
                )
            )
        else:
            out.append(TargetResult("memory: RSS growth <= 20 MB", f"({why})", "n/a"))
    return out


def targets_dict(*args: Any) -> list[dict[str, str]]:
    return [t.__dict__ for t in evaluate_targets(*args)]


def run_dict(run: VariantRun) -> dict[str, Any]:
    return {
        "key": run.variant.key,
        "label": run.variant.label,
        "rps": run.rps,
        "cpu_us": run.cpu_us,
        "p50_ms": run.p50_ms,
        "p99_ms": run.p99_ms,
        "requests": run.requests,
        "handled": run.handled,
        "errors": run.errors,
        "info": run.info,
        "problem": run.problem,
        "skipped": run.skipped,
    }


# --- rendering ----------------------------------------------------------------------------------


def _status(run: VariantRun) -> str:
    if run.skipped:
        return f"skipped: {run.skipped}"
    if run.problem:
        return "FAILED: " + run.problem.splitlines()[0][:100]
    parts = []
    loop = run.info.get("loop")
    if loop:
        parts.append("uvloop" if "uvloop" in loop else "asyncio")
    if "orjson" in run.info:
        parts.append("orjson loaded" if run.info["orjson"] else "no orjson")
    return ", ".join(parts)


def render(
    settings: Settings,
    receivers: Sequence[VariantRun],
    clients: Sequence[VariantRun],
    memory: dict[str, Any],
    ask: dict[str, Any],
    machine: dict[str, Any],
    sections: Sequence[str] = (),
    instructions: dict[str, Any] | None = None,
) -> str:
    """The report; ``sections`` are lines other modules rendered (replicas, instructions)."""
    lines: list[str] = [f"## Results ({settings.mode} mode, {machine['date']})", ""]
    v = machine["versions"]
    lines += [
        f"Machine: {machine['cpu']}, {machine['cores']} cores; Python {machine['python']}, "
        f"aiohttp {v['aiohttp']}, attrs {v['attrs']}, cattrs {v['cattrs']}, orjson {v['orjson']}, "
        f"uvloop {v['uvloop']}, FastAPI {v['fastapi']}, uvicorn {v['uvicorn']} "
        f"(httptools {v['httptools']}), pydantic {v['pydantic']}; {machine['wrk']}. "
        f"Load average {machine['loadavg_start']} at start, {machine.get('loadavg_end', '?')} "
        f"at end; {machine.get('wall_seconds', '?')} s in all.",
        "",
        "Server pinned to CPU 0, load generator to CPU 1; repetitions interleaved (A B C, B C A, "
        "...); figures are medians, ratios are medians of per-repetition ratios to the baseline "
        "measured back to back in the same run. The machine is shared and noisy: compare ratios, "
        'not absolute numbers. "CPU ratio" is the throughput ratio implied by the CPU time '
        "the process under test spent per request (baseline/variant): time spent preempted by "
        "other processes does not count, so it is the steadier cross-check; targets use req/s "
        "as the issue defines them.",
        "",
    ]
    if receivers:
        base = _by_key(receivers).get("bare")
        tool = next((r.info["tool"] for r in receivers if "tool" in r.info), "-")
        lines += [
            f"### Receiver: POST a sendMessage webhook, {settings.connections} connections, "
            f"{tool}, {settings.reps} x {settings.seconds:g} s",
            "",
        ]
        rows = [
            [
                r.variant.label,
                _fmt(median(r.rps), ",.0f"),
                _fmt(median(r.p50_ms), ".2f"),
                _fmt(median(r.p99_ms), ".2f"),
                _fmt(paired_ratio(r, base), ".2f"),
                _fmt(median(r.cpu_us), ".1f"),
                _fmt(cpu_ratio(r, base), ".2f"),
                r.variant.reference or "-",
                _status(r),
            ]
            for r in receivers
        ]
        lines += _table(
            [
                "variant",
                "req/s",
                "p50 ms",
                "p99 ms",
                "ratio vs bare",
                "CPU us/req",
                "CPU ratio",
                "issue ref.",
                "notes",
            ],
            rows,
        )
        lines.append("")
    if clients:
        base = _by_key(clients).get("raw")
        lines += [
            f"### Client: {settings.client_n:,} chat messages, concurrency "
            f"{settings.client_concurrency}, to a local aiohttp sink, {settings.reps} reps",
            "",
        ]
        rows = [
            [
                r.variant.label,
                _fmt(median(r.rps), ",.0f"),
                _fmt(paired_ratio(r, base), ".2f"),
                _fmt(median(r.cpu_us), ".1f"),
                _fmt(cpu_ratio(r, base), ".2f"),
                r.variant.reference or "-",
                _status(r),
            ]
            for r in clients
        ]
        header = ["variant", "posts/s", "ratio vs raw", "CPU us/post", "CPU ratio"]
        lines += _table([*header, "issue ref.", "notes"], rows)
        lines.append("")
    if memory and (memory.get("register") or memory.get("deliver")):
        lines += ["### Memory (in-process, receiver.handle())", ""]
        reg, dlv = memory.get("register"), memory.get("deliver")
        rows = []
        if reg:
            rows.append(
                [
                    f"register() {reg['conversations']:,} idle conversations",
                    f"{reg['bytes_per_conversation']:,.0f} B per conversation "
                    f"({reg['register_us']:.1f} us each)",
                ]
            )
        if dlv:
            rows.append(
                [
                    f"{dlv['deliveries']:,} deliveries over {dlv['conversations']:,} conversations",
                    f"RSS {dlv['rss_start'] / MiB:.1f} -> {dlv['rss_first_pass'] / MiB:.1f} "
                    f"(after first pass) -> {dlv['rss_end'] / MiB:.1f} MiB; growth "
                    f"{dlv['growth'] / MiB:+.1f} MiB ({dlv['growth_after_first_pass'] / MiB:+.1f}"
                    f" after first pass); {dlv['handle_us']:.1f} us per delivery in-process",
                ]
            )
        plain = memory.get("deliver_no_dedup")
        if plain:
            rows.append(
                [
                    "the same with dedup=None (per-conversation state only)",
                    f"RSS {plain['rss_start'] / MiB:.1f} -> {plain['rss_end'] / MiB:.1f} MiB; "
                    f"growth {plain['growth'] / MiB:+.1f} MiB",
                ]
            )
        if dlv and plain and dlv.get("dedup_keys"):
            per_key = (dlv["growth"] - plain["growth"]) / dlv["dedup_keys"]
            rows.append(
                [
                    "MemoryDeduplicator at the end",
                    f"{dlv['dedup_keys']:,} keys held (bounded by its max_size): "
                    f"~{per_key:,.0f} B per key (growth with dedup minus growth without)",
                ]
            )
        lines += _table(["measurement", "result"], rows)
        lines.append("")
    if ask.get("sdk_p50_ms") and ask.get("baseline_p50_ms"):
        lines += [
            f"### Round trip: ask one question, await the bot's webhook reply "
            f"({settings.ask_n} sequential asks, {settings.reps} reps, local echo bot)",
            "",
        ]
        rows = [
            [
                "hand-written: aiohttp POST + Future resolved by a bare webhook handler",
                _fmt(median(ask["baseline_p50_ms"]), ".3f"),
                _fmt(median(ask["baseline_cpu_us"]), ",.0f"),
                "1.00",
            ],
            [
                "SDK: Conversation.ask(text, settle=0), no speed extra",
                _fmt(median(ask["sdk_p50_ms"]), ".3f"),
                _fmt(median(ask["sdk_cpu_us"]), ",.0f"),
                _fmt(
                    median(
                        [
                            a / b
                            for a, b in zip(ask["sdk_p50_ms"], ask["baseline_p50_ms"], strict=False)
                        ]
                    ),
                    ".2f",
                ),
            ],
        ]
        lines += _table(["variant", "p50 ms", "CPU us/ask", "p50 ratio"], rows)
        lines.append("")
    lines += sections
    targets = evaluate_targets(settings, receivers, clients, memory, ask, instructions)
    if targets:
        lines += ["### Targets (issue #5)", ""]
        lines += _table(
            ["target", "measured", "result"],
            [[t.description, t.measured, t.verdict] for t in targets],
        )
        if settings.mode != "full":
            lines += ["", f"({settings.mode} mode: too short to judge; run `make bench`.)"]
        lines.append("")
    problems = [r for r in (*receivers, *clients) if r.problem]
    if problems or memory.get("problem") or ask.get("problem"):
        lines += ["### Problems", ""]
        lines += [f"- {r.variant.key}: {r.problem}" for r in problems]
        if memory.get("problem"):
            lines.append(f"- memory: {memory['problem']}")
        if ask.get("problem"):
            lines.append(f"- ask: {ask['problem']}")
        lines.append("")
    return "\n".join(lines)
