"""Issue #6: deliveries per second through two replicas sharing Redis, vs one replica without.

Two SDK receivers (``servers/sdk_replica.py``) share a throwaway ``redis-server``: both
de-duplicate through ``RedisDeduplicator`` and route through ``RedisEventBus``. Replica A holds
(``register()``s) every conversation of the load, so the half of the deliveries posted to
replica B is claimed in Redis and forwarded over Redis to A, where the handler runs: the
realistic routing cost. Every ``messageId`` is unique, so every claim is a real Redis ``SET NX``.
The baseline is one replica with the default in-memory de-duplication and no bus, the same
conversations registered and the same two load generators (both pointed at it), measured in the
same run, interleaved with the pair.

A delivery counts once its handler ran (the servers' ``/stats``), so a backlog still waiting in
A's Redis inbox when the load stops is paid for: deliveries/s is handled deliveries over the time
from starting the load until the last one was handled.

On this two-core machine both replicas share the receivers' core (Redis and the load generators
get the other), so the measured ratio compares the same CPU budget: it is the cost of Redis
de-duplication and routing per delivery, not scaling. The CPU-implied ratio projects the pair
with one core per replica: total deliveries over the CPU time of the busier replica, relative
to the baseline's deliveries per CPU second.
"""

from __future__ import annotations

import math
import sys
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from benchmarks import harness
from benchmarks.payloads import CONVERSATIONS
from benchmarks.results import _fmt, _table, median
from benchmarks.variants import sdk_receiver_problem

if TYPE_CHECKING:
    from benchmarks.results import Settings

MODULE = "benchmarks.servers.sdk_replica"
REDIS_MISSING = "redis-server not found (apt-get install redis-server)"
#: The key pattern of de-duplication claims (``RedisDeduplicator``'s default prefix).
DEDUP_KEYS = "ultimate_async:dedup:*"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def redis_problem() -> str | None:
    """Why the section cannot run here (None when it can)."""
    problem = sdk_receiver_problem()
    if problem:
        return problem
    try:
        import ultimate_async.redis  # noqa: F401
    except Exception as exc:
        return f"ultimate_async.redis not usable ({type(exc).__name__}: {exc})"
    if harness.find_redis_server() is None:
        return REDIS_MISSING
    return None


@dataclass
class _Setup:
    """One side of the comparison: the servers under test and the URL each load generator hits."""

    key: str
    servers: list[harness.Server]
    targets: list[str]
    #: Per repetition.
    dps: list[float] = field(default_factory=list)
    answered_rps: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    #: CPU per delivery of each server process, and of the busier one.
    server_cpu_us: list[list[float]] = field(default_factory=list)
    busiest_cpu_us: list[float] = field(default_factory=list)
    redis_cpu_us: list[float] = field(default_factory=list)
    drain_ms: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    requests: int = 0
    errors: int = 0
    #: Requests answered per target URL, all repetitions.
    answered_by: list[int] = field(default_factory=lambda: [0, 0])

    def handled(self) -> int:
        return sum(int(s.stats()["handled"]) for s in self.servers)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("key", "servers", "targets")}


