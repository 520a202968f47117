"""The repository stands on its own, and what it installs is visible to a user's type checker.

A plain ``git clone`` once failed 136 tests because they read sample payloads from a folder beside
the repository that only developer checkouts had. These tests (with the audit hook installed by
``tests/conftest.py`` and ``.ci/run``, which tests a fresh clone in an empty directory) keep it
from coming back.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import typing
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from ultimate_async.converter import parse_webhook_body
from ultimate_async.errors import PayloadError
from ultimate_async.models.webhooks import BotMessage, Webhook

REPO = Path(__file__).resolve().parents[2]

# --------------------------------------------------------------------------- nothing beside it


def test_opening_a_path_beside_the_repository_fails_the_run(outside_reads: Any) -> None:
    if outside_reads.parent is None:
        pytest.skip("the repository is at the top of the file system: nothing is beside it")
    sibling = Path(outside_reads.parent, "beside-the-repository", "payload.json")

    with pytest.raises(RuntimeError, match="outside the repository"):
        sibling.read_bytes()
    with pytest.raises(RuntimeError, match="outside the repository"):
        os.listdir(sibling.parent)

    # Both were recorded, so the run fails even where the error is caught...
    assert outside_reads.refused[-2:] == [str(sibling), str(sibling.parent)]
    # ...which must not happen for these two expected refusals.
    del outside_reads.refused[-2:]


def test_the_guard_refuses_siblings_only(outside_reads: Any) -> None:
    guard_type = type(outside_reads)
    guard = guard_type(Path("/srv/ci/repo"), ["/srv/ci/venv", "/tmp", "/srv"])

    assert guard.outside("/srv/ci/shared/fixtures/webhooks/action.json")
    assert guard.outside("/srv/ci/repo-old/tests/conftest.py")  # a prefix is not the repository
    assert not guard.outside("/srv/ci/repo")
    assert not guard.outside("/srv/ci/repo/tests/fixtures/webhooks/action.json")
    assert not guard.outside("/srv/ci/venv/lib/python3.12/site.py")  # a venv beside the checkout
    assert not guard.outside("/srv/ci/.netrc")  # hidden: the repository sits in a home folder
    assert not guard.outside("/etc/ssl/certs/ca-certificates.crt")  # not beside it at all
    # An exempt root that contains the repository (CI clones under /tmp) exempts nothing.
    assert guard_type(Path("/tmp/ci/repo"), ["/tmp"]).outside("/tmp/ci/shared/x.json")
    # At the top of the file system everything would be "beside" it: the guard stays off.
    assert not guard_type(Path("/repo"), []).outside("/shared/x.json")


#: What reading beside the repository has looked like (kept in pieces, so that this file does not
#: match the same search run over the repository by the pre-stop hook).
BESIDE = re.compile(
    "|".join([r"\.\./" + "shared", "ULTIMATE_" + "SHARED_DIR", r"parents\[" + "[3-9]" + r"\]"])
)
SKIPPED_DIRS = {"__pycache__", "site", "build", "dist", "results", "node_modules"}


def _repository_text_files() -> list[Path]:
    found = [REPO / "Makefile", REPO / "pyproject.toml", REPO / "mkdocs.yml"]
    for top in ("ultimate_async", "tests", "benchmarks", "examples", "docs", ".ci"):
        for root, dirs, files in os.walk(REPO / top):
            dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and not d.startswith(".")]
            found += [Path(root, name) for name in files if not name.endswith((".pyc", ".so"))]
    return [path for path in found if path.is_file()]


def test_nothing_in_the_repository_names_a_path_beside_it() -> None:
    files = _repository_text_files()
    assert len(files) > 50, files
    offenders = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in files
        for number, line in enumerate(path.read_text("utf-8", errors="replace").splitlines(), 1)
        if BESIDE.search(line)
    ]
    assert offenders == []


def test_the_readme_links_only_files_a_clone_has() -> None:
    """The README once sent readers to design notes that lived outside the repository."""
    readme = (REPO / "README.md").read_text("utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [t for t in targets if "://" not in t and not t.startswith("mailto:")]
    assert "docs/architecture.md" in local and "docs/platform.md" in local
    assert [t for t in local if not (REPO / t).is_file()] == []
    assert not re.search(r"\b(DESIGN|API_SPEC)\.md\b", readme)


# --------------------------------------------------------------------------- the fixtures


def test_webhook_fixtures_cover_every_inbound_shape(fixtures_dir: Path) -> None:
    """Every model a webhook can parse into (DESIGN §4) has a valid sample, and the bot message
    has its text, minimal, buttons and carousel forms."""
    events = [parse_webhook_body(path.read_bytes())[1] for path in fixtures_dir.glob("*.json")]

    assert {type(event) for event in events} == set(typing.get_args(Webhook))
    messages = [event for event in events if isinstance(event, BotMessage)]
    assert any(m.buttons for m in messages)
    assert any(m.type == "carousel" and m.carousel_cards for m in messages)
    assert any(m.message_id is None and m.confidence is None for m in messages)


def test_invalid_fixtures_are_refused_with_a_located_reason(fixtures_dir: Path) -> None:
    invalid = sorted((fixtures_dir / "invalid").iterdir())
    assert len(invalid) >= 10
    for path in invalid:
        with pytest.raises(PayloadError) as info:
            parse_webhook_body(path.read_bytes())
        assert all(" @ $" in reason for reason in info.value.errors), path.name


def test_fixture_readme_describes_every_file(fixtures_dir: Path) -> None:
    readme = (fixtures_dir / "README.md").read_text("utf-8")
    described = set(re.findall(r"^\| `([^`]+)` \|", readme, flags=re.MULTILINE))
    on_disk = {p.name for p in fixtures_dir.glob("*.json")}
    on_disk |= {p.name for p in (fixtures_dir / "invalid").iterdir()}
    assert described == on_disk


# --------------------------------------------------------------------------- choosing a Python

MAKE = shutil.which("make")
needs_make = pytest.mark.skipif(MAKE is None, reason="make is not installed")


def _fake_pythons(directory: Path, **answers: bool) -> dict[str, str]:
    """``python3.X`` scripts answering make's version check (``True``: 3.11 or newer); the
    returned environment has only them on ``PATH``."""
    directory.mkdir()
    for name, new_enough in answers.items():
        script = directory / name.replace("_", ".")
        script.write_text(f"#!/bin/sh\nexit {0 if new_enough else 1}\n")
        script.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHON", "MAKEFLAGS", "MFLAGS"}}
    return env | {"PATH": str(directory)}


def _make(tmp_path: Path, env: dict[str, str], *targets: str) -> subprocess.CompletedProcess[str]:
    assert MAKE is not None
    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    return subprocess.run(
        [MAKE, "-s", *targets], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )


@needs_make
def test_make_picks_the_newest_python_of_at_least_3_11(tmp_path: Path) -> None:
    env = _fake_pythons(tmp_path / "bin", python3_11=True, python3_12=True, python3_13=True)
    assert _make(tmp_path, env, "print-python").stdout.strip() == "python3.13"


@needs_make
def test_make_skips_a_python_older_than_3_11(tmp_path: Path) -> None:
    # A bare python3 is used only when it is new enough; python3.12 here claims to be older.
    env = _fake_pythons(tmp_path / "bin", python3_12=False, python3=True)
    assert _make(tmp_path, env, "print-python").stdout.strip() == "python3"


@needs_make
def test_make_without_a_python_stops_with_a_clear_message(tmp_path: Path) -> None:
    env = _fake_pythons(tmp_path / "bin", python3_10=True, python3=False)

    result = _make(tmp_path, env, "demo")

    assert result.returncode != 0
    assert "no Python >= 3.11 found" in result.stderr
    assert "make PYTHON=" in result.stderr
    assert not (tmp_path / ".venv").exists()


# --------------------------------------------------------------------------- the installed package

USER_CODE = """\
from ultimate_async import Session
from ultimate_async.webhook import NoVerification, WebhookReceiver


def build() -> WebhookReceiver:
    return WebhookReceiver(NoVerification())


async def send(session: Session) -> None:
    await session.chat.send_message("conv-1", "hi")
    await session.chat.send_message("conv-1", 42)  # the one deliberate error
"""


@pytest.mark.slow
def test_a_users_mypy_finds_the_installed_package(tmp_path: Path) -> None:
    """``mypy --strict`` on a user's file, outside the repository, sees our types: it reports the
    one misuse in the file and nothing about a missing module (issue: an editable install made
    by setuptools' import hook was invisible to type checkers)."""
    try:
        metadata.distribution("ultimate_async")
    except metadata.PackageNotFoundError:
        pytest.skip("ultimate_async is not installed in this environment (make installs it)")
    (tmp_path / "user_app.py").write_text(USER_CODE)
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "MYPYPATH"}}

    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", ".mypy_cache", "user_app.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )

    out = proc.stdout + proc.stderr
    assert "import-not-found" not in out and "import-untyped" not in out, out
    assert re.findall(r"user_app\.py:(\d+): error: .*\[(\S+)\]", out) == [("11", "arg-type")], out
