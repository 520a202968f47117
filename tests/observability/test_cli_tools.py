"""``trigger``, ``listen --save`` and ``replay`` against real receivers on local ports.

The CLI runs in-process through ``main(argv)`` on a worker thread (it runs its own event loop)
while the receiver serves on the test's loop; ``listen`` runs as a real subprocess, as a person
would start it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ultimate_async.cli import main
from ultimate_async.cli.listen import redact_headers
from ultimate_async.models.webhooks import (
    ActionCall,
    Alert,
    BotMessage,
    Escalate,
    TeamOnlineCheck,
    TicketReply,
    WidgetEndSession,
    WidgetEscalate,
    WidgetMessage,
)
from ultimate_async.testing import make_action_call, make_bot_message, make_delivery, record_all
from ultimate_async.webhook import (
    HmacSignature,
    SharedSecretHeader,
    UrlToken,
    Verifier,
    WebhookReceiver,
    WebhookServer,
)

SECRET = "cli-secret-0123456789abcdef"


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Run the CLI on a thread (it has its own loop); its exit code and stdout (stderr stays in
    ``capsys``)."""
    capsys.readouterr()
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    sys.stderr.write(err)
    return code, out


class Served:
    def __init__(self, server: WebhookServer, seen: list[tuple[Any, Any]]) -> None:
        self.server = server
        self.seen = seen

    async def events(self, count: int) -> list[Any]:
        """The events handled so far, once the queued ones have run; there must be ``count``."""
        assert await self.server.receiver.drain(timeout=5)
        assert len(self.seen) == count, self.seen
        return [event for event, _ in self.seen]


async def serve(verifier: Verifier) -> AsyncIterator[Served]:
    receiver = WebhookReceiver(verifier)
    seen = record_all(receiver)
    async with WebhookServer(receiver, port=0) as server:
        yield Served(server, seen)


@pytest.fixture
async def hmac_receiver() -> AsyncIterator[Served]:
    async for served in serve(HmacSignature(SECRET)):
        yield served


# --- trigger ----------------------------------------------------------------------------------

KINDS: list[tuple[str, type[Any], str]] = [
    ("message", BotMessage, ""),
    ("buttons", BotMessage, ""),
    ("carousel", BotMessage, ""),
    ("escalate", Escalate, ""),
    ("team_online", TeamOnlineCheck, '{"isOnline":true}'),
    ("action", ActionCall, '{"results":[]}'),
    ("widget_escalate", WidgetEscalate, ""),
    ("widget_message", WidgetMessage, ""),
    ("widget_end_session", WidgetEndSession, ""),
    ("ticket_reply", TicketReply, ""),
    ("alert", Alert, ""),
]


