"""Durable delivery: the :class:`Inbox` contract and its in-process implementations."""

from __future__ import annotations

from .base import DeadLetter, Inbox, InboxEntry, InboxStats

__all__ = ["DeadLetter", "Inbox", "InboxEntry", "InboxStats"]
