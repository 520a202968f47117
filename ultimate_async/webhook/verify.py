"""Webhook verifiers: decide whether a delivery really comes from the platform.

Ultimate documents no signing scheme (``docs/platform.md``), so the receiver makes you pick one
explicitly.  Every verifier checks the *raw* body bytes and headers before anything is parsed,
compares in constant time, accepts several secrets at once (rotation), and also implements the
sender's side (:meth:`~Verifier.authenticate`) so the simulator and tests sign exactly what the
receiver expects.  Nothing here ever puts a secret or a header value into a message or a repr.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Generic, Protocol, TypeVar, overload
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from ..errors import ConfigurationError, SignatureError

__all__ = [
    "HmacSignature",
    "NoVerification",
    "SharedSecretHeader",
    "SignatureError",
    "UrlToken",
    "Verifier",
]

Secrets = str | Iterable[str]


def _secrets(secrets: Secrets, what: str) -> tuple[bytes, ...]:
    items = [secrets] if isinstance(secrets, str) else list(secrets)
    if not items:
        raise ConfigurationError(f"{what} needs at least one secret")
    out: list[bytes] = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigurationError(f"{what} secrets must be strings")
        if not item:
            raise ConfigurationError(f"{what} secrets must not be empty")
        out.append(item.encode("utf-8"))
    return tuple(out)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup that is fast for multidict's CI proxies."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, val in headers.items():
        if key.lower() == lowered:
            return val
    return None


def _as_bytes(value: str) -> bytes:
    """Header text as bytes for a constant-time compare; odd characters are a malformed header."""
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        raise SignatureError("malformed header") from None


def _matches(candidate: bytes, secrets: tuple[bytes, ...]) -> bool:
    # Compare against every secret (no early exit) so timing does not reveal which one matched.
    found = False
    for secret in secrets:
        found |= hmac.compare_digest(candidate, secret)
    return found


class Verifier:
    """Base class of the verifiers; the receiver relies only on these members.

    ``uses_path_token`` tells the HTTP adapter to serve ``{path}/{token}`` and pass the last
    segment to :meth:`verify` as ``path_token``.
    """

    uses_path_token: ClassVar[bool] = False

    def verify(
        self, body: bytes, headers: Mapping[str, str], *, path_token: str | None = None
    ) -> None:
        """Return when the delivery is authentic; raise :class:`SignatureError` otherwise."""
        raise NotImplementedError

    def authenticate(self, url: str, body: bytes) -> tuple[str, dict[str, str]]:
        """The URL and headers a sender must use so that this verifier accepts ``body``."""
        raise NotImplementedError


class NoVerification(Verifier):
    """Accept every delivery. Only for local development: choose it explicitly."""

    def __repr__(self) -> str:
        return "NoVerification()"

    def verify(
        self, body: bytes, headers: Mapping[str, str], *, path_token: str | None = None
    ) -> None:
        return None

    def authenticate(self, url: str, body: bytes) -> tuple[str, dict[str, str]]:
        return url, {}


class SharedSecretHeader(Verifier):
    """The header equals one of the secrets, bare or after ``Bearer ``."""

    def __init__(self, secrets: Secrets, header: str = "Authorization") -> None:
        self._secrets = _secrets(secrets, "SharedSecretHeader")
        self.header = header

    def __repr__(self) -> str:
        return f"SharedSecretHeader(header={self.header!r}, secrets=<{len(self._secrets)} hidden>)"

    def verify(
        self, body: bytes, headers: Mapping[str, str], *, path_token: str | None = None
    ) -> None:
        value = headers.get(self.header)  # found at once in a case-insensitive mapping
        if value is None:
            value = _header(headers, self.header)
            if value is None:
                raise SignatureError(f"missing {self.header} header")
        value = value.strip()
        if value[:7].lower() == "bearer ":
            value = value[7:].lstrip()
        if not _matches(_as_bytes(value), self._secrets):
            raise SignatureError(f"{self.header} header does not match any secret")

    def authenticate(self, url: str, body: bytes) -> tuple[str, dict[str, str]]:
        return url, {self.header: self._secrets[0].decode("utf-8")}


class _Signer(Protocol):
    def __call__(
        self, body: bytes, secret: str, timestamp: int | None = None
    ) -> dict[str, str]: ...


_T = TypeVar("_T")


class _class_or_instance(Generic[_T]):
    """Bind to the instance when there is one, else to the class (for ``HmacSignature.sign``)."""

    def __init__(self, func: Callable[..., _T]) -> None:
        self._func = func
        self.__doc__ = func.__doc__

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> _Signer: ...
    @overload
    def __get__(self, obj: object, owner: type[Any]) -> _Signer: ...
    def __get__(self, obj: object | None, owner: type[Any]) -> _Signer:
        target: object = owner if obj is None else obj
        func = self._func

        def bound(body: bytes, secret: str, timestamp: int | None = None) -> dict[str, str]:
            result: Any = func(target, body, secret, timestamp)
            return result  # type: ignore[no-any-return]

        return bound


class HmacSignature(Verifier):
    """HMAC-SHA256 over ``f"{timestamp}.".encode() + body``, with a replay window.

    The timestamp header holds Unix seconds; the signature header holds one or more
    comma-separated ``sha256=<hex>`` values (several while a sender rotates).  A delivery is
    valid when any value matches any secret and ``|now - timestamp| <= tolerance``.
    """

    DEFAULT_HEADER: ClassVar[str] = "X-Ultimate-Signature"
    DEFAULT_TIMESTAMP_HEADER: ClassVar[str] = "X-Ultimate-Timestamp"

    def __init__(
        self,
        secrets: Secrets,
        header: str = DEFAULT_HEADER,
        timestamp_header: str = DEFAULT_TIMESTAMP_HEADER,
        tolerance: float = 300,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secrets = _secrets(secrets, "HmacSignature")
        if tolerance < 0:
            raise ConfigurationError("HmacSignature tolerance must not be negative")
        self.header = header
        self.timestamp_header = timestamp_header
        self.tolerance = tolerance
        self._clock = clock

    def __repr__(self) -> str:
        return (
            f"HmacSignature(header={self.header!r}, timestamp_header={self.timestamp_header!r}, "
            f"tolerance={self.tolerance!r}, secrets=<{len(self._secrets)} hidden>)"
        )

    @staticmethod
    def _digest(secret: bytes, timestamp: str, body: bytes) -> str:
        return hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()

    @_class_or_instance
    def sign(
        self_or_cls: Any,  # the class or an instance
        body: bytes,
        secret: str,
        timestamp: int | None = None,
    ) -> dict[str, str]:
        """The headers that make ``body`` verify under ``secret`` (now, unless ``timestamp``).

        Called on the class it uses the default header names; on an instance, that instance's
        header names and clock.
        """
        if isinstance(self_or_cls, HmacSignature):
            header, ts_header = self_or_cls.header, self_or_cls.timestamp_header
            clock = self_or_cls._clock
        else:
            header, ts_header = HmacSignature.DEFAULT_HEADER, HmacSignature.DEFAULT_TIMESTAMP_HEADER
            clock = time.time
        ts = str(int(clock()) if timestamp is None else int(timestamp))
        digest = HmacSignature._digest(secret.encode("utf-8"), ts, body)
        return {ts_header: ts, header: f"sha256={digest}"}

    def verify(
        self, body: bytes, headers: Mapping[str, str], *, path_token: str | None = None
    ) -> None:
        raw_ts = _header(headers, self.timestamp_header)
        raw_sig = _header(headers, self.header)
        if raw_ts is None:
            raise SignatureError(f"missing {self.timestamp_header} header")
        if raw_sig is None:
            raise SignatureError(f"missing {self.header} header")
        ts = raw_ts.strip()
        if not ts.isascii() or not ts.isdigit() or len(ts) > 15:
            raise SignatureError(f"malformed {self.timestamp_header} header")
        skew = self._clock() - int(ts)
        if abs(skew) > self.tolerance:
            raise SignatureError("timestamp outside the tolerance window")
        offered: list[bytes] = []
        for part in raw_sig.split(","):
            scheme, sep, value = part.strip().partition("=")
            if sep and scheme.strip().lower() == "sha256":
                offered.append(_as_bytes(value.strip().lower()))
        if not offered:
            raise SignatureError(f"malformed {self.header} header")
        expected = tuple(self._digest(s, ts, body).encode("ascii") for s in self._secrets)
        found = False
        for candidate in offered:
            found |= _matches(candidate, expected)
        if not found:
            raise SignatureError("signature does not match any secret")

    def authenticate(self, url: str, body: bytes) -> tuple[str, dict[str, str]]:
        return url, self.sign(body, self._secrets[0].decode("utf-8"))


class UrlToken(Verifier):
    """The webhook URL ends in a secret path segment: ``{path}/{token}``.

    Works whatever the platform sends, since the dashboard only needs the URL.
    """

    uses_path_token: ClassVar[bool] = True

    def __init__(self, secrets: Secrets) -> None:
        self._secrets = _secrets(secrets, "UrlToken")
        for secret in self._secrets:
            if b"/" in secret:
                raise ConfigurationError("UrlToken tokens must not contain '/'")

    def __repr__(self) -> str:
        return f"UrlToken(secrets=<{len(self._secrets)} hidden>)"

    def _valid(self, token: str) -> bool:
        try:
            candidate = token.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return _matches(candidate, self._secrets)

    def verify(
        self, body: bytes, headers: Mapping[str, str], *, path_token: str | None = None
    ) -> None:
        if not path_token:
            raise SignatureError("missing URL token")
        if not self._valid(path_token):
            raise SignatureError("URL token does not match any secret")

    def authenticate(self, url: str, body: bytes) -> tuple[str, dict[str, str]]:
        parts = urlsplit(url)
        path = parts.path
        last = path.rstrip("/").rpartition("/")[2]
        if last and self._valid(unquote(last)):
            return url, {}
        token = quote(self._secrets[0].decode("utf-8"), safe="")
        new_path = path.rstrip("/") + "/" + token
        return urlunsplit(parts._replace(path=new_path)), {}
