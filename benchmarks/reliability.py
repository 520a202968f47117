"""Reliability workloads for ultimate_async: hostile input, a soak on the simulator, the figures.

``python -m benchmarks.reliability`` (``make reliability``) runs the long versions and writes
its section of ``benchmarks/RELIABILITY.md`` (the other sections, ``benchmarks/durability.py``'s
among them, are kept); ``--quick`` runs short and writes only to an explicit ``--output``
(``make reliability RELIABILITY_ARGS="--quick --output /tmp/r.md"``).  ``tests/reliability/``
runs short versions of the same code in ``make test``.  Everything here talks only to 127.0.0.1.

Two workloads:

* **hostile input** - arbitrary bytes, arbitrary JSON, deep nesting, huge numbers and strings,
  one field of every fixture payload replaced by a value of another JSON type, odd encodings
  and content types - thrown at ``WebhookReceiver.handle()`` and at a real HTTP port.  Every
  answer must be 200 or a 400/401/413 refusal with a reason; never a 5xx, an exception or a
  handler left running.
* **soak** - many concurrent :class:`~ultimate_async.Conversation` s talk to the simulator
  through a real :class:`~ultimate_async.webhook.WebhookServer`, with duplicate deliveries,
  delivery latency jitter and 429/503 answers on the API.  Every distinct bot message must be
  seen exactly once and in order per conversation, both by its ``Conversation`` (an observer)
  and by the catch-all ``on_message`` handler (observers never steal); afterwards no task,
  per-conversation state or memory may be left behind.
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import collections
import gc
import json
import logging
import os
import platform
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs

from ultimate_async.testing import observe_all
from ultimate_async.webhook import WebhookReceiver, WebhookServer
from ultimate_async.webhook.verify import HmacSignature, NoVerification, Verifier

__all__ = [
    "FIXTURES",
    "REFUSALS",
    "HostileTally",
    "HttpAnswer",
    "SoakConfig",
    "SoakResult",
    "answer_problem",
    "benign_receiver",
    "encoded_variants",
    "fixture_payloads",
    "mutated_payloads",
    "nested",
    "raw_post",
    "run_soak",
]

REPO = Path(__file__).resolve().parents[1]
#: The webhook sample payloads the test suite uses too (``WEBHOOK_FIXTURES`` in tests/conftest.py).
FIXTURES = REPO / "tests" / "fixtures" / "webhooks"

#: The only statuses a refusal may have; every other answer must be a 200.
REFUSALS = frozenset({400, 401, 413})

# --------------------------------------------------------------------------- hostile input


def fixture_payloads() -> dict[str, Any]:
    """Every valid fixture payload by file name (they must all be accepted with 200)."""
    return {
        path.name: json.loads(path.read_text("utf-8")) for path in sorted(FIXTURES.glob("*.json"))
    }


#: One value of each JSON type; a field is replaced by every type it does not already have.
OTHER_TYPES: Mapping[str, Any] = {
    "null": None,
    "bool": True,
    "int": 7,
    "float": -1.5e300,
    "string": "x",
    "list": [1, "a"],
    "object": {"k": "v"},
}


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object"


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a value inside ``value`` (object keys and list indexes), depth first."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*prefix, index)
            yield from _paths(item, (*prefix, index))


def _replaced(payload: Any, path: tuple[Any, ...], value: Any) -> Any:
    copy = json.loads(json.dumps(payload))
    target = copy
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return copy


def mutated_payloads() -> Iterator[tuple[str, Any]]:
    """Each fixture with one field replaced by a value of each other JSON type.

    Yields ``(label, payload)``; the label names the fixture, the path and the new type.
    """
    for name, payload in fixture_payloads().items():
        for path in _paths(payload):
            target = payload
            for step in path:
                target = target[step]
            current = _json_type(target)
            for type_name, value in OTHER_TYPES.items():
                if type_name == current or {type_name, current} == {"int", "float"}:
                    continue
                where = ".".join(str(p) for p in path)
                yield f"{name}:{where}<-{type_name}", _replaced(payload, path, value)


def nested(depth: int, kind: str = "list", inner: bytes = b"1") -> bytes:
    """``depth`` levels of ``[`` or ``{"a":`` around ``inner`` (cheap even for huge depths)."""
    if kind == "list":
        return b"[" * depth + inner + b"]" * depth
    return b'{"a":' * depth + inner + b"}" * depth


#: Where deep nesting is planted inside otherwise valid payloads.
NESTING_SITES: Mapping[str, Callable[[bytes], bytes]] = {
    "top": lambda deep: deep,
    "data": lambda deep: b'{"botId":"b","data":' + deep + b"}",
    "message_text": lambda deep: (
        b'{"data":{"eventType":"sendMessage","platformConversationId":"c","text":' + deep + b"}}"
    ),
    "buttons": lambda deep: (
        b'{"data":{"eventType":"sendMessage","platformConversationId":"c","buttons":' + deep + b"}}"
    ),
    "action_value": lambda deep: (
        b'{"name":"n","platformConversationId":"c","data":[{"key":"k","value":' + deep + b"}]}"
    ),
    "alert_data": lambda deep: b'{"botName":"b","event":"e","data":{"x":' + deep + b"}}",
}

#: Encodings a misconfigured sender might use; the receiver expects UTF-8 JSON.
ENCODINGS = ("utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "latin-1", "cp1252")


def encoded_variants(payload: Any) -> Iterator[tuple[str, bytes]]:
    """``payload`` (with some non-ASCII text) in odd encodings, plus invalid UTF-8 bodies."""
    text = json.dumps(_with_accents(payload), ensure_ascii=False)
    for encoding in ENCODINGS:
        try:
            yield encoding, text.encode(encoding)
        except UnicodeEncodeError:  # pragma: no cover - the accents fit every listed codec
            continue
    yield "bom+utf-16", codecs.BOM_UTF16_LE + text.encode("utf-16-le")
    utf8 = text.encode("utf-8")
    yield "invalid-utf8-in-string", utf8.replace("é".encode(), b"\xff\xfe", 1)
    yield "truncated-utf8", utf8.replace("é".encode(), b"\xc3", 1)
    yield "overlong-utf8", utf8.replace(b'"', b"\xc0\xa2", 1)
    yield "surrogate-utf8", utf8.replace("é".encode(), b"\xed\xa0\x80", 1)
    yield "escaped-lone-surrogate", utf8.replace("é".encode(), b"\\ud800", 1)
    yield "nul-bytes", utf8.replace(b"{", b"{\x00", 1)


def _with_accents(payload: Any) -> Any:
    """A copy whose string values carry non-ASCII text (so the encoding matters)."""
    if isinstance(payload, dict):
        return {k: _with_accents(v) for k, v in payload.items()}
    if isinstance(payload, list):
        return [_with_accents(v) for v in payload]
    if isinstance(payload, str) and payload and payload not in _KEEP:
        return payload + " café ñ"
    return payload


#: Discriminator values that must stay intact for the payload to keep its kind.
_KEEP = frozenset(
    {
        "sendMessage",
        "escalate",
        "isTeamOnline",
        "widgetEscalate",
        "widgetMessage",
        "widgetEndSession",
        "text",
        "carousel",
        "button",
        "link",
        "chat",
    }
)

#: Content types a delivery may claim; the receiver must not care.
CONTENT_TYPES = (
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=utf-16",
    "application/json; charset=latin-1",
    "text/plain",
    "text/html; charset=iso-8859-1",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "application/octet-stream",
    "",
    "garbage/;;;=",
    "application/json; charset=\u00e9",
)


def answer_problem(status: int, body: bytes, content_type: str = "") -> str | None:
    """Why an answer to hostile input is unacceptable, or ``None`` when it is fine.

    Fine: any 200, or a 400/401/413 whose JSON body names an ``error`` (400: with reasons).
    Over HTTP, aiohttp itself refuses malformed requests (bad header bytes, broken framing)
    with a plain-text 400 before the receiver sees them; that is fine too when it says why.
    """
    if status == 200:
        return None
    if status not in REFUSALS:
        return f"status {status}"
    if status == 400 and content_type.startswith("text/plain") and body.strip():
        return None
    try:
        parsed = json.loads(body)
    except ValueError:
        return f"{status} without a JSON reason: {body[:80]!r}"
    if not isinstance(parsed, dict) or not isinstance(parsed.get("error"), str):
        return f"{status} without an error message: {body[:80]!r}"
    if status == 400:
        reasons = parsed.get("reasons")
        if (
            not isinstance(reasons, list)
            or not reasons
            or not all(isinstance(r, str) and r for r in reasons)
        ):
            return f"400 without field-level reasons: {body[:120]!r}"
    return None


@attrs.define
class HostileTally:
    """What hostile input produced: answers by status and the problems seen."""

    tried: int = 0
    statuses: collections.Counter[int] = attrs.field(factory=collections.Counter)
    problems: list[str] = attrs.field(factory=list)

    def record(self, label: str, status: int, body: bytes, content_type: str = "") -> None:
        """Count one answer (``content_type`` only for answers that came over HTTP)."""
        self.tried += 1
        self.statuses[status] += 1
        problem = answer_problem(status, body, content_type)
        if problem is not None and len(self.problems) < 50:
            self.problems.append(f"{label}: {problem}")

    def record_exception(self, label: str, exc: BaseException) -> None:
        self.tried += 1
        self.statuses[-1] += 1
        if len(self.problems) < 50:
            self.problems.append(f"{label}: raised {type(exc).__name__}: {str(exc)[:100]}")

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500 or status < 0)


def benign_receiver(
    verifier: Verifier | None = None, **kwargs: Any
) -> tuple[WebhookReceiver, collections.Counter[str]]:
    """A receiver with a well-behaved handler for every event kind, and what they saw.

    Hostile input must never turn into a 5xx by itself: the handlers here never fail, so any
    5xx or exception is the receiver's own.
    """
    receiver = WebhookReceiver(verifier if verifier is not None else NoVerification(), **kwargs)
    seen: collections.Counter[str] = collections.Counter()

    def note(event: Any, ctx: Any) -> None:
        seen[type(event).__name__] += 1

    observe_all(receiver, note)
    return receiver, seen


@attrs.frozen
class HttpAnswer:
    status: int
    headers: Mapping[str, str]
    body: bytes


async def raw_post(
    host: str,
    port: int,
    path: str,
    body: bytes,
    headers: Sequence[tuple[bytes, bytes]] = (),
    *,
    chunked: bool = False,
    content_length: int | None = None,
    timeout: float = 10.0,  # noqa: ASYNC109
) -> HttpAnswer:
    """POST over a raw socket, so headers may hold any bytes and the framing may lie.

    ``content_length`` overrides the announced length; ``chunked`` sends the body in chunks.
    """
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            head = [f"POST {path} HTTP/1.1".encode(), f"Host: {host}:{port}".encode()]
            head.append(b"Connection: close")
            if chunked:
                head.append(b"Transfer-Encoding: chunked")
            else:
                length = len(body) if content_length is None else content_length
                head.append(b"Content-Length: " + str(length).encode())
            head.extend(name + b": " + value for name, value in headers)
            writer.write(b"\r\n".join(head) + b"\r\n\r\n")
            try:
                if chunked:
                    for start in range(0, len(body), 4096):
                        chunk = body[start : start + 4096]
                        writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                        await writer.drain()
                    writer.write(b"0\r\n\r\n")
                else:
                    writer.write(body)
                await writer.drain()
            except ConnectionError:  # the server answered early (e.g. 413) and closed
                pass
            return await _read_answer(reader)
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass


async def _read_answer(reader: asyncio.StreamReader) -> HttpAnswer:
    """Read one HTTP/1.1 response without waiting for the connection to close."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        return HttpAnswer(-1, {}, exc.partial)
    lines = head[:-4].split(b"\r\n")
    if not lines[0].startswith(b"HTTP/1."):
        return HttpAnswer(-1, {}, head)
    status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            body += await reader.readexactly(size + 2)
            body = body[:-2]
        return HttpAnswer(status, headers, body)
    length = int(headers.get("content-length", "0"))
    return HttpAnswer(status, headers, await reader.readexactly(length))


# --------------------------------------------------------------------------- strategies
#
# Hypothesis strategies shared by the tests (moderate example counts) and the long run.


def strategies() -> Any:
    """The hypothesis strategies, built lazily so importing this module stays cheap.

    Returns a namespace with ``bodies`` (``(label, bytes)``: any hostile body),
    ``json_documents`` (arbitrary JSON values), ``envelopes`` (chat-envelope-shaped objects
    with arbitrary field values) and ``content_types``.
    """
    from hypothesis import strategies as st

    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.integers(min_value=-(10**400), max_value=10**400)
        | st.floats(allow_nan=True, allow_infinity=True)
        | st.text()
        | st.text(alphabet=st.characters(codec="utf-8"), max_size=50)
    )
    json_values = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
        max_leaves=25,
    )
    fields = [
        "platformConversationId",
        "type",
        "text",
        "buttons",
        "carouselCards",
        "replyId",
        "messageId",
        "confidence",
        "escalateTo",
        "teamId",
        "conversationId",
    ]
    event_types = st.sampled_from(
        [
            "sendMessage",
            "escalate",
            "isTeamOnline",
            "widgetEscalate",
            "widgetMessage",
            "widgetEndSession",
        ]
    ) | st.text(max_size=20)
    data_objects = st.fixed_dictionaries(
        {"eventType": event_types},
        optional={name: json_values for name in fields},
    )
    envelopes = st.fixed_dictionaries(
        {"data": data_objects}, optional={"botId": json_values, "channel": json_values}
    )
    flat = st.fixed_dictionaries(
        {},
        optional={
            "botId": json_values,
            "name": st.text(max_size=10) | json_values,
            "data": st.lists(
                st.fixed_dictionaries(
                    {}, optional={"key": json_values, "value": json_values, "saveAs": json_values}
                ),
                max_size=3,
            )
            | json_values,
            "botName": json_values,
            "event": json_values,
            "conversationId": json_values,
            "platformConversationId": json_values,
            "predictedIntents": json_values,
            "attachments": json_values,
            "text": json_values,
        },
    )

    def encode(value: Any) -> bytes:
        return json.dumps(value, allow_nan=True).encode()

    fixtures = list(fixture_payloads().items())
    mutations = list(mutated_payloads())
    nesting = st.builds(
        lambda site, depth, kind: (
            f"nested:{site}:{kind}:{depth}",
            NESTING_SITES[site](nested(depth, kind)),
        ),
        st.sampled_from(sorted(NESTING_SITES)),
        st.integers(min_value=1, max_value=50_000),
        st.sampled_from(["list", "object"]),
    )
    huge = st.builds(
        lambda site, digits, sign, exp: (
            f"huge-number:{site}:{digits}",
            NESTING_SITES[site](sign + b"9" * digits + exp),
        ),
        st.sampled_from(["message_text", "buttons", "action_value", "alert_data"]),
        st.integers(min_value=1, max_value=6000),
        st.sampled_from([b"", b"-"]),
        st.sampled_from([b"", b".5", b"e999", b"e-999", b"E+4000"]),
    ) | st.builds(
        lambda size, char: (
            f"huge-string:{size}",
            b'{"data":{"eventType":"sendMessage","platformConversationId":"c","text":"'
            + char * size
            + b'"}}',
        ),
        st.integers(min_value=0, max_value=400_000),
        st.sampled_from([b"a", b"\\u00e9", b"\\\\", "\u2603".encode()]),
    )
    encodings = st.builds(
        _encoding_case, st.sampled_from(fixtures), st.integers(min_value=0, max_value=100)
    )
    bodies = st.one_of(
        st.binary(max_size=2048).map(lambda b: ("bytes", b)),
        json_values.map(lambda v: ("json", encode(v))),
        envelopes.map(lambda v: ("envelope", encode(v))),
        flat.map(lambda v: ("flat", encode(v))),
        st.sampled_from(mutations).map(lambda m: (f"mutation:{m[0]}", encode(m[1]))),
        nesting,
        huge,
        encodings,
    )
    return _Namespace(
        bodies=bodies,
        json_documents=json_values,
        envelopes=envelopes,
        content_types=st.sampled_from(CONTENT_TYPES) | st.text(max_size=30),
    )


