"""``ctx.headers`` under ``WebhookApp``: the ASGI header list read as a case-insensitive mapping."""

from __future__ import annotations

from ultimate_async.webhook.headers import RawHeaders


def test_names_are_case_insensitive_and_values_latin1() -> None:
    headers = RawHeaders([(b"authorization", b"s3cret"), (b"x-name", b"caf\xe9")])
    assert headers.get("Authorization") == "s3cret"
    assert headers["X-NAME"] == "café"
    assert "AUTHORIZATION" in headers
    assert headers.get("missing") is None
    assert len(headers) == 2


def test_a_repeated_header_reads_as_its_first_value() -> None:
    """As ``multidict``'s ``get`` (the aiohttp front end): a second value appended by a proxy
    must not replace the one the client sent."""
    headers = RawHeaders(
        [(b"x-forwarded-for", b"1.1.1.1"), (b"host", b"h"), (b"x-forwarded-for", b"2.2.2.2")]
    )
    assert headers.get("X-Forwarded-For") == "1.1.1.1"
    assert headers.by_name[b"x-forwarded-for"] == b"1.1.1.1"
    assert headers.getall("x-forwarded-for") == ["1.1.1.1", "2.2.2.2"]
    assert list(headers) == ["x-forwarded-for", "host"]
    assert len(headers) == 2


def test_repr_shows_names_never_values() -> None:
    assert "s3cret" not in repr(RawHeaders([(b"authorization", b"s3cret")]))
