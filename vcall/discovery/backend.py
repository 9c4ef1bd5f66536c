"""Where accounts live, behind one small async interface: SQLite (embedded) or a shared Redis.

The server keeps every account in memory (directory.py) and answers QUERY and LIST_USERS from
there; a :class:`UserStore` is the authority behind that cache. The server calls it on its
event loop; blocking work (SQLite) runs in the store's own thread.

* ``sqlite:PATH`` (or a bare path, or ``:memory:``): :class:`SqliteUserStore`, one process
  owns the file; the throttle is in memory. Behaviour and cost are those of store.py.
* ``redis://HOST:PORT/DB`` and ``redis-sentinel://H1:P1,H2:P2/SERVICE/DB``: the shared store
  of redis_store.py; several ``vcall-discovery`` instances share accounts, the throttle and
  presence, and each invalidates the others' caches.

Guarantees of every store:

* ``create`` is atomic across every instance sharing the store: of two creations of one nick,
  exactly one returns True; ``update`` changes a record only if its credential is still the one
  the caller verified the password against;
* the shared store raises :class:`StoreUnavailable` when it cannot be reached, within its
  timeout (redis_store.py: 2.5 s), so the server refuses a registration with a clear reply;
  SQLite's errors stay ``sqlite3.Error`` (a local disk: the server aborts that request, as
  before);
* records read back from the shared store are validated (records.py); a bad one is skipped
  and counted, not served.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Final, Protocol

from vcall.discovery.store import Store, StoredUser
from vcall.discovery.throttle import FailureThrottle, ThrottlePolicy

# s: a registration counts as "online" this long. vcall clients refresh theirs every 60 s
# (vcall/gui/presence.py), so one lost refresh does not show them offline.
DEFAULT_PRESENCE_TTL: Final = 180.0


class StoreUnavailable(Exception):  # noqa: N818 (reads as the condition it reports)
    """The store cannot be reached or did not answer in time (the operator's to fix)."""


class StoreSpecError(ValueError):
    """A ``--store`` value that names no known store (the user's to fix)."""


class ChangeSink(Protocol):
    """Told by a shared store what other instances changed (called on the server's loop)."""

    def changed(self, user: StoredUser) -> None: ...

    def reloaded(self, users: list[StoredUser]) -> None: ...


class Throttle(Protocol):
    """Failed-password throttle (throttle.py semantics); shared when the store is."""

    async def blocked(self, keys: tuple[str, ...]) -> bool: ...

    async def failure(self, keys: tuple[str, ...]) -> None: ...

    async def success(self, keys: tuple[str, ...]) -> None: ...


class UserStore(Protocol):
    description: str  # for log lines: "sqlite:/path" or "redis://host:port/0"
    throttle: Throttle

    async def start(self, sink: ChangeSink) -> list[StoredUser]:
        """Open; every account, oldest registration first. Raises StoreUnavailable."""
        ...

    async def fetch(self, nick: str) -> StoredUser | None: ...

    async def create(self, user: StoredUser) -> bool:
        """Insert a new nick; False (and nothing changed) if it exists already."""
        ...

    async def update(self, user: StoredUser) -> bool:
        """Replace an account whose stored credential equals ``user.credential``; else False."""
        ...

    async def online(self, nick: str) -> bool:
        """Registered within the presence TTL (expired by the store, not by one instance)."""
        ...

    async def touch(self, nick: str, ts: float) -> bool:
        """Set the last-seen time of the account spelled ``nick`` to ``ts`` (Unix s) and tell
        every instance (a keep-alive, session.py); False if there is no such account."""
        ...

    async def put_session(self, nick: str, digest: bytes, ttl: float) -> None:
        """Replace ``nick``'s session by one with this token digest, for ``ttl`` seconds."""
        ...

    async def session_digest(self, nick: str) -> bytes | None:
        """The token digest of ``nick``'s live session (None: none, or expired)."""
        ...

    async def drop_session(self, nick: str) -> None: ...

    async def close(self) -> None: ...


class LocalThrottle:
    """The in-memory :class:`FailureThrottle` behind the async :class:`Throttle` interface."""

    def __init__(self, policy: ThrottlePolicy) -> None:
        self._throttle = FailureThrottle(policy)

    async def blocked(self, keys: tuple[str, ...]) -> bool:
        return self._throttle.blocked(keys, time.monotonic())

    async def failure(self, keys: tuple[str, ...]) -> None:
        self._throttle.failure(keys, time.monotonic())

    async def success(self, keys: tuple[str, ...]) -> None:
        self._throttle.success(keys)


class SqliteUserStore:
    """store.py's SQLite file, used from one thread (SQLite: one writer)."""

    def __init__(
        self, path: str, policy: ThrottlePolicy, presence_ttl: float = DEFAULT_PRESENCE_TTL
    ) -> None:
        self.path = path
        self.description = f"sqlite:{path}"
        self.throttle: Throttle = LocalThrottle(policy)
        self._presence_ttl = presence_ttl
        self._pool = ThreadPoolExecutor(1, "vcall-sqlite")
        self._store: Store | None = None

    async def start(self, sink: ChangeSink) -> list[StoredUser]:
        loop = asyncio.get_running_loop()
        self._store = await loop.run_in_executor(self._pool, Store, self.path)
        return await loop.run_in_executor(self._pool, self._store.load_all)

    async def fetch(self, nick: str) -> StoredUser | None:
        assert self._store is not None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._store.get, nick)

    async def create(self, user: StoredUser) -> bool:
        assert self._store is not None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._store.insert, user)

    async def update(self, user: StoredUser) -> bool:
        # One process owns the file and credentials never change: a plain upsert, as before.
        assert self._store is not None
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, self._store.upsert, user)
        return True

    async def online(self, nick: str) -> bool:
        user = await self.fetch(nick)
        return user is not None and time.time() - user.ts < self._presence_ttl

    async def touch(self, nick: str, ts: float) -> bool:
        assert self._store is not None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._store.touch, nick, ts)

    async def put_session(self, nick: str, digest: bytes, ttl: float) -> None:
        assert self._store is not None
        loop = asyncio.get_running_loop()
        expires = time.time() + ttl
        await loop.run_in_executor(self._pool, self._store.put_session, nick, digest, expires)

    async def session_digest(self, nick: str) -> bytes | None:
        assert self._store is not None
        loop = asyncio.get_running_loop()
        now = time.time()
        return await loop.run_in_executor(self._pool, self._store.session_digest, nick, now)

    async def drop_session(self, nick: str) -> None:
        assert self._store is not None
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, self._store.drop_session, nick)

    async def close(self) -> None:
        if self._store is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._pool, self._store.close)
            self._store = None
        self._pool.shutdown(wait=True)


def open_store(
    spec: str, policy: ThrottlePolicy, presence_ttl: float = DEFAULT_PRESENCE_TTL
) -> UserStore:
    """The store named by ``spec`` (see the module docstring); raises StoreSpecError."""
    if spec.startswith(("redis://", "rediss://", "unix://", "redis-sentinel://")):
        from vcall.discovery.redis_store import RedisUserStore  # noqa: PLC0415 (optional dep)

        return RedisUserStore(spec, policy, presence_ttl)
    if spec.startswith("sqlite:"):
        path = spec.removeprefix("sqlite:")
        if not path:
            raise StoreSpecError("sqlite: needs a path (or :memory:)")
        return SqliteUserStore(path, policy, presence_ttl)
    if "://" in spec:
        raise StoreSpecError(f"unknown store {spec!r}: use sqlite:PATH or redis://HOST:PORT/DB")
    return SqliteUserStore(spec, policy, presence_ttl)


STORE_ERRORS: Final = (StoreUnavailable, sqlite3.Error)
