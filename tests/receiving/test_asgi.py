"""WebhookApp: served by uvicorn directly, mounted in Starlette and FastAPI, with its lifecycles.

Every test runs a real uvicorn server (``_servers.py``) and talks to it with a real client.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from _servers import serving_with_uvicorn, uvicorn_config
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from ultimate_async.asgi import WebhookApp
from ultimate_async.webhook import EventContext, NoVerification, UrlToken, WebhookReceiver


class CountingReceiver(WebhookReceiver):
    """A receiver that counts its starts and closes: the lifecycle the front end drives."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.starts = 0
        self.closes = 0
        self.seen: list[str] = []

        @self.on_message()
        async def record(msg: Any, ctx: EventContext) -> None:
            await asyncio.sleep(0.05)  # still queued when shutdown begins
            self.seen.append(msg.text)

    async def start(self) -> None:
        self.starts += 1
        await super().start()

    async def aclose(self) -> None:
        self.closes += 1
        await super().aclose()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_uvicorn_lifespan_starts_before_serving_and_drains_on_exit(
    http: aiohttp.ClientSession, bodies: Any
) -> None:
    receiver = CountingReceiver(NoVerification())
    async with serving_with_uvicorn(uvicorn_config(WebhookApp(receiver))) as port:
        assert receiver.starts == 1  # routable before any delivery
        url = f"http://127.0.0.1:{port}/webhook"
        for text in ("a", "b", "c"):
            async with http.post(url, data=bodies.message("c1", text)) as resp:
                assert resp.status == 200
        assert receiver.seen != ["a", "b", "c"]  # acked before handled
    assert receiver.closes == 1 and receiver.closing
    assert receiver.seen == ["a", "b", "c"]  # the shutdown drained the queue


async def test_uvicorn_root_path_and_health(http: aiohttp.ClientSession, bodies: Any) -> None:
    """Behind a proxy that strips ``/api`` (uvicorn ``--root-path /api``, which then gives the
    app ``/api/hook``): the path is relative to the root path, and the health answer shows no
    internal figures."""
    receiver = CountingReceiver(NoVerification())
    config = uvicorn_config(WebhookApp(receiver, path="/hook"), root_path="/api")
    async with serving_with_uvicorn(config) as port:
        base = f"http://127.0.0.1:{port}"
        async with http.post(f"{base}/hook", data=bodies.message("c1", "rooted")) as resp:
            assert resp.status == 200
        async with http.get(f"{base}/hook") as resp:
            assert resp.status == 200 and await resp.json() == {"status": "ok"}
        async with http.get(f"{base}/webhook") as resp:
            assert resp.status == 404
    assert receiver.seen == ["rooted"]


def _starlette(webhooks: WebhookApp, *, lifespan: bool) -> Starlette:
    async def home(request: Any) -> PlainTextResponse:
        return PlainTextResponse("home")

    return Starlette(
        routes=[Route("/", home), Mount("/ultimate", app=webhooks)],
        lifespan=webhooks.lifespan if lifespan else None,
    )


@pytest.mark.parametrize("lifespan", [True, False], ids=["host-lifespan", "no-lifespan"])
async def test_mounted_in_starlette(
    http: aiohttp.ClientSession, bodies: Any, lifespan: bool
) -> None:
    """Mounted under ``/ultimate``: deliveries at ``/ultimate/webhook``, the host's own routes
    untouched.  Starlette does not pass lifespan events to mounted apps: with the host's
    ``lifespan=webhooks.lifespan`` the receiver starts with the app and drains on shutdown;
    without, it starts on the first request."""
    receiver = CountingReceiver(UrlToken("tok"))
    webhooks = WebhookApp(receiver, path="/webhook")
    async with serving_with_uvicorn(
        uvicorn_config(_starlette(webhooks, lifespan=lifespan))
    ) as port:
        base = f"http://127.0.0.1:{port}"
        assert receiver.starts == (1 if lifespan else 0)
        async with http.get(f"{base}/") as resp:
            assert await resp.text() == "home"
        async with http.post(f"{base}/ultimate/webhook/tok", data=bodies.message("c", "m")) as resp:
            assert resp.status == 200
        async with http.post(f"{base}/ultimate/webhook/bad", data=bodies.message("c", "x")) as resp:
            assert resp.status == 401
        async with http.get(f"{base}/ultimate/webhook") as resp:
            assert await resp.json() == {"status": "ok"}
        async with http.post(f"{base}/webhook/tok", data=bodies.message("c", "x")) as resp:
            assert resp.status == 404  # not mounted there
        assert receiver.starts == 1
    assert receiver.closes == (1 if lifespan else 0)
    if not lifespan:
        await receiver.aclose()  # the host's job when it gives the receiver no lifespan
    assert receiver.seen == ["m"]