def _encoding_case(item: tuple[str, Any], index: int) -> tuple[str, bytes]:
    variants = list(encoded_variants(item[1]))
    label, body = variants[index % len(variants)]
    return f"encoding:{item[0]}:{label}", body


@attrs.frozen
class _Namespace:
    bodies: Any
    json_documents: Any
    envelopes: Any
    content_types: Any


def example_count(default: int) -> int:
    """Hypothesis examples per test: ``default``, times ``ULTIMATE_RELIABILITY_SCALE``."""
    scale = float(os.environ.get("ULTIMATE_RELIABILITY_SCALE", "1"))
    return max(1, int(default * scale))


async def leftover_tasks(
    baseline: set[asyncio.Task[Any]],
    timeout: float = 2.0,  # noqa: ASYNC109
) -> list[asyncio.Task[Any]]:
    """Tasks started since ``baseline`` that are still alive after ``timeout`` seconds.

    Tasks that are merely finishing (a connection's last callbacks) get a moment to end.
    """
    current = asyncio.current_task()
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        extra = [
            t
            for t in asyncio.all_tasks()
            if t not in baseline and t is not current and not t.done()
        ]
        if not extra or asyncio.get_running_loop().time() >= deadline:
            return extra
        await asyncio.sleep(0.01)


def where(server: WebhookServer) -> tuple[str, int, str]:
    """``(host, port, path)`` of a started server (for :func:`raw_post`)."""
    from yarl import URL

    url = URL(server.url)
    assert url.host is not None and url.port is not None
    return url.host, url.port, url.raw_path


