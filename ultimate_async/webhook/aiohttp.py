"""Serve a :class:`WebhookReceiver` with aiohttp: embed it, or run a small server.

The adapter is deliberately thin: read the body, call :meth:`WebhookReceiver.handle`, copy the
answer onto a ``web.Response``.  Only ``POST`` delivers (other methods get 405 from aiohttp's
router); a ``GET`` on the path answers a small health JSON.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from ..converter import dumps
from .receiver import WebhookReceiver
from .response import TOO_LARGE

__all__ = ["WebhookServer", "setup_webhook"]

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _read_capped(request: web.Request, limit: int) -> bytes | None:
    """The body, or ``None`` when it is longer than ``limit`` (chunked bodies have no length)."""
    length = request.content_length
    if length is not None:
        if length > limit:
            return None
        return await request.read()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large() -> web.Response:
    return web.Response(body=TOO_LARGE.body, status=413, content_type=TOO_LARGE.content_type)


def _handlers(receiver: WebhookReceiver) -> tuple[_Handler, _Handler]:
    handle = receiver.handle
    limit = receiver.max_body_size

    async def post(request: web.Request) -> web.StreamResponse:
        try:
            body = await _read_capped(request, limit)
        except web.HTTPRequestEntityTooLarge:  # the app's own client_max_size is smaller
            return _too_large()
        if body is None:
            return _too_large()
        answer = await handle(body, request.headers, path_token=request.match_info.get("token"))
        return web.Response(
            body=answer.body, status=answer.status, content_type=answer.content_type
        )

    async def health(request: web.Request) -> web.StreamResponse:
        closing = receiver.closing
        payload = {"status": "closing" if closing else "ok", "pending": receiver.pending}
        return web.Response(
            body=dumps(payload), status=503 if closing else 200, content_type="application/json"
        )

    return post, health


def setup_webhook(app: web.Application, receiver: WebhookReceiver, path: str = "/webhook") -> None:
    """Serve ``receiver`` at ``path`` of an existing aiohttp app.

    With a :class:`~ultimate_async.webhook.verify.UrlToken` verifier the delivery route is
    ``{path}/{token}``.  The app's shutdown closes the receiver (drain, then cancel the rest).
    Bodies larger than ``receiver.max_body_size`` get 413 whatever the app's
    ``client_max_size`` is.
    """
    if not path.startswith("/"):
        raise ValueError("path must start with '/'")
    path = path.rstrip("/") or "/"
    post, health = _handlers(receiver)
    app.router.add_get(path, health)
    app.router.add_post(path, post)
    if getattr(receiver.verifier, "uses_path_token", False):
        token_path = path.rstrip("/") + "/{token}"
        app.router.add_get(token_path, health)
        app.router.add_post(token_path, post)

    async def close_receiver(_: web.Application) -> None:
        await receiver.aclose()

    app.on_shutdown.append(close_receiver)


class WebhookServer:
    """A ready-to-run aiohttp server for one receiver: ``async with WebhookServer(r) as s``.

    ``port=0`` binds any free port; :attr:`url` is the full URL to paste into the dashboard
    (including the token segment for ``UrlToken``).  Leaving the block closes the receiver
    (stop accepting with 503, drain, cancel the rest) and then the server.
    """

    def __init__(
        self,
        receiver: WebhookReceiver,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = "/webhook",
        *,
        shutdown_timeout: float = 5.0,
    ) -> None:
        self.receiver = receiver
        self.host = host
        self.port = port
        self.path = path
        self.shutdown_timeout = shutdown_timeout
        # Keep aiohttp's own cap just above ours, so ours answers first with our body.
        self.app = web.Application(client_max_size=receiver.max_body_size + 1)
        setup_webhook(self.app, receiver, path)
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._stopped: asyncio.Event | None = None

    def __repr__(self) -> str:
        return f"WebhookServer(host={self.host!r}, port={self.port!r}, path={self.path!r})"

    @property
    def url(self) -> str:
        """The bound URL: scheme, host, port, path (and token). Only after start."""
        if self._url is None:
            raise RuntimeError("the server is not started")
        return self._url

    async def start(self) -> None:
        if self._runner is not None:
            return
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=self.shutdown_timeout)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._stopped = asyncio.Event()
        address = runner.addresses[0]
        host, port = address[0], address[1]
        shown = f"[{host}]" if ":" in host else host
        base = f"http://{shown}:{port}{self.path.rstrip('/') or '/'}"
        if getattr(self.receiver.verifier, "uses_path_token", False):
            base = self.receiver.verifier.authenticate(base, b"")[0]
        self._url = base

    async def serve_forever(self) -> None:
        """Serve until the server is closed (or the task is cancelled)."""
        await self.start()
        assert self._stopped is not None
        await self._stopped.wait()

    async def aclose(self) -> None:
        """Close the receiver (drain), then stop serving. Idempotent."""
        runner, self._runner = self._runner, None
        try:
            await self.receiver.aclose()
        finally:
            if runner is not None:
                await runner.cleanup()
            if self._stopped is not None:
                self._stopped.set()

    async def __aenter__(self) -> WebhookServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
