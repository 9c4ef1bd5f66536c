"""The discovery server: listener, shared state and the command line (`vcall-discovery`).

Each connection is a :class:`~vcall.discovery.connection.Connection` (the thin adapter around
the sans-IO framer); this module owns what they share: the directory, the store, the caps,
the timers and the REGISTER logic.

``vcall-discovery [--host 127.0.0.1] [--port 8000] [--store sqlite:PATH | redis://HOST:PORT/DB]
[--tls-port N | --no-tls] [--identity-dir DIR]`` runs it (``--db PATH`` is
``--store sqlite:PATH``); ``EmbeddedServer`` (embedded.py) runs the same class in a background
thread. Several instances on one Redis share every account
(backend.py, redis_store.py).

Guarantees:

* replies are the classic bytes, each sent with one ``transport.write`` (one segment on the
  wire for any reply that fits), in request order; connections stay open after a reply
  (QUIT gets ``BYE`` and then a close);
* QUERY and LIST_USERS are answered from memory (pre-formatted bytes), also while a shared
  store is unreachable; REGISTER hashes or verifies with scrypt in a thread pool and is
  acknowledged only after the store committed it (SQLite) or executed it (the Redis primary);
  a store that cannot be reached gets ``NOK SERVICE_UNAVAILABLE`` and a log line, never a hang;
* limits: request size, idle and slow-request timeouts (framing.py), a global and a
  per-address connection cap (connections over a cap are closed at once), failed-password
  throttling (throttle.py);
* vcall extension (issue 14, docs/protocol.md section 1): a second listener speaks TLS 1.3 on
  ``--tls-port`` (default port + 1) with a self-signed certificate on the server's own key
  (identity.py, kept in ``discovery-identity/`` next to the database); ``VCALL_TLS`` on the
  plain port names it. QUERY on the TLS port adds the user's key fingerprint to
  ``<protocols>``; the plain port answers exactly as a classic server;
* vcall extension (issue 15): nicks are unique ignoring case (codec.fold_nick; the WELCOME
  names the account's stored spelling); ``VCALL_PRESENCE`` lists every user with its age and
  presence (directory.py), ``VCALL_OFFLINE`` marks a user logged out (password or session
  token checked), ``VCALL_SESSION`` / ``VCALL_HERE`` are the keep-alive without a scrypt
  check (keepalive.py); classic clients never see any of them;
* SIGTERM and Ctrl-C stop it cleanly (exit code 0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import resource
import signal
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from vcall.config import count_arg, port_arg, seconds_arg
from vcall.discovery.backend import (
    DEFAULT_PRESENCE_TTL,
    STORE_ERRORS,
    StoreSpecError,
    StoreUnavailable,
    UserStore,
    open_store,
)
from vcall.discovery.codec import (
    Here,
    Nok,
    NokCode,
    Offline,
    Register,
    SessionOpen,
    Welcome,
    fold_nick,
    format_reply,
)
from vcall.discovery.connection import Connection
from vcall.discovery.directory import Directory
from vcall.discovery.framing import Limits
from vcall.discovery.keepalive import KeepAliveDesk
from vcall.discovery.session import DEFAULT_SESSION_TTL
from vcall.discovery.store import (
    ScryptParams,
    StoredUser,
    default_db_path,
    hash_password,
    verify_password,
)
from vcall.discovery.throttle import ThrottlePolicy
from vcall.identity import Identity, load_or_create_identity

if TYPE_CHECKING:
    from vcall.discovery.mdns import Advertiser

logger = logging.getLogger(__name__)
T = TypeVar("T")

_WRONG_PASS = format_reply(Nok(NokCode.WRONG_PASS))
_UNAVAILABLE = format_reply(Nok(NokCode.SERVICE_UNAVAILABLE))
DROPS_PER_TICK = 50  # connections closed by timers per tick (see _tick)
HASHES_PER_ADDRESS = 2  # scrypt jobs one client address may have in the pool at once
ACCEPT_BATCH = 32  # connections accepted per event-loop iteration
LISTEN_BACKLOG = 4096  # connections the kernel queues meanwhile
TLS_HANDSHAKE_TIMEOUT: Final = 10.0  # s a client gets to finish the TLS handshake
SERVER_IDENTITY_DIR: Final = "discovery-identity"  # next to the database (see identity_dir_for)


def _listening_socket(host: str, port: int) -> socket.socket:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family = infos[0][0]
    return socket.create_server(
        (host, port), family=family, backlog=LISTEN_BACKLOG, reuse_port=False
    )


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    db: str = ":memory:"  # the store: a SQLite path, sqlite:PATH or redis://HOST:PORT/DB
    limits: Limits = field(default_factory=Limits)
    max_connections: int = 10_000
    max_per_address: int = 256
    throttle: ThrottlePolicy = field(default_factory=ThrottlePolicy)
    scrypt: ScryptParams = field(default_factory=ScryptParams)
    hash_workers: int = 2
    stats_interval: float = 10.0  # seconds between "stats:" log lines (and drop summaries)
    presence_ttl: float = DEFAULT_PRESENCE_TTL  # s a registration counts as online
    session_ttl: float = DEFAULT_SESSION_TTL  # s a keep-alive token lives (session.py)
    # TLS listener for vcall clients (issue 14): None = no TLS; 0 = any free port. Off by
    # default here (the command line and EmbeddedServer turn it on).
    tls_port: int | None = None
    # If tls_port is taken, take any free port instead (clients ask for it: VCALL_TLS).
    tls_port_fallback: bool = False
    tls_handshake_timeout: float = TLS_HANDSHAKE_TIMEOUT  # s to finish the TLS handshake
    # The server's key and certificate; None = identity_dir_for(db).
    identity_dir: str | None = None
    # mDNS / DNS-SD announcement as _vcall-dir._tcp.local. (mdns.py, issue 15); the name
    # None = mdns.default_name(port).
    mdns: bool = False
    mdns_name: str | None = None


def identity_dir_for(db: str) -> Path:
    """Where a server keeps its identity: ``discovery-identity/`` next to a SQLite file; for
    ``:memory:`` and Redis stores, the user data dir's ``vcall/discovery-identity/``."""
    path = db.removeprefix("sqlite:")
    if path and path != ":memory:" and "://" not in path:
        return Path(path).expanduser().resolve().parent / SERVER_IDENTITY_DIR
    return default_db_path().parent / SERVER_IDENTITY_DIR


