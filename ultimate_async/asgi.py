"""Serve a :class:`~ultimate_async.webhook.WebhookReceiver` from any ASGI server or framework.

:class:`WebhookApp` is a complete ASGI 3 application (``http`` and ``lifespan``): run it with
uvicorn, granian or hypercorn, or mount it in Starlette/FastAPI.  Like the aiohttp front end it
is an adapter and nothing more: the server parses HTTP; this reads the body (capped while
reading), calls :meth:`WebhookReceiver.handle` and sends the answer back::

    webhooks = WebhookApp(receiver, path="/webhook")
    app = FastAPI(lifespan=webhooks.lifespan)
    app.mount("/ultimate", webhooks)          # deliveries: POST /ultimate/webhook
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any, Final

from ._deadlines import Deadlines
from .errors import BackendUnavailableError
from .webhook import _serving
from .webhook.headers import RawHeaders
from .webhook.receiver import WebhookReceiver
from .webhook.response import ACK, BACKEND_UNAVAILABLE, BODY_TIMEOUT, TOO_LARGE, WebhookResponse

__all__ = ["WebhookApp"]

log = logging.getLogger("ultimate_async.webhook")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_ACK_HEADERS: Final = ((b"content-type", ACK.content_type.encode()), (b"content-length", b"0"))
_ALLOW: Final = (b"allow", ", ".join(_serving.ALLOWED_METHODS).encode())


def _route_path(scope: Scope) -> str:
    """The path below where the app is mounted (Starlette's ``get_route_path``).

    ASGI servers and ``Mount`` give the full path in ``path`` and the mount point in
    ``root_path``; older servers gave the path with the prefix already removed.
    """
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if not root or not path.startswith(root):
        return path
    if len(path) == len(root):
        return ""
    return path[len(root) :] if path[len(root)] == "/" else path


class WebhookApp:
    """The receiver as an ASGI 3 application; ``path`` is relative to where it is mounted.

    ``POST path`` delivers; ``GET``/``HEAD path`` answer a health JSON (503 while closing);
    with a :class:`~ultimate_async.webhook.verify.UrlToken` verifier deliveries go to
    ``path/{token}``.  A body that has not arrived ``body_timeout`` seconds after its head is
    answered 408 and its connection closed (ASGI servers time out idle connections, not slow
    bodies).  ``metrics_path`` serves the Prometheus figures (the ``prometheus``
    extra).  Anything else is 404, or 405 for another method on the path.

    Lifecycle: the ``lifespan`` start-up starts the receiver (a replica is routable before its
    first delivery) and the shutdown closes it (503 for new deliveries, drain).  Mounted in a
    framework that does not pass lifespan events to mounted apps (Starlette, FastAPI), the
    receiver starts on the first request; give the host app :meth:`lifespan` (FastAPI's
    ``lifespan=``) or close the receiver in its own lifespan so the drain runs on shutdown.

    Bodies over ``receiver.max_body_size`` are refused with 413 while being read: at once when
    ``Content-Length`` says so, else as soon as the streamed body passes the cap.  A body sent
    with a ``Content-Encoding`` is refused with 415 (ASGI servers do not decode bodies).
    """

    def __init__(
        self,
        receiver: WebhookReceiver,
        path: str = "/webhook",
        *,
        metrics_path: str | None = None,
        body_timeout: float | None = 60.0,
    ) -> None:
        if not path.startswith("/"):
            raise ValueError("path must start with '/'")
        if metrics_path is not None and not metrics_path.startswith("/"):
            raise ValueError("metrics_path must start with '/'")
        self.receiver = receiver
        self.path = path.rstrip("/") or "/"
        self.metrics_path = metrics_path
        if metrics_path is not None:
            _serving.start_metrics()
        self._deadlines = Deadlines(body_timeout)
        uses_token = getattr(receiver.verifier, "uses_path_token", False)
        self._token_prefix = self.path.rstrip("/") + "/" if uses_token else None
        self._started = False  # by a lifespan start-up or a first request
        self._stopped = False  # by a lifespan shutdown: no lazy restart behind its back
        self._start_lock = asyncio.Lock()

    @property
    def body_timeout(self) -> float | None:
        """Seconds a body may take to arrive after its head (``None``: no limit)."""
        return self._deadlines.timeout

    def __repr__(self) -> str:
        return f"WebhookApp(path={self.path!r}, metrics_path={self.metrics_path!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path = scope["path"] if not scope.get("root_path") else _route_path(scope)
            if path == self.path and scope["method"] == "POST":  # a delivery: the hot path
                answered = await self._post(scope, receive, None)
                if answered is not None:
                    await _answer(send, answered[0], close=answered[1])
            else:
                await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":  # not ours: refuse the handshake (403 on the wire)
            await receive()
            await send({"type": "websocket.close", "code": 1008})

    # -- lifecycle -----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """Start the receiver, and close it on exit: a host framework's ``lifespan=``.

        ``FastAPI(lifespan=webhooks.lifespan)`` (or Starlette's) runs it around the host app's
        life, which mounted apps otherwise do not see.
        """
        await self._start()
        try:
            yield
        finally:
            await self._stop()

    async def _start(self) -> None:
        async with self._start_lock:
            await self.receiver.start()
            self._started, self._stopped = True, False

    async def _stop(self) -> None:
        self._started, self._stopped = False, True
        await self.receiver.aclose()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            # A failure is reported to the server, which logs it (and exits on start-up).
            if message["type"] == "lifespan.startup":
                try:
                    await self._start()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self._stop()
                except Exception as exc:
                    await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- requests ------------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = (_route_path(scope) if scope.get("root_path") else scope["path"]) or "/"
        token = None
        if path != self.path:
            prefix = self._token_prefix
            if prefix is not None and path.startswith(prefix):
                rest = path[len(prefix) :]  # one segment, as aiohttp's ``{token}`` matches
                token = rest if rest and not any(c in rest for c in "/{}") else None
            if token is None:
                if path == self.metrics_path and scope["method"] in ("GET", "HEAD"):
                    answer = await _serving.metrics(self.receiver)
                    await _answer(send, answer, head=scope["method"] == "HEAD")
                else:
                    await _answer(send, _serving.NOT_FOUND)
                return
        method = scope["method"]
        if method == "POST":
            answered = await self._post(scope, receive, token)
            if answered is not None:
                await _answer(send, answered[0], close=answered[1])
        elif method in ("GET", "HEAD"):
            await _answer(send, _serving.health(self.receiver), head=method == "HEAD")
        else:
            await _answer(send, _serving.NOT_ALLOWED, extra=(_ALLOW,))

    async def _post(
        self, scope: Scope, receive: Receive, token: str | None
    ) -> tuple[WebhookResponse, bool] | None:
        """The answer and whether to close after it (a refusal sent before the whole body was
        read: the rest is never parsed as a request), or ``None`` when the client left."""
        receiver = self.receiver
        limit = receiver.max_body_size
        headers = RawHeaders(scope["headers"])
        by_name = headers.by_name  # lowercased names -> raw values: no decoding for the checks
        length = by_name.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                return _serving.BAD_LENGTH, True
            if int(length) > limit:
                return TOO_LARGE, True  # before reading (and before inviting it: no 100)
        coding = by_name.get(b"content-encoding")
        if coding is not None and coding.strip().lower() not in (b"", b"identity"):
            return _serving.UNSUPPORTED_CODING, True
        expect = by_name.get(b"expect")
        if expect is not None and expect.lower() != b"100-continue":
            return _serving.unknown_expectation(expect.decode("latin-1")), True
        deadlines = self._deadlines
        task = asyncio.current_task()
        assert task is not None
        deadlines.enter(task)
        try:
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                body = message.get("body", b"")  # the usual case: one message holds it all
                if len(body) > limit:
                    body = False
            else:
                body = await _read_rest(receive, message, limit)
        except asyncio.CancelledError:
            if not deadlines.expired(task):
                raise
            log.debug("webhook body not received within %s s", deadlines.timeout)
            return BODY_TIMEOUT, True
        finally:
            deadlines.leave(task)
        if body is None:
            log.debug("webhook client disconnected while sending its body")
            return None
        if body is False:
            return TOO_LARGE, True
        assert isinstance(body, bytes)
        if not self._started and not self._stopped:
            try:
                await self._start()  # not forwarded lifespan events: start on first use
            except BackendUnavailableError:
                log.debug("event bus unavailable at start", exc_info=True)
                return BACKEND_UNAVAILABLE, False
        return await receiver.handle(body, headers, path_token=token), False


async def _read_rest(receive: Receive, message: Message, limit: int) -> bytes | bool | None:
    """The body that starts with ``message``; ``False`` as soon as it is longer than ``limit``;
    ``None`` if the client left."""
    if message["type"] != "http.request":  # http.disconnect
        return None
    body: bytes = message.get("body", b"")
    if len(body) > limit:
        return False
    if not message.get("more_body", False):
        return body
    chunks = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return False
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _answer(
    send: Send,
    answer: WebhookResponse,
    *,
    head: bool = False,
    close: bool = False,
    extra: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    body = answer.body
    if answer is ACK and not close:  # the answer to nearly every delivery
        headers = list(_ACK_HEADERS)
    else:
        headers = [
            (b"content-type", answer.content_type.encode("latin-1")),
            (b"content-length", b"%d" % len(body)),
            *extra,
        ]
    if close:  # servers honour it: the unread rest of the body is never parsed as a request
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})