# --------------------------------------------------------------------------- soak


@attrs.frozen
class SoakConfig:
    """One soak run: ``conversations`` talk at once, each ``1 + turns * replies`` bot messages.

    Faults: ``duplicate_rate`` of the bot messages are delivered twice, every delivery waits
    ``latency`` (a uniform jitter), and ``error_rate`` of the API calls are refused with
    429/503 (``Retry-After: retry_after``) before the simulator processes them.
    """

    conversations: int = 200
    turns: int = 3
    replies: int = 3
    duplicate_rate: float = 0.15
    latency: tuple[float, float] = (0.0, 0.003)
    error_rate: float = 0.05
    retry_after: float | None = 0.01
    seed: int = 7
    settle: float = 0.05
    timeout: float = 20.0
    max_concurrency: int = 100

    @property
    def expected_per_conversation(self) -> int:
        return 1 + self.turns * self.replies


@attrs.define
class SoakResult:
    """What a soak run did and every violation of the guarantees it found (``problems``)."""

    config: SoakConfig
    seconds: float = 0.0
    api_calls: int = 0
    api_faults: int = 0
    delivered: int = 0
    distinct_messages: int = 0
    duplicates_injected: int = 0
    handled: int = 0
    handled_by_handler: int = 0
    handled_twice: int = 0
    lost: int = 0
    out_of_order: int = 0
    asks: int = 0
    ask_timeouts: int = 0
    delivery_failures: int = 0
    stray_events: int = 0
    leftover_tasks: int = 0
    leftover_fds: int = 0
    peak_rss: int = 0
    rss_before: int = 0
    rss_after: int = 0
    traced_growth: int | None = None
    traced_peak: int | None = None
    problems: list[str] = attrs.field(factory=list)

    def problem(self, text: str) -> None:
        if len(self.problems) < 30:
            self.problems.append(text)