async def test_fastapi_recipe_restarts_with_each_lifespan(
    http: aiohttp.ClientSession, bodies: Any
) -> None:
    """The README's three lines; a module-level receiver serves one app lifespan after another
    (a test suite starting the app twice)."""
    receiver = CountingReceiver(NoVerification())
    webhooks = WebhookApp(receiver, path="/webhook")
    app = FastAPI(lifespan=webhooks.lifespan)
    app.mount("/ultimate", webhooks)
    for run in ("first", "second"):
        async with serving_with_uvicorn(uvicorn_config(app)) as port:
            url = f"http://127.0.0.1:{port}/ultimate/webhook"
            async with http.post(url, data=bodies.message("c1", run)) as resp:
                assert resp.status == 200
        assert receiver.closing
    assert (receiver.starts, receiver.closes) == (2, 2)
    assert receiver.seen == ["first", "second"]


async def _lifespan(app: WebhookApp) -> list[Any]:
    """Drive the ASGI lifespan handshake (start-up, then shutdown); what the app answered."""
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return inbox.pop(0)

    async def send(message: Any) -> None:
        sent.append(message)

    await app({"type": "lifespan"}, receive, send)
    return sent


async def test_a_failing_start_fails_the_lifespan() -> None:
    """A receiver that cannot start fails the start-up (the server then exits and says why);
    one that starts completes both steps and is closed after."""

    class Unreachable(WebhookReceiver):
        async def start(self) -> None:
            raise ConnectionError("bus unreachable")

    failed = await _lifespan(WebhookApp(Unreachable(NoVerification())))
    assert failed == [{"type": "lifespan.startup.failed", "message": "bus unreachable"}]
    receiver = WebhookReceiver(NoVerification())
    done = await _lifespan(WebhookApp(receiver))
    assert [m["type"] for m in done] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert receiver.closing


async def test_websocket_is_refused(bodies: Any) -> None:
    receiver = CountingReceiver(NoVerification())
    scope = {"type": "websocket", "path": "/webhook", "headers": []}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: Any) -> None:
        sent.append(message)

    await WebhookApp(receiver)(scope, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008}]


@pytest.mark.parametrize("front", ["uvicorn", "aiohttp"])
async def test_metrics_path_serves_prometheus_text(
    http: aiohttp.ClientSession, bodies: Any, front: str
) -> None:
    """``metrics_path`` serves ``ultimate_async.telemetry``'s figures in the Prometheus text
    format, parsed here with prometheus_client's own parser."""
    parser = pytest.importorskip("prometheus_client.parser")
    from ultimate_async.telemetry import prometheus_exposition
    from ultimate_async.webhook import WebhookServer

    receiver = CountingReceiver(NoVerification())
    if front == "uvicorn":
        app = WebhookApp(receiver, metrics_path="/metrics")
        serving: Any = serving_with_uvicorn(uvicorn_config(app))
    else:
        serving = WebhookServer(receiver, metrics_path="/metrics")
    async with serving as started:
        port = started if isinstance(started, int) else int(started.url.split(":")[2].split("/")[0])
        base = f"http://127.0.0.1:{port}"
        async with http.post(f"{base}/webhook", data=bodies.message("c1", "counted")) as resp:
            assert resp.status == 200
        async with http.get(f"{base}/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == prometheus_exposition()[1]
            text = await resp.text()
        async with http.post(f"{base}/metrics") as resp:
            assert resp.status in (404, 405)
    families = {family.name for family in parser.text_string_to_metric_families(text)}
    assert any(name.startswith("ultimate_") for name in families), text
