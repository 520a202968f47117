"""One name, one thing: the simulator's script types never shadow the webhook models."""

from __future__ import annotations

from pathlib import Path

import ultimate_async
import ultimate_async.simulator as simulator
from ultimate_async.simulator import DEFAULT_BOT_ID, Simulator
from ultimate_async.testing import DEFAULT_BOT_ID as BUILDERS_BOT_ID
from ultimate_async.testing import make_bot_message

PACKAGE = Path(ultimate_async.__file__).parent


def test_no_simulator_name_is_a_different_top_level_thing() -> None:
    shared = [name for name in simulator.__all__ if name in ultimate_async.__all__]
    clashes = [n for n in shared if getattr(simulator, n) is not getattr(ultimate_async, n)]
    assert clashes == []
    # The script steps have names of their own (the models keep theirs).
    for name in ("ScriptedButton", "EscalateStep", "WidgetEscalateStep", "Step"):
        assert name in simulator.__all__ and name not in ultimate_async.__all__
    for name in ("Button", "Escalate", "WidgetEscalate", "Reply"):
        assert name not in simulator.__all__ and not hasattr(simulator, name)


def test_every_simulator_export_resolves() -> None:
    for name in simulator.__all__:
        assert getattr(simulator, name) is not None, name


def test_one_default_bot_id_for_the_simulator_and_the_builders() -> None:
    assert BUILDERS_BOT_ID is DEFAULT_BOT_ID
    assert Simulator().bot_id == DEFAULT_BOT_ID
    assert make_bot_message("c1", "hi")["botId"] == DEFAULT_BOT_ID
    written = [
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if DEFAULT_BOT_ID in path.read_text(encoding="utf-8")
    ]
    assert written == ["simulator/defaults.py"]
