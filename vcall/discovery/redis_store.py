"""The shared store: accounts, throttle and presence in Redis (or Valkey), for several instances.

Layout (``vcall:`` prefix; nicks are ``[A-Za-z0-9_.-]``, so they are safe inside key names):

* ``vcall:user:<nick>``: hash of records.py fields (ip, port, protocols, ts, scrypt salt,
  N, r, p, digest); ``vcall:users``: sorted set nick -> ts (load order, LIST_USERS order);
* ``vcall:nick:<folded>``: the spelling of the account that owns a nick ignoring case
  (codec.fold_nick): set by ``create`` in the same script that checks it, so "Alice" and
  "alice" cannot both be created, on any instance. Records written before that key existed are
  indexed when an instance starts (``SET NX`` in code-point order, so where a store holds
  "bob" and "Bob" the key names "Bob": directory.py's rule); ``fetch`` follows it when no
  record has the exact spelling;
* ``vcall:online:<nick>``: presence, a key with a TTL set on each REGISTER and keep-alive
  (Redis expires it: no instance's timer decides who is online);
* ``vcall:session:<nick>``: the SHA-256 digest of the account's keep-alive token (session.py),
  with the session's TTL (Redis expires it); ``VCALL_HERE`` on any instance reads it;
* ``vcall:fail:<key>`` / ``vcall:lock:<key>``: the shared failed-password throttle
  (``key`` is ``nick:<nick>`` or ``addr:<ip>``): counts in a fixed window from the first
  failure, then a lock with a TTL; every instance reads the same counters, so an attacker
  cannot multiply the allowance by the number of instances;
* channel ``vcall:changed``: every write publishes the nick; each instance (the writer too)
  re-reads that record and updates its cache, in message order.

Writes are Lua scripts (EVALSHA), atomic on the primary: ``create`` inserts only if the nick
does not exist (exactly one of two concurrent first registrations wins), ``update`` only if the
stored digest is the one the password was checked against. A write is acknowledged once the
primary executed it (asynchronous replication: see docs/deploy.md for what a failover loses).

If Redis cannot be reached, every call raises StoreUnavailable within ``op_timeout`` seconds;
the subscriber logs one warning per outage, retries with back-off and, once back, reloads every
record (messages published meanwhile were lost) and logs one line. Redis URLs follow redis-py
(``redis://[[user]:[password]@]host:port/db``); ``redis-sentinel://H1:P1,H2:P2/SERVICE/DB``
asks the Sentinels for the current primary and follows it across failovers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from vcall.discovery.backend import ChangeSink, StoreSpecError, StoreUnavailable, Throttle
from vcall.discovery.codec import fold_nick
from vcall.discovery.records import FIELDS, MAX_FIELD, RecordError, decode_user, encode_user
from vcall.discovery.store import StoredUser
from vcall.discovery.throttle import ThrottlePolicy

logger = logging.getLogger(__name__)

PREFIX: Final = "vcall:"
CHANNEL: Final = PREFIX + "changed"
USERS: Final = PREFIX + "users"
SOCKET_TIMEOUT: Final = 1.0  # s per Redis round trip
OP_TIMEOUT: Final = 2.5  # s for one store call, retries included: never a hang
LOAD_BATCH: Final = 1000  # records per pipelined read when loading everything
MAX_BACKOFF: Final = 2.0  # s between reconnection attempts of the subscriber
POLL: Final = 0.25  # s: the subscriber's longest wait, so that close() is never held up

# KEYS[4], the folded nick's owner, counts only while the owner's record exists (a record
# removed by hand frees its nick, in every spelling).
_CREATE: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local owner = redis.call('GET', KEYS[4])
local user_prefix = string.sub(KEYS[1], 1, #KEYS[1] - #ARGV[1])
if owner and redis.call('EXISTS', user_prefix .. owner) == 1 then return 0 end
redis.call('SET', KEYS[4], ARGV[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('SET', KEYS[3], '1', 'PX', ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[1])
redis.call('DEL', KEYS[5])
return 1
"""
_UPDATE: Final = """
if redis.call('HGET', KEYS[1], 'digest') ~= ARGV[5] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('SET', KEYS[3], '1', 'PX', ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[1])
return 1
"""
# A keep-alive (VCALL_HERE): only ts moves, so a REGISTER on another instance at the same
# moment (new ip/port) is never overwritten by this instance's older copy of the record.
_TOUCH: Final = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'ts', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('SET', KEYS[3], '1', 'PX', ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[1])
return 1
"""
# Reads a record only if it is small: what crosses the wire is bounded (-1: oversized).
_FETCH: Final = """
local n = redis.call('HLEN', KEYS[1])
if n > tonumber(ARGV[1]) then return -1 end
for _, len in ipairs(redis.call('HMGET', KEYS[1], unpack(ARGV, 3))) do
  if len and string.len(len) > tonumber(ARGV[2]) then return -1 end
