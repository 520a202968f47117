"""Helpers and a pytest plugin for testing code built on ultimate_async."""

from __future__ import annotations