def bench_replicas(settings: Settings) -> dict[str, Any]:
    """Run the section; a dict with ``skipped``, ``problem`` or the measurements."""
    problem = redis_problem()
    if problem:
        _log(f"  replicas skipped: {problem}")
        return {"skipped": problem}
    binary = harness.find_redis_server()
    assert binary is not None
    wrk = harness.find_wrk() if settings.use_wrk and not settings.smoke_requests else None
    each = max(1, settings.connections // 2)
    hold = ("--hold", str(CONVERSATIONS))
    out: dict[str, Any] = {
        "tool": "wrk" if wrk else "loadgen",
        "connections": settings.connections,
        "reps": settings.reps,
        "seconds": settings.seconds,
        "requests_each": settings.smoke_requests or None,
    }
    tag = uuid.uuid4().hex[:8]
    with ExitStack() as stack:
        try:
            redis = stack.enter_context(harness.redis_server(binary))
            single = stack.enter_context(harness.server(MODULE, ("--no-speed", *hold)))
            args = ("--no-speed", "--redis", redis.url)
            holder = stack.enter_context(harness.server(MODULE, (*args, *hold)))
            other = stack.enter_context(harness.server(MODULE, args))
        except RuntimeError as exc:
            out["problem"] = str(exc)
            return out
        base = _Setup("baseline", [single], [single.url, single.url])
        pair = _Setup("replicas", [holder, other], [holder.url, other.url])

        def load(setup: _Setup, label: str, seconds: float, *, record: bool = True) -> None:
            before = setup.handled()
            cpu_before = [s.cpu_seconds() for s in setup.servers]
            redis_before = redis.cpu_seconds()
            started = time.perf_counter()
            results = harness.run_loads_together(
                # A run id per generator and repetition keeps every messageId unique.
                [(url, f"{tag}{setup.key[0]}{label}{i}") for i, url in enumerate(setup.targets)],
                wrk=wrk,
                connections=each,
                seconds=None if settings.smoke_requests else seconds,
                requests=settings.smoke_requests or None,
            )
            loaded = time.perf_counter()
            answered = sum(r.requests for r in results)
            handled = _wait_handled(setup, before + answered) - before
            finished = time.perf_counter()
            cpu = [s.cpu_seconds() - b for s, b in zip(setup.servers, cpu_before, strict=True)]
            setup.requests += answered
            for i, r in enumerate(results):
                setup.answered_by[i] += r.requests
            setup.errors += sum(r.errors for r in results)
            if not record:
                return
            per = 1e6 / handled if handled else math.nan
            setup.dps.append(handled / (finished - started))
            setup.answered_rps.append(sum(r.rps for r in results))
            setup.cpu_us.append(sum(cpu) * per)
            setup.server_cpu_us.append([c * per for c in cpu])
            setup.busiest_cpu_us.append(max(cpu) * per)
            setup.redis_cpu_us.append((redis.cpu_seconds() - redis_before) * per)
            setup.drain_ms.append((finished - loaded) * 1000)
            setup.p99_ms.append(max(r.p99_ms for r in results))
            _log(
                f"  rep {label}/{settings.reps} {setup.key:9s} {setup.dps[-1]:9.0f} deliveries/s  "
                f"{setup.cpu_us[-1]:6.1f} us CPU/delivery "
                f"({' + '.join(f'{c:.1f}' for c in setup.server_cpu_us[-1])})  "
                f"drain {setup.drain_ms[-1]:5.0f} ms  ({results[0].tool})"
            )

        try:
            if not settings.smoke_requests:
                for setup in (base, pair):
                    _log(f"  warm-up replicas {setup.key}")
                    load(setup, "w", 1.0, record=False)
            for rep in range(settings.reps):
                order = (base, pair) if rep % 2 == 0 else (pair, base)
                for setup in order:
                    load(setup, str(rep + 1), settings.seconds)
        except (RuntimeError, OSError) as exc:
            out["problem"] = f"load failed: {exc}"
            return out
        out["checks"] = _checks(base, pair, holder, other, redis)
    out["baseline"] = base.as_dict()
    out["replicas"] = pair.as_dict()
    pairs = zip(pair.dps, base.dps, strict=True)
    out["ratio"] = median([p / b for p, b in pairs if b])
    cpu_pairs = zip(base.cpu_us, pair.busiest_cpu_us, strict=True)
    out["cpu_ratio_core_each"] = median([b / p for b, p in cpu_pairs if p])
    cpu_pairs = zip(base.cpu_us, pair.cpu_us, strict=True)
    out["cpu_ratio_shared"] = median([b / p for b, p in cpu_pairs if p])
    problems = out["checks"].pop("problems")
    if problems:
        out["problem"] = "; ".join(problems)
    return out


def _wait_handled(setup: _Setup, expected: int, timeout: float = 60.0) -> int:
    """Poll ``/stats`` until ``expected`` handlers ran or ``timeout`` passed; the count then."""
    deadline = time.monotonic() + timeout
    handled = setup.handled()
    while handled < expected and time.monotonic() < deadline:
        time.sleep(0.01)
        handled = setup.handled()
    return handled


def _checks(
    base: _Setup,
    pair: _Setup,
    holder: harness.Server,
    other: harness.Server,
    redis: harness.RedisProcess,
) -> dict[str, Any]:
    """Prove the pair did what it claims: every delivery handled, B's half routed through Redis."""
    a, b = holder.stats(), other.stats()
    single = base.servers[0].stats()
    checks: dict[str, Any] = {
        "baseline_handled": single["handled"],
        "baseline_requests": base.requests,
        "replicas_handled": a["handled"] + b["handled"],
        "replicas_requests": pair.requests,
        "forwarded_in": a["forwarded_in"],
        "posted_to_b": pair.answered_by[1],
        "catch_all": a["catch_all"] + b["catch_all"] + single["catch_all"],
    }
    try:
        checks["dedup_claims"] = redis.count_keys(DEDUP_KEYS)
    except Exception as exc:  # redis-py missing: the other checks still stand
        checks["dedup_claims"] = f"not counted ({type(exc).__name__})"
    problems = []
    if base.errors or pair.errors:
        problems.append(f"{base.errors + pair.errors} failed or non-2xx requests")
    if checks["baseline_handled"] < base.requests:
        problems.append(f"baseline handled {checks['baseline_handled']} of {base.requests}")
    if checks["replicas_handled"] < pair.requests:
        problems.append(f"replicas handled {checks['replicas_handled']} of {pair.requests}")
    # wrk stops with requests in flight: the servers may handle a few more than it counted.
    if checks["forwarded_in"] < pair.answered_by[1]:
        problems.append(
            f"{checks['forwarded_in']} deliveries forwarded through Redis to A, "
            f"{pair.answered_by[1]} posted to B"
        )
    if checks["catch_all"]:
        problems.append(f"{checks['catch_all']} deliveries reached no holder")
    claims = checks["dedup_claims"]
    if isinstance(claims, int) and claims < pair.requests:
        problems.append(f"only {claims} de-duplication claims in Redis for {pair.requests}")
    checks["problems"] = problems
    return checks


def render(replicas: dict[str, Any]) -> list[str]:
    """The report's section for issue #6 (empty when the section did not run)."""
    if not replicas:
        return []
    title = "### Replicas (issue #6): two SDK replicas sharing Redis vs one replica without"
    if "skipped" in replicas:
        return [title, "", f"Skipped: {replicas['skipped']}.", ""]
    if "baseline" not in replicas:
        return [title, "", f"FAILED: {replicas.get('problem', '?')}", ""]
    base, pair = replicas["baseline"], replicas["replicas"]
    load = (
        f"{replicas['requests_each']} requests per generator"
        if replicas.get("requests_each")
        else f"{replicas['reps']} x {replicas['seconds']:g} s"
    )
    lines = [
        f"{title} ({replicas['tool']}, 2 generators x {max(1, replicas['connections'] // 2)} "
        f"connections, {load})",
        "",
    ]
    rows = [
        [
            "one replica: MemoryDeduplicator, no bus (both generators on it)",
            _fmt(median(base["dps"]), ",.0f"),
            "1.00",
            _fmt(median(base["answered_rps"]), ",.0f"),
            _fmt(median(base["cpu_us"]), ".1f"),
            "-",
            _fmt(median(base["drain_ms"]), ",.0f"),
        ],
        [
            "two replicas: RedisDeduplicator + RedisEventBus, half the load each, B forwards to A",
            _fmt(median(pair["dps"]), ",.0f"),
            _fmt(replicas.get("ratio", math.nan), ".2f"),
            _fmt(median(pair["answered_rps"]), ",.0f"),
            _fmt(median(pair["cpu_us"]), ".1f"),
            _fmt(median(pair["redis_cpu_us"]), ".1f"),
            _fmt(median(pair["drain_ms"]), ",.0f"),
        ],
    ]
    header = ["setup", "deliveries/s", "ratio", "answered req/s", "CPU us/delivery"]
    lines += _table([*header, "Redis CPU us/delivery", "drain ms"], rows)
    checks = replicas.get("checks", {})
    split = [median([rep[i] for rep in pair["server_cpu_us"]]) for i in range(2)]
    lines += [
        "",
        f"CPU us per delivery of the pair split by replica: A (holds the conversations, runs "
        f"every handler) {_fmt(split[0], '.1f')}, B (claims and forwards its half) "
        f"{_fmt(split[1], '.1f')}.",
        f"Receivers share one core, Redis and the load generators the other. CPU-implied ratio "
        f"on that shared core: {_fmt(replicas.get('cpu_ratio_shared', math.nan), '.2f')}; with "
        f"a core per replica (deliveries per CPU second of the busier replica): "
        f"{_fmt(replicas.get('cpu_ratio_core_each', math.nan), '.2f')}.",
        f"Checks: {checks.get('replicas_handled', '?')} of {checks.get('replicas_requests', '?')} "
        f"deliveries handled by the pair; {checks.get('forwarded_in', '?')} forwarded through "
        f"Redis to A for {checks.get('posted_to_b', '?')} posted to B; "
        f"{checks.get('dedup_claims', '?')} de-duplication claims in Redis; "
        f"{checks.get('catch_all', '?')} unrouted.",
        "",
    ]
    if replicas.get("problem"):
        lines += [f"FAILED: {replicas['problem']}", ""]
    return lines
