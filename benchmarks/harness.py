"""Processes and load: start pinned server processes, drive them with wrk or the Python loadgen.

The machine is small and shared, so every measurement runs the system under test on one core and
the load generator on the other, and callers interleave repetitions and compare against a
baseline measured in the same run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.payloads import CONVERSATIONS, PATH, SECRET

ROOT = Path(__file__).resolve().parent.parent
WRK_SCRIPT = Path(__file__).resolve().parent / "wrk_post.lua"
_CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVER_CPU = 0
LOAD_CPU = 1


def _pinner(cpu: int) -> Callable[[], None] | None:
    """A preexec_fn pinning the child to ``cpu`` (None on a 1-core machine or without affinity)."""
    if not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2:
        return None

    def pin() -> None:
        os.sched_setaffinity(0, {cpu})

    return pin


def _python() -> str:
    return sys.executable


@dataclass
class Process:
    """A process we started, listening on ``port`` of 127.0.0.1."""

    process: subprocess.Popen[str]
    port: int

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used (all threads).

        CPU per request is far less sensitive to noisy neighbours than wall-clock throughput:
        time the process spends preempted is not counted.
        """
        with open(f"/proc/{self.process.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK


@dataclass
class Server(Process):
    """A running server process and the port it bound (``GET /stats`` on ``stats_port``)."""

    stats_port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict[str, Any]:
        stats_url = f"http://127.0.0.1:{self.stats_port or self.port}/stats"
        with urllib.request.urlopen(stats_url, timeout=5) as resp:
            data: dict[str, Any] = json.loads(resp.read())
            return data

    def settled_stats(self, expected_handled: int | None = None, timeout: float = 3.0) -> Any:
        """Stats once ``handled`` stops moving (queued handlers finished) or reaches expected."""
        deadline = time.monotonic() + timeout
        previous = self.stats()
        while time.monotonic() < deadline:
            if expected_handled is not None and previous["handled"] >= expected_handled:
                return previous
            time.sleep(0.05)
            current = self.stats()
            if expected_handled is None and current["handled"] == previous["handled"]:
                return current
            previous = current
        return previous


@contextmanager
def server(
    module: str,
    args: Sequence[str] = (),
    *,
    cpu: int = SERVER_CPU,
    prefix: Sequence[str] = (),
    timeout: float = 30.0,
) -> Iterator[Server]:
    """Run ``python -m module --port 0 *args`` pinned to ``cpu``; yield once it printed READY.

    ``prefix`` runs it under another program (``valgrind --tool=callgrind ...``).
    """
    process = _spawn([*prefix, _python(), "-m", module, "--port", "0", *args], cpu)
    try:
        port, stats_port = _wait_ready(process, module, timeout)
        yield Server(process, port, stats_port)
    finally:
        _stop(process)


def _spawn(cmd: Sequence[str], cpu: int) -> subprocess.Popen[str]:
    """Start ``cmd`` in the repository, pinned to ``cpu``, stdout and stderr piped as text."""
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_pinner(cpu),
    )


def _wait_ready(
    process: subprocess.Popen[str], what: str, timeout: float = 30.0
) -> tuple[int, int]:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    import selectors

    with selectors.DefaultSelector() as sel:
        sel.register(process.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(timeout=0.2):
                if process.poll() is not None:
                    break
                continue
            line = process.stdout.readline()
            if not line:
                break
            if line.startswith("READY"):  # READY <port> [<stats port>]
                ports = [int(p) for p in line.split()[1:3]]
                return ports[0], ports[-1]
    _stop(process)
    stderr = process.stderr.read() if process.stderr else ""
    raise RuntimeError(f"{what} did not start (exit {process.returncode}):\n{stderr[-3000:]}")


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


# --- load ---------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    tool: str


def find_wrk(install: bool = True) -> str | None:
    """Path of ``wrk``; when missing and we are root, try ``apt-get install wrk`` once."""
    path = shutil.which("wrk")
    if path or not install:
        return path
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk not found: installing it with apt-get ...", file=sys.stderr, flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
        subprocess.run(["apt-get", "update"], check=False, **quiet)  # type: ignore[call-overload]
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=False, **quiet)  # type: ignore[call-overload]
        path = shutil.which("wrk")
    if path is None:
        print("wrk unavailable: falling back to the Python load generator", file=sys.stderr)
    return path


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _duration_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"unparsable wrk duration {text!r}")
    value, unit = match.groups()
    return float(value) * (60e3 if unit == "m" else _UNITS[unit])


