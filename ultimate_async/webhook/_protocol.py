"""The HTTP/1.1 server behind :class:`~ultimate_async.webhook.WebhookServer`, on httptools.

A webhook endpoint needs a small part of HTTP: one path, ``POST`` with a body, a health
``GET``.  Serving it through a web framework costs more per request than everything the
receiver does (issue #5's benchmarks); this is an ``asyncio.Protocol`` driving httptools' C
parser (llhttp, as in aiohttp and Node) straight into :meth:`WebhookReceiver.handle`.

What a server owes its clients, and how it is kept here:

- **Framing** is llhttp's, strict: conflicting ``Content-Length``/``Transfer-Encoding``,
  bad chunks, obs-folds and the like are a 400 and the connection is closed (no smuggling).
- **Limits**: the request head is capped (``MAX_HEAD_SIZE``, ``MAX_HEADERS``), the body at
  ``max_body_size`` (413, checked against ``Content-Length`` before any body is read).
- **Keep-alive and pipelining**: answers go out in request order; at most
  ``MAX_PIPELINED`` parsed requests wait before reading pauses.
- **Back-pressure**: when the client does not read its answers, the transport's
  ``pause_writing`` stops the answering loop, which in turn stops reading.
- **Timeouts**: a connection that has not delivered a complete request within
  ``keepalive_timeout`` of becoming idle is closed (idle keep-alive and slow-loris alike).
- **Shutdown**: stop listening, close idle connections, let busy ones finish their answer
  (with ``Connection: close``), abort what is left after ``shutdown_timeout``.

It answers what :func:`~ultimate_async.webhook.setup_webhook` answers in an aiohttp app: the
same statuses, bodies, ``Content-Type`` and ``Allow`` headers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from email.utils import formatdate
from http import HTTPStatus
from typing import Final

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from ._content_coding import ContentCodingError, decode
from ._route import ALLOWED_METHODS, WebhookRoute
from .receiver import WebhookReceiver
from .response import TOO_LARGE, WebhookResponse, health_answer

__all__ = ["MAX_HEADERS", "MAX_HEAD_SIZE", "MAX_PIPELINED", "HttpListener"]

log = logging.getLogger("ultimate_async.webhook")

#: Bytes of request line and headers (aiohttp allows 8190 per line).
MAX_HEAD_SIZE: Final = 64 * 1024
#: Header fields per request (aiohttp's limit too).
MAX_HEADERS: Final = 128
#: Parsed requests a connection may have waiting before reading pauses.
MAX_PIPELINED: Final = 16

_TEXT: Final = "text/plain; charset=utf-8"  # aiohttp's HTTPException answers
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_ALLOW: Final = b"Allow: %s\r\n" % ",".join(ALLOWED_METHODS).encode()
_KEEP_ALIVE: Final = b"Connection: keep-alive\r\n"
_NOT_FOUND: Final = WebhookResponse(404, b"404: Not Found", _TEXT)
_NOT_ALLOWED: Final = WebhookResponse(405, b"405: Method Not Allowed", _TEXT)


def _status_line(status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1")


_STATUS_LINES: Final = {s.value: _status_line(s.value) for s in HTTPStatus}


class _Date:
    """The ``Date`` header, formatted once per second."""

    __slots__ = ("line", "second")

    def __init__(self) -> None:
        self.second = -1
        self.line = b""

    def get(self) -> bytes:
        now = time.time()
        second = int(now)
        if second != self.second:
            self.second = second
            self.line = b"Date: %s\r\n" % formatdate(now, usegmt=True).encode("ascii")
        return self.line


_DATE: Final = _Date()


class _Refusal(Exception):
    """Raised from a parser callback: answer ``response`` and close the connection."""

    def __init__(self, response: WebhookResponse, extra: bytes = b"") -> None:
        super().__init__(response.status)
        self.response = response
        self.extra = extra


def _text_error(status: int, extra: bytes = b"") -> _Refusal:
    body = f"{status}: {HTTPStatus(status).phrase}".encode()
    return _Refusal(WebhookResponse(status, body, _TEXT), extra)


def _encode_answer(
    status: int, body: bytes, content_type: str, *, head: bool, close: bool, extra: bytes = b""
) -> bytes:
    """The bytes of one answer (no body for ``HEAD``, ``Content-Length`` either way)."""
    parts = [
        _STATUS_LINES.get(status) or _status_line(status),
        b"Content-Type: ",
        content_type.encode("latin-1"),
        b"\r\nContent-Length: %d\r\n" % len(body),
        _DATE.get(),
        extra,
        b"Connection: close\r\n\r\n" if close else b"\r\n",
    ]
    if not head:
        parts.append(body)
    return b"".join(parts)


class _Request:
    """One parsed request, waiting in its connection's queue."""

    __slots__ = ("answer", "body", "headers", "http10", "keep_alive", "method", "token")

    def __init__(
        self,
        method: str,
        headers: CIMultiDictProxy[str],
        keep_alive: bool,
        http10: bool,
        token: str | None,
        answer: WebhookResponse | None,
    ) -> None:
        self.method = method
        self.headers = headers
        self.keep_alive = keep_alive
        self.http10 = http10
        self.token = token
        #: Known without the receiver (404, 405, health): no body needed.
        self.answer = answer
        self.body = b""


