"""``replay``: re-send the deliveries ``listen --save`` recorded, in order, to any receiver.

Each saved line holds the body and the headers as they arrived (credentials redacted).  The
body is re-signed for the *target's* verifier, so a delivery captured from the platform can be
replayed into a development receiver with its own secret.  Saved credential headers are
dropped (they only say ``<redacted ...>``), and so are the ones that describe the old
connection or encoding; the rest (``User-Agent``, request ids) go out as they came.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ._common import EXIT_FAILURE, EXIT_OK, UsageError, run
from ._deliver import post_signed
from ._verifier import signer_from_args
from .listen import is_credential_header

__all__ = ["command", "read_saved"]

#: Headers about the original hop, not the delivery: never replayed.
_HOP_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "expect",
    }
)


def read_saved(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, record)`` for each saved delivery; a malformed line is a usage error."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise UsageError(f"{path}:{number}: not a JSON line") from None
        if not isinstance(record, dict) or not isinstance(record.get("body"), dict | list):
            raise UsageError(f"{path}:{number}: not a saved delivery (no JSON body)")
        yield number, record


def _replayed_headers(saved: object) -> dict[str, str]:
    if not isinstance(saved, Mapping):
        return {}
    return {
        str(name): str(value)
        for name, value in saved.items()
        if str(name).lower() not in _HOP_HEADERS and not is_credential_header(str(name))
    }


async def _replay(args: argparse.Namespace) -> int:
    import aiohttp

    signer = signer_from_args(args)
    records = list(read_saved(Path(args.file)))
    failed = 0
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        for number, record in records:
            body = json.dumps(record["body"], ensure_ascii=False).encode()
            headers = _replayed_headers(record.get("headers"))
            answer = await post_signed(http, args.to, body, signer, headers)
            label = " ".join(
                str(part)
                for part in (f"#{number}", record.get("kind"), record.get("conversation"))
                if part
            )
            print(f"{label}: {answer.lines()}", flush=True)
            failed += not answer.ok
    return EXIT_FAILURE if failed else EXIT_OK


def command(args: argparse.Namespace) -> int:
    return run(_replay(args))
