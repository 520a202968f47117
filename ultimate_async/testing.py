"""Helpers and a pytest plugin for testing code built on ultimate_async (filled in by the loop work)."""

from __future__ import annotations