def rss_bytes() -> int:
    """Current resident set size, from /proc (0 where there is no /proc)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # pragma: no cover - not Linux
        return 0


def peak_rss_bytes() -> int:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # pragma: no cover - not Linux
        return 0


async def run_soak(config: SoakConfig) -> SoakResult:
    """Run the whole loop under faults and check every guarantee; see :class:`SoakResult`.

    Nothing here asserts: every violation is appended to ``result.problems`` (a test asserts
    it is empty, the long run prints it).
    """
    from ultimate_async import RetryPolicy
    from ultimate_async.conversation import Conversation
    from ultimate_async.errors import ReplyTimeout
    from ultimate_async.session import Session
    from ultimate_async.simulator import Faults, ScriptedBot, Simulator, Text

    result = SoakResult(config)
    baseline_tasks = set(asyncio.all_tasks())
    fds_before = open_fds()
    secret = "soak-secret"
    bot = ScriptedBot(
        welcome=Text("welcome"),
        fallback=[Text(f"reply {k} to {{text}}") for k in range(config.replies)],
    )
    faults = Faults(
        latency=config.latency,
        duplicate_rate=config.duplicate_rate,
        error_rate=config.error_rate,
        retry_after=config.retry_after,
        seed=config.seed,
    )
    # The platform has no idempotency key: only 429/503 (refused before processing) are
    # retried; generous retries so a burst of injected faults cannot fail a call.
    retry = RetryPolicy(max_retries=10, backoff_base=0.01, backoff_max=0.2)
    receiver = WebhookReceiver(HmacSignature(secret), max_concurrency=config.max_concurrency)
    handled: dict[str, list[str]] = collections.defaultdict(list)
    # A Conversation observes and never steals: the catch-all handler sees every message too.
    by_handler: dict[str, list[str]] = collections.defaultdict(list)

    @receiver.on_message()
    async def catch_all(message: Any, ctx: Any) -> None:
        by_handler[ctx.platform_conversation_id].append(message.message_id)

    def note(cid: str, reply: Any) -> None:
        handled[cid].extend(m.message_id for m in reply.messages)

    async def talk(index: int, session: Session) -> None:
        cid = f"soak-{index}"
        async with Conversation(session, receiver, conversation_id=cid) as conv:
            note(cid, await conv.start(timeout=config.timeout, settle=config.settle))
            for turn in range(config.turns):
                result.asks += 1
                try:
                    note(cid, await conv.ask(f"t{turn}", config.timeout, config.settle))
                except ReplyTimeout:
                    result.ask_timeouts += 1
            # Replies that came after the last settle window: wait for the rest.
            while len(handled[cid]) < config.expected_per_conversation:
                try:
                    note(cid, await conv.receive(config.timeout, config.settle))
                except ReplyTimeout:
                    break

    started = time.perf_counter()
    result.rss_before = rss_bytes()
    async with (
        WebhookServer(receiver) as server,
        Simulator(
            bot,
            webhook_url=server.url,
            verifier=HmacSignature(secret),
            faults=faults,
            delivery_attempts=6,
        ) as sim,
        Session(sim.api_key, sim.bot_id, base_url=sim.base_url, retry=retry) as session,
    ):
        outcomes = await asyncio.gather(
            *(talk(i, session) for i in range(config.conversations)), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                result.problem(f"a conversation failed: {type(outcome).__name__}: {outcome}")
        await sim.wait_idle(timeout=config.timeout)
        if not await receiver.drain(timeout=config.timeout):
            result.problem("the receiver did not drain")
        result.seconds = time.perf_counter() - started
        result.peak_rss = peak_rss_bytes()
        _compare(result, sim, handled, by_handler)
        if sim.conversations:
            result.problem(f"simulator still has {len(sim.conversations)} live session(s)")
        if receiver.pending or receiver.active_conversations:
            result.problem(
                f"receiver not idle: {receiver.pending} pending, "
                f"{receiver.active_conversations} conversation queue(s)"
            )
        state = {name: len(getattr(receiver, name)) for name in ("_registrations", "_holds")}
        if any(state.values()):
            result.problem(f"per-conversation state left in the receiver: {state}")
    left = await leftover_tasks(baseline_tasks)
    result.leftover_tasks = len(left)
    if left:
        result.problem(f"{len(left)} task(s) left: {[t.get_coro() for t in left[:3]]}")
    result.leftover_fds = open_fds() - fds_before
    if result.leftover_fds > 0:
        result.problem(f"{result.leftover_fds} file descriptor(s) left open")
    gc.collect()
    result.rss_after = rss_bytes()
    return result


def _compare(
    result: SoakResult,
    sim: Any,
    handled: Mapping[str, list[str]],
    by_handler: Mapping[str, list[str]],
) -> None:
    """Check what the conversations and the catch-all handler saw against the simulator's
    delivery log: each must see every distinct bot message once, in order, and nothing else."""
    config = result.config
    expected: dict[str, list[str]] = collections.defaultdict(list)
    for record in sim.deliveries:
        if record.kind != "sendMessage":
            continue
        if not record.ok:
            result.delivery_failures += 1
            continue
        if not record.duplicate:
            expected[record.conversation_id].append(record.payload["data"]["messageId"])
    result.api_calls = sim.stats.api_requests
    result.api_faults = sim.stats.api_faults
    result.delivered = sim.stats.delivered
    result.duplicates_injected = sim.stats.duplicates
    result.distinct_messages = sum(len(ids) for ids in expected.values())
    result.handled = sum(len(ids) for ids in handled.values())
    result.handled_by_handler = sum(len(ids) for ids in by_handler.values())
    if result.delivery_failures:
        result.problem(f"{result.delivery_failures} delivery(ies) failed (no 2xx in the end)")
    for cid in sorted(set(expected) | set(handled) | set(by_handler)):
        sent = len(expected.get(cid, []))
        if sent != config.expected_per_conversation:
            result.problem(f"{cid}: the bot sent {sent} message(s), not the scripted ones")
    for seen_by, seen in (("conversation", handled), ("catch-all handler", by_handler)):
        for cid in sorted(set(expected) | set(seen)):
            want, got = expected.get(cid, []), seen.get(cid, [])
            twice = len(got) - len(set(got))
            missing = set(want) - set(got)
            stray = set(got) - set(want)
            result.handled_twice += twice
            result.lost += len(missing)
            result.stray_events += len(stray)
            if twice or missing or stray:
                result.problem(
                    f"{cid} ({seen_by}): {twice} handled twice, {len(missing)} lost, "
                    f"{len(stray)} never sent"
                )
            elif got != want:
                result.out_of_order += 1
                result.problem(f"{cid} ({seen_by}): handled out of order")


#: Python memory a finished soak may leave behind (one-time caches), whatever its size.
MEMORY_BOUND = 512 * 1024


async def run_soak_traced(config: SoakConfig) -> SoakResult:
    """:func:`run_soak` under ``tracemalloc``: Python memory after the run vs. before.

    Everything the run allocated must be gone once it is over (the receiver, simulator and
    session are closed and dropped): ``traced_growth`` is what survived.
    """
    gc.collect()
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    result = await run_soak(config)
    await asyncio.sleep(0)
    gc.collect()
    after, peak = tracemalloc.get_traced_memory()
    if not was_tracing:
        tracemalloc.stop()
    result.traced_growth = after - before
    result.traced_peak = peak - before
    if result.traced_growth > MEMORY_BOUND:
        result.problem(
            f"{result.traced_growth / 1048576:.1f} MiB of Python memory survived the run "
            f"(bound {MEMORY_BOUND / 1048576:.1f} MiB)"
        )
    return result


# --------------------------------------------------------------------------- the long run


def run_hostile(
    handle_examples: int, http_examples: int, *, seed: int | None = None
) -> HostileTally:
    """Hostile input at scale: the hypothesis strategies plus every exhaustive list.

    Runs synchronously (hypothesis drives the examples; each one runs on a private loop), so
    call it outside any running event loop.
    """
    import importlib

    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hypothesis_seed

    json_impl: Any = importlib.import_module("ultimate_async._json")  # swapped per backend
    S = strategies()
    tally = HostileTally()
    secret = "reliability-secret"
    with asyncio.Runner() as runner:
        receiver, _ = benign_receiver(max_body_size=2_000_000)
        signed, _ = benign_receiver(HmacSignature(secret), max_body_size=600_000)
        server = WebhookServer(signed)
        runner.run(server.start())
        host, port, path = where(server)

        def via_handle(label: str, body: bytes, headers: Mapping[str, str] | None = None) -> None:
            try:
                answer = runner.run(receiver.handle(body, headers or {}))
            except Exception as exc:
                tally.record_exception(label, exc)
            else:
                tally.record(label, answer.status, answer.body)

        def via_http(label: str, body: bytes, content_type: str, chunked: bool) -> None:
            headers = [
                (k.encode(), v.encode()) for k, v in HmacSignature.sign(body, secret).items()
            ]
            headers.append((b"Content-Type", content_type.encode("utf-8", "surrogateescape")))
            try:
                answer = runner.run(raw_post(host, port, path, body, headers, chunked=chunked))
            except Exception as exc:
                tally.record_exception(label, exc)
            else:
                ctype = answer.headers.get("content-type", "")
                tally.record(f"http:{label}", answer.status, answer.body, ctype)

        common = settings(deadline=None, database=None, suppress_health_check=list(HealthCheck))

        @settings(common, max_examples=handle_examples)
        @given(case=S.bodies)
        def handle_cases(case: tuple[str, bytes]) -> None:
            via_handle(*case)

        @settings(common, max_examples=http_examples)
        @given(case=S.bodies, content_type=S.content_types, chunked=S_booleans())
        def http_cases(case: tuple[str, bytes], content_type: str, chunked: bool) -> None:
            content_type = content_type.replace("\r", " ").replace("\n", " ")
            via_http(case[0], case[1], content_type, chunked)

        if seed is not None:
            handle_cases = hypothesis_seed(seed)(handle_cases)
            http_cases = hypothesis_seed(seed)(http_cases)
        saved = json_impl._orjson
        for backend in ("orjson", "stdlib") if saved is not None else ("stdlib",):
            json_impl._orjson = saved if backend == "orjson" else None
            try:
                for label, payload in mutated_payloads():
                    via_handle(f"mutation:{label}", json.dumps(payload).encode())
                for name, payload in fixture_payloads().items():
                    for label, body in encoded_variants(payload):
                        via_handle(f"encoding:{name}:{label}", body)
                for site, make in NESTING_SITES.items():
                    for kind in ("list", "object"):
                        for depth in (64, 1000, 1100, 5000, 100_000):
                            via_handle(f"nested:{site}:{kind}:{depth}", make(nested(depth, kind)))
                handle_cases()
            finally:
                json_impl._orjson = saved
        http_cases()
        oversized: list[tuple[str, bytes, dict[str, Any]]] = [
            ("announced-too-large", b"{}", {"content_length": 10_000_000}),
            ("too-large", b"x" * 700_000, {}),
            ("chunked-too-large", b"x" * 700_000, {"chunked": True}),
        ]
        for label, body, kwargs in oversized:
            answer = runner.run(raw_post(host, port, path, body, **kwargs))
            tally.record(f"http:{label}", answer.status, answer.body)
        if not runner.run(receiver.drain(timeout=10)) or not runner.run(signed.drain(timeout=10)):
            tally.problems.append("handlers still running after hostile input")
        runner.run(receiver.aclose())
        runner.run(server.aclose())
    return tally


def S_booleans() -> Any:
    from hypothesis import strategies as st

    return st.booleans()


def run_verifier_attacks() -> HostileTally:
    """Every verifier attack of ``tests/reliability/test_verifier_attacks.py``, counted."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "_verifier_attacks", REPO / "tests" / "reliability" / "test_verifier_attacks.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from ultimate_async.webhook.verify import SharedSecretHeader, UrlToken

    tally = HostileTally()

    async def attack() -> None:
        for verifier, cases in (
            (HmacSignature(module.SECRET), module.hmac_attacks()),
            (SharedSecretHeader(module.SECRET), module.header_attacks()),
        ):
            receiver = WebhookReceiver(verifier)
            for label, headers in cases.items():
                answer = await receiver.handle(module.BODY, headers)
                tally.record(label, answer.status, answer.body)
                if answer.status != 401:
                    tally.problems.append(f"{label}: {answer.status}, not 401")
            await receiver.aclose()
        receiver = WebhookReceiver(UrlToken(module.SECRET))
        for label, token in module.token_attacks().items():
            answer = await receiver.handle(module.BODY, {}, path_token=token)
            tally.record(label, answer.status, answer.body)
            if answer.status != 401:
                tally.problems.append(f"{label}: {answer.status}, not 401")
        await receiver.aclose()

    asyncio.run(attack())
    return tally


