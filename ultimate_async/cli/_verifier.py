"""Build a verifier from the ``--secret`` / ``--hmac-secret`` / ``--insecure`` options."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..webhook.verify import Verifier

__all__ = ["verifier_from_args"]


def verifier_from_args(args: argparse.Namespace) -> Verifier | None:
    """The chosen verifier, or ``None`` when no option was given."""
    from ..webhook.verify import HmacSignature, NoVerification, SharedSecretHeader

    if args.secret:
        return SharedSecretHeader(args.secret)
    if args.hmac_secret:
        return HmacSignature(args.hmac_secret)
    if getattr(args, "insecure", False):
        return NoVerification()
    return None
