"""The exception tree is part of the public contract: users catch by these classes."""

from __future__ import annotations

import pytest

from ultimate_async import errors


def test_status_error_names_the_call_the_status_and_what_the_server_said() -> None:
    err = errors.BadRequestError("POST", "https://api.ultimate.ai/converse/chat", 400, "bad field")
    assert str(err) == "POST https://api.ultimate.ai/converse/chat: HTTP 400: bad field"
    assert (err.method, err.status, err.body) == ("POST", 400, "bad field")


def test_status_error_truncates_long_bodies_and_mentions_request_id() -> None:
    err = errors.ServerError("POST", "u", 502, "x" * 10_000, request_id="req-1")
    assert len(err.body) == errors.BODY_EXCERPT_LIMIT
    assert "request id req-1" in str(err)
    assert "<empty body>" in str(errors.ServerError("POST", "u", 500, "  "))


def test_rate_limit_error_carries_retry_after() -> None:
    err = errors.RateLimitError("POST", "u", 429, "slow down", retry_after=3.0)
    assert err.retry_after == 3.0
    assert isinstance(err, errors.APIStatusError)


@pytest.mark.parametrize(
    ("cls", "base"),
    [
        (errors.APITimeoutError, errors.APIConnectionError),
        (errors.APIConnectionError, errors.APIError),
        (errors.AuthenticationError, errors.APIStatusError),
        (errors.PermissionDeniedError, errors.APIStatusError),
        (errors.NotFoundError, errors.APIStatusError),
        (errors.SignatureError, errors.WebhookError),
        (errors.PayloadError, errors.WebhookError),
        (errors.HandlerConflictError, errors.WebhookError),
        (errors.ReplyTimeout, TimeoutError),
        (errors.BackendUnavailableError, errors.UltimateError),
        (errors.ConfigurationError, errors.UltimateError),
        (errors.ResponseDecodeError, errors.UltimateError),
    ],
)
def test_hierarchy(cls: type[BaseException], base: type[BaseException]) -> None:
    assert issubclass(cls, base)
    assert issubclass(cls, errors.UltimateError)


def test_payload_and_decode_errors_list_their_reasons() -> None:
    err = errors.PayloadError(["data.buttons: expected a list", "data.eventType: expected str"])
    assert err.errors == ["data.buttons: expected a list", "data.eventType: expected str"]
    assert "data.buttons: expected a list" in str(err)
    assert "messages.0.text" in str(errors.ResponseDecodeError("bad reply", ["messages.0.text"]))
