"""Serve a :class:`WebhookReceiver` over HTTP: embed it in an aiohttp app, or run a server.

Both are thin: read the body, call :meth:`WebhookReceiver.handle`, copy the answer onto the
wire.  Only ``POST`` delivers (other methods get 405); a ``GET`` on the path answers a small
health JSON.  :func:`setup_webhook` adds these routes to your ``aiohttp.web.Application``;
:class:`WebhookServer` serves them on its own HTTP/1.1 protocol (``_protocol.py``, on
httptools) or on aiohttp's low-level server (``_lowlevel.py``), answering the same either way.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, Literal

from aiohttp import web

from .._loop import run, wait_for_signal
from ._lowlevel import WebhookHandler, health_response, read_delivery
from ._route import WebhookRoute
from .receiver import WebhookReceiver

if TYPE_CHECKING:
    from ._protocol import HttpListener

__all__ = ["Backend", "WebhookServer", "setup_webhook"]

#: The HTTP layer of :class:`WebhookServer`.
Backend = Literal["auto", "httptools", "aiohttp"]
_BACKENDS: Final = ("auto", "httptools", "aiohttp")


def _httptools_available(*, required: bool) -> bool:
    try:
        import httptools  # noqa: F401
    except ImportError:
        if required:
            raise
        return False
    return True


_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _handlers(receiver: WebhookReceiver) -> tuple[_Handler, _Handler]:
    handle = receiver.handle
    limit = receiver.max_body_size

    async def post(request: web.Request) -> web.StreamResponse:
        body = await read_delivery(request, limit)
        if not isinstance(body, bytes):
            return body
        answer = await handle(body, request.headers, path_token=request.match_info.get("token"))
        return web.Response(
            body=answer.body, status=answer.status, content_type=answer.content_type
        )

    async def health(request: web.Request) -> web.StreamResponse:
        return health_response(receiver)

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
    """A ready-to-run server for one receiver: ``async with WebhookServer(r) as s``.

    ``port=0`` binds any free port; :attr:`url` is the full URL to paste into the dashboard
    (including the token segment for ``UrlToken``).  Leaving the block closes the receiver
    (stop accepting with 503, drain, cancel the rest) and then the server: idle connections
    close at once, busy ones after their answer, the rest is aborted after
    ``shutdown_timeout``.  A connection that has not sent a complete request within
    ``keepalive_timeout`` seconds of becoming idle is closed.

    ``backend`` picks the HTTP layer; both answer exactly what :func:`setup_webhook` answers:

    - ``"httptools"``: an asyncio protocol of ours on httptools' C parser (llhttp), with
      strict framing, head and body limits, pipelining, back-pressure and timeouts.  It
      skips the web framework entirely and is the fast one (issue #5's benchmarks).
    - ``"aiohttp"``: aiohttp's low-level server (``aiohttp.web.Server``).
    - ``"auto"`` (default): httptools when it is importable (it is a dependency on CPython),
      else aiohttp.

    :meth:`run` is the blocking entry point for scripts; it runs on uvloop when that is
    installed (the ``speed`` extra).
    """

    def __init__(
        self,
        receiver: WebhookReceiver,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = "/webhook",
        *,
        shutdown_timeout: float = 5.0,
        keepalive_timeout: float = 75.0,
        backend: Backend = "auto",
    ) -> None:
        if backend not in _BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(_BACKENDS)}, not {backend!r}")
        self.receiver = receiver
        self.host = host
        self.port = port
        self.path = path
        self.shutdown_timeout = shutdown_timeout
        self.keepalive_timeout = keepalive_timeout
        self._backend: Backend = backend
        self._route = WebhookRoute(
            path, uses_path_token=getattr(receiver.verifier, "uses_path_token", False)
        )
        self._handler = WebhookHandler(receiver, self._route, body_timeout=keepalive_timeout)
        self._runner: web.ServerRunner | None = None
        self._server: asyncio.Server | None = None
        self._listener: HttpListener | None = None
        self._url: str | None = None
        self._stopped: asyncio.Event | None = None

    def __repr__(self) -> str:
        return (
            f"WebhookServer(host={self.host!r}, port={self.port!r}, path={self.path!r}, "
            f"backend={self._backend!r})"
        )

    @property
    def url(self) -> str:
        """The bound URL: scheme, host, port, path (and token). Only after start."""
        if self._url is None:
            raise RuntimeError("the server is not started")
        return self._url

    @property
    def backend(self) -> Backend:
        """The HTTP layer: ``"httptools"`` or ``"aiohttp"`` once started (``"auto"`` before)."""
        return self._backend

    async def start(self) -> None:
        if self._runner is not None or self._server is not None:
            return
        if self._backend != "aiohttp" and _httptools_available(required=self._backend != "auto"):
            address = await self._start_httptools()
            self._backend = "httptools"
        else:
            address = await self._start_aiohttp()
            self._backend = "aiohttp"
        self._stopped = asyncio.Event()
        host, port = address[0], address[1]
        shown = f"[{host}]" if ":" in host else host
        base = f"http://{shown}:{port}{self._route.path}"
        if getattr(self.receiver.verifier, "uses_path_token", False):
            base = self.receiver.verifier.authenticate(base, b"")[0]
        self._url = base

    async def _start_httptools(self) -> Any:
        from ._protocol import HttpListener

        listener = HttpListener(
            self.receiver, self._route, keepalive_timeout=self.keepalive_timeout
        )
        loop = asyncio.get_running_loop()
        server = await loop.create_server(listener, self.host, self.port, backlog=128)
        self._listener, self._server = listener, server
        return server.sockets[0].getsockname()

    async def _start_aiohttp(self) -> Any:
        server = web.Server(
            self._handler, access_log=None, keepalive_timeout=self.keepalive_timeout
        )
        runner = web.ServerRunner(server, shutdown_timeout=self.shutdown_timeout)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        return runner.addresses[0]

    async def serve_forever(self) -> None:
        """Serve until the server is closed (or the task is cancelled)."""
        await self.start()
        assert self._stopped is not None
        await self._stopped.wait()

    async def aclose(self) -> None:
        """Close the receiver (drain), then stop serving. Idempotent."""
        runner, self._runner = self._runner, None
        server, self._server = self._server, None
        try:
            await self.receiver.aclose()
        finally:
            if runner is not None:
                await runner.cleanup()
            if server is not None:
                server.close()
                assert self._listener is not None
                await self._listener.shutdown(self.shutdown_timeout)
                await server.wait_closed()
            if self._stopped is not None:
                self._stopped.set()

    def run(
        self,
        *,
        use_uvloop: bool | None = None,
        announce: Callable[[str], object] | None = print,
        freeze_gc: bool = True,
    ) -> None:
        """Serve until Ctrl-C or SIGTERM, then shut down gracefully: the entry point for scripts.

        Like ``aiohttp.web.run_app`` it blocks and runs its own event loop, on uvloop when that
        is installed (``pip install "ultimate_async[speed]"``; ``use_uvloop=False`` opts out,
        ``True`` requires it).  ``announce`` is called with one line naming the URL once
        serving (``None``: silent).  Inside a running loop use ``async with`` instead.

        ``freeze_gc``: once serving, ``gc.freeze()`` moves everything allocated so far (modules,
        handlers, the receiver) out of the garbage collector's sight.  On a small machine a full
        collection over those ~40,000 objects pauses the loop 6-15 ms, several times a second
        under load: the freeze takes the p99 acknowledgement latency on uvloop from ~16 ms to
        ~3 ms (``benchmarks/``).  It is undone when ``run`` returns.
        """
        run(self._serve_until_signal(announce, freeze_gc), use_uvloop=use_uvloop)

    async def _serve_until_signal(
        self, announce: Callable[[str], object] | None, freeze_gc: bool = False
    ) -> None:
        async with self:
            if freeze_gc:
                gc.freeze()
            if announce is not None:
                announce(f"serving webhooks on {self.url} (Ctrl-C to stop)")
            assert self._stopped is not None
            signalled = asyncio.ensure_future(wait_for_signal())
            stopped = asyncio.ensure_future(self._stopped.wait())
            try:
                await asyncio.wait((signalled, stopped), return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (signalled, stopped):
                    task.cancel()
                await asyncio.gather(signalled, stopped, return_exceptions=True)
                if freeze_gc:
                    gc.unfreeze()

    async def __aenter__(self) -> WebhookServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