end
return redis.call('HGETALL', KEYS[1])
"""
# KEYS: n fail keys, then their n lock keys. ARGV: max failures, window ms, lockout ms.
_FAILURE: Final = """
local n = #KEYS / 2
for i = 1, n do
  local count = redis.call('INCR', KEYS[i])
  if count == 1 then redis.call('PEXPIRE', KEYS[i], ARGV[2]) end
  if count >= tonumber(ARGV[1]) then
    redis.call('SET', KEYS[n + i], '1', 'PX', ARGV[3])
    redis.call('DEL', KEYS[i])
  end
end
return 0
"""


@dataclass(frozen=True, slots=True)
class SentinelSpec:
    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int


def parse_sentinel_url(url: str) -> SentinelSpec:
    """``redis-sentinel://H1:P1,H2:P2/SERVICE[/DB]``; raises StoreSpecError."""
    rest = url.removeprefix("redis-sentinel://")
    hosts_text, _, path = rest.partition("/")
    service, _, db_text = path.partition("/")
    sentinels = []
    for item in hosts_text.split(","):
        host, _, port_text = item.rpartition(":")
        if not host or not port_text.isascii() or not port_text.isdecimal():
            raise StoreSpecError(f"bad sentinel address {item!r} in {url!r}")
        sentinels.append((host.strip("[]"), int(port_text)))
    if not service:
        raise StoreSpecError(f"no service name in {url!r}")
    if db_text and not (db_text.isascii() and db_text.isdecimal()):
        raise StoreSpecError(f"bad database number in {url!r}")
    return SentinelSpec(tuple(sentinels), unquote(service), int(db_text or 0))


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


def _key(kind: str, name: str) -> str:
    return f"{PREFIX}{kind}:{name}"


