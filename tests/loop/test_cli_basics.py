"""The command line's contract without a network: help, usage errors, configuration errors."""

from __future__ import annotations

import pytest

from ultimate_async.__main__ import main

COMMANDS = [
    [],
    ["demo"],
    ["listen"],
    ["send"],
    ["send", "chat"],
    ["send", "ticket"],
    ["send", "widget"],
    ["simulate"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "top")
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ultimate-async")
    assert "--help" in out


def test_top_level_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--help"])
    out = capsys.readouterr().out
    for name in ("demo", "listen", "send", "simulate"):
        assert name in out


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize(
    "argv",
    [
        ["frobnicate"],
        ["send", "chat", "--event", "message"],  # no --conversation
        ["send", "chat", "--conversation", "c", "--event", "bogus"],
        ["listen", "--port", "0"],  # no verifier chosen
        ["listen", "--secret", "a", "--insecure"],  # two verifiers
    ],
)
def test_usage_errors_exit_2_with_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    _one_error_line(capsys)


@pytest.fixture
def no_config(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ULTIMATE_API_KEY", "ULTIMATE_BOT_ID", "ULTIMATE_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_config")
@pytest.mark.parametrize(
    "argv",
    [
        ["send", "chat", "--conversation", "c1", "--event", "startSession"],
        ["send", "ticket", "--conversation", "c1", "--text", "hello"],
        ["send", "widget", "--conversation", "c1", "--event", "agentDisconnect"],
    ],
)
def test_send_without_configuration_names_the_missing_variables(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    line = _one_error_line(capsys)
    assert "ULTIMATE_API_KEY" in line
    assert "ULTIMATE_BOT_ID" in line


def test_send_with_only_the_bot_id_missing(
    no_config: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ULTIMATE_API_KEY", "k3y-that-must-not-leak")
    assert main(["send", "chat", "--conversation", "c1", "--event", "endSession"]) == 2
    line = _one_error_line(capsys)
    assert "ULTIMATE_BOT_ID" in line
    assert "ULTIMATE_API_KEY" not in line
    assert "k3y-that-must-not-leak" not in line


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["send", "chat", "--conversation", "c", "--event", "message"], "--text"),
        (["send", "chat", "--conversation", "c", "--event", "metadata"], "--meta"),
        (
            ["send", "chat", "--conversation", "c", "--event", "endSession", "--meta", "a=b"],
            "endSession",
        ),
        (
            [
                "send",
                "chat",
                "--conversation",
                "c",
                "--event",
                "message",
                "--text",
                "x",
                "--meta",
                "novalue",
            ],
            "KEY=VALUE",
        ),
        (["send", "widget", "--conversation", "c", "--event", "message"], "--text"),
    ],
)
def test_inconsistent_send_options_are_usage_errors(
    argv: list[str],
    fragment: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Checked before configuration and network: no environment needed.
    monkeypatch.setenv("ULTIMATE_API_KEY", "k")
    monkeypatch.setenv("ULTIMATE_BOT_ID", "b")
    monkeypatch.setenv("ULTIMATE_BASE_URL", "http://127.0.0.1:9")
    assert main(argv) == 2
    assert fragment in _one_error_line(capsys)
