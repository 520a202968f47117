"""Instructions per delivery, counted by callgrind: the front ends against hand-written code.

Throughput on a shared two-core machine moves by tens of percent from one minute to the next;
the number of instructions a server executes per delivery does not.  Each server runs under
``valgrind --tool=callgrind``; after a warm-up its counters are zeroed, ``deliveries`` signed
``sendMessage`` webhooks are posted one after the other on one keep-alive connection (the client
runs outside valgrind), the handlers are given time to run, and the counters are dumped.  The
ratios compare servers on the same HTTP server underneath, as the issue asks:

- aiohttp: ``WebhookServer`` against a hand-written aiohttp receiver (json + a dict of
  handlers + ``create_task``), both on the default asyncio loop with the stdlib JSON parser;
- uvicorn (httptools parser, asyncio loop): ``WebhookApp`` against a raw hand-written ASGI app,
  and FastAPI + pydantic v2 against ``WebhookApp``.

``python -m benchmarks.instructions [--deliveries N]`` prints the table; ``benchmarks.run``
includes it in ``make bench``.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import harness
from benchmarks.payloads import PATH, auth_headers, send_message_body
from benchmarks.results import _fmt, _table


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    module: str
    args: tuple[str, ...] = ()


ROWS: tuple[Row, ...] = (
    Row("hand", "aiohttp: hand-written receiver", "benchmarks.servers.handwritten"),
    Row("server", "aiohttp: SDK WebhookServer", "benchmarks.servers.sdk_server",
        ("--no-speed", "--no-gc-freeze")),
    Row("setup", "aiohttp: SDK setup_webhook in the user's app", "benchmarks.servers.sdk",
        ("--no-speed",)),
    Row("asgi_raw", "uvicorn: hand-written raw ASGI app", "benchmarks.servers.asgi_raw",
        ("--no-speed",)),
    Row("asgi", "uvicorn: SDK WebhookApp", "benchmarks.servers.asgi_sdk", ("--no-speed",)),
    Row("fastapi", "uvicorn: FastAPI + pydantic v2", "benchmarks.servers.fastapi_app",
        ("--asyncio-loop",)),
)  # fmt: skip

#: (description, variant, baseline, bound, at_most): variant/baseline instructions per delivery.
TARGETS = (
    ("WebhookServer <= 1.20x a hand-written receiver on aiohttp", "server", "hand", 1.20, True),
    ("WebhookApp <= 1.30x a raw hand-written ASGI app on uvicorn", "asgi", "asgi_raw", 1.30, True),
    ("FastAPI + pydantic >= 2x WebhookApp (the SDK 2x cheaper)", "fastapi", "asgi", 2.0, False),
)

_TOTALS = re.compile(rb"^(?:summary|totals):\s+(\d+)", re.MULTILINE)


def valgrind_problem() -> str | None:
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        return "valgrind (callgrind) is not installed"
    return None


def _post(conn: http.client.HTTPConnection, n: int, tag: str) -> None:
    body = send_message_body(f"conv-{n % 50}", f"{tag}-{n}")
    conn.request("POST", PATH, body=body, headers=auth_headers())
    response = conn.getresponse()
    response.read()
    if response.status != 200:
        raise RuntimeError(f"delivery {n} answered {response.status}")


def _control(pid: int, flag: str) -> subprocess.Popen[bytes]:
    """``callgrind_control`` is served between two basic blocks: start it, then wake the server."""
    return subprocess.Popen(
        ["callgrind_control", flag, str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _wake(server: harness.Server) -> None:
    try:
        server.stats()
    except OSError:
        pass


def count(row: Row, deliveries: int, warmup: int) -> dict[str, Any]:
    """Instructions per delivery of one server (and how many deliveries its handlers ran)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        prefix = ("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p")
        with harness.server(row.module, row.args, prefix=prefix, timeout=300) as server:
            pid = server.process.pid
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
            for n in range(warmup):
                _post(conn, n, "warm")
            time.sleep(1.0)  # the warm-up's handlers
            zero = _control(pid, "--zero")
            while zero.poll() is None:
                _wake(server)
                time.sleep(0.2)
            for n in range(deliveries):
                _post(conn, n, "count")
            conn.close()
            time.sleep(2.0)  # the last handlers, at valgrind's pace
            dump = _control(pid, "--dump")
            while dump.poll() is None:
                time.sleep(0.2)
                _wake(server)
            handled = server.settled_stats(warmup + deliveries, timeout=30)["handled"]
        dumps = sorted(Path(tmp).glob("callgrind.out.*"), key=lambda p: p.stat().st_mtime)
        totals = [int(m[1]) for m in _TOTALS.finditer(dumps[0].read_bytes())] if dumps else []
    if not totals:
        raise RuntimeError(f"{row.key}: no callgrind dump")
    return {
        "instructions": totals[0] / deliveries,
        "deliveries": deliveries,
        "handled": handled - warmup,
    }


