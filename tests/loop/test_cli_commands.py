"""The CLI commands doing real work: demo, send against a simulator, listen and simulate."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from ultimate_async.__main__ import main
from ultimate_async.conversation import Conversation
from ultimate_async.session import Session
from ultimate_async.simulator import Simulator, WidgetEscalateStep
from ultimate_async.testing import make_bot_message, make_delivery
from ultimate_async.webhook import HmacSignature, WebhookReceiver, WebhookServer

STEPS = [
    "Welcome",
    "A question answered with buttons",
    "A button click",
    "A carousel choice",
    "An action answered by our handler",
    "Team online, then a human agent via the widget API",
    "A ticket answered on the ticket webhook",
    "The legacy v2 automation API",
]


def test_demo_runs_the_whole_journey(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    for number, title in enumerate(STEPS, 1):
        assert f"{number}. {title}\n" in out
    assert out.count("   ✓ ") == len(STEPS)
    assert "✗" not in out
    assert f"✓ all {len(STEPS)} steps passed" in out
    # A few transcript lines a reader relies on.
    assert "bot     > Hi, I'm Ada, the Acme demo bot." in out
    assert "bot     > Your balance is 42.50 EUR." in out
    assert "bot     > (ticket reply) We have updated your shipping address." in out


# --- send -------------------------------------------------------------------------------------


@pytest.fixture
def sim_env(ultimate_simulator: Simulator, monkeypatch: pytest.MonkeyPatch) -> Simulator:
    monkeypatch.setenv("ULTIMATE_API_KEY", ultimate_simulator.api_key)
    monkeypatch.setenv("ULTIMATE_BOT_ID", ultimate_simulator.bot_id)
    monkeypatch.setenv("ULTIMATE_BASE_URL", ultimate_simulator.base_url)
    return ultimate_simulator


async def run_main(argv: list[str]) -> int:
    """The CLI runs its own event loop: give it a thread while the simulator serves on ours."""
    return await asyncio.to_thread(main, argv)


async def test_send_chat_posts_the_exact_body(
    sim_env: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["send", "chat", "--conversation", "c-42", "--event", "message", "--text", "hi there"]
    code = await run_main([*argv, "--card-index", "1", "--meta", "plan=gold", "--meta", "a=b=c"])
    assert code == 0
    assert "c-42" in capsys.readouterr().out
    [request] = [r for r in sim_env.received if r.path == "/converse/chat"]
    assert request.status == 200
    assert request.headers["botid"] == sim_env.bot_id
    assert request.json == {
        "platformConversationId": "c-42",
        "eventType": "message",
        "text": "hi there",
        "cardIndex": 1,
        "metaData": [{"key": "plan", "value": "gold"}, {"key": "a", "value": "b=c"}],
    }


async def test_send_ticket_and_widget(
    sim_env: Simulator, ultimate_receiver: WebhookReceiver, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run_main(["send", "ticket", "--conversation", "t-1", "--text", "refund?"]) == 0
    widget = ["send", "widget", "--conversation", "w-1", "--event", "escalationQueueUpdate"]
    # A queue update for a chat that never escalated is refused, and the CLI says why.
    assert await run_main([*widget, "--queue-position", "3", "--waiting-time", "5"]) == 1
    assert "escalationQueueUpdate is only allowed after widgetEscalate" in capsys.readouterr().err
    sim_env.received.clear()
    await sim_env.push("w-1", WidgetEscalateStep("support"))
    assert await run_main([*widget, "--queue-position", "3", "--waiting-time", "5"]) == 0
    assert await run_main(["send", "ticket", "--conversation", "t-1", "--text", "refund?"]) == 0
    bodies = {r.path: r.json for r in sim_env.received}
    assert bodies["/converse/ticket"] == {
        "platformConversationId": "t-1",
        "text": "refund?",
        "platform": "PUBLIC_API",
    }
    assert bodies["/agent/converse/send-message-to-widget"] == {
        "platformConversationId": "w-1",
        "eventType": "escalationQueueUpdate",
        "queuePosition": "3",
        "waitingTime": "5",
    }


async def test_send_reports_api_errors_in_one_line(
    sim_env: Simulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ULTIMATE_API_KEY", "wrong-key-123")
    code = await run_main(["send", "chat", "--conversation", "c", "--event", "startSession"])
    assert code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert "401" in err and "missing or wrong API key" in err
    assert "wrong-key-123" not in err


# --- subprocess helpers -----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def cli(*argv: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run ``python -m ultimate_async ARGV``; on exit SIGTERM it (by PID) and reap it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ultimate_async",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.terminate()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(proc.communicate(), 10)
        if proc.returncode is None:  # pragma: no cover - only if shutdown hangs
            proc.kill()
            await proc.wait()


async def read_line(stream: asyncio.StreamReader | None) -> str:
    assert stream is not None
    return (await asyncio.wait_for(stream.readline(), 10)).decode()


async def simulator_session(proc: asyncio.subprocess.Process) -> Session:
    """A Session built from the KEY=value lines ``simulate`` prints first."""
    env: dict[str, str] = {}
    for _ in range(3):
        key, _, value = (await read_line(proc.stdout)).strip().partition("=")
        env[key] = value
    assert env["ULTIMATE_BASE_URL"].startswith("http://127.0.0.1:")
    return Session(
        env["ULTIMATE_API_KEY"], env["ULTIMATE_BOT_ID"], base_url=env["ULTIMATE_BASE_URL"]
    )


# --- listen -----------------------------------------------------------------------------------


async def test_listen_prints_verified_deliveries_with_redacted_headers() -> None:
    secret = "listen-secret-0123456789"
    async with cli("listen", "--port", "0", "--hmac-secret", secret) as proc:
        banner = await read_line(proc.stderr)
        assert banner.startswith("listening on http://127.0.0.1:")
        url = banner.split()[2]
        body, headers = make_delivery(make_bot_message("conv-7", "hello"), HmacSignature(secret))
        async with aiohttp.ClientSession() as http:
            async with http.post(url, data=body, headers=headers) as response:
                assert response.status == 200
            line = json.loads(await read_line(proc.stdout))
            assert line["conversation"] == "conv-7"
            assert line["body"]["data"]["text"] == "hello"
            shown = {k.lower(): v for k, v in line["headers"].items()}
            signature = headers["X-Ultimate-Signature"]
            assert shown["x-ultimate-signature"] == f"<redacted {len(signature)} chars>"
            # Only credential-bearing headers are redacted (DESIGN §11); a timestamp is not one.
            assert shown["x-ultimate-timestamp"] == headers["X-Ultimate-Timestamp"]
            assert shown["content-type"] == "application/json"
            assert signature not in json.dumps(line)

            # Unsigned: refused, and nothing is printed for it.
            async with http.post(url, data=body) as response:
                assert response.status == 401
            body2, headers2 = make_delivery(
                make_bot_message("conv-8", "next"), HmacSignature(secret)
            )
            async with http.post(url, data=body2, headers=headers2) as response:
                assert response.status == 200
            assert json.loads(await read_line(proc.stdout))["conversation"] == "conv-8"
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 10) == 0


# --- simulate ---------------------------------------------------------------------------------


async def test_simulate_serves_a_bot_for_another_program() -> None:
    secret = "simulate-secret-0123456789"
    receiver = WebhookReceiver(HmacSignature(secret))
    async with WebhookServer(receiver, port=0) as server:
        async with cli(
            "simulate", "--port", "0", "--webhook-url", server.url, "--hmac-secret", secret
        ) as proc:
            async with (
                await simulator_session(proc) as session,
                Conversation(session, receiver) as conv,
            ):
                welcome = await conv.start(timeout=10, settle=0.2)
                assert welcome.messages  # the built-in demo bot answered, HMAC-signed
            proc.terminate()
            assert await asyncio.wait_for(proc.wait(), 10) == 0


# --- simulate --bot and demo failure reporting --------------------------------------------------


def test_simulate_refuses_a_bad_bot_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bot.json"
    bad.write_text('{"rules": [{"match": "x", "replise": []}]}')
    assert main(["simulate", "--bot", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "replise" in err
    assert main(["simulate", "--bot", str(tmp_path / "missing.json")]) == 2


async def test_simulate_runs_a_bot_file(tmp_path: Path) -> None:
    bot = tmp_path / "bot.json"
    bot.write_text(json.dumps({"welcome": "Howdy from the file bot"}))
    receiver = WebhookReceiver(HmacSignature("s-0123456789"))
    async with WebhookServer(receiver, port=0) as server:
        argv = ["simulate", "--webhook-url", server.url, "--hmac-secret", "s-0123456789"]
        async with cli(*argv, "--bot", str(bot)) as proc:
            async with (
                await simulator_session(proc) as session,
                Conversation(session, receiver) as conv,
            ):
                assert (await conv.start(timeout=10, settle=0.1)).text == "Howdy from the file bot"


async def test_a_failing_demo_step_is_reported_and_counted() -> None:
    import io

    from ultimate_async.cli.demo import StepFailed, Transcript

    out = io.StringIO()
    t = Transcript(out)

    async def passes() -> str:
        return "fine"

    async def fails() -> str:
        raise StepFailed("no welcome message arrived")

    async def crashes() -> str:
        raise TimeoutError

    for body in (passes, fails, crashes):
        await t.step(body.__name__, body)
    assert (t.passed, t.failed) == (1, 2)
    text = out.getvalue()
    assert "1. passes\n   ✓ fine" in text
    assert "2. fails\n   ✗ no welcome message arrived" in text
    assert "3. crashes\n   ✗ TimeoutError" in text