def machine() -> dict[str, str]:
    import aiohttp

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:  # pragma: no cover - not Linux
        pass
    import ultimate_async._json as json_impl

    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{cpu} ({os.cpu_count()} logical CPUs)",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "json": "orjson" if json_impl.orjson_available else "stdlib",
    }


def _mib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 1048576:.1f} MiB"


class _LogCounter(logging.Handler):
    """Counts log records by level instead of printing thousands of expected refusals."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.counts: collections.Counter[str] = collections.Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[f"{record.levelname} ({record.name})"] += 1


def report(
    hostile: HostileTally,
    attacks: HostileTally,
    soak: SoakResult,
    seconds: float,
    logs: Mapping[str, int] | None = None,
) -> str:
    """The figures as a Markdown document (also printed)."""
    m = machine()
    c = soak.config
    refusals = ", ".join(
        f"{status}: {n}" for status, n in sorted(hostile.statuses.items()) if status >= 0
    )
    rows = [
        ("Hostile inputs tried (handle() and HTTP)", f"{hostile.tried:,}"),
        ("Answers by status", refusals),
        ("5xx or unhandled exceptions (must be 0)", f"{hostile.server_errors}"),
        ("Refusals without a reason", f"{len(hostile.problems)}"),
        ("Verifier attacks tried / answered 401", f"{attacks.tried} / {attacks.statuses[401]}"),
        (
            "Soak: conversations x bot messages each",
            f"{c.conversations:,} x {c.expected_per_conversation}",
        ),
        ("Soak: events sent (distinct bot messages)", f"{soak.distinct_messages:,}"),
        ("Soak: webhook deliveries answered 2xx", f"{soak.delivered:,}"),
        (
            "Soak: duplicate deliveries injected",
            f"{soak.duplicates_injected:,} "
            f"({soak.duplicates_injected / max(1, soak.distinct_messages):.0%})",
        ),
        (
            "Soak: events seen by conversations / by the catch-all handler",
            f"{soak.handled:,} / {soak.handled_by_handler:,}",
        ),
        ("Soak: handled twice (must be 0)", f"{soak.handled_twice}"),
        ("Soak: lost (must be 0)", f"{soak.lost}"),
        ("Soak: conversations out of order (must be 0)", f"{soak.out_of_order}"),
        ("Soak: events seen that were never sent (must be 0)", f"{soak.stray_events}"),
        ("Soak: API calls / refused with 429-503", f"{soak.api_calls:,} / {soak.api_faults:,}"),
        (
            "Soak: ask() answered / timed out",
            f"{soak.asks - soak.ask_timeouts:,} / {soak.ask_timeouts}",
        ),
        (
            "Soak: tasks / file descriptors left",
            f"{soak.leftover_tasks} / {max(0, soak.leftover_fds)}",
        ),
        (
            "Soak: wall time",
            f"{soak.seconds:.1f} s "
            f"({soak.distinct_messages / max(soak.seconds, 1e-9):,.0f} events/s)",
        ),
        (
            "Memory: RSS before / peak / after",
            f"{_mib(soak.rss_before)} / {_mib(soak.peak_rss)} / {_mib(soak.rss_after)}",
        ),
        ("Memory: Python heap peak during the soak", _mib(soak.traced_peak)),
        ("Memory: Python heap left after the soak", _mib(soak.traced_growth)),
    ]
    if logs is not None:
        shown = ", ".join(f"{level}: {n:,}" for level, n in sorted(logs.items())) or "none"
        rows.append(("Log records (refusals are logged)", shown))
    width = max(len(k) for k, _ in rows)
    lines = [
        "# Reliability figures",
        "",
        "Produced by `make reliability` (`python -m benchmarks.reliability`); the same "
        "workloads run shorter in `make test` (`tests/reliability/`).",
        "",
        f"- Date: {m['date']}",
        f"- Machine: {m['cpu']}, {m['os']}",
        f"- Python {m['python']}, aiohttp {m['aiohttp']}, JSON: {m['json']} "
        "(hostile input also runs with the stdlib fallback)",
        f"- Total time: {seconds:.0f} s",
        "",
        "Soak faults: duplicate rate "
        f"{c.duplicate_rate:.0%}, delivery latency {c.latency[0] * 1000:.0f}-"
        f"{c.latency[1] * 1000:.0f} ms, {c.error_rate:.0%} of API calls refused with 429/503 "
        f"(Retry-After {c.retry_after}s), seed {c.seed}.",
        "",
        f"| {'Figure'.ljust(width)} | Value |",
        f"| {'-' * width} | ----- |",
        *(f"| {k.ljust(width)} | {v} |" for k, v in rows),
        "",
    ]
    problems = hostile.problems + attacks.problems + soak.problems
    if problems:
        lines += ["## Problems found", "", *(f"- {p}" for p in problems), ""]
    else:
        lines += ["No problem found.", ""]
    return "\n".join(lines)


#: This script's section of ``RELIABILITY.md``; other scripts (``benchmarks/durability.py``)
#: and people write theirs in the same file, each between its own markers, and rewriting
#: ours must leave theirs exactly as they were.
START = "<!-- reliability:start -->"
END = "<!-- reliability:end -->"
REPORT = REPO / "benchmarks" / "RELIABILITY.md"


def merged(existing: str | None, text: str) -> str:
    """``existing`` (the report file, or ``None``) with this script's section set to ``text``.

    Our section is the one between :data:`START` and :data:`END`.  In a file written before
    those markers existed, it is everything before the first other marker (``<!-- ...``), and
    it is put back at the top; everything else is kept byte for byte.
    """
    section = f"{START}\n{text.strip()}\n{END}\n"
    if not existing:
        return section
    start, end = existing.find(START), existing.find(END)
    if start != -1 and end > start:
        rest = existing[end + len(END) :].lstrip("\n")
        return existing[:start] + section + ("\n" + rest if rest else "")
    others = existing.find("<!-- ")
    if others == -1:  # the whole file is an old report of ours
        return section
    return section + "\n" + existing[others:]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (for trying it out)")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"the report to update (default: {REPORT.relative_to(REPO)}, not with --quick)",
    )
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    logs = _LogCounter()
    logging.getLogger().addHandler(logs)  # hostile input is logged; count it, do not print it
    quick = args.quick
    print("hostile input ...", flush=True)
    hostile = run_hostile(300 if quick else 4000, 100 if quick else 1500, seed=args.seed)
    print("verifier attacks ...", flush=True)
    attacks = run_verifier_attacks()
    print("soak ...", flush=True)
    config = (
        SoakConfig(conversations=200, turns=3, replies=3)
        if quick
        else SoakConfig(conversations=1000, turns=10, replies=2, timeout=60.0)
    )

    async def soak() -> SoakResult:
        await run_soak(SoakConfig(conversations=20, turns=1, replies=1))  # warm-up
        return await run_soak_traced(config)

    result = asyncio.run(soak())
    text = report(hostile, attacks, result, time.perf_counter() - started, logs.counts)
    print(text)
    output = args.output if args.output is not None or quick else REPORT
    if output is not None:
        existing = output.read_text("utf-8") if output.exists() else None
        output.write_text(merged(existing, text), "utf-8")
        print(f"written to {output} (other sections kept)")
    failed = hostile.server_errors or result.lost or result.handled_twice or attacks.problems
    return 1 if failed or result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
