"""Benchmarks for ultimate_async: what the SDK costs compared with hand-written alternatives.

Run ``make bench`` (or ``python -m benchmarks.run [--quick]``). See ``benchmarks/README.md``.
"""
