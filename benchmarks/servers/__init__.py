"""Receiver variants, each a standalone script: ``python -m benchmarks.servers.<name> --port N``.

Every script prints ``READY <port>`` once it accepts connections, serves ``POST /webhook`` and
``GET /stats`` (``{"acked": int, "handled": int, "loop": str, "orjson": bool}``) so the harness can
check that handlers really ran, and exits cleanly on SIGTERM/SIGINT.
"""
