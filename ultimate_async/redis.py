"""Several receiver replicas sharing one Redis: the durable inbox, de-duplication, routing.

Install the extra (``pip install 'ultimate_async[redis]'``) and pass them to the receiver::

    receiver = WebhookReceiver(verifier, inbox=RedisInbox(url), bus=RedisEventBus(url))
    receiver = WebhookReceiver(verifier, dedup=RedisDeduplicator(url), bus=RedisEventBus(url))

:class:`RedisInbox` (Redis Streams, partitions under leases; its keys live under
``{prefix}:durable:``) stores every notification before the ``200`` and de-duplicates it in the
same step, so it replaces ``RedisDeduplicator``; see its docstring.  The rest of this note is
about the de-duplicator and the bus.

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
import math
import random
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Any

import attrs

try:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialWithJitterBackoff
    from redis.exceptions import RedisError, ResponseError
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "ultimate_async.redis needs redis-py: pip install 'ultimate_async[redis]'"
    ) from exc

from ._json import dumps, loads
from .bus import Deliver
from .errors import BackendUnavailableError
from .inbox.base import DeadLetter, InboxEntry, InboxStats

__all__ = ["RedisDeduplicator", "RedisEventBus", "RedisInbox", "stable_partition"]

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


# -- durable inbox ---------------------------------------------------------------------------

#: Store a batch of entries, each de-duplicated atomically with its XADD.  Per entry i (from 0):
#: KEYS[2i+1] its stream, KEYS[2i+2] its "seen" key (the stream key again when it has none);
#: ARGV[1] the de-dup TTL (ms), ARGV[2i+2] the entry, ARGV[2i+3] "1" when it has a key.
#: The XADD comes before the SET, so a key is never seen without its entry stored.  Returns,
#: per entry, the stream id, or "" for a duplicate.
_INBOX_PUT = """
local out = {}
for i = 0, (#KEYS / 2) - 1 do
  local stream, seen = KEYS[2 * i + 1], KEYS[2 * i + 2]
  local keyed = ARGV[2 * i + 3] == '1'
  if keyed and redis.call('EXISTS', seen) == 1 then
    out[i + 1] = ''
  else
    out[i + 1] = redis.call('XADD', stream, '*', 'e', ARGV[2 * i + 2])
    if keyed then redis.call('SET', seen, '1', 'PX', ARGV[1]) end
  end
end
return out
"""

#: Finish a batch of entries: acknowledge and delete each, forget its attempts, keep its key
#: seen for the de-dup TTL from now.  KEYS[1] the attempts hash; per entry i: KEYS[2i+2] its
#: stream, KEYS[2i+3] its seen key (or the stream again); ARGV[1] group, ARGV[2] TTL (ms), per
#: entry ARGV[3i+3] stream id, ARGV[3i+4] delivery id, ARGV[3i+5] "1" when it has a key.
_INBOX_DONE = """
for i = 0, ((#KEYS - 1) / 2) - 1 do
  local stream, seen = KEYS[2 * i + 2], KEYS[2 * i + 3]
  local sid = ARGV[3 * i + 3]
  redis.call('XACK', stream, ARGV[1], sid)
  redis.call('XDEL', stream, sid)
  redis.call('HDEL', KEYS[1], ARGV[3 * i + 4])
  if ARGV[3 * i + 5] == '1' then redis.call('SET', seen, '1', 'PX', ARGV[2]) end
end
return #KEYS
"""

#: Turn an entry into a dead letter.  KEYS: stream, attempts hash, dead hash, dead order zset;
#: ARGV: group, stream id, delivery id, the dead letter (JSON).
_INBOX_DEAD = """
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
local t = redis.call('TIME')
redis.call('ZADD', KEYS[4], tonumber(t[1]) * 1000000 + tonumber(t[2]), ARGV[3])
return 1
"""

#: Put a dead letter back at the end of its partition.  KEYS: dead hash, dead order, stream;
#: ARGV: delivery id, entry (JSON).  Returns false when there is no such dead letter.
_INBOX_REPLAY = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return false end
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('XADD', KEYS[3], '*', 'e', ARGV[2], 'i', ARGV[1])
"""

#: Drop a dead letter.  KEYS: dead hash, dead order; ARGV: delivery id.  Returns 0 if none.
_INBOX_PURGE = """
local n = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return n
"""

#: One lease round for replica ARGV[1] (lease TTL ARGV[2] ms, first partition to try ARGV[3]).
#: KEYS[1] is the set of live replicas (scored by when their heartbeat lapses), KEYS[2..] the
#: partitions' lease keys.  Heartbeat, renew the leases that are still ours, then take free
#: partitions until we hold our share (the partitions divided by the live replicas, rounded
#: up).  Returns {share, held partition numbers...}.
_INBOX_LEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local me, ttl = ARGV[1], tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, me)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], ttl * 3)
local n = #KEYS - 1
local share = math.ceil(n / redis.call('ZCARD', KEYS[1]))
local out = {share}
for p = 0, n - 1 do
  if redis.call('GET', KEYS[p + 2]) == me then
    redis.call('PEXPIRE', KEYS[p + 2], ttl)
    out[#out + 1] = p
  end
end
local first = tonumber(ARGV[3])
for j = 0, n - 1 do
  if #out - 1 >= share then break end
  local p = (first + j) % n
  if redis.call('SET', KEYS[p + 2], me, 'NX', 'PX', ttl) then out[#out + 1] = p end
end
return out
"""

#: Give up leases that are still ours.  KEYS[1] the live replicas (ARGV[2] = "1": leave it
#: too), KEYS[2..] lease keys; ARGV[1] our id.
_INBOX_RELEASE = """
for i = 2, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]) end
end
if ARGV[2] == '1' then redis.call('ZREM', KEYS[1], ARGV[1]) end
return 1
"""

_GROUP = "ultimate_async"
_PREFETCH = 256  # entries read ahead of get(), and per XREADGROUP/XAUTOCLAIM call
_BATCH_MAX = 256  # puts or dones per script call


class _GroupCommit:
    """Runs concurrent calls as one batch: while one batch is in Redis, the next one gathers.

    A lone call goes out at once (no added latency); under load, N concurrent puts cost one
    round trip and one script call instead of N.  A failed batch fails every call in it.
    """

    def __init__(self, flush: Any) -> None:
        self._flush = flush
        self._waiting: list[tuple[Any, asyncio.Future[Any]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: Any) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        return await future

    async def _run(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:_BATCH_MAX], self._waiting[_BATCH_MAX:]
                try:
                    results = await self._flush([item for item, _ in batch])
                except asyncio.CancelledError:
                    for _, future in [*batch, *self._waiting]:
                        future.cancel()
                    raise
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._task = None


@attrs.frozen
class _Read:
    """An entry read from a partition's stream, tagged with the lease period it was read in."""

    partition: int
    epoch: int
    stream_id: str
    entry: InboxEntry


