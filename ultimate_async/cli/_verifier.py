"""Build a verifier from the command line.

The receiving side (``listen``, ``simulate``): ``--secret`` / ``--hmac-secret`` / ``--insecure``.
The sending side (``trigger``, ``replay``): ``--secret`` + ``--verifier`` name the target's.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..webhook.verify import Verifier

__all__ = ["SIGNING_SCHEMES", "signer_from_args", "verifier_from_args"]


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


#: ``--verifier`` choices of ``trigger`` and ``replay``: how the target checks deliveries.
SIGNING_SCHEMES = ("header", "hmac", "token")


def signer_from_args(args: argparse.Namespace) -> Verifier | None:
    """The verifier whose sender side signs for the target (``--secret`` + ``--verifier``).

    ``None`` without ``--secret``: the delivery goes out unsigned.
    """
    from ..webhook.verify import HmacSignature, SharedSecretHeader, UrlToken
    from ._common import UsageError

    if not args.secret:
        if args.verifier is not None:
            raise UsageError("--verifier needs --secret")
        return None
    if args.verifier == "hmac":
        return HmacSignature(args.secret)
    if args.verifier == "token":
        return UrlToken(args.secret)
    return SharedSecretHeader(args.secret)
