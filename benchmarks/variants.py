"""What is measured: the receiver and client variants, their reference ratios, and the targets."""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    module: str
    args: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    #: Ratio to the section baseline measured on this machine when the issue was written.
    reference: str = ""
    sdk: bool = False


RECEIVER_BASELINE = "bare"
RECEIVERS: tuple[Variant, ...] = (
    Variant("bare", "bare aiohttp (read body, 200)", "benchmarks.servers.bare_aiohttp",
            reference="1.00"),
    Variant("bare_uvloop", "bare aiohttp on uvloop", "benchmarks.servers.bare_aiohttp",
            ("--uvloop",), needs=("uvloop",), reference="1.29"),
    Variant("hand", "hand-written: json + dict dispatch + create_task",
            "benchmarks.servers.handwritten", reference="0.70"),
    Variant("hand_orjson", "hand-written: orjson + attrs/cattrs models",
            "benchmarks.servers.handwritten_orjson", needs=("orjson",), reference="0.70"),
    Variant("fastapi", "FastAPI + uvicorn + pydantic v2", "benchmarks.servers.fastapi_app",
            needs=("fastapi", "uvicorn", "pydantic"), reference="0.25"),
    Variant("sdk", "SDK pipeline, no speed extra", "benchmarks.servers.sdk", ("--no-speed",),
            sdk=True),
    Variant("sdk_orjson", "SDK pipeline, orjson, default loop", "benchmarks.servers.sdk",
            needs=("orjson",), sdk=True),
    Variant("sdk_speed", "SDK pipeline + speed extra (uvloop, orjson)", "benchmarks.servers.sdk",
            ("--uvloop",), needs=("orjson", "uvloop"), sdk=True),
    # The same pipeline served by the standalone WebhookServer (an aiohttp AppRunner of ours)
    # rather than setup_webhook in an aiohttp.web.Application (the "sdk*" rows above).
    Variant("server", "SDK WebhookServer, no speed extra", "benchmarks.servers.sdk_server",
            ("--no-speed",), sdk=True),
    Variant("server_orjson", "SDK WebhookServer, orjson, default loop",
            "benchmarks.servers.sdk_server", needs=("orjson",), sdk=True),
    Variant("server_speed", "SDK WebhookServer + speed extra (uvloop, orjson)",
            "benchmarks.servers.sdk_server", ("--uvloop",), needs=("orjson", "uvloop"), sdk=True),
    # ASGI on uvicorn (httptools parser): a raw hand-written ASGI app, and the SDK's WebhookApp.
    Variant("asgi_raw", "hand-written raw ASGI app on uvicorn", "benchmarks.servers.asgi_raw",
            needs=("uvicorn", "httptools")),
    Variant("asgi", "SDK WebhookApp on uvicorn, orjson", "benchmarks.servers.asgi_sdk",
            needs=("uvicorn", "httptools", "orjson"), sdk=True),
)  # fmt: skip

CLIENT_BASELINE = "raw"
CLIENTS: tuple[Variant, ...] = (
    Variant("raw", "raw aiohttp ClientSession.post(json=...)", "raw", reference="1.00"),
    Variant("raw_orjson", "raw aiohttp + orjson serializer", "raw_orjson", needs=("orjson",),
            reference="1.25-1.35"),
    Variant("raw_uvloop", "raw aiohttp on uvloop", "raw", ("--uvloop",), needs=("uvloop",),
            reference="1.25-1.35"),
    Variant("sdk", "SDK chat.send_message, no speed extra", "sdk", ("--no-speed",), sdk=True),
    Variant("sdk_speed", "SDK chat.send_message + speed extra", "sdk", ("--uvloop",),
            needs=("orjson", "uvloop"), sdk=True),
)  # fmt: skip


def missing_modules(variant: Variant) -> list[str]:
    missing = []
    for name in variant.needs:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def sdk_receiver_problem() -> str | None:
    """Why the SDK receiver rows cannot run yet, or None when the agreed names import."""
    try:
        from ultimate_async.webhook import (  # noqa: F401
            SharedSecretHeader,
            WebhookReceiver,
            setup_webhook,
        )
    except Exception as exc:
        return f"ultimate_async.webhook not usable yet ({type(exc).__name__}: {exc})"
    return None


def sdk_client_problem() -> str | None:
    try:
        from ultimate_async.session import Session  # noqa: F401
    except Exception as exc:
        return f"ultimate_async.session not usable yet ({type(exc).__name__}: {exc})"
    return None
