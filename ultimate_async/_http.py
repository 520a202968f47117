"""The one place that talks HTTP: a JSON POST with retries and error mapping.

``Session`` and ``LegacyClient`` both sit on :class:`Transport`, so connection pooling, timeouts,
retry decisions and the status → exception mapping exist once.  The hot path is kept lean on
purpose (a benchmark holds it to raw-aiohttp speed): headers and URLs are built once, bodies are
serialized once to bytes, and a 2xx body is read only when the caller needs it.  Logging
(logger ``ultimate_async.api``, DEBUG) and telemetry (:mod:`.telemetry`) are checked once per
call and cost next to nothing while switched off.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import aiohttp
from yarl import URL

from . import telemetry
from ._retry import RetryPolicy
from .errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
)

__all__ = ["Transport", "TransportClient", "parse_retry_after", "status_error"]

_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
}
#: Response headers that may carry the server's request id, in order of preference.
_REQUEST_ID_HEADERS = ("x-request-id", "x-amzn-requestid", "x-zendesk-request-id", "request-id")
_REDACTED = "***"

log = logging.getLogger("ultimate_async.api")


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), or ``None``."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # HTTP-dates are always GMT; a zoneless date is malformed
            return None
        seconds = when.timestamp() - now()
    if seconds != seconds:  # NaN
        return None
    return max(seconds, 0.0)


def status_error(
    method: str,
    url: str,
    status: int,
    body: str,
    headers: Mapping[str, str],
) -> tuple[APIStatusError, float | None]:
    """The exception for a non-2xx answer, and the server's ``Retry-After`` hint in seconds."""
    request_id = next((headers[h] for h in _REQUEST_ID_HEADERS if h in headers), None)
    retry_after = parse_retry_after(headers.get("Retry-After")) if status in (429, 503) else None
    error: APIStatusError
    if status == 429:
        error = RateLimitError(method, url, status, body, request_id, retry_after=retry_after)
    elif status >= 500:
        error = ServerError(method, url, status, body, request_id)
    else:
        cls = _STATUS_ERRORS.get(status, APIStatusError)
        error = cls(method, url, status, body, request_id)
    return error, retry_after


