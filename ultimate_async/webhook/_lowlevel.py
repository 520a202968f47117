"""The request handler behind :class:`~ultimate_async.webhook.WebhookServer`.

``WebhookServer`` serves one receiver on one path, so it needs none of ``aiohttp.web``'s
application layer (router, match info, middlewares, signals, the ``Request`` subclass).  It
runs on aiohttp's *low-level* server (``aiohttp.web.Server``): the same C HTTP parser,
keep-alive, pipelining, limits and graceful shutdown, with this one callable in place of the
application.  It answers exactly what :func:`~ultimate_async.webhook.setup_webhook` answers
inside an application: the same routes, status codes, bodies and ``Allow`` header.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web
from aiohttp.http import HttpVersion11

from ._route import ALLOWED_METHODS, WebhookRoute
from .receiver import WebhookReceiver
from .response import TOO_LARGE, health_answer

__all__ = ["WebhookHandler", "health_response", "read_capped", "too_large"]

_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"

Fallback = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


def too_large() -> web.Response:
    return web.Response(body=TOO_LARGE.body, status=413, content_type=TOO_LARGE.content_type)


def health_response(receiver: WebhookReceiver) -> web.Response:
    """``{"status": "ok"|"closing", "pending": n}``; 503 while closing, so balancers move on."""
    answer = health_answer(receiver)
    return web.Response(body=answer.body, status=answer.status, content_type=answer.content_type)


async def read_capped(request: web.BaseRequest, limit: int) -> bytes | None:
    """The body, or ``None`` when it is longer than ``limit`` (chunked bodies have no length).

    Reads the payload stream directly: ``request.read()`` would apply the request's own
    ``client_max_size`` (1 MiB on a low-level server) and copy the body twice.
    """
    length = request.content_length
    if length is not None and length > limit:
        return None
    content = request.content
    chunk = await content.readany()
    if content.at_eof():  # the usual case: the whole body arrived with the headers
        return chunk if len(chunk) <= limit else None
    chunks = [chunk]
    size = len(chunk)
    while chunk:
        chunk = await content.readany()
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class WebhookHandler:
    """Routes a low-level request: ``POST`` delivers, ``GET``/``HEAD`` answer health, else 405/404.

    ``fallback`` (``None``: 404) answers paths that are not the webhook's.
    """

    __slots__ = ("_handle", "_limit", "_path", "fallback", "receiver", "route")

    def __init__(self, receiver: WebhookReceiver, route: WebhookRoute) -> None:
        self.receiver = receiver
        self.route = route
        self._handle = receiver.handle
        self._limit = receiver.max_body_size
        self._path = route.path
        self.fallback: Fallback | None = None

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        token = None
        # Fast path: the raw target is exactly the path (no query, no escapes to decode).
        if request.raw_path != self._path:
            matched, token = self.route.match(request.rel_url.path_safe)
            if not matched:
                if self.fallback is not None:
                    return await self.fallback(request)
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
        body = await read_capped(request, self._limit)
        if body is None:
            return too_large()
        answer = await self._handle(body, request.headers, path_token=token)
        # ``body=None`` is the cheaper constructor path; the bytes on the wire are the same.
        return web.Response(
            body=answer.body or None, status=answer.status, content_type=answer.content_type
        )

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