async def test_trigger_sends_a_signed_sample_of_every_kind(
    hmac_receiver: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    url = hmac_receiver.server.url
    for kind, _, answer in KINDS:
        code, out = await cli(
            capsys,
            "trigger", kind, "--to", url, "--secret", SECRET, "--verifier", "hmac",
            "--conversation", f"conv-{kind}",
        )  # fmt: skip
        assert code == 0, out
        assert out.startswith("HTTP 200 OK"), out
        if answer:
            assert json.loads(out.split("\n", 1)[1]) == json.loads(answer)
    events = await hmac_receiver.events(len(KINDS))
    by_conversation = {e.platform_conversation_id: e for e in events}
    for kind, cls, _ in KINDS:
        assert isinstance(by_conversation[f"conv-{kind}"], cls), kind
    assert by_conversation["conv-buttons"].buttons
    assert by_conversation["conv-carousel"].carousel_cards


async def test_trigger_fills_text_and_action_name(
    hmac_receiver: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    url = hmac_receiver.server.url
    sign = ("--secret", SECRET, "--verifier", "hmac")
    assert (await cli(capsys, "trigger", "message", "--to", url, *sign, "--text", "Hej!"))[0] == 0
    code, _ = await cli(capsys, "trigger", "action", "--to", url, *sign, "--name", "refund")
    assert code == 0
    message, action = await hmac_receiver.events(2)
    assert isinstance(message, BotMessage) and message.text == "Hej!"
    assert message.platform_conversation_id.startswith("trigger-")
    assert isinstance(action, ActionCall) and action.name == "refund"


@pytest.mark.parametrize(
    ("verifier", "scheme"),
    [(SharedSecretHeader(SECRET), "header"), (UrlToken(SECRET), "token")],
)
async def test_trigger_signs_for_each_verifier(
    verifier: Verifier, scheme: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async for served in serve(verifier):
        url = served.server.url.split(SECRET)[0].rstrip("/")  # the URL a person would know
        code, out = await cli(
            capsys, "trigger", "message", "--to", url, "--secret", SECRET, "--verifier", scheme
        )
        assert (code, out.splitlines()[0]) == (0, "HTTP 200 OK")
        assert len(await served.events(1)) == 1


async def test_a_wrong_secret_shows_the_401_and_fails(
    hmac_receiver: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    url = hmac_receiver.server.url
    code, out = await cli(
        capsys, "trigger", "message", "--to", url, "--secret", "wrong", "--verifier", "hmac"
    )
    assert code == 1
    assert out.startswith("HTTP 401 Unauthorized"), out
    code, out = await cli(capsys, "trigger", "escalate", "--to", url)  # unsigned
    assert (code, out.splitlines()[0]) == (1, "HTTP 401 Unauthorized")
    assert hmac_receiver.seen == []


async def test_trigger_to_nowhere_is_one_line_and_keeps_the_token_secret(
    capsys: pytest.CaptureFixture[str], refused_url: str
) -> None:
    code, out = await cli(
        capsys, "trigger", "message", "--to", refused_url, "--secret", SECRET, "--verifier", "token"
    )
    err = capsys.readouterr().err
    assert code == 1 and out == ""
    assert err.startswith(f"error: cannot deliver to {refused_url}")
    assert SECRET not in err


def test_verifier_without_secret_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trigger", "message", "--to", "http://x", "--verifier", "hmac"]) == 2
    assert "--verifier needs --secret" in capsys.readouterr().err


# --- listen --save and replay -----------------------------------------------------------------


def test_listen_redacts_only_credential_headers() -> None:
    shown = redact_headers(
        {
            "Host": "example.com",
            "Accept-Encoding": "gzip",
            "User-Agent": "Ultimate",
            "X-Request-Id": "r-1",
            "X-Ultimate-Timestamp": "1700000000",
            "Authorization": "Bearer abc",
            "Cookie": "session=1",
            "X-Ultimate-Signature": "sha256=ff",
            "X-Webhook-Token": "tok",
            "X-My-Secret": "s",
            "X-Api-Key": "k",
        }
    )
    assert {k: v for k, v in shown.items() if not v.startswith("<redacted")} == {
        "Host": "example.com",
        "Accept-Encoding": "gzip",
        "User-Agent": "Ultimate",
        "X-Request-Id": "r-1",
        "X-Ultimate-Timestamp": "1700000000",
    }
    assert shown["Authorization"] == "<redacted 10 chars>"


async def _line(stream: asyncio.StreamReader) -> str:
    return (await asyncio.wait_for(stream.readline(), 20)).decode().rstrip("\n")


async def test_listen_saves_verified_deliveries_and_replay_resends_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = tmp_path / "deliveries.jsonl"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ultimate_async", "listen", "--port", "0",
        "--hmac-secret", SECRET, "--save", str(saved),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    try:
        banner = await _line(proc.stderr)
        assert banner.startswith("listening on http://127.0.0.1:"), banner
        listen_url = banner.split()[2]
        verifier = HmacSignature(SECRET)
        action = make_action_call("conv-r", "lookup", {"order": "A-1", "card": "4111-1111"})
        action["data"][1]["sanitize"] = True  # personal data: never printed nor saved
        payloads = [
            make_bot_message("conv-r", "first"),
            action,
            make_bot_message("conv-r", "second"),
        ]
        async with aiohttp.ClientSession() as http:
            async with http.post(listen_url, data=b"{}", headers={"X-Ultimate-Signature": "x"}):
                pass  # refused (401): never saved
            for payload in payloads:
                body, headers = make_delivery(payload, verifier)
                headers["X-Request-Id"] = "req-42"
                async with http.post(listen_url, data=body, headers=headers) as resp:
                    assert resp.status == 200
                await _line(proc.stdout)  # printed once handled (and saved before that)
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 20)

    lines = [json.loads(line) for line in saved.read_text().splitlines()]
    assert [line["kind"] for line in lines] == ["BotMessage", "ActionCall", "BotMessage"]
    first = {k.lower(): v for k, v in lines[0]["headers"].items()}
    assert first["x-ultimate-signature"].startswith("<redacted ")
    assert first["host"].startswith("127.0.0.1:")  # not a credential: shown
    assert first["x-request-id"] == "req-42"
    assert first["x-ultimate-timestamp"].isdigit()
    assert SECRET not in saved.read_text()
    assert [p["value"] for p in lines[1]["body"]["data"]] == [["A-1"], "<sanitized>"]
    assert "4111-1111" not in saved.read_text()

    # Replay into another receiver with another verifier: re-signed, in order.
    async for served in serve(SharedSecretHeader("replay-target-secret")):
        url = served.server.url
        code, out = await cli(
            capsys, "replay", str(saved), "--to", url, "--secret", "replay-target-secret"
        )
        assert code == 0, out
        assert out.splitlines()[:1] == ["#1 BotMessage conv-r: HTTP 200 OK"]
        assert '#2 ActionCall conv-r: HTTP 200 OK\n{"results":[]}' in out
        events = await served.events(3)
        assert [type(e).__name__ for e in events] == ["BotMessage", "ActionCall", "BotMessage"]
        assert [e.text for e in events if isinstance(e, BotMessage)] == ["first", "second"]
        [(_, ctx)] = [s for s in served.seen if isinstance(s[0], ActionCall)]
        assert ctx.headers.get("X-Request-Id") == "req-42"  # non-credential headers go along

        code, out = await cli(capsys, "replay", str(saved), "--to", url, "--secret", "wrong")
        assert code == 1
        assert out.count("HTTP 401 Unauthorized") == 3


def test_replay_of_a_file_that_is_not_a_save_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"kind": "BotMessage"}\n')
    assert main(["replay", str(bad), "--to", "http://127.0.0.1:9"]) == 2
    assert "bad.jsonl:1: not a saved delivery" in capsys.readouterr().err
