"""Every example runs on its own against a local simulator and says what it did."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

EXPECTED = {
    "quickstart.py": [
        "Hi, I'm Ada, the Acme demo bot.",
        "Did that answer your question? ['Yes', 'No']",
    ],
    "echo_bot.py": [
        "bot> Hi, I'm Ada, the Acme demo bot.",
        "you> Where is my order?",
        "bot> Your order #A-1001 shipped yesterday and arrives tomorrow.",
        "bot> Great! Anything else I can do for you?",
        "bye",
    ],
    "escalation_bridge.py": [
        "desk> escalation to 'support': queueing the visitor",
        "desk> visitor wrote: 'Can you deliver on Saturday instead?'",
        "desk> agent disconnected",
        "bot> The agent has left the chat. I'm here if you need anything else.",
        "done: handed over to a human and back",
    ],
    "ticket_triage.py": [
        "  -> sent to the customer: 'We have updated your shipping address.'",
        "  -> human queue, with the bot's draft: "
        "'Thank you for your message. An agent will reply soon.'",
        "done: 2 answered automatically, 1 for a human",
    ],
    "embed_in_aiohttp_app.py": [
        "bot> Great! Anything else I can do for you?  []",
        "own route /health: {'ok': True}",
    ],
    "fastapi_app.py": [  # WebhookApp mounted in FastAPI, served by uvicorn (H4)
        "bot> Great! Anything else I can do for you?  []",
        "webhook health: {'status': 'ok'}",
    ],
    "receiver_in_other_framework.py": [
        "bot> Your order #A-1001 shipped yesterday and arrives tomorrow.",
        "done: every delivery went through receiver.handle()",
    ],
    "durable_receiver.py": [  # SqliteInbox + HandlerRetry (H6)
        "crm> CRM unavailable on attempt 1: the inbox will retry",
        "crm> recorded on attempt 2: Hi, I'm Ada, the Acme demo bot.",
        "inbox: 0 pending, 0 dead letters",
        "done: 4 bot messages recorded once each",
    ],
}


# Examples that also need a redis-server: tests/redis/test_two_replicas_example.py runs them.
NEEDS_REDIS = {"two_replicas.py"}


def test_every_example_is_tested() -> None:
    found = {p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")}
    assert found - NEEDS_REDIS == set(EXPECTED)
    assert NEEDS_REDIS <= found


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_against_the_simulator(name: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ULTIMATE_")}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=EXAMPLES.parent,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for expected in EXPECTED[name]:
        assert expected in lines, f"{expected!r} missing from:\n{done.stdout}"
    assert "Traceback" not in done.stderr
    assert "Unclosed" not in done.stderr


def test_readme_quick_start_is_the_quickstart_example_verbatim() -> None:
    """The README's "Talk to your bot" block is examples/quickstart.py (run by the test above)."""
    readme = (EXAMPLES.parent / "README.md").read_text()
    marker = "<!-- quickstart: examples/quickstart.py"
    assert marker in readme
    block = readme.split(marker, 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert block == (EXAMPLES / "quickstart.py").read_text()
