"""Serve a :class:`WebhookReceiver` with aiohttp: in your application, or as a ready server.

An adapter and nothing more: aiohttp parses HTTP, routes and keeps connections; the handlers
here read the body (capped while reading), call :meth:`WebhookReceiver.handle` and copy its
:class:`WebhookResponse` onto an ``aiohttp.web.Response``.  :func:`setup_webhook` adds the
routes and the start/stop hooks to your ``web.Application``; :class:`WebhookServer` is an
application with only those routes, run by ``web.AppRunner`` on a ``web.TCPSite``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web
from aiohttp.http import HttpVersion11
from aiohttp.http_exceptions import HttpProcessingError
from multidict import CIMultiDict, CIMultiDictProxy

from .._loop import run, wait_for_signal
from . import _serving
from .receiver import WebhookReceiver
from .response import ACK, BODY_TIMEOUT, TOO_LARGE, WebhookResponse

__all__ = ["WebhookServer", "setup_webhook"]

log = logging.getLogger("ultimate_async.webhook")

#: ``Content-Encoding`` values aiohttp decodes itself (the size cap applies to the decoded body).
_DECODED: Final = frozenset({"", "identity", "gzip", "x-gzip", "deflate", "br", "zstd"})

_ACK_HEADERS: Final = CIMultiDictProxy(CIMultiDict({"Content-Type": ACK.content_type}))

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_ExpectHandler = Callable[[web.Request], Awaitable[web.StreamResponse | None]]


def _response(answer: WebhookResponse) -> web.Response:
    if answer is ACK:  # nearly every delivery: headers made once (copied by aiohttp)
        return web.Response(headers=_ACK_HEADERS)
    content_type = answer.content_type
    if ";" not in content_type:  # ``body=None`` is aiohttp's cheaper path, same bytes on the wire
        return web.Response(
            body=answer.body or None, status=answer.status, content_type=content_type
        )
    response = web.Response(body=answer.body, status=answer.status)
    response.headers["Content-Type"] = content_type  # parameters verbatim (Prometheus' version)
    return response


async def _refuse(request: web.BaseRequest, answer: WebhookResponse) -> web.Response:
    """Answer, then close: the rest of the body is not read (not even aiohttp's lingering read,
    which would otherwise go on taking an oversized upload for up to ten more seconds)."""
    response = _response(answer)
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    request.protocol.force_close()  # the answer is buffered: the transport sends it, then closes
    return response


class _ClientFaultsAtDebug(logging.Filter):
    """aiohttp logs each request its parser rejects as an ERROR with a traceback ("Error
    handling request from ..."): a client's fault, answered 4xx, and a way to flood the log
    with 50-byte requests.  This demotes exactly those records to one DEBUG line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR or record.msg != "Error handling request from %s":
            return True
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        record.msg = "malformed request from %s answered %s: %s"
        record.args = (*(record.args or ()), exc.code, exc.message)
        record.exc_info = record.exc_text = None
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def _quiet_client_faults() -> None:
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _ClientFaultsAtDebug) for f in server_log.filters):
        server_log.addFilter(_ClientFaultsAtDebug())


async def _read_capped(request: web.BaseRequest, limit: int) -> bytes | None:
    """The body, or ``None`` as soon as it is longer than ``limit``.

    Reads the payload stream as it arrives, not ``request.read()``: that would apply the
    app's ``client_max_size`` instead of the receiver's cap, and only after buffering.
    """
    content = request.content
    chunk = await content.readany()
    size = len(chunk)
    if size > limit:
        return None
    if content.at_eof():  # the usual case: the whole body arrived with the head
        return chunk
    chunks = [chunk]
    while chunk:
        chunk = await content.readany()
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _handlers(
    receiver: WebhookReceiver, body_timeout: float | None
) -> tuple[_ExpectHandler, _Handler, _Handler]:
    handle = receiver.handle

    async def expect(request: web.Request) -> web.StreamResponse | None:
        """aiohttp's default ``Expect`` handling, but an oversized body is refused, not invited."""
        if request.version != HttpVersion11:
            return None
        value = request.headers.get("Expect", "")
        if value.lower() != "100-continue":
            return await _refuse(request, _serving.unknown_expectation(value))
        length = request.content_length
        if length is not None and length > receiver.max_body_size:
            return await _refuse(request, TOO_LARGE)
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the answer's head is still to come
        return None

    async def post(request: web.Request) -> web.StreamResponse:
        limit = receiver.max_body_size
        length = request.content_length
        if length is not None and length > limit:
            return await _refuse(request, TOO_LARGE)
        coding = request.headers.get("Content-Encoding")
        if coding is not None and coding.strip().lower() not in _DECODED:
            return await _refuse(request, _serving.UNSUPPORTED_CODING)
        content = request.content
        try:
            if content.is_eof():  # the usual delivery: its body arrived with its head
                whole = content.read_nowait()
                body = whole if len(whole) <= limit else None
            else:
                async with asyncio.timeout(body_timeout):
                    body = await _read_capped(request, limit)
        except TimeoutError:  # a slow upload is not owed an answer
            log.debug("webhook body not received within %s s: connection closed", body_timeout)
            return await _refuse(request, BODY_TIMEOUT)
        except web.RequestPayloadError as exc:  # bad chunking or a body that does not decode
            log.debug("unreadable webhook body: %s", exc)
            reason = str(exc).replace("\n", " ")
            return await _refuse(request, WebhookResponse.error(400, "invalid body", [reason]))
        except ConnectionError:  # the client left mid-body: nobody is waiting for an answer
            log.debug("webhook client disconnected while sending its body")
            return _response(BODY_TIMEOUT)
        if body is None:
            return await _refuse(request, TOO_LARGE)
        token = request.match_info.get("token")
        return _response(await handle(body, request.headers, path_token=token))

    async def health(request: web.Request) -> web.StreamResponse:
        return _response(_serving.health(receiver))

    return expect, post, health


