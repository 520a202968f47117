"""Several receiver replicas sharing one Redis: de-duplication and event routing.

Install the extra (``pip install 'ultimate_async[redis]'``) and pass both to the receiver::

    receiver = WebhookReceiver(verifier, dedup=RedisDeduplicator(url), bus=RedisEventBus(url))

Key layout (``prefix`` is ``key_prefix``, ``"ultimate_async"`` by default, so two bots can share
one Redis by choosing different prefixes):

- ``{prefix}:dedup:{key}`` -- a claimed delivery key, expires after ``ttl``;
- ``{prefix}:owner:{conversation_id}`` -- the replica id holding the conversation, expires after
  ``announce_ttl`` unless renewed (every ``renew_interval``) by the live holder;
- ``{prefix}:inbox:{replica_id}`` -- a list of events forwarded to that replica, consumed in
  order; it expires ``inbox_ttl`` after the last push, so a dead replica's inbox does not grow.

Order: the events of one conversation that reach the holder through its inbox are delivered in
the order they were pushed, so events posted in sequence (each answered before the next is sent)
keep their order, whichever replicas received them.  An event posted straight to the holder
right after one forwarded through another replica is ordered behind it as long as the holder
popped the forwarded one first: it was pushed before the other replica answered 200 and is popped
within one Redis round trip, so in practice it is, but that case is not a hard guarantee.

A replica that dies without closing stops being a target once its announcements expire.  Until
then events for its conversations wait in its inbox: a replica restarted with the same
``replica_id`` (a pod name, say) picks them up; otherwise they expire with the inbox.  Keep
``announce_ttl`` short (seconds) to keep that window small.  (A separate per-replica heartbeat
key was considered and left out: it would shorten the same window, not close it.)

When Redis cannot be reached, :meth:`RedisDeduplicator.claim` and :meth:`RedisEventBus.forward`
raise :class:`~ultimate_async.errors.BackendUnavailableError` (the receiver answers 503 so the
platform retries); each object logs one warning per outage on the ``ultimate_async.redis``
logger and one info line when Redis answers again.  The background consumer and renewer retry
with backoff and re-announce every held conversation after an outage.

Only a standalone Redis (or Sentinel-managed primary) is supported: the scripts touch keys that
live in different cluster slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Mapping
from typing import Any

try:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialWithJitterBackoff
    from redis.exceptions import RedisError
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "ultimate_async.redis needs redis-py: pip install 'ultimate_async[redis]'"
    ) from exc

from ._json import dumps, loads
from .bus import Deliver
from .errors import BackendUnavailableError

__all__ = ["RedisDeduplicator", "RedisEventBus"]

logger = logging.getLogger("ultimate_async.redis")

DEFAULT_PREFIX = "ultimate_async"

#: Errors that mean "Redis cannot serve us right now".  A server answering with an error
#: (OOM, READONLY after a fail-over, NOAUTH) is as unusable for a webhook as a dead one.
_BACKEND_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError)


# -- connections -----------------------------------------------------------------------------


def _owned_client(url: str, redis_kwargs: Mapping[str, Any]) -> aioredis.Redis:
    """A client whose defaults suit a webhook path: fail within milliseconds, not seconds.

    redis-py retries a refused connection ten times by default; a delivery should rather be
    answered 503 quickly and retried by the platform.
    """
    kwargs: dict[str, Any] = {
        "retry": Retry(ExponentialWithJitterBackoff(cap=0.1, base=0.01), retries=2),
        "max_connections": 512,
    }
    kwargs.update(redis_kwargs)
    return aioredis.Redis.from_url(url, **kwargs)


def _resolve_client(
    url: str | None, client: aioredis.Redis | None, redis_kwargs: Mapping[str, Any]
) -> tuple[aioredis.Redis, bool]:
    if (url is None) == (client is None):
        raise TypeError("pass either a Redis url or a ready redis.asyncio.Redis client")
    if client is not None:
        if redis_kwargs:
            raise TypeError("connection options apply only when a url is given")
        return client, False
    assert url is not None
    return _owned_client(url, redis_kwargs), True


def _describe(client: aioredis.Redis) -> tuple[str, str | None]:
    """Where the client points, for logs (never credentials), and the password to redact."""
    pool = client.connection_pool
    kw = pool.connection_kwargs
    password = kw.get("password")
    db = kw.get("db", 0)
    if kw.get("path"):
        where = f"unix://{kw['path']}?db={db}"
    else:
        scheme = "rediss" if "SSL" in pool.connection_class.__name__ else "redis"
        where = f"{scheme}://{kw.get('host', 'localhost')}:{kw.get('port', 6379)}/{db}"
    return where, password if isinstance(password, str) and password else None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class _Outage:
    """Tracks whether Redis is reachable, so an outage is logged once and its end once."""

    def __init__(self, component: str, where: str, password: str | None) -> None:
        self.component = component
        self.where = where
        self._password = password
        self.down = False

    def _reason(self, exc: BaseException) -> str:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if self._password:
            reason = reason.replace(self._password, "***")
        return reason

    def failed(self, exc: BaseException) -> BackendUnavailableError:
        """Record a failure; return the error to raise (chain it with ``from exc``)."""
        reason = self._reason(exc)
        if not self.down:
            self.down = True
            logger.warning(
                "%s: Redis at %s is unavailable (%s); not logging again until it recovers",
                self.component,
                self.where,
                reason,
            )
        return BackendUnavailableError(
            f"{self.component}: Redis at {self.where} is unavailable ({reason})"
        )

    def ok(self) -> bool:
        """Record a success; True when it ends an outage."""
        if not self.down:
            return False
        self.down = False
        logger.info("%s: Redis at %s recovered", self.component, self.where)
        return True


def _px(seconds: float) -> int:
    return max(1, round(seconds * 1000))


# -- de-duplication --------------------------------------------------------------------------


class RedisDeduplicator:
    """The :class:`~ultimate_async.webhook.dedup.Deduplicator` shared by every replica.

    ``claim`` is one atomic ``SET key 1 NX PX ttl``: whichever replica sets the key first handles
    the delivery, every other copy (on any replica) is a duplicate for ``ttl`` seconds.

    Pass a Redis ``url`` (plus any ``redis.asyncio.Redis.from_url`` options, e.g.
    ``max_connections``) or a ready ``client``; a given client is borrowed and not closed.
    """

    def __init__(
        self,
        url: str | None = None,
        ttl: float = 600.0,
        *,
        key_prefix: str = DEFAULT_PREFIX,
        client: aioredis.Redis | None = None,
        **redis_kwargs: Any,
    ) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.ttl = ttl
        self.key_prefix = key_prefix
        self._client, self._owns_client = _resolve_client(url, client, redis_kwargs)
        where, password = _describe(self._client)
        self._outage = _Outage("Redis de-duplication", where, password)
        # Keys whose ``forget`` failed during an outage: dropped as soon as Redis answers, so
        # the platform's retry of a refused delivery is not mistaken for a duplicate.
        self._unforgotten: set[str] = set()
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"RedisDeduplicator(where={self._outage.where!r}, ttl={self.ttl!r}, "
            f"key_prefix={self.key_prefix!r})"
        )

    @property
    def client(self) -> aioredis.Redis:
        """The redis-py client in use (for health checks and tests)."""
        return self._client

    def key(self, key: str) -> str:
        """The Redis key that records delivery ``key``."""
        return f"{self.key_prefix}:dedup:{key}"

    async def claim(self, key: str) -> bool:
        """Record ``key`` for all replicas; False when any replica already claimed it."""
        try:
            if self._unforgotten:
                await self._flush_unforgotten()
            claimed = await self._client.set(self.key(key), b"1", nx=True, px=_px(self.ttl))
        except _BACKEND_ERRORS as exc:
            raise self._outage.failed(exc) from exc
        self._outage.ok()
        return bool(claimed)

    async def forget(self, key: str) -> None:
        """Drop a claim so a redelivery is handled; retried later if Redis is down now."""
        self._unforgotten.add(key)
        try:
            await self._flush_unforgotten()
        except _BACKEND_ERRORS as exc:
            self._outage.failed(exc)
            return
        self._outage.ok()

    async def _flush_unforgotten(self) -> None:
        keys = list(self._unforgotten)
        await self._client.delete(*(self.key(k) for k in keys))
        self._unforgotten.difference_update(keys)

    async def aclose(self) -> None:
        """Close the client if this object created it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._unforgotten:
            with contextlib.suppress(*_BACKEND_ERRORS):
                await self._flush_unforgotten()
            if self._unforgotten:
                logger.warning(
                    "Redis de-duplication: closing with %d claim(s) not withdrawn; their "
                    "redeliveries count as duplicates until the claims expire",
                    len(self._unforgotten),
                )
        if self._owns_client:
            await self._client.aclose()


