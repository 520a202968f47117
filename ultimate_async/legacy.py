"""``LegacyClient``: the synchronous v2 APIs on chat.ultimate.ai (automation, intents, GDPR).

Unlike ``Session``, these endpoints answer in the HTTP response itself, so the body is read and
structured into the models of :mod:`ultimate_async.models.legacy`.  Transport, retries and error
mapping are the same code as ``Session`` (:mod:`ultimate_async._http`).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from typing import Any, Final, TypeVar

import aiohttp
from yarl import URL

from ._http import Transport, TransportClient
from ._json import dumps, loads
from ._retry import RetryPolicy
from .errors import ConfigurationError, ResponseDecodeError
from .models.legacy import AutomationReply, IntentsResult, structure_legacy
from .models.outbound import MetaDataInput, add_metadata, require_nonempty

__all__ = ["LegacyClient"]

T = TypeVar("T")

DEFAULT_BASE_URL: Final = "https://chat.ultimate.ai"
_DEFAULT_RETRY: Final = RetryPolicy()
_AUTOMATION_EVENTS: Final = frozenset({"startSession", "message", "endSession"})


class LegacyClient(TransportClient):
    """A client for ``https://chat.ultimate.ai``'s synchronous APIs.

    Credentials: ``basic_token`` (the base64 ``email:password`` string, with or without the
    ``Basic`` prefix) or ``email`` + ``password`` give ``Authorization: Basic …``, used by
    :meth:`automation` and :meth:`delete_user_data`.  ``access_token`` (dashboard → Tokens), when
    given, is sent raw for :meth:`intents`; otherwise intents use Basic too.  At least one
    credential is required at construction; a call whose credential is missing raises
    ``ConfigurationError`` before sending anything.
    """

    __slots__ = (
        "_access_token",
        "_automation_url",
        "_basic",
        "_delete_url",
        "_intents_url",
        "_transport",
    )

    def __init__(
        self,
        *,
        basic_token: str | None = None,
        email: str | None = None,
        password: str | None = None,
        access_token: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float | None = 30.0,
        connect_timeout: float | None = None,
        retry: RetryPolicy = _DEFAULT_RETRY,
        http_session: aiohttp.ClientSession | None = None,
        connector_limit: int = 100,
    ) -> None:
        if basic_token is not None and (email is not None or password is not None):
            raise ConfigurationError("give either basic_token or email + password, not both")
        if (email is None) != (password is None):
            raise ConfigurationError("email and password must be given together")
        if email is not None and password is not None:
            basic_token = base64.b64encode(f"{email}:{password}".encode()).decode("ascii")
        elif basic_token is not None:
            basic_token = basic_token.removeprefix("Basic ").strip() or None
        if not basic_token and not access_token:
            raise ConfigurationError(
                "LegacyClient needs credentials: basic_token, email + password, or access_token"
            )
        if not base_url.startswith(("http://", "https://")):
            raise ConfigurationError(f"base_url must be an http(s) URL, got {base_url!r}")
        self._basic = f"Basic {basic_token}" if basic_token else None
        self._access_token = access_token or None
        default_auth = self._basic or self._access_token or ""
        self._transport = Transport(
            base_url,
            headers={"Authorization": default_auth, "Content-Type": "application/json"},
            timeout=timeout,
            connect_timeout=connect_timeout,
            retry=retry,
            http_session=http_session,
            connector_limit=connector_limit,
            secrets=tuple(s for s in (basic_token, password, access_token) if s),
        )
        self._automation_url = self._transport.url("/api/v2/automation")
        self._intents_url = self._transport.url("/api/intents")
        self._delete_url = self._transport.url("/api/gdpr/delete-user-data")

    @property
    def base_url(self) -> str:
        """The host every endpoint path is appended to."""
        return self._transport.base_url

    async def automation(
        self,
        bot_id: str,
        conversation_id: str,
        event_type: str,
        *,
        text: str | None = None,
        metadata: MetaDataInput | None = None,
    ) -> AutomationReply:
        """``POST /api/v2/automation``: send an event and get the bot's reply in the response.

        ``event_type`` is ``"startSession"``, ``"message"`` (needs ``text``) or ``"endSession"``.
        """
        body: dict[str, Any] = {
            "botId": require_nonempty("bot_id", bot_id),
            "conversationId": require_nonempty("conversation_id", conversation_id),
            "eventType": require_nonempty("event_type", event_type),
        }
        if event_type not in _AUTOMATION_EVENTS:
            raise ValueError(
                f"event_type must be one of {sorted(_AUTOMATION_EVENTS)}, got {event_type!r}"
            )
        if event_type == "message":
            body["text"] = require_nonempty("text", text)
        elif text is not None:
            body["text"] = text
        hidden: Sequence[str] = ()
        if metadata is not None:
            hidden = add_metadata(body, "metaData", metadata)
        auth = self._require_basic("automation")
        return await self._call(
            self._automation_url,
            body,
            auth,
            AutomationReply,
            redact=hidden,
            call="legacy.automation",
            conversation_id=conversation_id,
        )

    async def intents(
        self, bot_id: str, message: str, *, conversation_id: str | None = None
    ) -> IntentsResult:
        """``POST /api/intents``: classify ``message`` into intents and entities."""
        body: dict[str, Any] = {
            "botId": require_nonempty("bot_id", bot_id),
            "message": require_nonempty("message", message),
        }
        if conversation_id is not None:
            body["conversationId"] = require_nonempty("conversation_id", conversation_id)
        auth = self._access_token or self._require_basic("intents")
        return await self._call(self._intents_url, body, auth, IntentsResult, call="legacy.intents")

    async def delete_user_data(self, conversation_ids: Iterable[str]) -> None:
        """``POST /api/gdpr/delete-user-data``: erase the data of these conversations."""
        if isinstance(conversation_ids, str | bytes):
            raise ValueError("conversation_ids must be a list of ids, not a single string")
        ids = [require_nonempty("conversation_ids[]", cid) for cid in conversation_ids]
        if not ids:
            raise ValueError("conversation_ids must not be empty")
        auth = self._require_basic("delete_user_data")
        body = dumps({"conversationIds": ids})
        await self._transport.post(
            self._delete_url, body, headers={"Authorization": auth}, call="legacy.delete_user_data"
        )

    def _require_basic(self, call: str) -> str:
        if self._basic is None:
            raise ConfigurationError(f"{call} needs Basic credentials (basic_token or email)")
        return self._basic

    async def _call(
        self,
        url: URL,
        body: dict[str, Any],
        auth: str,
        cls: type[T],
        redact: Sequence[str] = (),
        *,
        call: str,
        conversation_id: str | None = None,
    ) -> T:
        """POST ``body`` and structure the JSON reply as ``cls``."""
        data = await self._transport.post(
            url,
            dumps(body),
            headers={"Authorization": auth},
            read_body=True,
            redact=redact,
            call=call,
            conversation_id=conversation_id,
        )
        what = f"POST {url} reply"
        try:
            raw = loads(data or b"")
        except ValueError as exc:
            raise ResponseDecodeError(f"unexpected {what}", ["body is not JSON"]) from exc
        return structure_legacy(raw, cls, what)

    def __repr__(self) -> str:
        auth = [n for n, v in (("basic", self._basic), ("access_token", self._access_token)) if v]
        state = " closed" if self.closed else ""
        return f"<LegacyClient base_url={self.base_url!r} auth={'+'.join(auth)}{state}>"