class HttpListener:
    """The protocol factory for ``loop.create_server``; tracks connections for shutdown."""

    def __init__(
        self, receiver: WebhookReceiver, route: WebhookRoute, *, keepalive_timeout: float
    ) -> None:
        self.receiver = receiver
        self.route = route
        self.keepalive_timeout = keepalive_timeout
        self.connections: set[HttpConnection] = set()
        self.closing = False
        self._emptied: asyncio.Event | None = None

    def __call__(self) -> HttpConnection:
        return HttpConnection(self)

    def forget(self, connection: HttpConnection) -> None:
        self.connections.discard(connection)
        if not self.connections and self._emptied is not None:
            self._emptied.set()

    async def shutdown(self, timeout: float) -> None:  # noqa: ASYNC109
        """Close idle connections now, busy ones after their answer; abort the rest later."""
        self.closing = True
        for connection in list(self.connections):
            connection.close_when_idle()
        if not self.connections:
            return
        self._emptied = asyncio.Event()
        try:
            async with asyncio.timeout(timeout):
                await self._emptied.wait()
        except TimeoutError:
            for connection in list(self.connections):
                connection.abort()


class HttpConnection(asyncio.Protocol):
    """One client connection: parse, queue, answer in order."""

    __slots__ = (
        "_body",
        "_busy",
        "_close_after",
        "_continue_pending",
        "_drain",
        "_head_size",
        "_header_pairs",
        "_idle_since",
        "_in_head",
        "_keep_alive",
        "_limit",
        "_listener",
        "_loop",
        "_parser",
        "_queue",
        "_reading_paused",
        "_refused",
        "_request",
        "_task",
        "_timer",
        "_transport",
        "_url",
    )

    def __init__(self, listener: HttpListener) -> None:
        self._listener = listener
        self._loop = asyncio.get_running_loop()
        self._limit = listener.receiver.max_body_size
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._queue: deque[_Request | _Refusal] = deque()
        self._busy = False
        self._task: asyncio.Task[None] | None = None
        self._close_after = False
        self._refused = False
        self._reading_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._idle_since = 0.0
        self._continue_pending = False
        self._reset_message()

    def _reset_message(self) -> None:
        self._in_head = False
        self._head_size = 0
        self._url = b""
        self._header_pairs: list[tuple[str, str]] = []
        self._request: _Request | None = None
        self._body: bytes | bytearray = b""
        self._keep_alive = True

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        listener = self._listener
        if listener.closing:
            transport.close()
            return
        listener.connections.add(self)
        self._idle_since = self._loop.time()
        self._timer = self._loop.call_at(
            self._idle_since + listener.keepalive_timeout, self._check_idle
        )

    def connection_lost(self, exc: BaseException | None) -> None:
        self._transport = None
        self._queue.clear()  # pipelined requests of a gone client are not answered, nor run
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)
        self._listener.forget(self)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        began = not self._in_head
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # The request before the upgrade is answered; the other protocol is not spoken.
            self._close_after = True
            self._refused = True
            self._pause_reading()
            if not self._busy:
                self._close()
        except httptools.HttpParserCallbackError as exc:
            refusal = exc.__context__
            if not isinstance(refusal, _Refusal):  # a bug of ours: never silently
                log.error("webhook HTTP parser callback failed", exc_info=refusal)
                refusal = _text_error(500)
            self._refuse(refusal)
            return
        except httptools.HttpParserError as exc:
            log.debug("malformed HTTP request refused (400): %s", exc)
            self._refuse(_text_error(400))
            return
        if self._in_head:
            # Bytes of a head still incomplete (the first chunk may also carry an earlier
            # request's tail, so it is not counted: the cap is then one chunk larger).
            if not began:
                self._head_size += len(data)
            if self._head_size > MAX_HEAD_SIZE:
                self._refuse(_text_error(431))

    def pause_writing(self) -> None:
        if self._drain is None:
            self._drain = self._loop.create_future()

    def resume_writing(self) -> None:
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    # -- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._reset_message()
        self._in_head = True

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_HEAD_SIZE:
            raise _text_error(414)

    def on_header(self, name: bytes, value: bytes) -> None:
        pairs = self._header_pairs
        if len(pairs) >= MAX_HEADERS or len(name) + len(value) > MAX_HEAD_SIZE:
            raise _text_error(431)
        pairs.append(
            (name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
        )

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self._parser
        self._keep_alive = parser.should_keep_alive()
        headers = CIMultiDictProxy(CIMultiDict(self._header_pairs))
        version = parser.get_http_version()
        hosts = len(headers.getall("Host", ()))
        if hosts > 1 or (hosts == 0 and version != "1.0"):
            raise _text_error(400)  # RFC 9112 3.2: exactly one Host in HTTP/1.1
        if parser.should_upgrade() and (
            "Content-Length" in headers or "Transfer-Encoding" in headers
        ):
            # llhttp hands what follows an upgrade request's head to the other protocol, which
            # is not spoken here: the body would be lost, so the request is refused whole.
            raise _text_error(400)
        method = parser.get_method().decode("ascii", "replace")
        target = self._url.decode("utf-8", "surrogateescape")
        try:
            matched, token = self._listener.route.match_target(target)
        except ValueError:
            raise _text_error(400) from None
        answer: WebhookResponse | None = None
        if not matched:
            answer = _NOT_FOUND
        elif method not in ALLOWED_METHODS:
            answer = _NOT_ALLOWED
        # A GET/HEAD health answer is made when its turn comes: it reports ``pending`` then.
        length = headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > self._limit:
            raise _Refusal(TOO_LARGE)
        request = _Request(method, headers, self._keep_alive, version == "1.0", token, answer)
        if method == "POST" and answer is None and "Expect" in headers:
            self._expect(headers, version)
        self._request = request

    def _expect(self, headers: CIMultiDictProxy[str], version: str) -> None:
        """``Expect: 100-continue`` invites the body now, or once earlier answers are out."""
        if version != "1.1":
            return
        if headers["Expect"].lower() != "100-continue":
            raise _Refusal(
                WebhookResponse(417, f"Unknown Expect: {headers['Expect']}".encode(), _TEXT)
            )
        if self._busy or self._queue:
            self._continue_pending = True
        elif self._transport is not None:
            self._transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        # One bytes object for the usual single piece; a bytearray (not a list of pieces: a
        # chunked body of 1-byte chunks must not cost 40 bytes of overhead per byte) beyond.
        received = self._body
        if len(received) + len(body) > self._limit:
            raise _Refusal(TOO_LARGE)
        if not received:
            self._body = body
        elif type(received) is bytes:
            self._body = bytearray(received) + body
        else:
            received += body

    def on_message_complete(self) -> None:
        request = self._request
        if request is None:  # pragma: no cover - llhttp always completes the head first
            raise _text_error(400)
        received = self._body
        body = received if type(received) is bytes else bytes(received)
        coding = request.headers.get("Content-Encoding")
        if coding is not None:
            try:
                body = decode(coding, body, self._limit)
            except ContentCodingError as exc:
                raise _Refusal(exc.response) from None
        request.body = body
        self._reset_message()
        self._continue_pending = False
        self._enqueue(request)

    # -- answering ---------------------------------------------------------------------------

    def _enqueue(self, item: _Request | _Refusal) -> None:
        queue = self._queue
        queue.append(item)
        if len(queue) >= MAX_PIPELINED:
            self._pause_reading()
        if not self._busy:
            self._busy = True
            self._task = self._loop.create_task(self._serve())

    def _refuse(self, refusal: _Refusal) -> None:
        """Answer ``refusal`` after what is already queued, then close; read nothing more."""
        self._refused = True
        self._pause_reading()
        self._enqueue(refusal)

    async def _serve(self) -> None:
        queue = self._queue
        receiver = self._listener.receiver
        try:
            while queue:
                item = queue.popleft()
                if self._reading_paused and not self._refused and len(queue) < MAX_PIPELINED // 2:
                    self._resume_reading()
                if isinstance(item, _Refusal):
                    self._write(item.response, head=False, close=True, extra=item.extra)
                    self._close()
                    return
                head = item.method == "HEAD"
                answer: WebhookResponse | None = item.answer
                if answer is None:
                    if item.method == "POST":
                        try:
                            answer = await receiver.handle(
                                item.body, item.headers, path_token=item.token
                            )
                        except Exception:
                            log.exception("webhook receiver failed to answer a delivery")
                            answer = _text_error(500).response
                    else:
                        answer = health_answer(receiver)
                close = not item.keep_alive or self._close_after or self._listener.closing
                extra = _ALLOW if answer is _NOT_ALLOWED else b""
                if not close and item.http10:
                    extra += _KEEP_ALIVE  # HTTP/1.0 keeps the connection only when told so
                self._write(answer, head=head, close=close, extra=extra)
                if close:
                    self._close()
                    return
                if self._drain is not None:
                    await self._drain
            if self._continue_pending and self._transport is not None:
                self._continue_pending = False
                self._transport.write(_CONTINUE)
        except Exception:  # a bug of ours: log it, drop this connection, keep serving others
            log.exception("webhook connection failed")
            if self._transport is not None:
                self._transport.abort()
        finally:
            self._busy = False
            self._task = None
            self._idle_since = self._loop.time()

    def _write(
        self, answer: WebhookResponse, *, head: bool, close: bool, extra: bytes = b""
    ) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.write(
            _encode_answer(
                answer.status,
                answer.body,
                answer.content_type,
                head=head,
                close=close,
                extra=extra,
            )
        )

    # -- connection state --------------------------------------------------------------------

    def _pause_reading(self) -> None:
        if not self._reading_paused and self._transport is not None:
            self._reading_paused = True
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused and self._transport is not None:
            self._reading_paused = False
            self._transport.resume_reading()

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _check_idle(self) -> None:
        """The keep-alive timer: close a connection idle (or dribbling) for too long."""
        self._timer = None
        if self._transport is None:
            return
        timeout = self._listener.keepalive_timeout
        now = self._loop.time()
        if self._busy:
            deadline = now + timeout
        else:
            deadline = self._idle_since + timeout
            if now >= deadline:
                log.debug("closing a webhook connection idle for %.1f s", timeout)
                self._close()
                return
        self._timer = self._loop.call_at(deadline, self._check_idle)

    def close_when_idle(self) -> None:
        """Shutdown: close now if nothing is being answered, else after the current answers."""
        self._close_after = True
        if not self._busy:
            self._close()

    def abort(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._transport is not None:
            self._transport.abort()