class RedisUserStore:
    """A :class:`~vcall.discovery.backend.UserStore` on Redis. Use from one event loop."""

    def __init__(
        self,
        url: str,
        policy: ThrottlePolicy,
        presence_ttl: float,
        *,
        op_timeout: float = OP_TIMEOUT,
    ) -> None:
        self.description = _redact(url)
        self._policy = policy
        self._presence_ms = max(1, round(presence_ttl * 1000))
        self._op_timeout = op_timeout
        self._sentinel: Sentinel | None = None
        self._redis: Redis = self._client(url)
        self._create = self._redis.register_script(_CREATE)
        self._update = self._redis.register_script(_UPDATE)
        self._failure = self._redis.register_script(_FAILURE)
        self._fetch = self._redis.register_script(_FETCH)
        self._touch = self._redis.register_script(_TOUCH)
        self.throttle: Throttle = _RedisThrottle(self)
        self._listener: asyncio.Task[None] | None = None
        self.available = True  # False from a failed call until one succeeds (logged once)
        self.bad_records = 0  # records read back that failed validation (skipped)
        self.resyncs = 0  # full reloads after an outage of the subscriber

    def _client(self, url: str) -> Redis:
        options: dict[str, Any] = {
            "socket_timeout": SOCKET_TIMEOUT,
            "socket_connect_timeout": SOCKET_TIMEOUT,
            "retry": Retry(NoBackoff(), 1),  # one quick retry; the op timeout bounds the rest
            "health_check_interval": 5,
        }
        if url.startswith("redis-sentinel://"):
            spec = parse_sentinel_url(url)
            self._sentinel = Sentinel(  # type: ignore[no-untyped-call]
                list(spec.sentinels),
                sentinel_kwargs={
                    "socket_timeout": SOCKET_TIMEOUT,
                    "socket_connect_timeout": SOCKET_TIMEOUT,
                },
                **options,
            )
            client: Redis = self._sentinel.master_for(spec.service, db=spec.db)
            return client
        try:
            return Redis.from_url(url, **options)
        except ValueError as exc:
            raise StoreSpecError(f"bad Redis URL {self.description!r}: {exc}") from None

    # --- calls ------------------------------------------------------------------------------

    async def call(self, what: str, awaitable: Awaitable[Any]) -> Any:
        """Await one Redis operation within op_timeout; any failure is StoreUnavailable."""
        try:
            async with asyncio.timeout(self._op_timeout):
                result = await awaitable
        except (RedisError, OSError) as exc:  # TimeoutError (3.11+) is an OSError
            self._down(f"{what}: {type(exc).__name__}: {exc}")
            raise StoreUnavailable(f"{self.description}: {what}: {exc or 'timed out'}") from None
        if not self.available:
            self.available = True
            logger.info("store %s reachable again", self.description)
        return result

    def _down(self, why: str) -> None:
        if self.available:
            logger.warning(
                "store %s unreachable (%s): answering queries from the cache, "
                "refusing registrations until it is back",
                self.description, why,
            )  # fmt: skip
        self.available = False

    async def start(self, sink: ChangeSink) -> list[StoredUser]:
        pubsub = await self._subscribe()
        try:
            users = await self._load_all()
            await self._index_folded(users)
        except BaseException:
            await _aclose(pubsub)
            raise
        self._listener = asyncio.get_running_loop().create_task(self._listen(pubsub, sink))
        return users

    async def fetch(self, nick: str) -> StoredUser | None:
        """The record of ``nick`` (None: no such account). An invalid record is counted,
        logged and reported as StoreUnavailable: it must not be served nor overwritten."""
        reply = await self.call("fetch", self._fetch(keys=[_key("user", nick)], args=_FETCH_ARGS))
        try:
            user = _decode_reply(nick, reply)
            if user is None:
                # No record of this spelling: the account that owns it ignoring case, if any.
                owner = await self.call("GET", self._redis.get(_key("nick", fold_nick(nick))))
                if isinstance(owner, bytes) and owner != nick.encode():
                    name = owner.decode("ascii", "replace")
                    script = self._fetch(keys=[_key("user", name)], args=_FETCH_ARGS)
                    user = _decode_reply(name, await self.call("fetch", script))
            return user
        except RecordError as exc:
            self.bad_records += 1
            logger.error("store %s: record of %s is invalid: %s", self.description, nick, exc)
            raise StoreUnavailable(f"invalid record for {nick}") from None

    async def create(self, user: StoredUser) -> bool:
        """A new account; a keep-alive session an earlier owner of the nick left (a record
        removed by hand) is deleted in the same script: only the new owner's token counts."""
        keys, args = self._write_args(user)
        keys.append(_key("session", user.nick))
        done = await self.call("create", self._create(keys=keys, args=args))
        return bool(done)

    async def update(self, user: StoredUser) -> bool:
        keys, args = self._write_args(user)
        args.insert(4, user.credential.digest)
        done = await self.call("update", self._update(keys=keys, args=args))
        return bool(done)

    def _write_args(self, user: StoredUser) -> tuple[list[str], list[bytes | str | int]]:
        keys = [_key("user", user.nick), USERS, _key("online", user.nick)]
        keys.append(_key("nick", fold_nick(user.nick)))
        args: list[bytes | str | int] = [user.nick, repr(float(user.ts)), self._presence_ms]
        args.append(CHANNEL)
        for field, value in encode_user(user).items():
            args += [field, value]
        return keys, args

    async def online(self, nick: str) -> bool:
        count = await self.call("EXISTS", self._redis.exists(_key("online", nick)))
        return bool(count)

    async def touch(self, nick: str, ts: float) -> bool:
        keys = [_key("user", nick), USERS, _key("online", nick)]
        args: list[str | int] = [nick, repr(float(ts)), self._presence_ms, CHANNEL]
        done = await self.call("touch", self._touch(keys=keys, args=args))
        return bool(done)

    async def put_session(self, nick: str, digest: bytes, ttl: float) -> None:
        ttl_ms = max(1, round(ttl * 1000))
        await self.call("SET", self._redis.set(_key("session", nick), digest, px=ttl_ms))

    async def session_digest(self, nick: str) -> bytes | None:
        value = await self.call("GET", self._redis.get(_key("session", nick)))
        # Peer input: anything but a 32-byte digest is no session (token_matches says no).
        return value if isinstance(value, bytes) and len(value) == 32 else None

    async def drop_session(self, nick: str) -> None:
        await self.call("DEL", self._redis.delete(_key("session", nick)))

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        with contextlib.suppress(RedisError, OSError):
            await _aclose(self._redis)
        if self._sentinel is not None:
            for sentinel in self._sentinel.sentinels:
                with contextlib.suppress(RedisError, OSError):
                    await _aclose(sentinel)

    # --- loading and the subscriber ---------------------------------------------------------

    async def _load_all(self) -> list[StoredUser]:
        nicks: list[bytes] = await self.call("ZRANGE", self._redis.zrange(USERS, 0, -1))
        users: list[StoredUser] = []
        for start in range(0, len(nicks), LOAD_BATCH):
            batch = nicks[start : start + LOAD_BATCH]
            pipe = self._redis.pipeline(transaction=False)
            for nick in batch:
                key = _key("user", nick.decode("ascii", "replace"))
                await self._fetch(keys=[key], args=_FETCH_ARGS, client=pipe)  # queued
            rows: list[Any] = await self.call("load", pipe.execute())
            for nick, reply in zip(batch, rows, strict=True):
                try:
                    user = _decode_reply(nick, reply)
                except RecordError as exc:
                    self.bad_records += 1
                    logger.error("store %s: skipping an invalid record: %s", self.description, exc)
                    continue
                if user is not None:  # None: listed but gone (removed by hand)
                    users.append(user)
        return users

    async def _index_folded(self, users: list[StoredUser]) -> None:
        """``vcall:nick:<folded>`` for records written before it existed (see the module
        docstring); SET NX in code-point order, so the first spelling owns a folded nick."""
        nicks = sorted(u.nick for u in users)
        for start in range(0, len(nicks), LOAD_BATCH):
            pipe = self._redis.pipeline(transaction=False)
            for nick in nicks[start : start + LOAD_BATCH]:
                pipe.set(_key("nick", fold_nick(nick)), nick, nx=True)
            await self.call("index", pipe.execute())

    async def _subscribe(self) -> PubSub:
        pubsub = self._redis.pubsub()
        try:
            await self.call("SUBSCRIBE", pubsub.subscribe(CHANNEL))
            # Wait for the confirmation: from then on no change can slip between the
            # subscription and the load that follows it.
            async with asyncio.timeout(self._op_timeout):
                while True:
                    message = await pubsub.get_message(timeout=self._op_timeout)
                    if message is not None and message.get("type") == "subscribe":
                        break
        except (RedisError, OSError) as exc:
            await _aclose(pubsub)
            self._down(f"SUBSCRIBE: {type(exc).__name__}: {exc}")
            raise StoreUnavailable(f"{self.description}: SUBSCRIBE: {exc}") from None
        except BaseException:
            await _aclose(pubsub)
            raise
        return pubsub

    async def _listen(self, pubsub: PubSub, sink: ChangeSink) -> None:
        backoff = 0.05
        while True:
            try:
                async with _closing(pubsub):
                    while True:
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=POLL
                        )
                        _raise_if_cancelled()
                        if message is None or message.get("type") != "message":
                            continue
                        await self._apply(message.get("data"), sink)
                        backoff = 0.05
            except (RedisError, OSError, StoreUnavailable) as exc:
                self._down(f"subscriber: {type(exc).__name__}: {exc}")
            # Back-off, then subscribe again and reload: what was published meanwhile is lost.
            while True:
                await asyncio.sleep(backoff)
                backoff = min(MAX_BACKOFF, backoff * 2)
                try:
                    pubsub = await self._subscribe()
                except StoreUnavailable:
                    continue
                try:
                    users = await self._load_all()
                except StoreUnavailable:
                    await _aclose(pubsub)
                    continue
                sink.reloaded(users)
                self.resyncs += 1
                logger.info(
                    "store %s: subscribed again after an outage, reloaded %d accounts",
                    self.description, len(users),
                )  # fmt: skip
                break

    async def _apply(self, data: object, sink: ChangeSink) -> None:
        if not isinstance(data, bytes) or len(data) > 64:
            self.bad_records += 1
            return
        nick = data.decode("ascii", "replace")
        try:
            user = await self.fetch(nick)
        except StoreUnavailable:
            if not self.available:
                raise
            return  # an invalid record: counted and logged by fetch
        if user is not None:
            sink.changed(user)