def setup_webhook(
    app: web.Application,
    receiver: WebhookReceiver,
    path: str = "/webhook",
    *,
    metrics_path: str | None = None,
    body_timeout: float | None = 60.0,
) -> None:
    """Serve ``receiver`` at ``path`` of your aiohttp application.

    ``POST`` delivers; ``GET``/``HEAD`` answer a health JSON (503 while closing).  With a
    :class:`~ultimate_async.webhook.verify.UrlToken` verifier the delivery route is
    ``{path}/{token}``.  The app's start-up starts the receiver (so a replica is routable
    before its first delivery) and its shutdown closes it (503 for new deliveries, drain, then
    cancel the rest).  Bodies over ``receiver.max_body_size`` get 413 while being read,
    whatever the app's ``client_max_size``; a body that has not arrived ``body_timeout``
    seconds after its head is dropped.  ``metrics_path`` serves the Prometheus figures (the
    ``prometheus`` extra).

    Requests aiohttp's parser rejects are logged by aiohttp at ERROR with a traceback; from
    here on, in this process, they are one DEBUG line of ``aiohttp.server`` instead.
    """
    if not path.startswith("/"):
        raise ValueError("path must start with '/'")
    path = path.rstrip("/") or "/"
    expect, post, health = _handlers(receiver, body_timeout)
    app.router.add_get(path, health)
    app.router.add_post(path, post, expect_handler=expect)
    if getattr(receiver.verifier, "uses_path_token", False):
        token_path = path.rstrip("/") + "/{token}"
        app.router.add_get(token_path, health)
        app.router.add_post(token_path, post, expect_handler=expect)
    if metrics_path is not None:
        _serving.start_metrics()

        async def metrics(request: web.Request) -> web.StreamResponse:
            return _response(await _serving.metrics(receiver))

        app.router.add_get(metrics_path, metrics)

    async def start_receiver(_: web.Application) -> None:
        await receiver.start()

    async def close_receiver(_: web.Application) -> None:
        await receiver.aclose()

    app.on_startup.append(start_receiver)
    app.on_shutdown.append(close_receiver)
    _quiet_client_faults()


class WebhookServer:
    """A ready-to-run server for one receiver: ``async with WebhookServer(r) as s``.

    An aiohttp application holding only :func:`setup_webhook`'s routes, run by
    ``web.AppRunner`` on a ``web.TCPSite``.  ``port=0`` binds any free port; :attr:`url` is the
    full URL to paste into the dashboard (with the token segment for ``UrlToken``).  Starting
    starts the receiver; leaving the block stops listening, closes the receiver (503 for new
    deliveries, drain, cancel the rest), lets busy connections finish their answer and aborts
    what is left after ``shutdown_timeout``.  A connection idle for ``keepalive_timeout``
    seconds is closed, and so is one whose body has not arrived within that time.

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
        metrics_path: str | None = None,
    ) -> None:
        self.receiver = receiver
        self.host = host
        self.port = port
        self.path = path.rstrip("/") or "/"
        self.shutdown_timeout = shutdown_timeout
        self.keepalive_timeout = keepalive_timeout
        self.metrics_path = metrics_path
        self.app = web.Application()
        setup_webhook(
            self.app, receiver, path, metrics_path=metrics_path, body_timeout=keepalive_timeout
        )
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
        """Start the receiver and listen. Idempotent."""
        if self._runner is not None:
            return
        runner = web.AppRunner(
            self.app,
            handle_signals=False,
            access_log=None,
            keepalive_timeout=self.keepalive_timeout,
            shutdown_timeout=self.shutdown_timeout,
        )
        await runner.setup()  # the app's start-up: starts the receiver
        try:
            site = web.TCPSite(runner, self.host, self.port, backlog=128)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._stopped = asyncio.Event()
        host, port = runner.addresses[0][:2]
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{port}{self.path}"
        if getattr(self.receiver.verifier, "uses_path_token", False):
            url = self.receiver.verifier.authenticate(url, b"")[0]
        self._url = url

    async def serve_forever(self) -> None:
        """Serve until the server is closed (or the task is cancelled)."""
        await self.start()
        assert self._stopped is not None
        await self._stopped.wait()

    async def aclose(self) -> None:
        """Stop listening, close the receiver (drain), then the connections. Idempotent."""
        runner, self._runner = self._runner, None
        try:
            if runner is not None:
                await runner.cleanup()  # sites, on_shutdown (the receiver), connections
        finally:
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

        ``freeze_gc``: once serving, ``gc.freeze()`` moves everything allocated so far
        (modules, handlers, the receiver) out of the garbage collector's sight, so full
        collections under load stop walking them and pausing the loop (the effect on tail
        latency is in ``benchmarks/README.md``).  It is undone when ``run`` returns.
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