def stable_partition(conversation_id: str, partitions: int) -> int:
    """The partition of a conversation: the same in every process and Python version."""
    return zlib.crc32(conversation_id.encode()) % partitions


class RedisInbox:
    """The :class:`~ultimate_async.inbox.Inbox` for several replicas sharing one Redis.

    Conversations hash to ``partitions`` (crc32); each partition is one Redis stream
    (``{prefix}:durable:stream:{n}``) with one consumer group, consumed by exactly one live
    replica at a time: the holder of its lease ``{prefix}:durable:lease:{n}``, a key with an
    expiry (``lease_ttl``) that the holder renews every fifth of it.  So a conversation's order
    holds across replicas.  Each replica aims at an equal share of the partitions (live
    replicas heartbeat in ``{prefix}:durable:replicas``): a replica holding more than its share
    stops reading the extra partitions and releases each once its running entries finished; a
    replica holding less takes free ones.  A replica that dies stops renewing: its partitions
    are free after at most ``lease_ttl`` and taken over at the next lease round of a live
    replica, which first claims the dead consumer's unfinished entries from the group's pending
    list (``XAUTOCLAIM``) and hands them out, in order, before anything new.

    ``put`` is one Lua script per batch of concurrent puts: the de-dup check, ``XADD`` and the
    ``{prefix}:durable:seen:{key}`` marker happen atomically, and ``put`` returns once Redis
    answered.  A key stays seen ``dedup_ttl`` from its put, and again from its ``done``.
    ``done`` acknowledges and deletes the entry (also batched); ``failed`` records the attempt
    in ``{prefix}:durable:attempts``; a dead letter moves to ``{prefix}:durable:dead``
    (ordered by ``{prefix}:durable:dead:order``) until ``replay`` (a new ``XADD`` at the end of
    its partition, same ``delivery_id``) or ``purge``.  ``stats``,
    ``dead_letters``, ``replay`` and ``purge`` work without :meth:`start` (the CLI uses them).

    At-least-once, with duplicates only around a failure: an entry handed out by a replica that
    then lost its lease (it died, or could not reach Redis for ``lease_ttl``) is handed out
    again by the new holder.  When Redis cannot be reached, ``put`` raises
    :class:`~ultimate_async.errors.BackendUnavailableError` (one warning per outage); the lease
    and read loops retry by themselves.  Redis must keep its data across a restart (AOF or
    RDB persistence, a replica promoted by Sentinel) for the entries to survive one.  Use the
    same ``partitions`` on every replica.
    """

    #: Entries put here may be handed out to another replica (see ``Inbox``).
    shared = True

    def __init__(
        self,
        url: str | None = None,
        *,
        client: aioredis.Redis | None = None,
        key_prefix: str = DEFAULT_PREFIX,
        partitions: int = 16,
        lease_ttl: float = 10.0,
        dedup_ttl: float = 86400.0,
        replica_id: str | None = None,
        max_backoff: float = 2.0,
        **redis_kwargs: Any,
    ) -> None:
        if partitions < 1:
            raise ValueError("partitions must be at least 1")
        if lease_ttl <= 0 or dedup_ttl <= 0 or max_backoff <= 0:
            raise ValueError("lease_ttl, dedup_ttl and max_backoff must be positive")
        self.key_prefix = key_prefix
        self.partitions = partitions
        self.lease_ttl = lease_ttl
        self.dedup_ttl = dedup_ttl
        self.replica_id = replica_id or uuid.uuid4().hex
        self.max_backoff = max_backoff
        self._client, self._owns_client = _resolve_client(url, client, redis_kwargs)
        where, password = _describe(self._client)
        self._outage = _Outage(f"Redis inbox (replica {self.replica_id})", where, password)
        self._put_script = self._client.register_script(_INBOX_PUT)
        self._done_script = self._client.register_script(_INBOX_DONE)
        self._dead_script = self._client.register_script(_INBOX_DEAD)
        self._replay_script = self._client.register_script(_INBOX_REPLAY)
        self._purge_script = self._client.register_script(_INBOX_PURGE)
        self._lease_script = self._client.register_script(_INBOX_LEASE)
        self._release_script = self._client.register_script(_INBOX_RELEASE)
        self._puts = _GroupCommit(self._put_batch)
        self._dones = _GroupCommit(self._done_batch)
        self._streams = [self.stream_key(p) for p in range(partitions)]
        self._lease_keys = [self.lease_key(p) for p in range(partitions)]
        self._first_partition = zlib.crc32(self.replica_id.encode()) % partitions
        self._reset_consumer_state()
        self._running = False
        self._tasks: list[asyncio.Task[None]] = []

    def _reset_consumer_state(self) -> None:
        # partition -> lease period number; present while we hold the partition's lease.
        self._epochs: dict[int, int] = {}
        self._epoch = 0
        # held, no longer read: partition -> the reader operation that may still read it;
        # released once that operation returned and no entry of it is running.
        self._draining: dict[int, int] = {}
        self._ops_started = 0  # reader operations (XAUTOCLAIM/XREADGROUP rounds), in order
        self._ops_finished = 0
        self._unrecovered: list[int] = []  # held, pending list not yet claimed
        self._reading: set[int] = set()  # held and recovered: read with XREADGROUP
        self._inflight: dict[str, tuple[int, str]] = {}  # delivery id -> (partition, stream id)
        self._busy: dict[int, int] = {}  # partition -> entries handed out and not finished
        self._queue: asyncio.Queue[_Read] = asyncio.Queue(_PREFETCH)
        self._leases_changed = asyncio.Event()
        self._lease_round_now = asyncio.Event()
        self._renewed_at = -math.inf

    def __repr__(self) -> str:
        return (
            f"RedisInbox(where={self._outage.where!r}, replica_id={self.replica_id!r}, "
            f"key_prefix={self.key_prefix!r}, partitions={self.partitions}, "
            f"held={len(self._epochs)})"
        )

    # -- keys --------------------------------------------------------------------------------

    @property
    def client(self) -> aioredis.Redis:
        """The redis-py client in use (for health checks and tests)."""
        return self._client

    @property
    def held(self) -> frozenset[int]:
        """The partitions whose lease this replica holds (as of its last lease round)."""
        return frozenset(self._epochs)

    def _key(self, name: str) -> str:
        return f"{self.key_prefix}:durable:{name}"

    def stream_key(self, partition: int) -> str:
        return self._key(f"stream:{partition}")

    def lease_key(self, partition: int) -> str:
        return self._key(f"lease:{partition}")

    def seen_key(self, dedup_key: str) -> str:
        return self._key(f"seen:{dedup_key}")

    def partition_of(self, conversation_id: str | None) -> int:
        """Events without a conversation have no order to keep: they are spread at random."""
        if conversation_id is None:
            return random.randrange(self.partitions)
        return stable_partition(conversation_id, self.partitions)

    # -- storing -----------------------------------------------------------------------------

    async def put(
        self,
        *,
        conversation_id: str | None,
        kind: str,
        raw: Mapping[str, Any],
        dedup_key: str | None,
    ) -> str | None:
        """Store the notification (de-duplicated atomically); returns its ``delivery_id``."""
        partition = self.partition_of(conversation_id)
        body = dumps({"c": conversation_id, "k": kind, "r": raw, "t": time.time(), "d": dedup_key})
        stream_id = await self._puts.submit((partition, body, dedup_key))
        return f"{partition}-{stream_id}" if stream_id else None

    async def _put_batch(self, items: list[tuple[int, bytes, str | None]]) -> list[str]:
        keys: list[str] = []
        args: list[Any] = [_px(self.dedup_ttl)]
        for partition, body, dedup_key in items:
            stream = self._streams[partition]
            keys += [stream, stream if dedup_key is None else self.seen_key(dedup_key)]
            args += [body, "0" if dedup_key is None else "1"]
        try:
            ids = await self._put_script(keys=keys, args=args)
        except _BACKEND_ERRORS as exc:
            raise self._outage.failed(exc) from exc
        self._recovered()
        return [_text(i) for i in ids]

    # -- finishing ---------------------------------------------------------------------------

    def _locate(self, entry: InboxEntry) -> tuple[int, str]:
        """Where a handed-out entry lives.

        Known for every entry this object handed out; otherwise the id says it (``{partition}-
        {stream id}``), except for a replayed entry (its id is kept, its stream id is new): then
        the acknowledgement misses and the entry is handed out again at the next recovery.
        """
        found = self._inflight.pop(entry.delivery_id, None)
        if found is not None:
            partition = found[0]
            self._busy[partition] -= 1
            if not self._busy[partition]:
                del self._busy[partition]
                if partition in self._draining:
                    self._lease_round_now.set()
            return found
        number, _, stream_id = entry.delivery_id.partition("-")
        return int(number), stream_id

    async def done(self, entry: InboxEntry) -> None:
        """Acknowledge and delete the entry; its de-dup key stays seen for ``dedup_ttl``."""
        partition, stream_id = self._locate(entry)
        await self._dones.submit((partition, stream_id, entry.delivery_id, entry.dedup_key))

    async def _done_batch(self, items: list[tuple[int, str, str, str | None]]) -> list[None]:
        keys: list[str] = [self._key("attempts")]
        args: list[Any] = [_GROUP, _px(self.dedup_ttl)]
        for partition, stream_id, delivery_id, dedup_key in items:
            stream = self._streams[partition]
            keys += [stream, stream if dedup_key is None else self.seen_key(dedup_key)]
            args += [stream_id, delivery_id, "0" if dedup_key is None else "1"]
        try:
            await self._done_script(keys=keys, args=args)
        except _BACKEND_ERRORS as exc:
            raise self._outage.failed(exc) from exc
        self._recovered()
        return [None] * len(items)

    async def failed(self, entry: InboxEntry, error: str, *, dead: bool) -> None:
        """Record the attempt; with ``dead=True`` move the entry to the dead letters."""
        try:
            if not dead:
                await self._client.hset(self._key("attempts"), entry.delivery_id, entry.attempt)
            else:
                partition, stream_id = self._locate(entry)
                letter = {
                    "c": entry.conversation_id,
                    "k": entry.kind,
                    "r": entry.raw,
                    "t": entry.stored_at,
                    "d": entry.dedup_key,
                    "n": entry.attempt,
                    "x": error,
                }
                await self._dead_script(
                    keys=[
                        self._streams[partition],
                        self._key("attempts"),
                        self._key("dead"),
                        self._key("dead:order"),
                    ],
                    args=[_GROUP, stream_id, entry.delivery_id, dumps(letter)],
                )
        except _BACKEND_ERRORS as exc:
            raise self._outage.failed(exc) from exc
        self._recovered()

    # -- inspection and repair ---------------------------------------------------------------

    async def stats(self) -> InboxStats:
        """Pending: entries in the streams (stored, not done, not dead); dead: dead letters."""
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for stream in self._streams:
                    pipe.xlen(stream)
                pipe.hlen(self._key("dead"))
                counts = await pipe.execute()
        except _BACKEND_ERRORS as exc:
            raise self._outage.failed(exc) from exc
        self._recovered()
        return InboxStats(pending=sum(counts[:-1]), dead=counts[-1])

    async def dead_letters(self) -> AsyncIterator[DeadLetter]:
        """Every dead letter, in the order the entries died."""
        start = 0
        while True:
            try:
                ids: list[Any] = await self._client.zrange(
                    self._key("dead:order"), start, start + 199
                )
                letters = await self._client.hmget(self._key("dead"), ids) if ids else []
            except _BACKEND_ERRORS as exc:
                raise self._outage.failed(exc) from exc
            for delivery_id, letter in zip(ids, letters, strict=True):
                if letter is not None:  # purged between the two reads
                    yield _dead_letter(_text(delivery_id), loads(letter))
            if len(ids) < 200:
                return
            start += len(ids)

    async def replay(self, delivery_id: str) -> None:
        """Put a dead letter back at the end of its conversation's partition (attempt 1)."""
        try:
            letter = await self._client.hget(self._key("dead"), delivery_id)
            if letter is None:
                raise LookupError(f"no dead letter {delivery_id!r}")
            data = loads(letter)
            body = dumps({key: data.get(key) for key in ("c", "k", "r", "t", "d")})
            moved = await self._replay_script(
                keys=[
                    self._key("dead"),
                    self._key("dead:order"),
                    self._streams[self.partition_of(data.get("c"))],
                ],
                args=[delivery_id, body],
            )
        except _BACKEND_ERRORS as exc:
            raise self._outage.failed(exc) from exc
        self._recovered()
        if not moved:
            raise LookupError(f"no dead letter {delivery_id!r}")

    async def purge(self, delivery_id: str) -> None:
        """Drop one dead letter for good."""
        try:
            removed = await self._purge_script(
                keys=[self._key("dead"), self._key("dead:order")], args=[delivery_id]
            )
        except _BACKEND_ERRORS as exc:
            raise self._outage.failed(exc) from exc
        self._recovered()
        if not removed:
            raise LookupError(f"no dead letter {delivery_id!r}")

    # -- consuming ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Join the replicas: take a share of the partitions and begin reading them.

        Returns after the first lease round (or its failure, logged: the rounds go on in the
        background), so entries left unfinished in the partitions taken are the first ones
        :meth:`get` returns.
        """
        if self._running:
            return
        self._running = True
        self._reset_consumer_state()
        await self._lease_round()
        self._tasks = [
            asyncio.create_task(self._lease_loop(), name=f"RedisInbox leases {self.replica_id}"),
            asyncio.create_task(self._read_loop(), name=f"RedisInbox reader {self.replica_id}"),
        ]

    async def get(self) -> InboxEntry:
        """The next entry of a partition this replica holds, in the partition's order."""
        while True:
            read = await self._queue.get()
            if self._epochs.get(read.partition) != read.epoch or read.partition in self._draining:
                continue  # read under a lease since lost or given up: the next holder has it
            if read.entry.delivery_id in self._inflight:
                continue  # handed out already (the lease was lost and taken back meanwhile)
            self._inflight[read.entry.delivery_id] = (read.partition, read.stream_id)
            self._busy[read.partition] = self._busy.get(read.partition, 0) + 1
            return read.entry

    async def aclose(self) -> None:
        """Stop reading and give up this replica's leases, so others take over at once.

        Entries not done stay in their streams' pending lists for the next holder.  A borrowed
        client is left open; an owned one is closed (and reopened by a later :meth:`start`).
        """
        if not self._running:
            if self._owns_client:
                await self._client.aclose()  # used without start(): stats, replay, purge
            return
        self._running = False
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            await _stop(task)
        held = list(self._epochs)
        self._epochs.clear()
        self._leases_changed.set()
        with contextlib.suppress(*_BACKEND_ERRORS):
            await self._release_script(
                keys=[self._key("replicas"), *(self._lease_keys[p] for p in held)],
                args=[self.replica_id, "1"],
            )
        if self._owns_client:
            await self._client.aclose()

    # -- leases ------------------------------------------------------------------------------

    @property
    def _round_interval(self) -> float:
        return self.lease_ttl / 5

    async def _lease_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._round_interval):
                    await self._lease_round_now.wait()
            self._lease_round_now.clear()
            await self._lease_round()
            _reraise_cancellation()

    async def _lease_round(self) -> None:
        """Renew, take our share, give up what is over it; forget all after a long outage."""
        started = time.monotonic()
        try:
            await self._release_idle_drained()
            reply = await self._lease_script(
                keys=[self._key("replicas"), *self._lease_keys],
                args=[self.replica_id, _px(self.lease_ttl), self._first_partition],
            )
        except _BACKEND_ERRORS as exc:
            self._outage.failed(exc)
            if self._epochs and time.monotonic() - self._renewed_at >= self.lease_ttl:
                self._update_leases(set())  # they have expired: another replica may hold them
            return
        self._recovered()
        self._renewed_at = started
        share, held = int(reply[0]), {int(p) for p in reply[1:]}
        self._update_leases(held)
        over = len(held) - len(self._draining) - share
        if over > 0:  # give up the least busy extra partitions, once their work is finished
            keep = held - self._draining.keys()
            candidates = sorted(keep, key=lambda p: (self._busy.get(p, 0), -p))
            for partition in candidates[:over]:
                self._draining[partition] = self._ops_started
                self._reading.discard(partition)
            self._lease_round_now.set()
        with contextlib.suppress(*_BACKEND_ERRORS):
            await self._adopt_orphans()

    def _update_leases(self, held: set[int]) -> None:
        changed = False
        for partition in list(self._epochs):
            if partition not in held:  # lost (expired): stop handing its entries out
                del self._epochs[partition]
                self._draining.pop(partition, None)
                self._reading.discard(partition)
                changed = True
        for partition in sorted(held - self._epochs.keys()):
            self._epoch += 1
            self._epochs[partition] = self._epoch
            if partition not in self._unrecovered:
                self._unrecovered.append(partition)
            changed = True
        if changed:
            self._leases_changed.set()

    def _releasable(self) -> list[int]:
        """Drained partitions no running entry and no reader operation in flight still use.

        A read issued before the drain may still bring entries of the partition into our
        pending list; releasing before it returned would let the next holder's recovery miss
        them.  Once it returned, whatever it brought is in our pending list, which the next
        holder claims first.
        """
        return [
            p
            for p, op in self._draining.items()
            if not self._busy.get(p) and self._ops_finished >= op
        ]

    async def _release_idle_drained(self) -> None:
        idle = self._releasable()
        if not idle:
            return
        await self._release_script(
            keys=[self._key("replicas"), *(self._lease_keys[p] for p in idle)],
            args=[self.replica_id, "0"],
        )
        for partition in idle:
            self._draining.pop(partition, None)
            self._epochs.pop(partition, None)

    async def _adopt_orphans(self) -> None:
        """Recover again a partition where another consumer has pending entries.

        Only the lease holder reads a partition, so such entries are orphans: read by a replica
        whose lease had lapsed (it stalled or lost Redis for ``lease_ttl``) while its read was
        in flight.  Claiming them again means they are not lost (though they come after what
        was handed out meanwhile).
        """
        reading = sorted(self._reading)
        if not reading:
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for partition in reading:
                pipe.xpending(self._streams[partition], _GROUP)
            summaries = await pipe.execute()
        for partition, summary in zip(reading, summaries, strict=True):
            consumers = summary.get("consumers") or []
            if (
                any(_text(c["name"]) != self.replica_id and int(c["pending"]) for c in consumers)
                and partition in self._reading
            ):
                self._epoch += 1
                self._epochs[partition] = self._epoch
                self._reading.discard(partition)
                if partition not in self._unrecovered:
                    self._unrecovered.append(partition)
                self._leases_changed.set()

    # -- reading -----------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        backoff = 0.05
        while True:
            try:
                if self._unrecovered:
                    epochs = {p: self._epochs.get(p) for p in self._unrecovered}
                    await self._reader_op(self._recover(list(epochs)))
                    for partition, epoch in epochs.items():
                        now = self._epochs.get(partition)
                        if now is not None and now != epoch:
                            continue  # lost and taken back meanwhile: recover it again
                        self._unrecovered.remove(partition)
                        if now is not None and partition not in self._draining:
                            self._reading.add(partition)
                if not self._reading:
                    self._leases_changed.clear()
                    await self._leases_changed.wait()
                    continue
                await self._reader_op(self._read_new())
            except _BACKEND_ERRORS as exc:
                _reraise_cancellation()
                if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
                    with contextlib.suppress(*_BACKEND_ERRORS):
                        await self._create_groups()  # new streams, or Redis restarted empty
                        continue
                self._outage.failed(exc)
                # A read whose reply was lost (Redis killed or the connection cut mid-command)
                # still put its entries in our pending list: recover our partitions again
                # before reading new entries, or those entries would wait for a takeover.
                for partition in sorted(self._reading):
                    if partition not in self._unrecovered:
                        self._unrecovered.append(partition)
                self._reading.clear()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            backoff = 0.05
            self._recovered()

    async def _reader_op(self, operation: Awaitable[None]) -> None:
        """Run one read or recovery, numbered, so drained partitions wait for it (see
        :meth:`_releasable`)."""
        self._ops_started += 1
        number = self._ops_started
        try:
            await operation
        finally:
            self._ops_finished = number
            if self._draining and self._releasable():
                self._lease_round_now.set()

    async def _create_groups(self) -> None:
        for stream in self._streams:
            try:
                await self._client.xgroup_create(stream, _GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def _recover(self, partitions: list[int]) -> None:
        """Claim the partitions' unfinished entries (any consumer's) and queue them first.

        Entries of all the partitions are merged in stream-id (arrival) order, so the oldest
        unfinished work goes first whichever partition it is in.
        """
        claimed: list[tuple[int, int, str, Any]] = []
        for partition in partitions:
            epoch = self._epochs.get(partition)
            stream, cursor = self._streams[partition], "0-0"
            while epoch is not None and self._epochs.get(partition) == epoch:
                next_cursor, entries, *_ = await self._client.xautoclaim(
                    stream, _GROUP, self.replica_id, 0, cursor, count=_PREFETCH
                )
                claimed += [(partition, epoch, _text(i), f) for i, f in entries if i is not None]
                cursor = _text(next_cursor)
                if cursor == "0-0":
                    break
        await self._queue_entries(claimed, recovered=True)

    async def _read_new(self) -> None:
        streams: dict[Any, Any] = {self._streams[p]: ">" for p in sorted(self._reading)}
        block = max(1, _px(min(1.0, self._round_interval)))
        reply: Any = await self._client.xreadgroup(
            _GROUP, self.replica_id, streams, count=_PREFETCH, block=block
        )
        read: list[tuple[int, int, str, Any]] = []
        for stream, entries in reply or []:
            partition = int(_text(stream).rsplit(":", 1)[1])
            epoch = self._epochs.get(partition)
            if epoch is not None:
                read += [(partition, epoch, _text(i), f) for i, f in entries if i is not None]
        await self._queue_entries(read, recovered=False)

    async def _queue_entries(
        self, entries: list[tuple[int, int, str, Any]], *, recovered: bool
    ) -> None:
        """Queue entries read from several partitions in arrival order.

        Stream ids order one stream only (two streams may each have ``<ms>-0``), so ties
        within a millisecond are broken by the put time stored in the entry.
        """
        parsed: list[tuple[tuple[int, float, int], int, int, str, str, Any]] = []
        for partition, epoch, stream_id, fields in entries:
            try:
                data = loads(fields.get(b"e") or fields["e"])
                stored_at = float(data["t"])
            except Exception:
                logger.exception("Redis inbox: skipping unreadable entry %s", stream_id)
                continue
            milliseconds, sequence = _id_order(stream_id)
            delivery_id = self._delivery_id(partition, stream_id, fields)
            order = (milliseconds, stored_at, sequence)
            parsed.append((order, partition, epoch, stream_id, delivery_id, data))
        if not parsed:
            return
        parsed.sort(key=lambda item: item[0])
        attempts: list[Any] = [None] * len(parsed)
        if recovered:
            attempts = await self._client.hmget(self._key("attempts"), [p[4] for p in parsed])
        for (_, partition, epoch, stream_id, delivery_id, data), tried in zip(
            parsed, attempts, strict=True
        ):
            try:
                entry = InboxEntry(
                    delivery_id=delivery_id,
                    conversation_id=data["c"],
                    kind=data["k"],
                    raw=data["r"],
                    attempt=int(tried or 0) + 1,
                    stored_at=float(data["t"]),
                    dedup_key=data.get("d"),
                )
            except Exception:
                logger.exception("Redis inbox: skipping unreadable entry %s", stream_id)
                continue
            await self._queue.put(_Read(partition, epoch, stream_id, entry))

    @staticmethod
    def _delivery_id(partition: int, stream_id: str, fields: Mapping[Any, Any]) -> str:
        replayed = fields.get(b"i") or fields.get("i")
        return _text(replayed) if replayed else f"{partition}-{stream_id}"

    def _recovered(self) -> None:
        self._outage.ok()


async def _stop(task: asyncio.Task[None]) -> None:
    """Cancel a background loop and wait for it, cancelling again if the request got lost.

    A cancellation landing inside some redis-py calls can be swallowed (the call returns or
    fails with a connection error instead); cancelling until the task is done stops it anyway.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
    if not task.cancelled() and task.exception() is not None:
        logger.error("Redis inbox: background task failed", exc_info=task.exception())


def _id_order(stream_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = stream_id.partition("-")
    return int(milliseconds), int(sequence or 0)


def _reraise_cancellation() -> None:
    """redis-py may turn a cancellation that lands mid-command into a connection error; a
    loop that retries connection errors must still stop when its task is being cancelled."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _dead_letter(delivery_id: str, data: Mapping[str, Any]) -> DeadLetter:
    return DeadLetter(
        delivery_id=delivery_id,
        conversation_id=data.get("c"),
        kind=data.get("k", ""),
        attempts=int(data.get("n", 0)),
        last_error=data.get("x", ""),
        raw=data.get("r", {}),
        stored_at=float(data.get("t", 0.0)),
    )
