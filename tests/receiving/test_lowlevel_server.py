"""WebhookServer's two HTTP backends: the same answers as setup_webhook, and the runner.

The raw-socket protocol checks (framing, limits, timeouts, shutdown) are in
``test_http_protocol.py``.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from ultimate_async import _loop
from ultimate_async.webhook import (
    EventContext,
    NoVerification,
    UrlToken,
    Verifier,
    WebhookReceiver,
    WebhookServer,
)

ROOT = Path(__file__).resolve().parents[2]

PATHS = [
    "/webhook",
    "/webhook/",
    "/webhook?x=1",
    "/webhook/tok-a",
    "/webhook/tok-b?x=1",
    "/webhook/tok%2Da",
    "/webhook/tok%2Fa",
    "/webhook/a/b",
    "/webhook/%7Btok%7D",
    "/webhookx",
    "/other",
    "/",
]
METHODS = ["POST", "GET", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def _answer(status: int, headers: Any, body: bytes) -> tuple[Any, ...]:
    return (
        status,
        headers.get("Content-Type"),
        headers.get("Allow"),
        headers.get("Content-Length"),
        body,
    )


@pytest.mark.parametrize("verifier", [NoVerification(), UrlToken(["tok-a", "tok-b"])])
async def test_answers_exactly_like_setup_webhook(
    serve: Any, http: aiohttp.ClientSession, bodies: Any, verifier: Verifier, backend: Any
) -> None:
    """Every route, method and status the embedded adapter answers, WebhookServer answers too."""
    embedded = await serve(WebhookReceiver(verifier))
    standalone_receiver = WebhookReceiver(verifier)
    async with WebhookServer(standalone_receiver, backend=backend) as server:
        assert server.backend == backend
        base = URL(server.url).origin()
        for n, (path, method) in enumerate((p, m) for p in PATHS for m in METHODS):
            body = bodies.message("c1", "hi", message_id=f"m{n}")
            url = base.with_path(path.split("?")[0], encoded=True)
            if "?" in path:
                url = url.with_query(path.split("?")[1])
            async with http.request(method, url, data=body) as resp:
                got = _answer(resp.status, resp.headers, await resp.read())
            resp = await embedded.request(method, url.raw_path_qs, data=body)
            want = _answer(resp.status, resp.headers, await resp.read())
            assert got == want, (method, path)
    assert standalone_receiver.closing


async def test_bodies_above_aiohttps_default_limit(
    http: aiohttp.ClientSession, bodies: Any, backend: Any
) -> None:
    """max_body_size is the only cap: aiohttp's own 1 MiB default does not apply."""
    receiver = WebhookReceiver(NoVerification(), max_body_size=3 * 1024 * 1024)
    seen: list[int] = []

    @receiver.on_message()
    async def handler(msg: Any, ctx: EventContext) -> None:
        seen.append(len(msg.text))

    big = bodies.message("c1", "x" * (2 * 1024 * 1024))

    async def chunks(data: bytes) -> AsyncIterator[bytes]:
        for i in range(0, len(data), 65536):
            yield data[i : i + 65536]

    async with WebhookServer(receiver, backend=backend) as server:
        async with http.post(server.url, data=io.BytesIO(big)) as resp:
            assert resp.status == 200
        async with http.post(server.url, data=chunks(big)) as resp:  # chunked, no length
            assert resp.status == 200
        huge = bodies.message("c1", "x" * (3 * 1024 * 1024))
        async with http.post(server.url, data=io.BytesIO(huge)) as resp:
            assert resp.status == 413
            assert await resp.json() == {"error": "payload too large"}
        async with http.post(server.url, data=chunks(huge)) as resp:
            assert resp.status == 413
        assert await receiver.drain(timeout=5)
    assert seen == [2 * 1024 * 1024] * 2