_FETCH_ARGS: Final[list[bytes | int]] = [len(FIELDS) + 4, MAX_FIELD, *FIELDS]


def _decode_reply(nick: str | bytes, reply: object) -> StoredUser | None:
    """The _FETCH script's reply -> a validated user, None (no record) or RecordError."""
    if reply == -1:
        raise RecordError(f"oversized record for {nick!r}")
    if not isinstance(reply, list) or len(reply) % 2:
        raise RecordError(f"unexpected reply for {nick!r}")
    if not reply:
        return None
    fields = dict(zip(reply[::2], reply[1::2], strict=True))
    return decode_user(nick, fields)


def _raise_if_cancelled() -> None:
    """redis-py's PubSub.get_message can swallow a cancellation (its read timeout turns it
    into "no message"): honour the task's pending cancel here instead."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def _aclose(client: Redis | PubSub) -> None:
    await client.aclose()


@contextlib.asynccontextmanager
async def _closing(pubsub: PubSub) -> AsyncIterator[PubSub]:
    try:
        yield pubsub
    finally:
        with contextlib.suppress(RedisError, OSError):
            await _aclose(pubsub)


class _RedisThrottle:
    """throttle.py's policy on shared Redis counters (see the module docstring)."""

    def __init__(self, store: RedisUserStore) -> None:
        self._store = store

    async def blocked(self, keys: tuple[str, ...]) -> bool:
        redis = self._store._redis
        locks = [_key("lock", k) for k in keys]
        count = await self._store.call("EXISTS", redis.exists(*locks))
        return bool(count)

    async def failure(self, keys: tuple[str, ...]) -> None:
        p = self._store._policy
        redis_keys = [_key("fail", k) for k in keys] + [_key("lock", k) for k in keys]
        args = [p.max_failures, round(p.window * 1000), round(p.lockout * 1000)]
        script = self._store._failure
        await self._store.call("throttle", script(keys=redis_keys, args=args))

    async def success(self, keys: tuple[str, ...]) -> None:
        redis = self._store._redis
        await self._store.call("DEL", redis.delete(*[_key("fail", k) for k in keys]))
