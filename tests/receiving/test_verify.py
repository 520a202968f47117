"""Verifiers accept what their own ``authenticate``/``sign`` produce and refuse everything else."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from typing import Any

import pytest

from ultimate_async.errors import ConfigurationError, SignatureError
from ultimate_async.webhook import (
    EventContext,
    HmacSignature,
    NoVerification,
    SharedSecretHeader,
    UrlToken,
    WebhookReceiver,
)
from ultimate_async.webhook.verify import Verifier

NOW = 1_700_000_000
BODY = b'{"botId":"b","data":{"eventType":"sendMessage","platformConversationId":"c1"}}'


def clock() -> float:
    return float(NOW)


# --- SharedSecretHeader --------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["s3cret", "Bearer s3cret", "bearer   s3cret", " s3cret "])
def test_shared_secret_accepts_bare_and_bearer(value: str) -> None:
    SharedSecretHeader("s3cret").verify(BODY, {"authorization": value})


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "wrong"},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "s3cret-but-longer"},
        {"Authorization": "Basic s3cret"},
        {"Authorization": "s3cr\udcffet"},  # undecodable bytes as aiohttp surfaces them
        {"Authorization": "s3crét"},
    ],
)
def test_shared_secret_rejects(headers: dict[str, str]) -> None:
    with pytest.raises(SignatureError):
        SharedSecretHeader("s3cret").verify(BODY, headers)


def test_shared_secret_rotation_and_custom_header() -> None:
    verifier = SharedSecretHeader(["new", "old"], header="X-Token")
    verifier.verify(BODY, {"x-token": "old"})
    verifier.verify(BODY, {"X-TOKEN": "new"})
    with pytest.raises(SignatureError):
        verifier.verify(BODY, {"Authorization": "new"})
    url, headers = verifier.authenticate("https://x/webhook", BODY)
    assert (url, headers) == ("https://x/webhook", {"X-Token": "new"})


# --- HmacSignature -------------------------------------------------------------------------------


def test_hmac_sign_matches_the_documented_scheme() -> None:
    headers = HmacSignature.sign(BODY, "k", timestamp=NOW)
    expected = hmac.new(b"k", f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert headers == {
        "X-Ultimate-Timestamp": str(NOW),
        "X-Ultimate-Signature": f"sha256={expected}",
    }


def test_hmac_accepts_own_signature_and_rotation() -> None:
    verifier = HmacSignature(["new", "old"], clock=clock)
    verifier.verify(BODY, HmacSignature.sign(BODY, "old", timestamp=NOW))
    verifier.verify(BODY, HmacSignature.sign(BODY, "new", timestamp=NOW))
    url, headers = verifier.authenticate("https://x/webhook", BODY)
    assert url == "https://x/webhook"
    assert headers == HmacSignature.sign(BODY, "new", timestamp=NOW)


def test_hmac_any_of_several_values_may_match() -> None:
    verifier = HmacSignature("k", clock=clock)
    good = HmacSignature.sign(BODY, "k", timestamp=NOW)["X-Ultimate-Signature"]
    bad = HmacSignature.sign(BODY, "other", timestamp=NOW)["X-Ultimate-Signature"]
    verifier.verify(
        BODY, {"x-ultimate-timestamp": str(NOW), "x-ultimate-signature": f"{bad}, v2=zzz,{good}"}
    )


@pytest.mark.parametrize("skew", [-300, 300, -1, 0, 1])
def test_hmac_within_tolerance_both_directions(skew: int) -> None:
    HmacSignature("k", clock=clock).verify(
        BODY, HmacSignature.sign(BODY, "k", timestamp=NOW + skew)
    )


@pytest.mark.parametrize("skew", [-301, 301, -100_000, 100_000])
def test_hmac_outside_tolerance_both_directions(skew: int) -> None:
    with pytest.raises(SignatureError, match="tolerance"):
        HmacSignature("k", clock=clock).verify(
            BODY, HmacSignature.sign(BODY, "k", timestamp=NOW + skew)
        )


def test_hmac_rejects_tampered_body_and_wrong_secret() -> None:
    verifier = HmacSignature("k", clock=clock)
    headers = HmacSignature.sign(BODY, "k", timestamp=NOW)
    with pytest.raises(SignatureError):
        verifier.verify(BODY + b" ", headers)
    with pytest.raises(SignatureError):
        verifier.verify(BODY, HmacSignature.sign(BODY, "not-k", timestamp=NOW))


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Ultimate-Timestamp": str(NOW)},
        {"X-Ultimate-Signature": "sha256=00"},
        {"X-Ultimate-Timestamp": "soon", "X-Ultimate-Signature": "sha256=00"},
        {"X-Ultimate-Timestamp": "1.7e9", "X-Ultimate-Signature": "sha256=00"},
        {"X-Ultimate-Timestamp": "-5", "X-Ultimate-Signature": "sha256=00"},
        {
            "X-Ultimate-Timestamp": "\u0661\u0667\u0660\u0660",
            "X-Ultimate-Signature": "sha256=00",
        },  # non-ascii digits
        {"X-Ultimate-Timestamp": "9" * 400, "X-Ultimate-Signature": "sha256=00"},
        {"X-Ultimate-Timestamp": str(NOW), "X-Ultimate-Signature": "garbage"},
        {"X-Ultimate-Timestamp": str(NOW), "X-Ultimate-Signature": "sha256=ü\udcff"},
        {"X-Ultimate-Timestamp": str(NOW), "X-Ultimate-Signature": ","},
    ],
)
def test_hmac_malformed_headers_are_signature_errors(headers: dict[str, str]) -> None:
    with pytest.raises(SignatureError):
        HmacSignature("k", clock=clock).verify(BODY, headers)


def test_hmac_custom_header_names_are_used_by_instance_sign() -> None:
    verifier = HmacSignature("k", header="X-Sig", timestamp_header="X-Ts", tolerance=5, clock=clock)
    headers = verifier.sign(BODY, "k")
    assert set(headers) == {"X-Sig", "X-Ts"} and headers["X-Ts"] == str(NOW)
    verifier.verify(BODY, headers)


# --- UrlToken ------------------------------------------------------------------------------------


def test_url_token() -> None:
    verifier = UrlToken(["tok-new", "tok-old"])
    verifier.verify(BODY, {}, path_token="tok-old")
    verifier.verify(BODY, {}, path_token="tok-new")
    for token in (None, "", "tok", "tok-new2", "tök"):
        with pytest.raises(SignatureError):
            verifier.verify(BODY, {}, path_token=token)
    assert verifier.authenticate("http://h:1/webhook", BODY) == ("http://h:1/webhook/tok-new", {})
    assert verifier.authenticate("http://h:1/webhook/", BODY) == ("http://h:1/webhook/tok-new", {})
    assert verifier.authenticate("http://h:1/webhook/tok-old", BODY) == (
        "http://h:1/webhook/tok-old",
        {},
    )


# --- common --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda s: SharedSecretHeader(s),
        lambda s: HmacSignature(s),
        lambda s: UrlToken(s),
    ],
)
def test_reprs_and_errors_never_show_secrets(make: Any) -> None:
    verifier = make(["topsecret-1", "topsecret-2"])
    assert "topsecret" not in repr(verifier)
    with pytest.raises(SignatureError) as info:
        verifier.verify(BODY, {"Authorization": "topsecret-3"}, path_token="topsecret-3")
    assert "topsecret" not in str(info.value)


@pytest.mark.parametrize("secrets", [[], "", [""], [b"bytes"]])
def test_bad_secrets_are_configuration_errors(secrets: Any) -> None:
    with pytest.raises(ConfigurationError):
        SharedSecretHeader(secrets)


def test_receiver_without_verifier_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        WebhookReceiver()


# --- through a real server -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "verifier",
    [
        SharedSecretHeader(["s-one", "s-two"]),
        HmacSignature(["h-one", "h-two"]),
        UrlToken(["t-one", "t-two"]),
        NoVerification(),
    ],
    ids=["shared", "hmac", "token", "none"],
)
async def test_server_accepts_authenticated_and_refuses_unauthenticated(
    verifier: Verifier, serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = WebhookReceiver(verifier, ack="after_handler")
    seen: list[str | None] = []

    @receiver.on_message()
    async def record(msg: Any, ctx: EventContext) -> None:
        seen.append(msg.text)

    client = await serve(receiver)
    base = str(client.make_url("/webhook"))
    url, headers = verifier.authenticate(base, BODY)
    resp = await client.post(url[len(base) - len("/webhook") :], data=BODY, headers=headers)
    assert resp.status == 200
    assert seen == [""]

    if isinstance(verifier, NoVerification):
        return
    caplog.set_level(logging.DEBUG, logger="ultimate_async")
    bad = [
        ("/webhook", {}),
        ("/webhook", {"Authorization": "Bearer nope"}),
        ("/webhook/wrong-token", {}),
        ("/webhook", {"X-Ultimate-Timestamp": "x\udcff", "X-Ultimate-Signature": "sha256=zz"}),
    ]
    for path, hdrs in bad:
        try:
            resp = await client.post(path, data=BODY, headers=hdrs)
        except (UnicodeEncodeError, ValueError):  # the client refuses to send such a header
            continue
        assert resp.status in (401, 404), path
        if resp.status == 401:
            assert await resp.json() == {"error": "unauthorized"}
    assert seen == [""]
    text = caplog.text
    for secret in ("s-one", "s-two", "h-one", "h-two", "t-one", "t-two", "eventType"):
        assert secret not in text
    assert "rejected (401)" in text


async def test_non_ascii_header_bytes_are_401_not_500(serve: Any) -> None:
    receiver = WebhookReceiver(HmacSignature("k"))
    client = await serve(receiver)
    host, port = client.server.host, client.server.port
    reader, writer = await asyncio.open_connection(host, port)
    request = (
        b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: "
        + str(len(BODY)).encode()
        + b"\r\nX-Ultimate-Timestamp: \xff\xfe\r\nX-Ultimate-Signature: sha256=\xc3\x28\r\n"
        + b"Connection: close\r\n\r\n"
        + BODY
    )
    writer.write(request)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    assert answer.startswith(b"HTTP/1.1 401")