async def _exchange(port: int, data: bytes, *, until: bytes, count: int = 1) -> bytes:
    """Send raw bytes; read until ``until`` was seen ``count`` times (then a little more)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        got = b""
        async with asyncio.timeout(5):
            while got.count(until) < count:
                chunk = await reader.read(65536)
                assert chunk, got
                got += chunk
        return got
    finally:
        writer.close()
        await writer.wait_closed()


def _request(body: bytes, extra: bytes = b"", path: bytes = b"/webhook") -> bytes:
    return (
        b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n" % len(body) + extra + b"\r\n" + body
    )


async def test_keep_alive_and_pipelined_requests_in_order(
    bodies: Any, backend: Any, recording: Any
) -> None:
    receiver, seen = recording()

    async with WebhookServer(receiver, backend=backend) as server:
        port = URL(server.url).port
        assert port is not None
        pipelined = b"".join(_request(bodies.message("c1", t)) for t in ("one", "two", "three"))
        pipelined += b"GET /webhook HTTP/1.1\r\nHost: x\r\n\r\n"
        got = await _exchange(port, pipelined, until=b"HTTP/1.1 ", count=4)
    statuses = [line.split(b" ")[1] for line in got.split(b"\r\n") if line.startswith(b"HTTP/")]
    assert statuses == [b"200"] * 4
    assert got.rstrip().endswith(b'"pending":0}')  # the health answer came last
    assert seen == ["one", "two", "three"]


async def test_expect_100_continue(bodies: Any, backend: Any) -> None:
    """Clients that ask first (curl does for big bodies) get ``100 Continue``, or 413 at once."""
    receiver = WebhookReceiver(NoVerification(), max_body_size=1000)
    async with WebhookServer(receiver, backend=backend) as server:
        port = URL(server.url).port
        assert port is not None
        body = bodies.message("c1", "hi")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(_request(body, b"Expect: 100-continue\r\n").removesuffix(body))
            async with asyncio.timeout(5):
                interim = await reader.readuntil(b"\r\n\r\n")
                assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
                writer.write(body)
                final = await reader.readuntil(b"\r\n\r\n")
            assert final.startswith(b"HTTP/1.1 200 ")
        finally:
            writer.close()
            await writer.wait_closed()
        too_big = b'{"x":"' + b"y" * 2000 + b'"}'
        head = _request(too_big, b"Expect: 100-continue\r\n").removesuffix(too_big)
        got = await _exchange(port, head, until=b"}")
        assert got.startswith(b"HTTP/1.1 413 ") and b"100 Continue" not in got
        got = await _exchange(port, _request(body, b"Expect: teapot\r\n"), until=b"teapot")
        assert got.startswith(b"HTTP/1.1 417 ")
    assert receiver.pending == 0


@pytest.mark.parametrize("coding", ["gzip", "deflate", "zlib-deflate"])
async def test_compressed_deliveries_are_decoded(
    http: aiohttp.ClientSession, bodies: Any, backend: Any, coding: str, recording: Any
) -> None:
    """A proxy may compress: gzip and deflate bodies are decoded (aiohttp apps do it too)."""
    receiver, seen = recording()

    body = bodies.message("c1", "squeezed")
    if coding == "gzip":
        packed = gzip.compress(body)
    elif coding == "zlib-deflate":
        packed, coding = zlib.compress(body), "deflate"
    else:
        squeeze = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        packed = squeeze.compress(body) + squeeze.flush()
    async with WebhookServer(receiver, backend=backend) as server:
        headers = {"Content-Encoding": coding, "Content-Type": "application/json"}
        async with http.post(server.url, data=packed, headers=headers) as resp:
            assert resp.status == 200
    assert seen == ["squeezed"]


async def test_compressed_bodies_are_capped_after_decoding(
    http: aiohttp.ClientSession, bodies: Any
) -> None:
    """A small gzip bomb is refused by its decoded size; bad or unknown codings are refused."""
    receiver = WebhookReceiver(NoVerification(), max_body_size=10_000)
    async with WebhookServer(receiver, backend="httptools") as server:
        bomb = gzip.compress(b" " * 10_000_000)
        assert len(bomb) < 10_000
        headers = {"Content-Encoding": "gzip"}
        async with http.post(server.url, data=bomb, headers=headers) as resp:
            assert resp.status == 413
            assert await resp.json() == {"error": "payload too large"}
        async with http.post(server.url, data=b"not gzip", headers=headers) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"] == "invalid body"
        brotli = {"Content-Encoding": "br"}
        async with http.post(server.url, data=bodies.message("c1", "x"), headers=brotli) as resp:
            assert resp.status == 415
            assert "br" in (await resp.json())["reasons"][0]
        async with http.post(server.url, data=bodies.message("c1", "x")) as resp:
            assert resp.status == 200  # and the server still serves
    assert receiver.pending == 0


async def test_a_chunked_body_of_tiny_chunks(bodies: Any, backend: Any, recording: Any) -> None:
    """Thousands of 1-byte chunks make one body (the protocol must not keep a piece per chunk)."""
    receiver, seen = recording()

    body = bodies.message("c1", "t" * 5000)
    chunked = b"".join(b"1\r\n%c\r\n" % byte for byte in body) + b"0\r\n\r\n"
    head = b"POST /webhook HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    async with WebhookServer(receiver, backend=backend) as server:
        port = URL(server.url).port
        assert port is not None
        got = await _exchange(port, head + chunked, until=b"\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 200 ")
    assert seen == ["t" * 5000]


async def test_backend_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    """``auto`` is httptools when importable, else aiohttp; asking for a missing one fails."""
    with pytest.raises(ValueError, match="backend must be one of"):
        WebhookServer(WebhookReceiver(NoVerification()), backend="h2")  # type: ignore[arg-type]
    server = WebhookServer(WebhookReceiver(NoVerification()))
    assert server.backend == "auto" and "backend='auto'" in repr(server)
    async with server:
        assert server.backend == "httptools"
    monkeypatch.setitem(sys.modules, "httptools", None)  # as on PyPy, or with no wheel
    async with WebhookServer(WebhookReceiver(NoVerification())) as server:
        assert server.backend == "aiohttp"
    with pytest.raises(ImportError):
        await WebhookServer(WebhookReceiver(NoVerification()), backend="httptools").start()


# --------------------------------------------------------------------------- the runners


def test_loop_run_prefers_uvloop_and_can_opt_out(monkeypatch: pytest.MonkeyPatch) -> None:
    async def loop_module() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert _loop.run(loop_module(), use_uvloop=False).startswith("asyncio")
    try:
        import uvloop  # noqa: F401
    except ImportError:
        assert _loop.run(loop_module()).startswith("asyncio")
    else:
        assert _loop.run(loop_module()).startswith("uvloop")
    monkeypatch.setitem(sys.modules, "uvloop", None)  # the speed extra is not installed
    assert _loop.run(loop_module()).startswith("asyncio")
    with pytest.raises(ImportError):
        _loop.run(loop_module(), use_uvloop=True)  # and the coroutine is closed, not leaked


_SCRIPT = textwrap.dedent(
    """
    import asyncio, gc, sys
    from ultimate_async.webhook import NoVerification, WebhookReceiver, WebhookServer

    receiver = WebhookReceiver(NoVerification(), ack="after_handler")

    @receiver.on_message()
    async def show(msg, ctx):
        loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
        print(f"got {msg.text} on {loop}, frozen {gc.get_freeze_count() > 1000}", flush=True)

    WebhookServer(receiver, port=0).run(use_uvloop=USE_UVLOOP)
    print("stopped", receiver.closing, gc.get_freeze_count(), flush=True)
    """
)


@pytest.mark.parametrize("use_uvloop", [None, False])
async def test_run_serves_until_sigint_then_drains(
    http: aiohttp.ClientSession, bodies: Any, use_uvloop: bool | None
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _SCRIPT.replace("USE_UVLOOP", repr(use_uvloop)),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(20):
            line = (await process.stdout.readline()).decode()
            assert line.startswith("serving webhooks on http://127.0.0.1:"), line
            url = line.split()[3]
            async with http.post(url, data=bodies.message("c1", "hello")) as resp:
                assert resp.status == 200
            async with http.get(url) as resp:
                assert json.loads(await resp.read()) == {"status": "ok", "pending": 0}
            process.send_signal(signal.SIGINT)
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    try:
        import uvloop  # noqa: F401

        expected = "uvloop" if use_uvloop is None else "asyncio"
    except ImportError:
        expected = "asyncio"
    assert process.returncode == 0, err.decode()
    # gc.freeze() while serving (startup objects leave the collector's sight), undone after.
    assert out.decode().splitlines() == [f"got hello on {expected}, frozen True", "stopped True 0"]
