"""Experiments that inform design decisions; not part of ``make bench``'s targets table."""
