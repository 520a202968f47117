"""What every front end answers the same way, with real clients, and the blocking runner.

The front ends (``WebhookServer``, ``setup_webhook`` in an app, ``WebhookApp`` on uvicorn) are
adapters over one receiver: the same routes, statuses and bodies.  The raw-socket attack suite
is ``test_http_protocol.py``; ASGI lifecycles and mounting are ``test_asgi.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from _servers import serving_with_uvicorn, uvicorn_config
from yarl import URL

from ultimate_async import _loop
from ultimate_async.asgi import WebhookApp
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


@contextlib.asynccontextmanager
async def standalone(front: str, receiver: WebhookReceiver) -> AsyncIterator[str]:
    """The delivery URL of ``receiver`` served by ``front`` ("server" or "uvicorn")."""
    if front == "server":
        async with WebhookServer(receiver) as server:
            yield server.url
        return
    async with serving_with_uvicorn(uvicorn_config(WebhookApp(receiver))) as port:
        url = f"http://127.0.0.1:{port}/webhook"
        if getattr(receiver.verifier, "uses_path_token", False):
            url = receiver.verifier.authenticate(url, b"")[0]
        yield url


def _answer(status: int, headers: Any, body: bytes) -> tuple[Any, ...]:
    allow = headers.get("Allow")
    return (
        status,
        headers.get("Content-Type", "").split(";")[0],
        allow and {method.strip() for method in allow.split(",")},
        headers.get("Content-Length"),
        body,
    )


@pytest.mark.parametrize("front", ["server", "uvicorn"])
@pytest.mark.parametrize("verifier", [NoVerification(), UrlToken(["tok-a", "tok-b"])])
async def test_answers_exactly_like_setup_webhook(
    serve: Any, http: aiohttp.ClientSession, bodies: Any, verifier: Verifier, front: str
) -> None:
    """Every route, method and status the embedded adapter answers, the others answer too."""
    embedded = await serve(WebhookReceiver(verifier))
    standalone_receiver = WebhookReceiver(verifier)
    async with standalone(front, standalone_receiver) as delivery_url:
        base = URL(delivery_url).origin()
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


@pytest.mark.parametrize("front", ["server", "uvicorn"])
async def test_bodies_above_aiohttps_default_limit(
    http: aiohttp.ClientSession, bodies: Any, front: str
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

    async with standalone(front, receiver) as url:
        async with http.post(url, data=io.BytesIO(big)) as resp:
            assert resp.status == 200
        async with http.post(url, data=chunks(big)) as resp:  # chunked, no length
            assert resp.status == 200
        huge = bodies.message("c1", "x" * (3 * 1024 * 1024))
        async with http.post(url, data=io.BytesIO(huge)) as resp:
            assert resp.status == 413
            assert await resp.json() == {"error": "payload too large"}
        with contextlib.suppress(aiohttp.ClientOSError):  # refused mid-upload: may reset
            async with http.post(url, data=chunks(huge)) as resp:
                assert resp.status == 413
        assert await receiver.drain(timeout=5)
    assert seen == [2 * 1024 * 1024] * 2


@pytest.mark.parametrize("coding", ["gzip", "deflate", "zlib-deflate"])
async def test_compressed_deliveries_are_decoded_by_aiohttp(
    http: aiohttp.ClientSession, bodies: Any, coding: str, recording: Any
) -> None:
    """A proxy may compress: aiohttp decodes gzip and deflate bodies before the receiver."""
    receiver, seen = recording()

    body = bodies.message("c1", "squeezed")
    if coding == "gzip":
        packed = gzip.compress(body)
    elif coding == "zlib-deflate":
        packed, coding = zlib.compress(body), "deflate"
    else:
        squeeze = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        packed = squeeze.compress(body) + squeeze.flush()
    async with WebhookServer(receiver) as server:
        headers = {"Content-Encoding": coding, "Content-Type": "application/json"}
        async with http.post(server.url, data=packed, headers=headers) as resp:
            assert resp.status == 200
    assert seen == ["squeezed"]


@pytest.mark.parametrize("front", ["server", "uvicorn"])
async def test_compressed_bodies_are_capped_after_decoding_or_refused(
    http: aiohttp.ClientSession, bodies: Any, front: str
) -> None:
    """aiohttp: a small gzip bomb is refused by its decoded size, bad data is a 400.  ASGI
    servers do not decode: WebhookApp refuses every coded body with 415.  Unknown codings are
    a 415 everywhere, and the server serves on."""
    receiver = WebhookReceiver(NoVerification(), max_body_size=10_000)
    async with standalone(front, receiver) as url:
        bomb = gzip.compress(b" " * 10_000_000)
        assert len(bomb) < 10_000
        headers = {"Content-Encoding": "gzip"}
        async with http.post(url, data=bomb, headers=headers) as resp:
            assert resp.status == (413 if front == "server" else 415)
        async with http.post(url, data=b"not gzip", headers=headers) as resp:
            assert resp.status == (400 if front == "server" else 415)
        unknown = {"Content-Encoding": "x-unknown"}
        async with http.post(url, data=bodies.message("c1", "x"), headers=unknown) as resp:
            assert resp.status == 415
            assert await resp.json() == {"error": "unsupported content encoding"}
        async with http.post(url, data=bodies.message("c1", "x")) as resp:
            assert resp.status == 200
    assert receiver.pending == 0


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
                assert json.loads(await resp.read()) == {"status": "ok"}
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
