"""The one place that talks HTTP: a JSON POST with retries and error mapping.

``Session`` and ``LegacyClient`` both sit on :class:`Transport`, so connection pooling, timeouts,
retry decisions and the status → exception mapping exist once.  The hot path is kept lean on
purpose (a benchmark holds it to raw-aiohttp speed): headers and URLs are built once, bodies are
serialized once to bytes, and a 2xx body is read only when the caller needs it.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import aiohttp
from yarl import URL

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
        headers: Mapping[str, str] | None = None,
        read_body: bool = False,
        redact: Sequence[str] = (),
    ) -> bytes | None:
        """POST ``body`` (JSON bytes) to ``url``; retry per policy; map failures to errors.

        Returns the 2xx body when ``read_body`` is true, else ``None``.  ``redact`` lists this
        request's ``sanitize=True`` values: like the credentials, they never reach an error.
        """
        session = self._session
        if session is None:
            session = self._ensure_session()
        kwargs = self._request_kwargs
        if headers is not None:
            kwargs = {**kwargs, "headers": {**self._headers, **headers}}
        retry = 0
        while True:
            retry_after: float | None = None
            cause: BaseException | None = None
            try:
                async with session.post(url, data=body, **kwargs) as resp:
                    status = resp.status
                    if 200 <= status < 300:
                        return await self._success_body(resp, str(url), read_body)
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
            delay = self._retry.delay(retry, error, request_sent=sent, retry_after=retry_after)
            if delay is None:
                raise error from cause
            await self._retry.sleep(delay)
            retry += 1

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
