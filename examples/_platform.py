"""Where the examples run. Not part of the SDK: a few lines every example shares.

By default an example starts a local :class:`~ultimate_async.simulator.Simulator` (the
platform and a demo bot) and finishes on its own.  To run it against the real platform, set
``ULTIMATE_API_KEY`` and ``ULTIMATE_BOT_ID`` (and ``ULTIMATE_BASE_URL`` if you are not on
``https://api.ultimate.ai``), ``ULTIMATE_WEBHOOK_TOKEN`` (a secret URL segment) and
``WEBHOOK_PORT`` (default 8080), and configure ``<your public URL>/webhook/<token>`` as the
webhook URL in the dashboard (e.g. through a tunnel to that port).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from ultimate_async import HmacSignature, Session, UrlToken, Verifier
from ultimate_async.simulator import Simulator


@dataclass
class Platform:
    """The API credentials to use and how the platform will sign its webhooks."""

    api_key: str
    bot_id: str
    base_url: str
    verifier: Verifier
    simulator: Simulator | None  # None on the real platform
    host: str = "127.0.0.1"
    port: int = 0  # 0 = any free port

    @property
    def simulated(self) -> bool:
        return self.simulator is not None

    def session(self) -> Session:
        return Session(self.api_key, self.bot_id, base_url=self.base_url)

    def webhook_is(self, url: str) -> None:
        """Tell the platform where our receiver listens (the dashboard setting, for real)."""
        if self.simulator is not None:
            self.simulator.webhook_url = url
        else:
            url, _ = self.verifier.authenticate(url, b"")  # adds the URL token segment
            print(f"receiver listening on {url}: the dashboard's webhook URL must reach it")


@asynccontextmanager
async def platform() -> AsyncIterator[Platform]:
    """The real platform when ULTIMATE_API_KEY is set, else a fresh local simulator."""
    api_key = os.environ.get("ULTIMATE_API_KEY")
    if api_key:
        yield Platform(
            api_key,
            os.environ["ULTIMATE_BOT_ID"],
            os.environ.get("ULTIMATE_BASE_URL", "https://api.ultimate.ai"),
            UrlToken(os.environ["ULTIMATE_WEBHOOK_TOKEN"]),
            None,
            host="0.0.0.0",
            port=int(os.environ.get("WEBHOOK_PORT", "8080")),
        )
        return
    verifier = HmacSignature(secrets.token_hex(16))
    async with Simulator(verifier=verifier) as sim:
        yield Platform(sim.api_key, sim.bot_id, sim.base_url, verifier, sim)
