"""The pytest plugin as a user gets it: a fresh pytest run on a tiny test file.

Each run is a subprocess with its own rootdir (none of this repository's configuration), only
pytest-asyncio besides our plugin (pytest-aiohttp disabled), in pytest-asyncio's ``strict`` mode
(its default) and in ``auto`` mode.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

USER_TESTS = """
import asyncio

import pytest

from ultimate_async.models.webhooks import TeamOnlineCheck, WidgetEscalate


@pytest.mark.asyncio
async def test_a_conversation_with_the_simulated_bot(ultimate_conversation):
    async with asyncio.timeout(5):
        reply = await ultimate_conversation.ask("Where is my order?", settle=60)
    assert reply.buttons[0].text == "Yes"


@pytest.mark.asyncio
async def test_handlers_answer_through_ctx_session(
    ultimate_receiver, ultimate_conversation, ultimate_simulator
):
    @ultimate_receiver.on_team_online()
    async def online(check: TeamOnlineCheck, ctx) -> bool:
        return True

    @ultimate_receiver.on_widget_escalate()
    async def take_over(event: WidgetEscalate, ctx) -> None:
        await ctx.session.widget.escalation_success(event.platform_conversation_id, agent="Sam")

    await ultimate_conversation.ask("Live chat", timeout=5)
    await ultimate_receiver.drain()
    assert ultimate_simulator.mode(ultimate_conversation.conversation_id) == "agent"
"""


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_the_fixtures_work_in_pytest_asyncio_mode(mode: str, tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_user.py").write_text(USER_TESTS)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:aiohttp",
            "-p",
            "asyncio",
            "-o",
            f"asyncio_mode={mode}",
            "-o",
            "asyncio_default_fixture_loop_scope=function",
            "-W",
            "error",
            "test_user.py",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
