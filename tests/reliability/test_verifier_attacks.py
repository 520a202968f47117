"""Attacks on the verifiers: all 401 with a generic body, nothing useful logged, constant time.

Constant time is checked structurally (every check goes through ``hmac.compare_digest``,
against every secret, with no early exit), not by measuring timings.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote_from_bytes

import pytest

from benchmarks.reliability import raw_post, where
from ultimate_async.errors import SignatureError
from ultimate_async.webhook import WebhookReceiver, WebhookServer
from ultimate_async.webhook.verify import HmacSignature, SharedSecretHeader, UrlToken, Verifier

SECRET = "vr-SECRET-0123456789abcdef"
OTHER = "vr-OTHER-fedcba9876543210"
MARKER = "BODY-MARKER-5150"
BODY = json.dumps(
    {
        "botId": "b",
        "data": {
            "eventType": "sendMessage",
            "platformConversationId": "c",
            "text": MARKER,
            "messageId": "m-1",
        },
    }
).encode()
UNAUTHORIZED = b'{"error":"unauthorized"}'


def expected_signature(body: bytes, timestamp: str, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def hmac_attacks() -> dict[str, dict[str, str]]:
    now = int(time.time())  # at call time: a module-level "now" ages while the suite runs
    good = HmacSignature.sign(BODY, SECRET, timestamp=now)
    ts, sig = good["X-Ultimate-Timestamp"], good["X-Ultimate-Signature"]
    hexdigest = sig.removeprefix("sha256=")
    return {
        "missing-both": {},
        "missing-signature": {"X-Ultimate-Timestamp": ts},
        "missing-timestamp": {"X-Ultimate-Signature": sig},
        "empty-both": {"X-Ultimate-Timestamp": "", "X-Ultimate-Signature": ""},
        "empty-value": {"X-Ultimate-Timestamp": ts, "X-Ultimate-Signature": "sha256="},
        "no-scheme": {"X-Ultimate-Timestamp": ts, "X-Ultimate-Signature": hexdigest},
        "wrong-scheme": {"X-Ultimate-Timestamp": ts, "X-Ultimate-Signature": f"md5={hexdigest}"},
        "truncated": {"X-Ultimate-Timestamp": ts, "X-Ultimate-Signature": sig[:-1]},
        "extended": {"X-Ultimate-Timestamp": ts, "X-Ultimate-Signature": sig + "0"},
        "not-hex": {"X-Ultimate-Timestamp": ts, "X-Ultimate-Signature": "sha256=" + "z" * 64},
        "flipped-bit": {
            "X-Ultimate-Timestamp": ts,
            "X-Ultimate-Signature": "sha256="
            + ("1" if hexdigest[0] == "0" else "0")
            + hexdigest[1:],
        },
        "other-secret": HmacSignature.sign(BODY, OTHER),
        "secret-prefix": HmacSignature.sign(BODY, SECRET[:-1]),
        "secret-extended": HmacSignature.sign(BODY, SECRET + "x"),
        "one-char-secret": HmacSignature.sign(BODY, "x"),
        "long-secret": HmacSignature.sign(BODY, SECRET * 100),
        "other-body": HmacSignature.sign(BODY + b" ", SECRET),
        "stale": HmacSignature.sign(BODY, SECRET, timestamp=now - 330),
        "future": HmacSignature.sign(BODY, SECRET, timestamp=now + 330),
        "epoch": HmacSignature.sign(BODY, SECRET, timestamp=0),
        "timestamp-swapped": {"X-Ultimate-Timestamp": str(now - 1), "X-Ultimate-Signature": sig},
        "negative-timestamp": {"X-Ultimate-Timestamp": "-1", "X-Ultimate-Signature": sig},
        "huge-timestamp": {"X-Ultimate-Timestamp": "9" * 40, "X-Ultimate-Signature": sig},
        "fullwidth-digits": {
            "X-Ultimate-Timestamp": "\uff11\uff12\uff13",
            "X-Ultimate-Signature": sig,
        },
        "non-ascii-signature": {"X-Ultimate-Timestamp": ts, "X-Ultimate-Signature": "sha256=é"},
        "surrogate-signature": {"X-Ultimate-Timestamp": ts, "X-Ultimate-Signature": "\udcff"},
        "the-secret-itself": {"X-Ultimate-Timestamp": ts, "X-Ultimate-Signature": SECRET},
        "many-wrong-values": {
            "X-Ultimate-Timestamp": ts,
            "X-Ultimate-Signature": ",".join(f"sha256={i:064x}" for i in range(50)),
        },
    }


def header_attacks() -> dict[str, dict[str, str]]:
    return {
        "missing": {},
        "empty": {"Authorization": ""},
        "bearer-only": {"Authorization": "Bearer "},
        "truncated": {"Authorization": SECRET[:-1]},
        "extended": {"Authorization": SECRET + "x"},
        "case-changed": {"Authorization": SECRET.upper()},
        "other-secret": {"Authorization": OTHER},
        "basic-scheme": {"Authorization": f"Basic {SECRET}"},
        "double-bearer": {"Authorization": f"Bearer Bearer {SECRET}"},
        "non-ascii": {"Authorization": SECRET[:-1] + "é"},
        "surrogate": {"Authorization": SECRET[:-1] + "\udcff"},
        "wrong-header": {"X-Authorization": SECRET},
    }


def token_attacks() -> dict[str, str | None]:
    return {
        "missing": None,
        "empty": "",
        "truncated": SECRET[:-1],
        "extended": SECRET + "x",
        "other": OTHER,
        "non-ascii": SECRET[:-1] + "é",
        "surrogate": SECRET[:-1] + "\udcff",
        "encoded": SECRET.replace("-", "%2D"),
    }


def assert_nothing_useful_logged(caplog: pytest.LogCaptureFixture, *forbidden: str) -> None:
    for record in caplog.records:
        text = record.getMessage() + repr(record.args)
        if record.exc_info and record.exc_info[1] is not None:
            text += repr(record.exc_info[1])
        for value in forbidden:
            assert value not in text, f"{value!r} logged by {record.name}: {text[:200]}"


@pytest.mark.parametrize("attack", sorted(hmac_attacks()))
async def test_hmac_attacks_are_401(caplog: pytest.LogCaptureFixture, attack: str) -> None:
    caplog.set_level(logging.DEBUG)
    headers = hmac_attacks()[attack]
    handled: list[Any] = []
    receiver = WebhookReceiver(HmacSignature(SECRET))

    @receiver.on_message()
    async def on_message(msg: Any, ctx: Any) -> None:
        handled.append(msg)

    answer = await receiver.handle(BODY, headers)
    assert (answer.status, answer.body) == (401, UNAUTHORIZED)
    now = str(int(time.time()))
    ts = headers.get("X-Ultimate-Timestamp", now)
    forbidden = [SECRET, MARKER, expected_signature(BODY, ts), expected_signature(BODY, now)]
    assert_nothing_useful_logged(caplog, *forbidden)
    await receiver.aclose()
    assert handled == []


@pytest.mark.parametrize("attack", sorted(header_attacks()))
async def test_shared_secret_attacks_are_401(caplog: pytest.LogCaptureFixture, attack: str) -> None:
    caplog.set_level(logging.DEBUG)
    receiver = WebhookReceiver(SharedSecretHeader(SECRET))
    answer = await receiver.handle(BODY, header_attacks()[attack])
    assert (answer.status, answer.body) == (401, UNAUTHORIZED)
    assert_nothing_useful_logged(caplog, SECRET, MARKER)
    await receiver.aclose()


@pytest.mark.parametrize("attack", sorted(token_attacks()))
async def test_url_token_attacks_are_401(caplog: pytest.LogCaptureFixture, attack: str) -> None:
    caplog.set_level(logging.DEBUG)
    receiver = WebhookReceiver(UrlToken(SECRET))
    answer = await receiver.handle(BODY, {}, path_token=token_attacks()[attack])
    assert (answer.status, answer.body) == (401, UNAUTHORIZED)
    assert_nothing_useful_logged(caplog, SECRET, MARKER)
    await receiver.aclose()


async def test_rotation_accepts_each_secret_and_only_those() -> None:
    """Positive control: the attacks above fail for the right reason."""
    verifier = HmacSignature([SECRET, OTHER])
    now = int(time.time())
    for secret in (SECRET, OTHER):
        verifier.verify(BODY, HmacSignature.sign(BODY, secret))
    both = ",".join(
        HmacSignature.sign(BODY, s, timestamp=now)["X-Ultimate-Signature"] for s in ("x", OTHER)
    )
    verifier.verify(BODY, {"X-Ultimate-Timestamp": str(now), "X-Ultimate-Signature": both})
    SharedSecretHeader([SECRET, OTHER]).verify(BODY, {"Authorization": f"Bearer {OTHER}"})
    UrlToken([SECRET, OTHER]).verify(BODY, {}, path_token=OTHER)
    # ... and only those: a third secret is refused by the rotating verifiers too
    third = "third-secret-not-configured"
    with pytest.raises(SignatureError):
        verifier.verify(BODY, HmacSignature.sign(BODY, third))
    with pytest.raises(SignatureError):
        SharedSecretHeader([SECRET, OTHER]).verify(BODY, {"Authorization": f"Bearer {third}"})
    with pytest.raises(SignatureError):
        UrlToken([SECRET, OTHER]).verify(BODY, {}, path_token=third)


# --------------------------------------------------------------------------- over HTTP


@pytest.mark.parametrize(
    "value",
    [b"\xc3\xa9" * 10, b"\xff\xfe", SECRET.encode()[:-1] + b"\xe9", b"Bearer \xf0\x9f\x94\x91"],
    ids=["utf8", "invalid-utf8", "latin1-tail", "emoji-bearer"],
)
@pytest.mark.parametrize("kind", ["shared", "hmac", "token"])
async def test_non_ascii_header_bytes_over_http(
    caplog: pytest.LogCaptureFixture, kind: str, value: bytes
) -> None:
    caplog.set_level(logging.DEBUG)
    verifier: Verifier = {
        "shared": SharedSecretHeader(SECRET),
        "hmac": HmacSignature(SECRET),
        "token": UrlToken(SECRET),
    }[kind]
    receiver = WebhookReceiver(verifier)
    async with WebhookServer(receiver) as server:
        host, port, path = where(server)
        if kind == "token":
            path = path.rsplit("/", 1)[0] + "/" + quote_from_bytes(value, safe="")
        headers = [
            (b"Authorization", value),
            (b"X-Ultimate-Timestamp", value),
            (b"X-Ultimate-Signature", b"sha256=" + value),
            (b"Content-Type", b"application/json"),
        ]
        answer = await raw_post(host, port, path, BODY, headers)
    assert answer.status == 401, answer
    assert answer.body == UNAUTHORIZED
    assert_nothing_useful_logged(caplog, SECRET, MARKER)


# --------------------------------------------------------------------------- constant time


@pytest.fixture
def compare_spy(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, bytes]]:
    """Record every ``hmac.compare_digest`` call (it still does the real compare)."""
    calls: list[tuple[bytes, bytes]] = []
    real: Callable[[Any, Any], bool] = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    return calls


SECRETS = [SECRET, OTHER, "third-secret-of-another-length"]


@pytest.mark.parametrize("presented", ["match-first", "match-last", "no-match"])
async def test_shared_secret_compares_every_secret_in_constant_time(
    compare_spy: list[tuple[bytes, bytes]], presented: str
) -> None:
    value = {"match-first": SECRET, "match-last": SECRETS[-1], "no-match": "nope"}[presented]
    verifier = SharedSecretHeader(SECRETS)
    try:
        verifier.verify(BODY, {"Authorization": value})
    except SignatureError:
        assert presented == "no-match"
    else:
        assert presented != "no-match", "a wrong secret was accepted"
    assert len(compare_spy) == len(SECRETS)  # no early exit on the first match
    assert {b for _, b in compare_spy} == {s.encode() for s in SECRETS}


@pytest.mark.parametrize("presented", ["match-first", "match-last", "no-match"])
async def test_url_token_compares_every_secret_in_constant_time(
    compare_spy: list[tuple[bytes, bytes]], presented: str
) -> None:
    value = {"match-first": SECRET, "match-last": SECRETS[-1], "no-match": "nope"}[presented]
    try:
        UrlToken(SECRETS).verify(BODY, {}, path_token=value)
    except SignatureError:
        assert presented == "no-match"
    else:
        assert presented != "no-match", "a wrong token was accepted"
    assert len(compare_spy) == len(SECRETS)


@pytest.mark.parametrize("offered", [1, 3])
@pytest.mark.parametrize("valid", [True, False])
async def test_hmac_compares_every_offered_value_with_every_secret(
    compare_spy: list[tuple[bytes, bytes]], offered: int, valid: bool
) -> None:
    signer = SECRETS[-1] if valid else "not-a-secret"
    values = [f"sha256={i:064x}" for i in range(offered - 1)]
    now = int(time.time())
    values.append(HmacSignature.sign(BODY, signer, timestamp=now)["X-Ultimate-Signature"])
    headers = {"X-Ultimate-Timestamp": str(now), "X-Ultimate-Signature": ",".join(values)}
    try:
        HmacSignature(SECRETS).verify(BODY, headers)
    except SignatureError:
        assert not valid
    else:
        assert valid
    assert len(compare_spy) == offered * len(SECRETS)