class Transport:
    """An owned or borrowed ``aiohttp.ClientSession`` plus retry and error mapping.

    Nothing is bound to an event loop until the first request (or :meth:`open`): a
    ``Session`` may be built at import time and used from whichever loop runs later.
    """

    __slots__ = (
        "_borrowed",
        "_closed",
        "_connector_limit",
        "_cooldown_until",
        "_headers",
        "_request_kwargs",
        "_retry",
        "_secrets",
        "_session",
        "_timeout",
        "base_url",
    )

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str],
        timeout: float | None,
        connect_timeout: float | None,
        retry: RetryPolicy,
        http_session: aiohttp.ClientSession | None,
        connector_limit: int,
        secrets: Sequence[str] = (),
    ) -> None:
        if connector_limit < 0:
            raise ValueError(f"connector_limit must be >= 0, got {connector_limit!r}")
        self.base_url = base_url.rstrip("/")
        self._headers = dict(headers)
        self._timeout = aiohttp.ClientTimeout(
            total=timeout,
            sock_connect=connect_timeout if connect_timeout is not None else timeout,
        )
        self._retry = retry
        self._connector_limit = connector_limit
        self._secrets = tuple(s for s in secrets if s)
        self._session: aiohttp.ClientSession | None = http_session
        self._borrowed = http_session is not None
        self._closed = False
        # The API's 429 + Retry-After holds back every call of this transport until then
        # (``retry.clock`` seconds); 0.0 when no cool-down was ever asked for.
        self._cooldown_until = 0.0
        # An owned session carries headers and timeout as defaults; a borrowed one gets them
        # per request (it may serve other APIs with other defaults).  Redirects are not
        # followed: aiohttp would turn the POST into a GET; a 3xx is reported instead.
        self._request_kwargs: dict[str, Any] = {"allow_redirects": False}
        if self._borrowed:
            self._request_kwargs.update(headers=self._headers, timeout=self._timeout)

    @property
    def closed(self) -> bool:
        """``True`` once :meth:`aclose` ran."""
        return self._closed

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy in force."""
        return self._retry

    def url(self, path: str) -> URL:
        """The absolute URL of an endpoint ``path`` under ``base_url`` (which may have a prefix)."""
        return URL(self.base_url + path)

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("this client is closed; create a new one")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=self._connector_limit),
            )
        return self._session

    async def open(self) -> None:
        """Create the owned ``ClientSession`` now (inside the running loop)."""
        self._ensure_session()

    async def aclose(self) -> None:
        """Close the owned ``ClientSession``; a borrowed one is left open. Idempotent."""
        if self._closed:
            return
        self._closed = True
        session, self._session = self._session, None
        if session is not None and not self._borrowed:
            await session.close()

    async def post(
        self,
        url: URL,
        body: bytes,
        *,
        call: str = "POST",
        conversation_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        read_body: bool = False,
        redact: Sequence[str] = (),
    ) -> bytes | None:
        """POST ``body`` (JSON bytes) to ``url``; retry per policy; map failures to errors.

        Returns the 2xx body when ``read_body`` is true, else ``None``.  ``redact`` lists this
        request's ``sanitize=True`` values: like the credentials, they never reach an error or a
        log line.  ``call`` names the call in logs, metrics and spans (``chat.send_message``).
        """
        session = self._session
        if session is None:
            session = self._ensure_session()
        kwargs = self._request_kwargs
        if headers is not None:
            kwargs = {**kwargs, "headers": {**self._headers, **headers}}
        debug = log.isEnabledFor(logging.DEBUG)
        with telemetry.api_call(call, conversation_id) as observed:
            retry = 0
            covered = 0.0  # the cool-down deadline this call's own retry wait already covers
            while True:
                if self._cooldown_until > covered:
                    await self._cool_down(call, observed, debug)
                started = time.perf_counter() if debug else 0.0
                retry_after: float | None = None
                cause: BaseException | None = None
                status: int | None = None
                try:
                    async with session.post(url, data=body, **kwargs) as resp:
                        status = resp.status
                        observed.response(status)
                        if 200 <= status < 300:
                            result = await self._success_body(resp, str(url), read_body)
                            if debug:
                                elapsed = time.perf_counter() - started
                                log.debug(
                                    "%s: %d (attempt %d, %.3fs)", call, status, retry + 1, elapsed
                                )
                            return result
                        text = (await resp.read()).decode("utf-8", "replace")
                        error: APIError
                        error, retry_after = status_error(
                            "POST", str(url), status, self._redact(text, redact), resp.headers
                        )
                        sent = True
                except aiohttp.ConnectionTimeoutError as exc:
                    error = APITimeoutError("POST", str(url), "connect timed out")
                    sent, cause = False, exc
                except aiohttp.ClientSSLError as exc:  # a TLS/certificate problem is not transient
                    observed.response(None)
                    raise APIConnectionError("POST", str(url), f"TLS failure: {exc}") from exc
                except aiohttp.ClientConnectorError as exc:
                    error = APIConnectionError("POST", str(url), f"cannot connect: {exc.os_error}")
                    sent, cause = False, exc
                except TimeoutError as exc:  # total or read timeout: the request may have arrived
                    reason = f"timed out after {self._timeout.total}s"
                    error, sent, cause = APITimeoutError("POST", str(url), reason), True, exc
                except aiohttp.ClientError as exc:
                    reason = str(exc) or type(exc).__name__
                    error = APIConnectionError("POST", str(url), self._redact(reason, redact))
                    sent, cause = True, exc
                if status is None:
                    observed.response(None)
                if status == 429 and retry_after is not None:
                    self._start_cooldown(retry_after)
                delay = self._retry.delay(retry, error, request_sent=sent, retry_after=retry_after)
                if debug:
                    self._log_failure(
                        call, status, retry, time.perf_counter() - started, delay, error
                    )
                if delay is None:
                    raise error from cause
                covered = self._retry.clock() + delay
                await self._retry.sleep(delay)
                retry += 1

    @staticmethod
    def _log_failure(
        call: str,
        status: int | None,
        retry: int,
        elapsed: float,
        delay: float | None,
        error: APIError,
    ) -> None:
        # ``error`` carries only redacted text (see _redact), so it may be logged as it is.
        answer = "no answer" if status is None else str(status)
        then = "giving up" if delay is None else f"retrying in {delay:.2f}s"
        log.debug(
            "%s: %s (attempt %d, %.3fs); %s: %s", call, answer, retry + 1, elapsed, then, error
        )

    def _start_cooldown(self, seconds: float) -> None:
        policy = self._retry
        until = policy.clock() + min(seconds, policy.retry_after_max)
        if until > self._cooldown_until:
            self._cooldown_until = until

    async def _cool_down(self, call: str, observed: telemetry.ApiCallRecord, debug: bool) -> None:
        """Wait out the cool-down another call's 429 started, once, before the next attempt."""
        remaining = self._cooldown_until - self._retry.clock()
        if remaining <= 0:
            return
        observed.throttled()
        if debug:
            log.debug(
                "%s: waiting %.2fs for the API's rate limit (429 Retry-After)", call, remaining
            )
        await self._retry.sleep(remaining)

    async def _success_body(
        self, resp: aiohttp.ClientResponse, url: str, read_body: bool
    ) -> bytes | None:
        # The server accepted the request: whatever goes wrong now must not cause a retry.
        try:
            if read_body:
                return await resp.read()
            if not resp.content.is_eof():
                await resp.read()  # drain the (normally empty) body so the connection is reused
        except (aiohttp.ClientError, TimeoutError) as exc:
            if read_body:
                reason = f"HTTP {resp.status} but reading the body failed: {exc!r}"
                raise APIConnectionError("POST", url, self._redact(reason)) from exc
        return None

    def _redact(self, text: str, extra: Sequence[str] = ()) -> str:
        # A server (or proxy) echoing our credentials or a request's sanitized values must not
        # leak them into an exception.
        for secret in (*self._secrets, *_echoed_forms(extra)):
            if secret and secret in text:
                text = text.replace(secret, _REDACTED)
        return text


def _echoed_forms(values: Sequence[str]) -> list[str]:
    """Each value as given and as a JSON string body would echo it (escaped, ASCII-only)."""
    forms: list[str] = []
    for value in values:
        forms.append(value)
        forms.append(json.dumps(value)[1:-1])
        forms.append(json.dumps(value, ensure_ascii=False)[1:-1])
    # Longest first, so a value is not half-replaced through a shorter one it contains.
    return sorted(set(forms), key=len, reverse=True)


class TransportClient:
    """The lifecycle ``Session`` and ``LegacyClient`` share: one :class:`Transport`, opened on
    first use or ``async with``, closed once (a borrowed ``http_session`` never)."""

    __slots__ = ()  # so the subclasses' own __slots__ take effect (no per-instance __dict__)

    _transport: Transport

    @property
    def closed(self) -> bool:
        """``True`` once :meth:`aclose` ran."""
        return self._transport.closed

    async def __aenter__(self) -> Self:
        await self._transport.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool (unless borrowed). Safe to call more than once."""
        await self._transport.aclose()
