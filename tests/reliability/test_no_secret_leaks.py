"""No secret in any log record, repr or error message, after a realistic flow at DEBUG level.

The flow: a conversation on the simulator with sanitized metadata and a sanitized action
result, a handler that raises, verification failures of every kind, API errors whose bodies
echo the request (key and sanitized values included), the legacy client with echoed
credentials.  Then every captured log record (message, arguments, traceback) and the repr /
str of every public object and raised error is scanned for the secret strings.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest
from aiohttp import web

from ultimate_async import RetryPolicy
from ultimate_async.conversation import Conversation
from ultimate_async.errors import APIError
from ultimate_async.inbox import HandlerRetry, Inbox, MemoryInbox, SqliteInbox
from ultimate_async.legacy import LegacyClient
from ultimate_async.models.outbound import ActionResult, MetaData
from ultimate_async.models.webhooks import ActionParam
from ultimate_async.session import Session
from ultimate_async.simulator import Action, Rule, ScriptedBot, Simulator
from ultimate_async.webhook import WebhookReceiver, WebhookServer
from ultimate_async.webhook.verify import (
    HmacSignature,
    NoVerification,
    SharedSecretHeader,
    UrlToken,
)

API_KEY = "sk-LEAK-apikey-5e1f9a"
WEBHOOK_SECRET = "whsec-LEAK-hmac-77c2d0"
HEADER_SECRET = "hdr-LEAK-shared-31aa"
URL_TOKEN = "tok-LEAK-url-9d0e"
SANITIZED_META = "SANITIZED-ssn-123-45-6789"
SANITIZED_RESULT = "SANITIZED-balance-4242"
SANITIZED_PARAM = "SANITIZED-card-4111"
BASIC_TOKEN = "bGVha3VzZXI6TEVBSy1wYXNzd29yZA=="
ACCESS_TOKEN = "acc-LEAK-token-0b7e"
REDIS_PASSWORD = "redis-LEAK-pw-6c6c"
SECRETS = (
    API_KEY,
    WEBHOOK_SECRET,
    HEADER_SECRET,
    URL_TOKEN,
    SANITIZED_META,
    SANITIZED_RESULT,
    SANITIZED_PARAM,
    BASIC_TOKEN,
    ACCESS_TOKEN,
    REDIS_PASSWORD,
)


def leaks(texts: Iterable[tuple[str, str]]) -> list[str]:
    """``where: secret`` for every secret found in the ``(where, text)`` pairs."""
    found = []
    for where, text in texts:
        for secret in SECRETS:
            if secret in text:
                found.append(f"{where}: contains {secret!r}")
    return found


def log_texts(records: Iterable[logging.LogRecord]) -> Iterable[tuple[str, str]]:
    for record in records:
        where = f"log {record.name}:{record.levelname}"
        yield where, record.getMessage()
        yield where + " args", repr(record.args)
        if record.exc_info and record.exc_info[1] is not None:
            yield where + " traceback", "".join(traceback.format_exception(record.exc_info[1]))
        if record.stack_info:
            yield where + " stack", record.stack_info


def error_texts(errors: Iterable[BaseException]) -> Iterable[tuple[str, str]]:
    for error in errors:
        name = type(error).__name__
        yield f"str({name})", str(error)
        yield f"repr({name})", repr(error)
        yield f"traceback({name})", "".join(traceback.format_exception(error))


@pytest.fixture
def echoed() -> list[str]:
    """The request bodies ``echo_api`` received, in order."""
    return []


@pytest.fixture
async def echo_api(echoed: list[str]) -> AsyncIterator[str]:
    """An API that refuses everything and echoes the request (headers and body) back."""

    async def echo(request: web.Request) -> web.Response:
        body = await request.text()
        echoed.append(body)
        auth = request.headers.get("Authorization", "")
        status = 401 if request.path.endswith("/intents") else 400
        return web.Response(status=status, text=f"refused: auth={auth} body={body}")

    app = web.Application()
    app.router.add_post("/{tail:.*}", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}"
    await runner.cleanup()


def _bot() -> ScriptedBot:
    return ScriptedBot(
        welcome="Hello!",
        rules=[
            Rule(
                "balance",
                [
                    Action("getBalance", params={"user": "{user|none}"}),
                    "Your balance is ready.",
                ],
            ),
            Rule("crash", ["This reply meets a failing handler."]),
        ],
    )


async def test_no_secret_in_logs_reprs_or_errors(
    caplog: pytest.LogCaptureFixture, echo_api: str
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    contexts: list[Any] = []
    events: list[Any] = []

    # a failing handler is retried once (a WARNING), then is a dead letter (an ERROR)
    receiver = WebhookReceiver(
        HmacSignature(WEBHOOK_SECRET), retry=HandlerRetry(max_attempts=2, backoff_base=0.01)
    )

    @receiver.on_action("getBalance")
    async def balance(call: Any, ctx: Any) -> list[ActionResult]:
        contexts.append(ctx)
        events.append(call)
        return [ActionResult("balance", SANITIZED_RESULT, sanitize=True)]

    @receiver.on_error()
    async def on_error(error: BaseException, event: Any, ctx: Any) -> None:
        errors.append(error)

    async with (
        WebhookServer(receiver) as server,
        Simulator(
            _bot(), webhook_url=server.url, verifier=HmacSignature(WEBHOOK_SECRET), api_key=API_KEY
        ) as sim,
        Session(API_KEY, sim.bot_id, base_url=sim.base_url) as session,
    ):
        # 1. a conversation with sanitized metadata and a sanitized action result
        async with Conversation(session, receiver) as conv:
            await conv.start(
                metadata=[MetaData("ssn", SANITIZED_META, sanitize=True)], timeout=5, settle=0.05
            )
            await conv.send_metadata(
                [MetaData("card", SANITIZED_PARAM, sanitize=True), MetaData("user", "u-1")]
            )
            reply = await conv.ask("my balance please", timeout=5, settle=0.05)
            assert "balance is ready" in reply.text
            # 2. a handler that raises (the conversation's observer), with the event in hand
            crash = RuntimeError("handler failed on purpose")

            async def failing(event: Any, ctx: Any) -> None:
                contexts.append(ctx)
                raise crash

            receiver.on_message(conversation_id="conv-crash")(failing)
            await sim.push_message("conv-crash", "hello")
            assert await receiver.drain(timeout=5)
            assert errors.count(crash) == 1  # once, after the last attempt
        await sim.wait_idle(timeout=5)

        # 3. verification failures of every kind, over HTTP
        import aiohttp

        body = b'{"data":{"eventType":"sendMessage","platformConversationId":"x"}}'
        good = HmacSignature.sign(body, WEBHOOK_SECRET)
        attempts = [
            {},
            {"X-Ultimate-Signature": "", "X-Ultimate-Timestamp": ""},
            {**good, "X-Ultimate-Signature": good["X-Ultimate-Signature"][:-4]},
            HmacSignature.sign(b"another body", WEBHOOK_SECRET),
            HmacSignature.sign(body, WEBHOOK_SECRET, timestamp=1),
            HmacSignature.sign(body, WEBHOOK_SECRET + "x"),
            {"X-Ultimate-Signature": f"sha256={WEBHOOK_SECRET}", "X-Ultimate-Timestamp": "1"},
            {"Authorization": f"Bearer {WEBHOOK_SECRET}"},
        ]
        async with aiohttp.ClientSession() as http:
            for headers in attempts:
                async with http.post(server.url, data=body, headers=headers) as resp:
                    assert resp.status == 401
                    assert WEBHOOK_SECRET not in await resp.text()

    # 4. other verifiers refusing, in-process
    for verifier, headers, token in [
        (SharedSecretHeader(HEADER_SECRET), {"Authorization": HEADER_SECRET[:-1]}, None),
        (
            SharedSecretHeader(HEADER_SECRET),
            {"Authorization": "Bearer " + HEADER_SECRET + "!"},
            None,
        ),
        (UrlToken(URL_TOKEN), {}, URL_TOKEN[:-1]),
        (UrlToken(URL_TOKEN), {}, URL_TOKEN + "/x"),
    ]:
        other = WebhookReceiver(verifier)
        answer = await other.handle(body, headers, path_token=token)
        assert answer.status == 401
        await other.aclose()

    # 5. API errors whose bodies echo the key (and the request)
    async with Session(API_KEY, "bot", base_url=echo_api, retry=RetryPolicy.none()) as failing_api:
        for call in (
            failing_api.chat.start_session("c1"),
            failing_api.chat.send_message("c1", "hi"),
            failing_api.widget.agent_message("c1", "hi"),
        ):
            with pytest.raises(APIError) as caught:
                await call
            assert "***" in str(caught.value)  # the echoed key was there, and masked
            errors.append(caught.value)
    async with LegacyClient(
        basic_token=BASIC_TOKEN, access_token=ACCESS_TOKEN, base_url=echo_api
    ) as legacy:
        for legacy_call in (
            legacy.automation("bot", "c1", "startSession"),
            legacy.intents("bot", "hi"),
        ):
            with pytest.raises(APIError) as caught:
                await legacy_call
            errors.append(caught.value)

    # 6. every public object's repr
    objects: list[Any] = [
        Session(API_KEY, "bot"),
        LegacyClient(basic_token=BASIC_TOKEN, access_token=ACCESS_TOKEN),
        LegacyClient(email="leakuser", password="LEAK-password"),
        receiver,
        server,
        sim,
        HmacSignature([WEBHOOK_SECRET, WEBHOOK_SECRET + "2"]),
        SharedSecretHeader(HEADER_SECRET),
        UrlToken(URL_TOKEN),
        NoVerification(),
        MetaData("ssn", SANITIZED_META, sanitize=True),
        ActionResult("balance", SANITIZED_RESULT, sanitize=True),
        ActionParam("card", [SANITIZED_PARAM], None, True),
        *contexts,
        *events,
    ]
    try:
        from ultimate_async.redis import RedisDeduplicator, RedisEventBus
    except ImportError:  # pragma: no cover - the redis extra is part of dev
        pass
    else:
        url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:1/0"
        dedup, bus = RedisDeduplicator(url), RedisEventBus(url)
        objects += [dedup, bus, WebhookReceiver(NoVerification(), dedup=dedup, bus=bus)]
    reprs = [(f"repr({type(o).__name__})", repr(o)) for o in objects]
    reprs += [(f"str({type(o).__name__})", str(o)) for o in objects]
    for closable in objects[-3:] if len(objects) > 15 else ():
        await closable.aclose()

    assert contexts and events and len(errors) >= 6
    messages = [record.getMessage() for record in caplog.records]
    # the retry and the dead letter were logged, so their records are scanned below
    assert any("retrying in" in text for text in messages)
    assert any("is a dead letter" in text for text in messages)
    await asyncio.sleep(0)
    found = leaks([*log_texts(caplog.records), *reprs, *error_texts(errors)])
    assert found == [], "\n".join(found)


async def test_api_errors_echoing_the_request_hide_sanitized_values(
    caplog: pytest.LogCaptureFixture, echo_api: str, echoed: list[str]
) -> None:
    """A server that echoes the request in its error must not put PII into our exception.

    ``sanitize=True`` values are sent (the platform needs them), but like the API key they
    must not reappear in an ``APIError`` message, repr or traceback (BRIEF: secrets and
    sanitize=True values never in logs, reprs or exception messages).
    """
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    async with Session(API_KEY, "bot", base_url=echo_api, retry=RetryPolicy.none()) as api:
        for call in (
            api.chat.start_session("c1", metadata=[MetaData("ssn", SANITIZED_META, sanitize=True)]),
            api.chat.send_message(
                "c1", "hi", metadata=[MetaData("card", SANITIZED_PARAM, sanitize=True)]
            ),
            api.chat.send_metadata("c1", [MetaData("ssn", SANITIZED_META, sanitize=True)]),
            api.tickets.send("c1", "hi", metadata=[MetaData("ssn", SANITIZED_META, sanitize=True)]),
        ):
            with pytest.raises(APIError) as caught:
                await call
            # the echoed metadata reached the error, with the sanitized value masked
            assert '"sanitize":true' in str(caught.value)
            assert '"value":"***"' in str(caught.value)
            errors.append(caught.value)
    # the values really were sent (and so echoed back): the check below is not vacuous
    assert len(echoed) == 4
    assert all(SANITIZED_META in echoed[i] for i in (0, 2, 3)) and SANITIZED_PARAM in echoed[1]
    found = leaks([*log_texts(caplog.records), *error_texts(errors)])
    assert found == [], "\n".join(found)


@pytest.mark.parametrize("store", ["memory", "sqlite"])
async def test_retries_and_dead_letters_leak_no_secret(
    caplog: pytest.LogCaptureFixture, echo_api: str, echoed: list[str], tmp_path: Any, store: str
) -> None:
    """A handler failing on an API call whose error echoes the key and sanitized values.

    Every attempt is logged (WARNING), the dead letter too (ERROR, with the traceback), the
    error goes to ``on_error`` and its one-line description into ``DeadLetter.last_error``
    (for a durable inbox, into the file): none of them may carry a secret.
    """
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    inbox: Inbox = MemoryInbox() if store == "memory" else SqliteInbox(tmp_path / "inbox.db")
    receiver = WebhookReceiver(
        HmacSignature(WEBHOOK_SECRET),
        inbox=inbox,
        retry=HandlerRetry(max_attempts=3, backoff_base=0.01, backoff_max=0.02),
    )

    @receiver.on_message()
    async def forward(msg: Any, ctx: Any) -> None:
        async with Session(API_KEY, "bot", base_url=echo_api, retry=RetryPolicy.none()) as api:
            await api.chat.send_message(
                "c1", msg.text, metadata=[MetaData("card", SANITIZED_PARAM, sanitize=True)]
            )

    @receiver.on_error()
    async def on_error(error: BaseException, event: Any, ctx: Any) -> None:
        errors.append(error)

    body = (
        b'{"botId":"b","data":{"eventType":"sendMessage","platformConversationId":"c1",'
        b'"type":"text","text":"hello","messageId":"m1"}}'
    )
    answer = await receiver.handle(body, HmacSignature.sign(body, WEBHOOK_SECRET))
    assert answer.status == 200
    assert await receiver.drain(timeout=5)
    # three attempts reached the API (the key and the sanitized value were echoed each time)
    assert len(echoed) == 3 and all(SANITIZED_PARAM in text for text in echoed)
    assert len(errors) == 1 and isinstance(errors[0], APIError)
    dead = [letter async for letter in receiver.inbox.dead_letters()]
    assert len(dead) == 1 and dead[0].attempts == 3
    # the echo reached the description, masked: the scan below is not vacuous
    assert dead[0].last_error.startswith("BadRequestError: POST ")
    assert "auth=***" in dead[0].last_error and '"value":"***"' in dead[0].last_error
    messages = [record.getMessage() for record in caplog.records]
    assert sum("retrying in" in text for text in messages) == 2
    assert sum("is a dead letter" in text for text in messages) == 1
    letters = [("DeadLetter.last_error", dead[0].last_error), ("repr(DeadLetter)", repr(dead[0]))]
    await receiver.aclose()
    stored: list[tuple[str, str]] = []
    if store == "sqlite":
        stored = [
            (f"file {path.name}", path.read_bytes().decode("utf-8", "replace"))
            for path in tmp_path.iterdir()
        ]
        assert stored
    found = leaks([*log_texts(caplog.records), *error_texts(errors), *letters, *stored])
    assert found == [], "\n".join(found)