def parse_wrk(output: str) -> LoadResult:
    """Parse ``wrk --latency`` output."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    done = re.search(r"(\d+) requests in ([\d.]+)(\w+),", output)
    assert done is not None, output
    requests = int(done.group(1))
    seconds = _duration_ms(done.group(2) + done.group(3)) / 1000
    found = re.findall(r"^\s+(\d+)%\s+([\d.]+\w+)\s*$", output, re.M)
    percentiles = {int(p): _duration_ms(v) for p, v in found}
    errors = 0
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if non_2xx:
        errors += int(non_2xx.group(1))
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if socket_errors:
        errors += sum(int(x) for x in socket_errors.groups())
    return LoadResult(
        requests=requests,
        seconds=seconds,
        rps=rps,
        p50_ms=percentiles.get(50, float("nan")),
        p99_ms=percentiles.get(99, float("nan")),
        errors=errors,
        tool="wrk",
    )


def wrk_command(
    wrk: str,
    url: str,
    *,
    seconds: float,
    connections: int = 64,
    run_id: str = "r",
    conversations: int = CONVERSATIONS,
) -> list[str]:
    return [
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "-s",
        str(WRK_SCRIPT),
        url + PATH,
        "--",
        SECRET,
        str(conversations),
        run_id,
    ]


def run_wrk(wrk: str, url: str, **options: Any) -> LoadResult:
    """Run wrk (see :func:`wrk_command` for the options) on the load core."""
    return _run_load(wrk_command(wrk, url, **options), parse_wrk)


def _run_load(cmd: list[str], parse: Callable[[str], LoadResult]) -> LoadResult:
    done = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, check=True, preexec_fn=_pinner(LOAD_CPU)
    )
    return parse(done.stdout)


def loadgen_command(
    url: str,
    *,
    seconds: float | None = None,
    requests: int | None = None,
    connections: int = 64,
    run_id: str = "r",
    conversations: int = CONVERSATIONS,
) -> list[str]:
    cmd = [_python(), "-m", "benchmarks.loadgen", url + PATH, "--connections", str(connections)]
    cmd += ["--run-id", run_id, "--conversations", str(conversations)]
    if seconds is not None:
        cmd += ["--seconds", str(seconds)]
    if requests is not None:
        cmd += ["--requests", str(requests)]
    try:
        import uvloop  # noqa: F401

        cmd.append("--uvloop")
    except ImportError:
        pass
    return cmd


def parse_loadgen(output: str) -> LoadResult:
    data = json.loads(output.strip().splitlines()[-1])
    return LoadResult(
        requests=data["requests"],
        seconds=data["seconds"],
        rps=data["rps"],
        p50_ms=data["p50_ms"],
        p99_ms=data["p99_ms"],
        errors=data["errors"] + data["non_2xx"],
        tool="loadgen",
    )


def run_loadgen(url: str, **options: Any) -> LoadResult:
    """Run the Python load generator (see :func:`loadgen_command`) on the load core."""
    return _run_load(loadgen_command(url, **options), parse_loadgen)


def run_loads_together(
    urls_and_ids: Sequence[tuple[str, str]],
    *,
    wrk: str | None,
    connections: int,
    seconds: float | None = None,
    requests: int | None = None,
) -> list[LoadResult]:
    """Load several URLs at once (one wrk or loadgen process each, all on the load core).

    ``urls_and_ids`` pairs each URL with its run id, which keeps every ``messageId`` unique.
    wrk needs ``seconds``; the load generator takes ``requests`` or ``seconds``.
    """
    commands: list[list[str]] = []
    for url, run_id in urls_and_ids:
        if wrk and seconds is not None and requests is None:
            cmd = wrk_command(wrk, url, seconds=seconds, connections=connections, run_id=run_id)
        else:
            cmd = loadgen_command(
                url, seconds=seconds, requests=requests, connections=connections, run_id=run_id
            )
        commands.append(cmd)
    processes = [_spawn(cmd, LOAD_CPU) for cmd in commands]
    outputs = [p.communicate() for p in processes]
    results = []
    for cmd, process, (out, err) in zip(commands, processes, outputs, strict=True):
        if process.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:3])} failed (exit {process.returncode}): {err}")
        results.append(parse_wrk(out) if cmd[0] == wrk else parse_loadgen(out))
    return results


def run_module_json(module: str, args: Sequence[str], *, cpu: int = LOAD_CPU) -> dict[str, Any]:
    """Run ``python -m module *args`` pinned to ``cpu`` and return its last stdout line as JSON."""
    done = subprocess.run(
        [_python(), "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        preexec_fn=_pinner(cpu),
    )
    if done.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --- redis-server -------------------------------------------------------------------------------


def find_redis_server() -> str | None:
    """The ``redis-server`` binary, found as the Redis tests find it.

    ``ULTIMATE_ASYNC_REDIS_SERVER`` names another binary; an empty value pretends there is none.
    """
    override = os.environ.get("ULTIMATE_ASYNC_REDIS_SERVER")
    if override is not None:
        return shutil.which(override) if override else None
    found = shutil.which("redis-server")
    if found is None and os.path.exists("/usr/bin/redis-server"):
        found = "/usr/bin/redis-server"
    return found


@dataclass
class RedisProcess(Process):
    """A throwaway ``redis-server`` we started (no persistence), stopped by its PID."""

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self, *words: str) -> bytes:
        """Send one inline command and return the raw first reply line (for checks)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(" ".join(words).encode() + b"\r\n")
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
        return reply.strip()

    def count_keys(self, pattern: str) -> int:
        """How many keys match ``pattern`` (SCAN, so the server never blocks long)."""
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port)
        try:
            return sum(1 for _ in client.scan_iter(match=pattern, count=10_000))
        finally:
            client.close()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def redis_server(binary: str, *, cpu: int = LOAD_CPU) -> Iterator[RedisProcess]:
    """Start ``redis-server`` on a free local port (pinned to ``cpu``); stop it afterwards.

    It runs on the load core by default: in production Redis is another machine, and the
    receivers under test keep their core to themselves.
    """
    for _attempt in range(3):  # the probed port may be taken before redis binds it
        port = _free_port()
        options = ["--port", str(port), "--bind", "127.0.0.1", "--protected-mode", "no"]
        process = subprocess.Popen(
            [binary, *options, "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
            preexec_fn=_pinner(cpu),
        )
        redis = RedisProcess(process, port)
        deadline = time.monotonic() + 10
        while process.poll() is None and time.monotonic() < deadline:
            try:
                if redis.command("PING") == b"+PONG":
                    break
            except OSError:
                pass
            time.sleep(0.02)
        else:
            _stop(process)
            continue
        try:
            yield redis
        finally:
            _stop(process)
        return
    raise RuntimeError("could not start redis-server on a free port")