def measure(deliveries: int = 1000, warmup: int = 200, keys: Sequence[str] = ()) -> dict[str, Any]:
    if problem := valgrind_problem():
        return {"skipped": problem}
    # The same string hashes in every server (dict layouts, so instruction counts, repeat).
    os.environ.setdefault("PYTHONHASHSEED", "0")
    result: dict[str, Any] = {"deliveries": deliveries, "rows": {}}
    for row in ROWS:
        if keys and row.key not in keys:
            continue
        try:
            result["rows"][row.key] = count(row, deliveries, warmup)
        except Exception as exc:  # a benchmark reports, it does not stop the others
            result["rows"][row.key] = {"problem": f"{type(exc).__name__}: {exc}"[:300]}
    return result


def targets(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(description, measured, PASS/MISS/n/a) for each target."""
    rows = result.get("rows", {})
    out = []
    for description, key, base, bound, at_most in TARGETS:
        a, b = rows.get(key, {}), rows.get(base, {})
        if "instructions" not in a or "instructions" not in b:
            why = result.get("skipped") or a.get("problem") or b.get("problem") or "not measured"
            out.append((f"instructions: {description}", f"({why})", "n/a"))
            continue
        ratio = a["instructions"] / b["instructions"]
        ok = ratio <= bound if at_most else ratio >= bound
        out.append((f"instructions: {description}", f"{ratio:.2f}x", "PASS" if ok else "MISS"))
    return out


def render(result: dict[str, Any]) -> list[str]:
    if not result or result.get("skipped"):
        return []
    rows = result["rows"]
    baseline = {"server": "hand", "setup": "hand", "asgi": "asgi_raw", "fastapi": "asgi"}
    table = []
    for row in ROWS:
        got = rows.get(row.key)
        if got is None:
            continue
        if "instructions" not in got:
            table.append([row.label, "-", "-", f"FAILED: {got.get('problem', '?')}"])
            continue
        base = rows.get(baseline.get(row.key, ""), {}).get("instructions")
        ratio = got["instructions"] / base if base else float("nan")
        note = f"vs {baseline[row.key]}" if row.key in baseline else "baseline"
        if got["handled"] < got["deliveries"]:  # the handlers did not all run: not comparable
            note += f"; ONLY {got['handled']} HANDLED"
        table.append([row.label, f"{got['instructions']:,.0f}", _fmt(ratio, ".2f"), note])
    lines = [
        f"### Instructions per delivery (callgrind, {result['deliveries']:,} sequential "
        "deliveries on one keep-alive connection, stdlib JSON, asyncio loop)",
        "",
    ]
    return [*lines, *_table(["server", "instructions", "ratio", "against"], table), ""]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deliveries", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--only", nargs="*", default=(), help="row keys to measure")
    args = parser.parse_args(argv)
    result = measure(args.deliveries, args.warmup, args.only)
    print("\n".join(render(result)))
    for description, measured, verdict in targets(result):
        print(f"{verdict:5} {measured:>8}  {description}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
