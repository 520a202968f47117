"""The request handler behind :class:`~ultimate_async.webhook.WebhookServer`.

``WebhookServer`` serves one receiver on one path, so it needs none of ``aiohttp.web``'s
application layer (router, match info, middlewares, signals, the ``Request`` subclass).  It
runs on aiohttp's *low-level* server (``aiohttp.web.Server``): the same C HTTP parser,
keep-alive, pipelining, limits and graceful shutdown, with this one callable in place of the
application.  It answers exactly what :func:`~ultimate_async.webhook.setup_webhook` answers
inside an application: the same routes, status codes, bodies and ``Allow`` header.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from aiohttp import web
from aiohttp.http import HttpVersion11

from ._content_coding import ContentCodingError, supported, unsupported
from ._route import ALLOWED_METHODS, WebhookRoute
from .receiver import WebhookReceiver
from .response import BODY_TIMEOUT, TOO_LARGE, WebhookResponse, health_answer

__all__ = ["WebhookHandler", "health_response", "read_capped", "read_delivery"]

log = logging.getLogger("ultimate_async.webhook")

_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"


def _response(answer: WebhookResponse) -> web.Response:
    # ``body=None`` is the cheaper constructor path; the bytes on the wire are the same.
    return web.Response(
        body=answer.body or None, status=answer.status, content_type=answer.content_type
    )


def health_response(receiver: WebhookReceiver) -> web.Response:
    """``{"status": "ok"|"closing", "pending": n}``; 503 while closing, so balancers move on."""
    return _response(health_answer(receiver))


async def read_capped(request: web.BaseRequest, limit: int) -> bytes | None:
    """The body, or ``None`` when it is longer than ``limit`` (chunked bodies have no length).

    Reads the payload stream directly: ``request.read()`` would apply the request's own
    ``client_max_size`` (1 MiB on a low-level server, the app's setting in an app) and copy
    the body twice.  Sizes are of the decoded body (aiohttp decodes gzip/deflate).
    """
    length = request.content_length
    if length is not None and length > limit:
        return None
    content = request.content
    chunk = await content.readany()
    size = len(chunk)
    if size > limit:
        return None
    if content.at_eof():  # the usual case: the whole body arrived with the headers
        return chunk
    chunks = [chunk]
    while chunk:
        chunk = await content.readany()
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def read_delivery(
    request: web.BaseRequest,
    limit: int,
    timeout: float | None = None,  # noqa: ASYNC109
) -> bytes | web.Response:
    """The delivery's body, or the answer refusing it (the httptools backend's answers).

    413 past ``limit``, 415 for a ``Content-Encoding`` other than gzip/deflate, 400 for a body
    that does not decode; the connection is dropped when the body has not arrived within
    ``timeout`` seconds (a slow-POST attack is not owed an answer).
    """
    coding = request.headers.get("Content-Encoding")
    if coding is not None and not supported(coding):
        return _response(unsupported(coding).response)
    try:
        async with asyncio.timeout(timeout):
            body = await read_capped(request, limit)
    except TimeoutError:
        # Drop the connection: answering would start aiohttp's lingering read of the rest.
        log.debug("webhook body not received within %s s: connection closed", timeout)
        request.protocol.force_close()
        return _response(BODY_TIMEOUT)
    except web.RequestPayloadError as exc:
        # The stream is broken: answer, then close (no lingering read of a failed payload).
        response = _response(ContentCodingError(400, str(exc).replace("\n", " ")).response)
        response.force_close()
        request.content.feed_eof()
        return response
    except ConnectionResetError:  # the client is gone: this answer is never sent
        log.debug("webhook client disconnected while sending its body")
        return _response(BODY_TIMEOUT)
    if body is None:
        return _response(TOO_LARGE)
    return body


class WebhookHandler:
    """Routes a low-level request: ``POST`` delivers, ``GET``/``HEAD`` answer health, else 405/404.

    ``body_timeout``: seconds a body may take to arrive once the head has (``None``: no limit).
    """

    __slots__ = ("_handle", "_limit", "_path", "body_timeout", "receiver", "route")

    def __init__(
        self, receiver: WebhookReceiver, route: WebhookRoute, body_timeout: float | None = None
    ) -> None:
        self.receiver = receiver
        self.route = route
        self.body_timeout = body_timeout
        self._handle = receiver.handle
        self._limit = receiver.max_body_size
        self._path = route.path

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        token = None
        # Fast path: the raw target is exactly the path (no query, no escapes to decode).
        if request.raw_path != self._path:
            matched, token = self.route.match(request.rel_url.path_safe)
            if not matched:
                raise web.HTTPNotFound()
        method = request.method
        if method == "POST":
            return await self._post(request, token)
        if method == "GET" or method == "HEAD":
            return health_response(self.receiver)
        raise web.HTTPMethodNotAllowed(method, ALLOWED_METHODS)

    async def _post(self, request: web.BaseRequest, token: str | None) -> web.StreamResponse:
        if "Expect" in request.headers:
            await self._expect(request)
        body = await read_delivery(request, self._limit, self.body_timeout)
        if not isinstance(body, bytes):
            return body
        return _response(await self._handle(body, request.headers, path_token=token))

    async def _expect(self, request: web.BaseRequest) -> None:
        """Answer ``Expect: 100-continue`` as an aiohttp application would (or 417)."""
        if request.version != HttpVersion11:
            return
        expect = request.headers.get("Expect", "")
        if expect.lower() != "100-continue":
            raise web.HTTPExpectationFailed(text=f"Unknown Expect: {expect}")
        length = request.content_length
        if length is not None and length > self._limit:
            return  # 413 follows; no point inviting the body
        await request.writer.write(_CONTINUE)
        request.writer.output_size = 0
