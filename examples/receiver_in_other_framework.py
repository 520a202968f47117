"""Bring your own web framework: the receiver is one framework-neutral call.

``await receiver.handle(body, headers)`` takes the raw body bytes and the request headers and
returns a ``WebhookResponse(status, body, content_type)`` to copy onto your framework's
response.  That is the whole integration; in Starlette or FastAPI it reads::

    @app.post("/webhook")
    async def webhook(request: Request) -> Response:
        answer = await receiver.handle(await request.body(), request.headers)
        return Response(answer.body, answer.status, media_type=answer.content_type)

To stay dependency-free this example plugs it into the smallest "framework" there is: a bare
asyncio HTTP/1.1 server (no keep-alive, no chunked bodies: not for production).  Call
``await receiver.aclose()`` when your app shuts down, so queued handlers finish.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus

from _platform import platform

from ultimate_async import Conversation, WebhookReceiver


async def webhook_endpoint(
    receiver: WebhookReceiver, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """One HTTP exchange: parse the request, let the receiver answer, write the response."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.split(":", 1) for line in lines if line)
        headers = {name.strip(): value.strip() for name, value in headers.items()}
        length = int(next((v for k, v in headers.items() if k.lower() == "content-length"), 0))
        body = await reader.readexactly(length)

        method, path, _ = request_line.split(" ", 2)
        if (method, path) == ("POST", "/webhook"):
            answer = await receiver.handle(body, headers)  # <- the whole integration
            status, payload, content_type = answer.status, answer.body, answer.content_type
        else:
            status, payload, content_type = 404, b"not found", "text/plain"

        writer.write(
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(payload)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + payload
        )
        await writer.drain()
    finally:
        writer.close()


async def main() -> None:
    async with platform() as target, target.session() as session:
        receiver = WebhookReceiver(target.verifier)
        server = await asyncio.start_server(
            lambda r, w: webhook_endpoint(receiver, r, w), target.host, target.port
        )
        host, port = server.sockets[0].getsockname()[:2]
        target.webhook_is(f"http://{host}:{port}/webhook")
        try:
            async with Conversation(session, receiver) as conv:
                welcome = await conv.start()
                print(f"bot> {welcome.text}")
                print("visitor> Where is my order?")
                reply = await conv.ask("Where is my order?")
                print(f"bot> {reply.text}")
        finally:
            await receiver.aclose()  # drain queued handlers, then stop accepting
            server.close()
            await server.wait_closed()
    print("done: every delivery went through receiver.handle()")


if __name__ == "__main__":
    asyncio.run(main())
