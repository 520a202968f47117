"""EXPERIMENT (option 2 of issue #5): ``receiver.handle`` behind aiohttp's C request parser.

``WebhookServer`` runs on aiohttp's low-level server (``aiohttp.web.Server``).  This measures
what is left on the table: aiohttp's own ``HttpRequestParser`` (llhttp, the same C parser)
driven by a small ``asyncio.Protocol`` of ours instead of aiohttp's ``RequestHandler``
(no per-request Task, ``BaseRequest``, ``StreamWriter`` or ``Response.prepare``).

Not production code, and not meant to become it as is: ``HttpRequestParser`` is exported by
``aiohttp.http`` but undocumented, its constructor grew arguments in 3.13/3.14, and its payload
``StreamReader`` needs aiohttp's internal ``BaseProtocol`` for flow control.  A real server on
top of it would also need what ``RequestHandler`` already does: idle/keep-alive timeouts,
write back-pressure, lingering reads, upgrade refusal, graceful shutdown.  Run it like the
other receiver scripts (``--port N [--uvloop] [--no-speed] [--stub]``; ``/stats`` is served).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import deque
from typing import Any

from benchmarks.payloads import PATH, SECRET
from benchmarks.servers._common import Stats, parse_args, ready, run, wait_for_signal

STUB = "--stub" in sys.argv
if STUB:
    sys.argv.remove("--stub")

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
            405: "Method Not Allowed", 409: "Conflict", 413: "Payload Too Large",
            500: "Internal Server Error", 503: "Service Unavailable"}  # fmt: skip


def _response(status: int, body: bytes, content_type: str, close: bool) -> bytes:
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n{'Connection: close' + chr(13) + chr(10) if close else ''}"
        "\r\n"
    )
    return head.encode("latin-1") + body


def make_protocol(receiver: Any, stats: Stats) -> Any:
    from aiohttp.base_protocol import BaseProtocol
    from aiohttp.http import HttpRequestParser
    from aiohttp.http_exceptions import HttpProcessingError
    from aiohttp.streams import EMPTY_PAYLOAD

    handle = receiver.handle
    limit = receiver.max_body_size

    class ParserProtocol(BaseProtocol):
        def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
            super().__init__(loop)
            self._parser = HttpRequestParser(self, loop, 2**16, max_line_size=8190,
                                             max_field_size=8190, max_headers=128)  # fmt: skip
            self._queue: deque[tuple[Any, Any]] = deque()
            self._busy = False

        def data_received(self, data: bytes) -> None:
            try:
                messages, _upgraded, _ = self._parser.feed_data(data)
            except HttpProcessingError:
                self._write(_response(400, b"", "text/plain", True))
                if self.transport is not None:
                    self.transport.close()
                return
            if messages:
                self._queue.extend(messages)
                if not self._busy:
                    self._busy = True
                    self._loop.create_task(self._serve())

        def _write(self, data: bytes) -> None:
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(data)

        async def _serve(self) -> None:
            queue = self._queue
            try:
                while queue:
                    message, payload = queue.popleft()
                    self._parser.message_consumed()
                    close = message.should_close
                    if message.path == "/stats":
                        body = json.dumps(stats.as_dict()).encode()
                        self._write(_response(200, body, "application/json", close))
                    elif message.path != PATH:
                        self._write(_response(404, b"404: Not Found", "text/plain", close))
                    elif message.method != "POST":
                        self._write(_response(405, b"", "text/plain", close))
                    else:
                        data = await self._read(payload)
                        if data is None:
                            self._write(_response(413, b"", "text/plain", close))
                        else:
                            answer = await handle(data, message.headers)
                            self._write(
                                _response(answer.status, answer.body, answer.content_type, close)
                            )
                    if close and self.transport is not None:
                        self.transport.close()
                        return
            finally:
                self._busy = False

        async def _read(self, payload: Any) -> bytes | None:
            if payload is EMPTY_PAYLOAD:
                return b""
            if payload.is_eof():
                data: bytes = payload.read_nowait()
                return data if len(data) <= limit else None
            chunks, size = [], 0
            while chunk := await payload.readany():
                size += len(chunk)
                if size > limit:
                    return None
                chunks.append(chunk)
            return b"".join(chunks)

    return ParserProtocol


def main() -> None:
    args = parse_args(__doc__ or "")
    stats = Stats()

    async def serve() -> None:
        from ultimate_async.webhook import SharedSecretHeader, WebhookReceiver
        from ultimate_async.webhook.response import ACK

        receiver = WebhookReceiver(SharedSecretHeader(SECRET))

        @receiver.on_message()
        async def on_message(msg: Any, ctx: Any) -> None:
            stats.handled += 1

        if STUB:

            async def stubbed(body: bytes, headers: Any, *, path_token: Any = None) -> Any:
                stats.handled += 1
                return ACK

            receiver.handle = stubbed  # type: ignore[method-assign]

        loop = asyncio.get_running_loop()
        protocol = make_protocol(receiver, stats)
        server = await loop.create_server(
            lambda: protocol(loop), args.host, args.port, backlog=1024
        )
        ready(server.sockets[0].getsockname()[1])
        try:
            await wait_for_signal()
        finally:
            server.close()
            await receiver.aclose()

    run(serve, use_uvloop=args.uvloop)


if __name__ == "__main__":
    main()
