"""EXPERIMENT: the SDK pipeline (``receiver.handle``) behind a lean asyncio HTTP/1.1 protocol.

Question it answers: can a ``WebhookServer`` beat bare ``aiohttp.web`` (the receiver targets
need >= 1.0x) if it skips aiohttp's web layer (Request/Response objects, routing, StreamWriter)?
This is a minimal keep-alive HTTP/1.1 server: Content-Length bodies only, no chunked bodies, no
pipelining guarantees beyond in-order answers, POST on one path. It is NOT production code;
run it as ``python -m benchmarks.experiments.lean_protocol --port N [--uvloop] [--no-speed]``
and load it with wrk like the other variants (``python -m benchmarks.run`` does not).
"""

from __future__ import annotations

import asyncio
from typing import Any

from benchmarks.payloads import PATH, SECRET
from benchmarks.servers._common import Stats, parse_args, ready, run, wait_for_signal

_REASONS = {200: b"OK", 400: b"Bad Request", 401: b"Unauthorized", 404: b"Not Found",
            409: b"Conflict", 413: b"Payload Too Large", 500: b"Internal Server Error",
            503: b"Service Unavailable"}  # fmt: skip


def _head(status: int, body: bytes, content_type: str) -> bytes:
    return b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n" % (
        status,
        _REASONS.get(status, b"OK"),
        content_type.encode(),
        len(body),
    )


class WebhookProtocol(asyncio.Protocol):
    def __init__(self, receiver: Any, path: str, stats: Stats) -> None:
        from multidict import CIMultiDict, CIMultiDictProxy

        self._cimd = CIMultiDict
        self._proxy = CIMultiDictProxy
        self.receiver = receiver
        self.path = path.encode()
        self.stats = stats
        self.buffer = bytearray()
        self.transport: Any = None
        self.queue: asyncio.Queue[tuple[bytes, Any]] | None = None
        self.busy = False
        self.pending: list[tuple[bytes, Any]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # uvloop's transports are not asyncio.Transport subclasses

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).split(b"\r\n")
            fields: Any = self._cimd()
            length = 0
            for line in head[1:]:
                name, _, value = line.partition(b":")
                key = name.decode("latin-1")
                text = value.strip().decode("latin-1")
                fields.add(key, text)
                if key.lower() == "content-length":
                    length = int(text)
            if len(buf) < end + 4 + length:
                return
            body = bytes(buf[end + 4 : end + 4 + length])
            del buf[: end + 4 + length]
            method, target, _ = head[0].split(b" ", 2)
            if method != b"POST" or target != self.path:
                self._write(404, b"", "text/plain")
                continue
            self.pending.append((body, self._proxy(fields)))
            if not self.busy:
                self.busy = True
                asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        handle = self.receiver.handle
        try:
            while self.pending:
                body, headers = self.pending.pop(0)
                answer = await handle(body, headers)
                self._write(answer.status, answer.body, answer.content_type)
        finally:
            self.busy = False

    def _write(self, status: int, body: bytes, content_type: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_head(status, body, content_type) + body)


def main() -> None:
    args = parse_args(__doc__ or "")
    stats = Stats()

    async def serve() -> None:
        from aiohttp import web

        from ultimate_async.webhook import SharedSecretHeader, WebhookReceiver

        receiver = WebhookReceiver(SharedSecretHeader(SECRET))

        @receiver.on_message()
        async def on_message(msg: Any, ctx: Any) -> None:
            stats.handled += 1

        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: WebhookProtocol(receiver, PATH, stats), args.host, args.port, backlog=1024
        )
        # /stats on a side port is overkill for an experiment: serve it with aiohttp on port+0.
        app = web.Application()

        async def get_stats(request: web.Request) -> web.Response:
            return web.json_response(stats.as_dict())

        app.router.add_get("/stats", get_stats)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, args.host, 0).start()
        ready(server.sockets[0].getsockname()[1])
        print(f"STATS {runner.addresses[0][1]}", flush=True)
        try:
            await wait_for_signal()
        finally:
            server.close()
            await receiver.aclose()
            await runner.cleanup()

    run(serve, use_uvloop=args.uvloop)


if __name__ == "__main__":
    main()