def tls_context(identity: Identity) -> ssl.SSLContext:
    """Server-side TLS 1.3 context on ``identity``'s self-signed certificate (clients pin its
    key fingerprint on first use; no CA is involved). RFC 8446."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(identity.cert_path, identity.key_path)
    return ctx


class DiscoveryServer:
    """The server. ``await start()``, then ``await close()``; one event loop."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.limits = config.limits
        self.directory = Directory()
        self.loop = asyncio.get_running_loop()
        self.store: UserStore = open_store(config.db, config.throttle, config.presence_ttl)
        self._throttle = self.store.throttle
        self._hash_pool = ThreadPoolExecutor(config.hash_workers, "vcall-scrypt")
        self._server: asyncio.Server | None = None
        self._tls_server: asyncio.Server | None = None
        self.identity: Identity | None = None
        self.tls_port: int | None = None
        self._identity_dir: Path | None = None
        self._connections: set[Connection] = set()
        self._per_address: dict[str, int] = {}
        self._pending: set[Connection] = set()
        self._handshakes: dict[Connection, float] = {}  # TLS connections not yet made
        self._tasks: set[asyncio.Task[None]] = set()
        # Two first registrations of one nick must not both win: one at a time per nick.
        self._nick_locks = _KeyedSlots(1)
        self._address_slots = _KeyedSlots(HASHES_PER_ADDRESS)
        self._drops: dict[str, int] = {}
        self.requests = 0  # answered requests, for the periodic stats line
        self.address: tuple[str, int] = (config.host, config.port)
        self.advertiser: Advertiser | None = None
        self.keepalive = KeepAliveDesk(
            self.store, self.directory, hold=self._nick_locks.hold, scrypt=self._scrypt,
            note_drop=self.note_drop, session_ttl=config.session_ttl,
        )  # fmt: skip

    async def start(self) -> tuple[str, int]:
        users = await self.store.start(self)
        self.directory.reset(users)
        sock = _listening_socket(self.config.host, self.config.port)
        # asyncio accepts up to `backlog` connections per loop iteration, and then runs a task
        # for each: a burst of 1,000 reconnecting clients would stall every other client for
        # ~100 ms. So asyncio gets a small batch, and the kernel queue (re-set after
        # create_server, which calls listen() itself) absorbs the burst.
        self._server = await self.loop.create_server(
            lambda: Connection(self), sock=sock, backlog=ACCEPT_BATCH
        )
        sock.listen(LISTEN_BACKLOG)
        sockname = self._server.sockets[0].getsockname()
        self.address = (str(sockname[0]), int(sockname[1]))
        if self.config.tls_port is not None:
            await self._start_tls(self.config.tls_port)
        self.spawn(self._tick())
        if self.config.mdns:
            from vcall.discovery.mdns import Advertiser, default_name  # noqa: PLC0415

            name = self.config.mdns_name or default_name(self.address[1])
            self.advertiser = Advertiser(name, self.config.host, self.address[1], self.tls_port)
            self.advertiser.start()  # announces from its own thread: the start is not delayed
        loop_kind = type(self.loop).__module__.split(".")[0]
        logger.info(
            "listening on %s:%d (db %s, %d users, %s loop)",
            *self.address, self.store.description, len(self.directory), loop_kind,
        )  # fmt: skip
        if self.identity is not None:
            logger.info(
                "TLS on %s:%d for vcall clients, server key %s (%s)",
                self.config.host, self.tls_port, self.identity.fingerprint, self._identity_dir,
            )  # fmt: skip
        return self.address

    async def _start_tls(self, port: int) -> None:
        ident_dir = self.config.identity_dir
        directory = Path(ident_dir) if ident_dir else identity_dir_for(self.config.db)
        self.identity = await self.loop.run_in_executor(
            self._hash_pool, load_or_create_identity, directory
        )
        try:
            sock = _listening_socket(self.config.host, port)
        except OSError as exc:
            if not self.config.tls_port_fallback or port == 0:
                raise
            logger.warning("TLS port %d: %s; taking a free port instead", port, exc)
            sock = _listening_socket(self.config.host, 0)
        self._tls_server = await self.loop.create_server(
            lambda: Connection(self, secure=True),
            sock=sock,
            backlog=ACCEPT_BATCH,
            ssl=tls_context(self.identity),
            ssl_handshake_timeout=self.config.tls_handshake_timeout,
        )
        sock.listen(LISTEN_BACKLOG)
        self.tls_port = int(self._tls_server.sockets[0].getsockname()[1])
        self._identity_dir = directory

    async def close(self) -> None:
        if self.advertiser is not None:  # the goodbye first: clients stop offering us
            await self.loop.run_in_executor(None, self.advertiser.close)
            self.advertiser = None
        if self._tls_server is not None:
            self._tls_server.close()
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if self._tls_server is not None:
            await self._tls_server.wait_closed()
            self._tls_server = None
        await self.store.close()
        self._hash_pool.shutdown(wait=True, cancel_futures=True)
        self._log_drops()
        logger.info("stopped")

    # --- the store's change notifications (ChangeSink) ---------------------------------------

    def changed(self, user: StoredUser) -> None:
        self.directory.put(user)

    def reloaded(self, users: list[StoredUser]) -> None:
        self.directory.reset(users)

    # --- connections ------------------------------------------------------------------------

    def admit(self, conn: Connection) -> bool:
        count = self._per_address.get(conn.address, 0)
        if len(self._connections) >= self.config.max_connections:
            self.note_drop("connection cap reached")
            logger.debug("connection cap reached: refusing %s", conn.address)
            return False
        if count >= self.config.max_per_address:
            self.note_drop("per-address cap reached")
            logger.debug("per-address cap reached: refusing %s", conn.address)
            return False
        self._per_address[conn.address] = count + 1
        self._connections.add(conn)
        conn.admitted = True
        return True

    def forget(self, conn: Connection) -> None:
        self._pending.discard(conn)
        if not conn.admitted:
            return
        conn.admitted = False
        self._connections.discard(conn)
        left = self._per_address[conn.address] - 1
        if left:
            self._per_address[conn.address] = left
        else:
            del self._per_address[conn.address]

    def note_drop(self, reason: str) -> None:
        """Count a dropped or refused connection; the counts are logged once per interval.

        One log line per drop would let an attacker flood the log (and block the server on
        a full stderr pipe).
        """
        self._drops[reason] = self._drops.get(reason, 0) + 1

    def _log_drops(self) -> None:
        if self._drops:
            summary = ", ".join(f"{n} x {reason}" for reason, n in sorted(self._drops.items()))
            logger.info("dropped or refused: %s", summary)
            self._drops.clear()

    def handshake(self, conn: Connection, started: bool) -> None:
        """A TLS connection began (``started``) or finished its handshake. asyncio reports a
        failed or timed-out handshake to no one, so the ones still open after
        the handshake timeout are counted by the sweep in _tick ("TLS handshake failed")."""
        if started:
            self._handshakes[conn] = self.loop.time()
        else:
            self._handshakes.pop(conn, None)

    def _sweep_handshakes(self, now: float) -> None:
        limit = now - self.config.tls_handshake_timeout - 1.0
        stale = [c for c, t in self._handshakes.items() if t < limit]
        for conn in stale:
            del self._handshakes[conn]
            self.note_drop("TLS handshake failed or timed out")

    def track_pending(self, conn: Connection, pending: bool) -> None:
        if pending:
            self._pending.add(conn)
        else:
            self._pending.discard(conn)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _tick(self) -> None:
        """Timers of all connections from one task: no call_later per request."""
        limits = self.config.limits
        tick = max(0.01, min(0.1, limits.gap / 2, limits.request_timeout / 4))
        sweep_every = max(tick, min(1.0, limits.idle_timeout / 4))
        next_sweep = self.loop.time() + sweep_every
        interval = self.config.stats_interval
        next_report = self.loop.time() + interval
        lag_max = 0.0
        requests_at_report = 0
        while True:
            expected = self.loop.time() + tick
            await asyncio.sleep(tick)
            now = self.loop.time()
            # How late this tick woke up: how long the loop was busy (or not scheduled).
            lag_max = max(lag_max, now - expected)
            # At most DROPS_PER_TICK closes per tick: 1,000 slow clients that started
            # together time out together, and closing them (and accepting their reconnects)
            # in one go would stall everyone else for tens of milliseconds.
            budget = DROPS_PER_TICK
            for conn in list(self._pending):
                budget -= conn.poll(now)
                if budget <= 0:
                    break
            if now >= next_sweep and budget > 0:
                next_sweep = now + sweep_every
                self._sweep_handshakes(now)
                for conn in list(self._connections):
                    budget -= conn.poll(now)
                    if budget <= 0:
                        break
            if now >= next_report:
                rate = (self.requests - requests_at_report) / (now - next_report + interval)
                next_report = now + interval
                requests_at_report = self.requests
                logger.info(
                    "stats: %d connections, %.0f requests/s, loop lag max %.1f ms",
                    len(self._connections), rate, lag_max * 1000,
                )  # fmt: skip
                lag_max = 0.0
                self._log_drops()

    # --- REGISTER ---------------------------------------------------------------------------

    async def register(self, request: Register, address: str) -> bytes:
        try:
            return await self._register(request, address)
        except StoreUnavailable as exc:
            # The store logs its outage once; each refusal is only counted.
            self.note_drop("REGISTER refused: store unavailable")
            logger.debug("REGISTER %s from %s refused: %s", request.nick, address, exc)
            return _UNAVAILABLE

    async def _register(self, request: Register, address: str) -> bytes:
        # Nicks are unique ignoring case (codec.fold_nick): "Alice" is alice's account, with
        # alice's password, and keeps the stored spelling (which the WELCOME names).
        folded = fold_nick(request.nick)
        keys = (f"nick:{folded}", f"addr:{address}")
        async with self._nick_locks.hold(folded):
            # Checked after the lock: attempts queued behind it must not bypass a lock-out
            # that the attempts before them caused.
            if await self._throttle.blocked(keys):
                logger.debug("REGISTER %s from %s: throttled", request.nick, address)
                return _WRONG_PASS
            ts = time.time()
            existing = self.directory.get(request.nick)
            if existing is None:
                credential = await self._scrypt(
                    address, hash_password, request.password, self.config.scrypt
                )
                user = StoredUser(
                    request.nick, request.ip, request.port, request.protocols, ts, credential,
                    request.fingerprint,
                )  # fmt: skip
                if not await self.store.create(user):
                    # Another instance registered this nick first: its password decides.
                    existing = await self.store.fetch(request.nick)
                    if existing is None:
                        raise StoreUnavailable(f"{request.nick}: neither created nor found")
            if existing is not None:
                ok = await self._scrypt(
                    address, verify_password, request.password, existing.credential
                )
                if not ok:
                    await self._throttle.failure(keys)
                    logger.info("REGISTER %s from %s: wrong password", request.nick, address)
                    return _WRONG_PASS
                await self._throttle.success(keys[:1])
                user = StoredUser(
                    existing.nick, request.ip, request.port, request.protocols, ts,
                    existing.credential, request.fingerprint,
                )  # fmt: skip
                if existing.fingerprint != request.fingerprint:
                    # The password was right: a new installation (or a classic client) now
                    # holds this nick. Logged, since peers will see a different key.
                    logger.warning(
                        "REGISTER %s from %s: key changed from %s to %s",
                        request.nick, address, existing.fingerprint or "none",
                        request.fingerprint or "none",
                    )  # fmt: skip
                if not await self.store.update(user):
                    fresh = await self.store.fetch(user.nick)
                    # Gone from the store (lost, or removed by hand): the password matched
                    # our cached copy, so the account is restored. Otherwise the stored
                    # credential is another one: nothing was written, the cache is refreshed.
                    if fresh is not None or not await self.store.create(user):
                        if fresh is not None:
                            self.directory.put(fresh)
                        return _WRONG_PASS
            self.directory.put(user)
        logger.info("REGISTER %s %s:%d from %s", user.nick, request.ip, request.port, address)
        return format_reply(Welcome(user.nick, ts))

    # --- presence (vcall extension, issue 15; docs/protocol.md section 1) --------------------

    def presence_reply(self) -> bytes:
        """``OK VCALL_PRESENCE ...`` from memory, as LIST_USERS (wall clock: ``ts`` is one)."""
        return self.directory.presence_reply(time.time(), self.config.presence_ttl)

    async def offline(self, request: Offline, address: str) -> bytes:
        """``VCALL_OFFLINE``: shown offline until the next REGISTER (keepalive.py)."""
        return await self.keepalive.offline(request, address)

    async def session(self, request: SessionOpen, address: str) -> bytes:
        """``VCALL_SESSION``: one scrypt check buys a keep-alive token (keepalive.py)."""
        return await self.keepalive.session(request, address)

    async def here(self, request: Here, address: str) -> bytes:
        """``VCALL_HERE``: the keep-alive, a token instead of a scrypt check (keepalive.py)."""
        return await self.keepalive.here(request, address)

    async def _scrypt(self, address: str, func: Callable[..., T], *args: Any) -> T:
        """Run scrypt work in the pool, at most HASHES_PER_ADDRESS at a time per address, so
        that a REGISTER flood from one address cannot fill the pool for everyone else."""
        async with self._address_slots.hold(address):
            return await self.loop.run_in_executor(self._hash_pool, func, *args)


