"""Defaults the simulator and the test builders share, in a module that imports nothing.

``ultimate_async.testing`` is imported by pytest in every run of every project that has the
package installed, so the one bot id both sides use lives here rather than beside the server.
"""

from __future__ import annotations

__all__ = ["DEFAULT_BOT_ID"]

#: The simulator's bot id, and the ``botId`` the payload builders use unless told otherwise
#: (24 hex digits, like real ones), so built payloads and simulated ones name the same bot.
DEFAULT_BOT_ID = "5f0c0ffee0ddba11c0ffee00"
