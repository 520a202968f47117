"""What a handler learns about a delivery besides the event itself: :class:`EventContext`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:  # the receiver never imports the sending half at runtime
    from ..session import Session

__all__ = ["EventContext"]


@attrs.frozen
class EventContext:
    """Facts about one delivery, passed to every handler next to the event.

    ``headers`` is a read-only, case-insensitive view of the request headers (empty for events
    forwarded from another replica); ``raw`` is the whole parsed body; ``dedup_key`` is ``None``
    when the delivery is never treated as a duplicate; ``session`` is the receiver's ``Session``
    so a handler can answer without a global.
    """

    platform_conversation_id: str | None
    bot_id: str | None
    received_at: datetime
    dedup_key: str | None
    headers: Mapping[str, str] = attrs.field(repr=False)
    raw: Mapping[str, Any] = attrs.field(repr=False)
    session: Session | None = attrs.field(default=None, repr=False)
    kind: str = "unknown"
    forwarded: bool = False