# -- event bus -------------------------------------------------------------------------------

#: KEYS[1] owner key; ARGV: our id, payload, inbox key prefix, inbox ttl (ms).
#: Returns the owner's id, or nil when nobody else holds the conversation.
_FORWARD = """
local owner = redis.call('GET', KEYS[1])
if not owner or owner == ARGV[1] then return false end
local inbox = ARGV[3] .. owner
redis.call('RPUSH', inbox, ARGV[2])
redis.call('PEXPIRE', inbox, ARGV[4])
return owner
"""

#: KEYS: owner keys; ARGV: our id, ttl (ms). Announce each key that is ours or free; leave the
#: ones another replica took over since (the newest holder wins).
_RENEW = """
local n = 0
for _, key in ipairs(KEYS) do
  local owner = redis.call('GET', key)
  if not owner or owner == ARGV[1] then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
    n = n + 1
  end
end
return n
"""

#: KEYS: owner keys; ARGV: our id. Delete only the announcements that are still ours.
_RELEASE = """
local n = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('DEL', key)
    n = n + 1
  end
end
return n
"""

_BATCH = 500  # keys per renew/release script call, and events per inbox read


class RedisEventBus:
    """The :class:`~ultimate_async.bus.EventBus` for replicas sharing one Redis.

    A replica announces each conversation it holds under ``{prefix}:owner:{cid}`` (its
    ``replica_id`` with an expiry, renewed while held).  ``forward`` pushes an event to the
    holder's inbox list; each replica pops its own inbox in a background task started by
    :meth:`start` and hands events to the receiver one at a time, so events forwarded in
    sequence are delivered in sequence.  If two replicas hold the same conversation, the most
    recent :meth:`hold` wins; when it releases, the other re-announces at its next renewal.

    ``announce_ttl`` bounds how long a dead replica stays a forwarding target; renewals run every
    ``renew_interval`` (default a third of it).  ``inbox_ttl`` bounds how long events wait in
    the inbox of a replica that stopped consuming (the sender sets it on each push, so use the
    same value on every replica).  ``max_backoff`` caps the consumer's and renewer's retry delay
    while Redis is unreachable; ``block_timeout`` is how long one inbox read blocks.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        key_prefix: str = DEFAULT_PREFIX,
        announce_ttl: float = 15.0,
        renew_interval: float | None = None,
        inbox_ttl: float = 300.0,
        replica_id: str | None = None,
        block_timeout: float = 1.0,
        max_backoff: float = 2.0,
        client: aioredis.Redis | None = None,
        **redis_kwargs: Any,
    ) -> None:
        if announce_ttl <= 0 or inbox_ttl <= 0 or block_timeout <= 0 or max_backoff <= 0:
            raise ValueError("announce_ttl, inbox_ttl, block_timeout, max_backoff must be > 0")
        if renew_interval is None:
            renew_interval = announce_ttl / 3
        if not 0 < renew_interval < announce_ttl:
            raise ValueError("renew_interval must be positive and shorter than announce_ttl")
        self.key_prefix = key_prefix
        self.announce_ttl = announce_ttl
        self.renew_interval = renew_interval
        self.inbox_ttl = inbox_ttl
        self.replica_id = replica_id or uuid.uuid4().hex
        self.block_timeout = block_timeout
        self.max_backoff = max_backoff
        self._client, self._owns_client = _resolve_client(url, client, redis_kwargs)
        where, password = _describe(self._client)
        self._outage = _Outage(f"Redis event bus (replica {self.replica_id})", where, password)
        self._forward_script = self._client.register_script(_FORWARD)
        self._renew_script = self._client.register_script(_RENEW)
        self._release_script = self._client.register_script(_RELEASE)
        self._held: set[str] = set()
        # hold/release run one at a time, each making Redis match the *current* local state, so
        # a quick hold-release-hold sequence cannot leave the last word to a stale command.
        self._announce_lock = asyncio.Lock()
        self._deliver: Deliver | None = None
        self._consumer: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._renew_now = asyncio.Event()
        self._stop_token = uuid.uuid4().hex
        self._closed = False
        self._close_task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return (
            f"RedisEventBus(where={self._outage.where!r}, replica_id={self.replica_id!r}, "
            f"key_prefix={self.key_prefix!r}, held={len(self._held)})"
        )

    @property
    def client(self) -> aioredis.Redis:
        """The redis-py client in use (for health checks and tests)."""
        return self._client

    @property
    def held(self) -> frozenset[str]:
        """The conversations this replica currently holds."""
        return frozenset(self._held)

    def owner_key(self, conversation_id: str) -> str:
        return f"{self.key_prefix}:owner:{conversation_id}"

    def inbox_key(self, replica_id: str | None = None) -> str:
        return f"{self.key_prefix}:inbox:{self.replica_id if replica_id is None else replica_id}"

    # -- the EventBus protocol ----------------------------------------------------------------

    async def start(self, deliver: Deliver) -> None:
        """Begin consuming this replica's inbox, handing each event to ``deliver`` in order."""
        if self._closed:
            raise RuntimeError("this RedisEventBus is closed")
        self._deliver = deliver
        if self._consumer is None:
            self._consumer = asyncio.create_task(
                self._consume(), name=f"ultimate_async.redis consumer {self.replica_id}"
            )
        self._ensure_renewer()

    async def hold(self, conversation_id: str) -> None:
        """Announce ``conversation_id`` as ours; returns once other replicas route it here.

        Raises :class:`BackendUnavailableError` when Redis is down; the conversation stays held
        and is announced by the renewer as soon as Redis answers.
        """
        if self._closed:
            raise RuntimeError("this RedisEventBus is closed")
        self._held.add(conversation_id)
        self._ensure_renewer()
        await self._sync(conversation_id)

    async def release(self, conversation_id: str) -> None:
        """Withdraw the announcement if it is still ours (never raises: it expires anyway)."""
        self._held.discard(conversation_id)
        if self._closed:
            return
        with contextlib.suppress(BackendUnavailableError):
            await self._sync(conversation_id)

    async def forward(self, conversation_id: str, raw: Mapping[str, Any]) -> bool:
        """Push ``raw`` to the inbox of the replica holding ``conversation_id``.

        Returns False when no other replica holds it (the caller dispatches locally).
        """
        if self._closed:
            raise BackendUnavailableError("Redis event bus: closed")
        if conversation_id in self._held:
            return False
        payload = dumps({"cid": conversation_id, "raw": dict(raw)})
        try:
            owner = await self._forward_script(
                keys=[self.owner_key(conversation_id)],
                args=[self.replica_id, payload, self.inbox_key(""), _px(self.inbox_ttl)],
            )
        except _BACKEND_ERRORS as exc:
            raise self._outage.failed(exc) from exc
        self._recovered()
        return owner is not None

    async def aclose(self) -> None:
        """Stop the background tasks, withdraw every announcement, close an owned client.

        Events already in this replica's inbox are delivered before the consumer stops.
        Idempotent; concurrent callers wait for the same shutdown.
        """
        if self._close_task is None:
            self._closed = True
            self._close_task = asyncio.create_task(self._shutdown())
        await asyncio.shield(self._close_task)

    async def _shutdown(self) -> None:
        held, self._held = list(self._held), set()
        await _cancel(self._renewer)
        if held:
            try:
                await self._script_in_batches(self._release_script, held, [self.replica_id])
            except _BACKEND_ERRORS as exc:
                self._outage.failed(exc)
        await self._stop_consumer()
        if self._owns_client:
            await self._client.aclose()

    # -- announcements -----------------------------------------------------------------------

    async def _sync(self, conversation_id: str) -> None:
        key = self.owner_key(conversation_id)
        async with self._announce_lock:
            try:
                if conversation_id in self._held:
                    await self._client.set(key, self.replica_id, px=_px(self.announce_ttl))
                else:
                    await self._release_script(keys=[key], args=[self.replica_id])
            except _BACKEND_ERRORS as exc:
                raise self._outage.failed(exc) from exc
        self._recovered()

    async def _script_in_batches(self, script: Any, ids: list[str], args: list[Any]) -> None:
        for i in range(0, len(ids), _BATCH):
            keys = [self.owner_key(cid) for cid in ids[i : i + _BATCH]]
            await script(keys=keys, args=args)

    def _ensure_renewer(self) -> None:
        if self._renewer is None and not self._closed:
            self._renewer = asyncio.create_task(
                self._renew_loop(), name=f"ultimate_async.redis renewer {self.replica_id}"
            )

    def _recovered(self) -> None:
        if self._outage.ok():
            # Redis may have restarted empty: announce everything we hold right away.
            self._renew_now.set()

    async def _renew_loop(self) -> None:
        delay = self.renew_interval
        while not self._closed:
            # asyncio.timeout, not wait_for: on Python 3.11 a cancel landing while wait_for
            # handles its own timeout can leave this task hanging, and aclose() with it.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._renew_now.wait()
            self._renew_now.clear()
            delay = self.renew_interval
            if not self._held:
                continue
            try:
                async with self._announce_lock:
                    await self._script_in_batches(
                        self._renew_script,
                        list(self._held),
                        [self.replica_id, _px(self.announce_ttl)],
                    )
            except _BACKEND_ERRORS as exc:
                self._outage.failed(exc)
                delay = min(self.max_backoff, self.renew_interval)  # retry sooner while down
                continue
            self._recovered()

    # -- the inbox ---------------------------------------------------------------------------

    def _block_seconds(self) -> float:
        """BLPOP must return before the client's own socket timeout would call it a failure."""
        socket_timeout = self._client.connection_pool.connection_kwargs.get("socket_timeout")
        if isinstance(socket_timeout, int | float) and socket_timeout > 0:
            return min(self.block_timeout, socket_timeout / 2)
        return self.block_timeout

    async def _consume(self) -> None:
        """Pop and deliver our inbox in order until our stop marker; survive outages."""
        inbox = self.inbox_key()
        backoff = 0.05
        blocking = True  # block when the inbox was empty; drain in batches while it is not
        while True:
            try:
                batch = await self._pop(inbox, blocking)
            except _BACKEND_ERRORS as exc:
                self._outage.failed(exc)
                if self._closed:  # closing during an outage: nobody can reach the inbox anyway
                    return
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                blocking = True
                continue
            backoff = 0.05
            self._recovered()
            # After a blocking pop of one event, look for more at once (a burst is read in
            # batches); an empty non-blocking read sends us back to blocking.
            blocking = not batch or (not blocking and len(batch) < _BATCH)
            for item in batch:
                if not await self._deliver_one(item):
                    return

    async def _pop(self, inbox: str, blocking: bool) -> list[bytes | str]:
        if blocking:
            first = await self._client.blpop([inbox], timeout=self._block_seconds())
            return [first[1]] if first else []
        items = await self._client.lpop(inbox, _BATCH)
        if items is None:
            return []
        return items if isinstance(items, list) else [items]

    async def _deliver_one(self, item: bytes | str) -> bool:
        """Hand one inbox item to the receiver; False when it is our own stop marker."""
        try:
            message = loads(item)
            if "stop" in message:
                return bool(message["stop"] != self._stop_token)
            conversation_id, raw = message["cid"], message["raw"]
            if not isinstance(conversation_id, str) or not isinstance(raw, dict):
                raise TypeError("malformed event envelope")
        except Exception:
            logger.exception("Redis event bus: dropping an unreadable inbox item")
            return True
        if self._deliver is None:  # pragma: no cover - start() sets it before consuming
            return True
        try:
            await self._deliver(conversation_id, raw)
        except Exception:
            logger.exception(
                "Redis event bus: delivering a forwarded event of conversation %s failed",
                conversation_id,
            )
        return True

    async def _stop_consumer(self) -> None:
        """Let the consumer finish what is already queued for us, then stop it."""
        consumer, self._consumer = self._consumer, None
        if consumer is None or consumer.done():
            await _cancel(consumer)
            return
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.rpush(self.inbox_key(), dumps({"stop": self._stop_token}))
                pipe.pexpire(self.inbox_key(), _px(self.inbox_ttl))
                await pipe.execute()
        except _BACKEND_ERRORS as exc:
            self._outage.failed(exc)
            await _cancel(consumer)
            return
        try:
            async with asyncio.timeout(10.0):
                await asyncio.shield(consumer)
        except TimeoutError:
            logger.warning("Redis event bus: inbox consumer did not stop in time; cancelling it")
            await _cancel(consumer)


async def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # we are being cancelled ourselves, not just the task we stopped
    except Exception:  # pragma: no cover - the loops catch their own errors
        logger.exception("Redis event bus: background task failed")
