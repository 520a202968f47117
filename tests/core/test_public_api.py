"""The top-level names are the contract users type (DESIGN.md); they must all resolve."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import ultimate_async

DESIGN_NAMES = """
Session RetryPolicy LegacyClient MetaData ActionResult AutomationReply IntentsResult
WebhookReceiver WebhookServer setup_webhook Router EventContext WebhookResponse
SharedSecretHeader HmacSignature UrlToken NoVerification MemoryDeduplicator
BotMessage Button CarouselCard Escalate TeamOnlineCheck WidgetEscalate WidgetMessage
WidgetEndSession UnknownChatEvent TicketReply ActionCall ActionParam Alert UnknownWebhook
Conversation Reply
UltimateError ConfigurationError APIError APIConnectionError APITimeoutError APIStatusError
BadRequestError AuthenticationError PermissionDeniedError NotFoundError RateLimitError
ServerError ResponseDecodeError WebhookError SignatureError PayloadError
HandlerConflictError ReplyTimeout
""".split()


def test_every_design_name_is_exported_and_resolves() -> None:
    missing = [name for name in DESIGN_NAMES if name not in ultimate_async.__all__]
    assert missing == []
    for name in ultimate_async.__all__:
        assert getattr(ultimate_async, name) is not None


def test_lazy_map_matches_the_type_checking_imports() -> None:
    """Type checkers read the TYPE_CHECKING block, the runtime reads _EXPORTS: keep them equal."""
    tree = ast.parse(Path(ultimate_async.__file__).read_text())
    typed: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom)
                for alias in stmt.names:
                    typed[alias.name] = "." + (stmt.module or "")
    assert typed == ultimate_async._EXPORTS
    assert set(ultimate_async.__all__) == set(typed) | {"__version__"}


def test_unknown_attribute_is_an_attribute_error() -> None:
    try:
        ultimate_async.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_importing_the_package_does_not_load_aiohttp() -> None:
    """pytest imports our plugin (and so the package) in every run of a user's project."""
    code = "import sys, ultimate_async, ultimate_async.testing; print('aiohttp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