class _KeyedSlots:
    """Per-key semaphores, created on demand and forgotten once unused (bounded memory)."""

    def __init__(self, slots: int) -> None:
        self._slots = slots
        self._table: dict[str, tuple[asyncio.Semaphore, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        sem, users = self._table.get(key) or (asyncio.Semaphore(self._slots), 0)
        self._table[key] = (sem, users + 1)
        try:
            async with sem:
                yield
        finally:
            sem, users = self._table[key]
            if users == 1:
                del self._table[key]
            else:
                self._table[key] = (sem, users - 1)


# --- command line ---------------------------------------------------------------------------


def raise_nofile_limit() -> int:
    """Raise the soft open-files limit to the hard limit (1,000+ connections need it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= hard:
        return soft
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    d = Limits()
    t = ThrottlePolicy()
    c = ServerConfig()
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    add("--port", type=port_arg, default=8000, help="TCP port; 0 picks a free one (default: 8000)")
    add(
        "--tls-port", type=port_arg, default=None,
        help="TLS port for vcall clients; 0 picks a free one (default: --port + 1, or 0)",
    )  # fmt: skip
    add("--no-tls", action="store_true", help="no TLS listener (classic plain port only)")
    add(
        "--mdns", action=argparse.BooleanOptionalAction, default=None,
        help="announce this directory with mDNS/DNS-SD as _vcall-dir._tcp.local. "
        "(default: on when --host is not a loopback address)",
    )  # fmt: skip
    add("--mdns-name", default=None, metavar="NAME", help="the announced name (default: "
        "'vcall directory on <host name>')")  # fmt: skip
    add(
        "--tls-handshake-timeout", type=seconds_arg, default=TLS_HANDSHAKE_TIMEOUT,
        help="s a client gets to finish the TLS handshake (default: %(default)s)",
    )  # fmt: skip
    add(
        "--identity-dir", default=None,
        help="the server's key and certificate (default: discovery-identity/ next to the db)",
    )  # fmt: skip
    add("--db", default=None, help=f"SQLite file or :memory: (default: {default_db_path()})")
    add(
        "--store", default=None, metavar="SPEC",
        help="sqlite:PATH | redis://HOST:PORT/DB | redis-sentinel://H:P[,H:P]/SERVICE/DB "
        "(overrides --db; default: sqlite at the --db path)",
    )  # fmt: skip
    add(
        "--presence-ttl", type=seconds_arg, default=c.presence_ttl,
        help="s a REGISTER counts as online (vcall clients refresh theirs every 60 s; "
        "default: %(default)s)",
    )  # fmt: skip
    add(
        "--session-ttl", type=seconds_arg, default=c.session_ttl,
        help="s a keep-alive token (VCALL_SESSION) lives (default: %(default)s)",
    )  # fmt: skip
    add("--max-request", type=count_arg, default=d.max_size, help="bytes (default: %(default)s)")
    add("--gap-timeout", type=seconds_arg, default=d.gap, help="s of quiet that ends a message")
    add("--request-timeout", type=seconds_arg, default=d.request_timeout, help="s to finish one")
    add("--idle-timeout", type=seconds_arg, default=d.idle_timeout, help="s before idle drop")
    add("--max-errors", type=count_arg, default=d.max_errors, help="bad requests in a row")
    add(
        "--max-connections", type=count_arg, default=c.max_connections,
        help="open connections at most (default: %(default)s)",
    )  # fmt: skip
    add(
        "--max-per-address", type=count_arg, default=c.max_per_address,
        help="open connections from one address at most (default: %(default)s)",
    )  # fmt: skip
    add("--throttle-failures", type=count_arg, default=t.max_failures, help="wrong passwords...")
    add("--throttle-window", type=seconds_arg, default=t.window, help="...within this many s...")
    add("--throttle-lockout", type=seconds_arg, default=t.lockout, help="...lock for this many s")
    add("--scrypt-n", type=count_arg, default=ScryptParams().n, help="scrypt cost for new hashes")
    add(
        "--stats-interval", type=seconds_arg, default=c.stats_interval,
        help="s between stats logs",
    )  # fmt: skip


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    tls_port: int | None = args.tls_port
    fallback = False
    if args.no_tls:
        tls_port = None
    elif tls_port is None:  # the default: port + 1, or any free port if that one is taken
        tls_port = args.port + 1 if 0 < args.port < 65535 else 0
        fallback = True
    mdns: bool | None = args.mdns
    if mdns is None:
        mdns = not _is_loopback(args.host)
    return ServerConfig(
        mdns=mdns,
        mdns_name=args.mdns_name,
        host=args.host,
        port=args.port,
        tls_port=tls_port,
        tls_port_fallback=fallback,
        tls_handshake_timeout=args.tls_handshake_timeout,
        identity_dir=args.identity_dir,
        db=args.store or (args.db if args.db is not None else str(default_db_path())),
        limits=Limits(
            max_size=args.max_request,
            gap=args.gap_timeout,
            request_timeout=args.request_timeout,
            idle_timeout=args.idle_timeout,
            max_errors=args.max_errors,
        ),
        max_connections=args.max_connections,
        max_per_address=args.max_per_address,
        throttle=ThrottlePolicy(
            max_failures=args.throttle_failures,
            window=args.throttle_window,
            lockout=args.throttle_lockout,
        ),
        scrypt=ScryptParams(n=args.scrypt_n),
        stats_interval=args.stats_interval,
        presence_ttl=args.presence_ttl,
        session_ttl=args.session_ttl,
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def serve(config: ServerConfig) -> None:
    """Run until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = DiscoveryServer(config)
    try:
        await server.start()
        await stop.wait()
        logger.info("signal received: stopping")
    finally:
        await server.close()


def _loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (its per-event cost is a fraction of asyncio's), else asyncio."""
    if choice == "asyncio":
        return None
    try:
        import uvloop  # noqa: PLC0415  (optional dependency)
    except ImportError:
        if choice == "uvloop":
            raise SystemExit(
                "vcall-discovery: --loop uvloop, but uvloop is not installed"
            ) from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vcall-discovery", description="vcall discovery server (classic protocol)"
    )
    add_server_arguments(parser)
    parser.add_argument(
        "--loop", choices=("auto", "asyncio", "uvloop"), default="auto",
        help="event loop (default: uvloop if installed)",
    )  # fmt: skip
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
    )
    raise_nofile_limit()
    config = config_from_args(args)
    try:
        with asyncio.Runner(loop_factory=_loop_factory(args.loop)) as runner:
            runner.run(serve(config))
    except (OSError, StoreSpecError, *STORE_ERRORS) as exc:
        where = config.db if "@" not in config.db else config.db.split("@")[-1]
        logger.error("cannot serve on %s:%d (db %s): %s", config.host, config.port, where, exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
