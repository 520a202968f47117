"""Webhook delivery: per-conversation FIFO workers and the HTTP POST with retries.

Ordering: the jobs of one conversation run one after another (a job POSTs, waits for the HTTP
answer, retries if needed, then the next job starts); different conversations run concurrently.
The receiver's :class:`~ultimate_async.webhook.ordering.KeyedExecutor` does it (one worker task
per conversation *with pending work*, so a million finished conversations leave nothing behind).

Retries (the platform's behaviour is undocumented, so this is our choice): a *notification*
(``sendMessage``, ``widget*``, ticket reply) is retried when the receiver is unreachable, times
out, or answers 408, 429 or 5xx - at most ``attempts`` tries, waiting ``backoff * 2**n`` seconds
(or the receiver's ``Retry-After``), capped at ``max_backoff``.  Any other 4xx is final.  A
*request* (``isTeamOnline``, ``escalate``, actions) is answered by the receiver's handler, so it
is retried only when the connection could not be made at all (it cannot have run); any HTTP
answer is final.  Deliveries that end without a 2xx are counted in ``SimulatorStats.failed``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import aiohttp
import attrs

from .._http import parse_retry_after
from ..webhook.ordering import KeyedExecutor
from .faults import FaultInjector

__all__ = [
    "Authenticator",
    "ConversationQueues",
    "DeliveryRecord",
    "Outcome",
    "SimulatorStats",
    "WebhookSender",
]

log = logging.getLogger("ultimate_async.simulator")

Job = Callable[[], Awaitable[None]]


class Authenticator(Protocol):
    """The client side of a webhook verifier (every ``ultimate_async.webhook.verify`` class)."""

    def authenticate(self, url: str, body: bytes) -> tuple[str, dict[str, str]]: ...


@attrs.define
class SimulatorStats:
    """Counters of what the simulator did; cheap to read at any time.

    ``api_requests``: requests received (any status); ``api_faults``: of those, refused by
    ``Faults.error_rate``; ``attempts``: webhook POSTs made; ``delivered``: deliveries answered
    2xx (duplicates included); ``retries``: repeated attempts; ``failed``: deliveries given up
    (no 2xx in the end); ``duplicates``: injected second deliveries; ``dropped``: deliveries
    with no ``webhook_url`` set.
    """

    api_requests: int = 0
    api_faults: int = 0
    attempts: int = 0
    delivered: int = 0
    retries: int = 0
    failed: int = 0
    duplicates: int = 0
    dropped: int = 0


@attrs.frozen
class DeliveryRecord:
    """One webhook the simulator delivered (or gave up on).

    ``url`` is the configured webhook URL (without a verifier's token); ``status`` is the last
    HTTP answer (``None``: no answer); ``duplicate`` marks an injected second delivery.
    """

    conversation_id: str | None
    kind: str
    url: str | None
    payload: dict[str, Any]
    status: int | None
    attempts: int
    duplicate: bool = False

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@attrs.frozen
class Outcome:
    """The final answer to one delivery."""

    status: int | None
    body: bytes

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def json(self) -> Any:
        """The answer body as JSON, or ``None`` when it is not JSON."""
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None


class ConversationQueues:
    """The simulator's jobs in per-conversation order, on the receiver's own executor.

    One ordering mechanism in the package: :class:`~ultimate_async.webhook.ordering.KeyedExecutor`
    runs the jobs (FIFO per conversation, concurrent across conversations, no cap: the
    simulator plays a platform, which does not throttle itself).  This adds the simulator's
    shutdown rule (no job after :meth:`aclose`) and its log line for a job that raised.
    """

    def __init__(self) -> None:
        self._executor: KeyedExecutor[tuple[str, Job]] = KeyedExecutor(_run_job, None)
        self._closed = False

    @property
    def pending(self) -> int:
        """Jobs submitted and not finished yet."""
        return self._executor.pending

    @property
    def active(self) -> int:
        """Conversations with queued or running jobs."""
        return self._executor.active_keys

    def submit(self, key: str, job: Job) -> None:
        if self._closed:
            raise RuntimeError("the simulator is shutting down")
        self._executor.submit(key, (key, job))

    async def wait_idle(self) -> None:
        """Wait until every submitted job (including those submitted meanwhile) has finished."""
        await self._executor.wait_idle()

    async def aclose(self) -> None:
        """Cancel all jobs and wait for them to finish."""
        self._closed = True
        await self._executor.cancel_all()


async def _run_job(item: tuple[str, Job]) -> bool:
    key, job = item
    try:
        await job()
    except Exception:
        log.exception("simulator job failed for conversation %s", key)
        return False
    return True


class WebhookSender:
    """POSTs webhook bodies, signed by the verifier, with the retry rules of this module."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        *,
        verifier: Authenticator | None,
        injector: FaultInjector,
        stats: SimulatorStats,
        records: list[DeliveryRecord] | None,
        attempts: int = 4,
        backoff: float = 0.05,
        max_backoff: float = 2.0,
        timeout: float = 30.0,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be >= 1")
        self.http = http
        self.verifier = verifier
        self.injector = injector
        self.stats = stats
        self.records = records
        self.attempts = attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def send(
        self,
        url: str | None,
        payload: dict[str, Any],
        *,
        conversation_id: str | None,
        kind: str,
        request: bool = False,
    ) -> Outcome:
        """Deliver ``payload``; the outcome is the receiver's last answer."""
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        if url is None:
            self.stats.dropped += 1
            log.warning("simulator has no webhook_url; dropped %s for %s", kind, conversation_id)
            self._record(conversation_id, kind, url, payload, Outcome(None, b""), 0, False)
            return Outcome(None, b"")
        outcome, tries = await self._deliver(url, body, request)
        self._record(conversation_id, kind, url, payload, outcome, tries, False)
        if not outcome.ok:
            self.stats.failed += 1
            log.warning(
                "simulator gave up delivering %s for %s after %d attempt(s) (last status %s)",
                kind,
                conversation_id,
                tries,
                outcome.status,
            )
        elif not request and _is_message(payload) and self.injector.duplicate():
            self.stats.duplicates += 1
            dup, dup_tries = await self._deliver(url, body, request)
            self._record(conversation_id, kind, url, payload, dup, dup_tries, True)
        return outcome

    def _record(
        self,
        conversation_id: str | None,
        kind: str,
        url: str | None,
        payload: dict[str, Any],
        outcome: Outcome,
        tries: int,
        duplicate: bool,
    ) -> None:
        if self.records is not None:
            self.records.append(
                DeliveryRecord(
                    conversation_id, kind, url, payload, outcome.status, tries, duplicate
                )
            )

    async def _deliver(self, url: str, body: bytes, request: bool) -> tuple[Outcome, int]:
        outcome = Outcome(None, b"")
        for attempt in range(1, self.attempts + 1):
            delay = self.injector.latency()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.verifier is not None:
                target, auth_headers = self.verifier.authenticate(url, body)
            else:
                target, auth_headers = url, {}
            headers = {"Content-Type": "application/json", **auth_headers}
            self.stats.attempts += 1
            retry_after: float | None = None
            try:
                async with self.http.post(
                    target, data=body, headers=headers, timeout=self._timeout
                ) as resp:
                    outcome = Outcome(resp.status, await resp.read())
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            except aiohttp.ClientConnectorError:
                outcome = Outcome(None, b"")
                retryable = True  # never reached the receiver: safe even for requests
            except (aiohttp.ClientError, TimeoutError):
                outcome = Outcome(None, b"")
                retryable = not request
            else:
                if outcome.ok:
                    self.stats.delivered += 1
                    return outcome, attempt
                status = outcome.status or 0
                retryable = not request and (status in (408, 429) or status >= 500)
            if not retryable or attempt == self.attempts:
                return outcome, attempt
            self.stats.retries += 1
            wait = retry_after if retry_after is not None else self.backoff * 2 ** (attempt - 1)
            await asyncio.sleep(min(wait, self.max_backoff))
        return outcome, self.attempts


def _is_message(payload: dict[str, Any]) -> bool:
    data = payload.get("data")
    return isinstance(data, dict) and bool(data.get("messageId"))
