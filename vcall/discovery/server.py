"""The discovery server: a thin asyncio adapter around the sans-IO framer and the directory.

``vcall-discovery [--host 127.0.0.1] [--port 8000] [--db PATH]`` runs it; ``EmbeddedServer``
(embedded.py) runs the same class in a background thread.

Guarantees:

* replies are the classic bytes, each sent with one ``transport.write`` (one segment on the
  wire for any reply that fits), in request order; connections stay open after a reply
  (QUIT gets ``BYE`` and then a close);
* QUERY and LIST_USERS are answered from memory (pre-formatted bytes); REGISTER hashes or
  verifies with scrypt in a thread pool and is acknowledged only after SQLite committed it;
* limits: request size, idle and slow-request timeouts (framing.py), a global and a
  per-address connection cap (connections over a cap are closed at once), failed-password
  throttling (throttle.py);
* SIGTERM and Ctrl-C stop it cleanly (exit code 0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import resource
import signal
import socket
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, cast

from vcall.discovery.codec import (
    Bye,
    ListUsers,
    Nok,
    NokCode,
    Query,
    Quit,
    Register,
    Rejected,
    Welcome,
    format_reply,
)
from vcall.discovery.directory import Directory
from vcall.discovery.framing import Drop, Event, Limits, RequestFramer
from vcall.discovery.store import (
    ScryptParams,
    Store,
    StoredUser,
    default_db_path,
    hash_password,
    verify_password,
)
from vcall.discovery.throttle import FailureThrottle, ThrottlePolicy

logger = logging.getLogger(__name__)

_BYE = format_reply(Bye())
_WRONG_PASS = format_reply(Nok(NokCode.WRONG_PASS))
_NOK = {code: format_reply(Nok(code)) for code in NokCode}
DROP_REPORT_INTERVAL = 10.0  # seconds between summaries of dropped connections
DROPS_PER_TICK = 50  # connections closed by timers per tick (see _tick)
ACCEPT_BATCH = 32  # connections accepted per event-loop iteration
LISTEN_BACKLOG = 4096  # connections the kernel queues meanwhile


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
    db: str = ":memory:"
    limits: Limits = field(default_factory=Limits)
    max_connections: int = 10_000
    max_per_address: int = 256
    throttle: ThrottlePolicy = field(default_factory=ThrottlePolicy)
    scrypt: ScryptParams = field(default_factory=ScryptParams)
    hash_workers: int = 2


class _Connection(asyncio.Protocol):
    """One client connection: moves bytes between the transport and its RequestFramer."""

    def __init__(self, server: DiscoveryServer) -> None:
        self._server = server
        self._loop = server.loop
        self._transport: asyncio.Transport | None = None
        self._framer = RequestFramer(server.config.limits, self._loop.time())
        self._busy = False  # answering a REGISTER: later requests wait in the framer
        self._eof = False
        self.address = "?"
        self.admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its interface.
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if peer else "?"
        if not self._server.admit(self):
            self._transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._framer.closed = True
        self._server.forget(self)

    def data_received(self, data: bytes) -> None:
        now = self._loop.time()
        self._framer.receive_data(data, now)
        if not self._busy:
            self._drain(now)

    def eof_received(self) -> bool | None:
        # A one-shot client that half-closes: answer what it sent, then close.
        self._eof = True
        if not self._busy:
            self._drain(self._loop.time() + self._server.config.limits.gap)
            self._close_if_done()
        return True  # keep the write side open until the answers are out

    def _close_if_done(self) -> None:
        if self._eof and not self._busy and self._transport is not None:
            self._transport.close()

    def poll(self, now: float) -> bool:
        """Run this connection's timers; True if they closed it."""
        if self._busy or self._transport is None:
            return False
        event = self._framer.poll(now)
        if event is not None:
            self._handle(event)
            self._drain(now)
        self._server.track_pending(self, self._framer.pending and not self._framer.closed)
        return self._framer.closed

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _drain(self, now: float) -> None:
        framer = self._framer
        while not self._busy:
            event = framer.next_event(now)
            if event is None:
                break
            self._handle(event)
        self._server.track_pending(self, framer.pending and not framer.closed)

    def _handle(self, event: Event) -> None:
        transport = self._transport
        assert transport is not None
        kind = type(event)
        # Ordered by frequency; QUERY and LIST_USERS are the hot path.
        if kind is Query:
            assert isinstance(event, Query)
            transport.write(self._server.directory.query_reply(event.nick))
        elif kind is ListUsers:
            transport.write(self._server.directory.list_reply())
        elif kind is Register:
            assert isinstance(event, Register)
            self._busy = True
            transport.pause_reading()
            self._server.spawn(self._register(event))
        elif kind is Rejected:
            assert isinstance(event, Rejected)
            logger.debug("%s: %s (%s)", self.address, event.code, event.reason)
            transport.write(_NOK[event.code])
        elif kind is Quit:
            transport.write(_BYE)
            self._framer.closed = True
            transport.close()
        elif kind is Drop:
            assert isinstance(event, Drop)
            self._server.note_drop(event.reason)
            logger.debug("dropping %s: %s", self.address, event.reason)
            if event.reply is not None:
                transport.write(_NOK[event.reply.code])
                transport.close()
            else:
                transport.abort()

    async def _register(self, request: Register) -> None:
        try:
            reply = await self._server.register(request, self.address)
        except Exception:
            logger.exception("REGISTER %s failed", request.nick)
            reply = None
        transport = self._transport
        self._busy = False
        if transport is None or transport.is_closing():
            return
        if reply is None:
            transport.abort()  # the store failed: better no answer than a false WELCOME
            return
        transport.write(reply)
        now = self._loop.time()
        self._framer.touch(now)
        transport.resume_reading()
        self._drain(now + (self._server.config.limits.gap if self._eof else 0.0))
        self._close_if_done()


class DiscoveryServer:
    """The server. ``await start()``, then ``await close()``; one event loop."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.directory = Directory()
        self.loop = asyncio.get_running_loop()
        self._throttle = FailureThrottle(config.throttle)
        self._hash_pool = ThreadPoolExecutor(config.hash_workers, "vcall-scrypt")
        self._db_pool = ThreadPoolExecutor(1, "vcall-sqlite")  # SQLite: one writer thread
        self._store: Store | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._per_address: dict[str, int] = {}
        self._pending: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._nick_locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._drops: dict[str, int] = {}
        self.address: tuple[str, int] = (config.host, config.port)

    async def start(self) -> tuple[str, int]:
        db = self.config.db
        self._store = await self.loop.run_in_executor(self._db_pool, Store, db)
        users = await self.loop.run_in_executor(self._db_pool, self._store.load_all)
        self.directory = Directory(users)
        sock = _listening_socket(self.config.host, self.config.port)
        # asyncio accepts up to `backlog` connections per loop iteration, and then runs a task
        # for each: a burst of 1,000 reconnecting clients would stall every other client for
        # ~100 ms. So asyncio gets a small batch, and the kernel queue (re-set after
        # create_server, which calls listen() itself) absorbs the burst.
        self._server = await self.loop.create_server(
            lambda: _Connection(self), sock=sock, backlog=ACCEPT_BATCH
        )
        sock.listen(LISTEN_BACKLOG)
        sockname = self._server.sockets[0].getsockname()
        self.address = (str(sockname[0]), int(sockname[1]))
        self.spawn(self._tick())
        loop_kind = type(self.loop).__module__.split(".")[0]
        logger.info(
            "listening on %s:%d (db %s, %d users, %s loop)",
            *self.address, db, len(self.directory), loop_kind,
        )  # fmt: skip
        return self.address

    async def close(self) -> None:
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
        if self._store is not None:
            await self.loop.run_in_executor(self._db_pool, self._store.close)
            self._store = None
        self._hash_pool.shutdown(wait=True, cancel_futures=True)
        self._db_pool.shutdown(wait=True)
        self._log_drops()
        logger.info("stopped")

    # --- connections ------------------------------------------------------------------------

    def admit(self, conn: _Connection) -> bool:
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

    def forget(self, conn: _Connection) -> None:
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
            logger.info("dropped or refused in the last %.0f s: %s", DROP_REPORT_INTERVAL, summary)
            self._drops.clear()

    def track_pending(self, conn: _Connection, pending: bool) -> None:
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
        next_report = self.loop.time() + DROP_REPORT_INTERVAL
        while True:
            await asyncio.sleep(tick)
            now = self.loop.time()
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
                for conn in list(self._connections):
                    budget -= conn.poll(now)
                    if budget <= 0:
                        break
            if now >= next_report:
                next_report = now + DROP_REPORT_INTERVAL
                self._log_drops()

    # --- REGISTER ---------------------------------------------------------------------------

    async def register(self, request: Register, address: str) -> bytes:
        keys = (f"nick:{request.nick}", f"addr:{address}")
        if self._throttle.blocked(keys, self.loop.time()):
            logger.debug("REGISTER %s from %s: throttled", request.nick, address)
            return _WRONG_PASS
        async with self._nick_lock(request.nick):
            existing = self.directory.get(request.nick)
            if existing is not None:
                ok = await self.loop.run_in_executor(
                    self._hash_pool, verify_password, request.password, existing.credential
                )
                if not ok:
                    self._throttle.failure(keys, self.loop.time())
                    logger.info("REGISTER %s from %s: wrong password", request.nick, address)
                    return _WRONG_PASS
                self._throttle.success(keys[:1])
                credential = existing.credential
            else:
                credential = await self.loop.run_in_executor(
                    self._hash_pool, hash_password, request.password, self.config.scrypt
                )
            ts = time.time()
            user = StoredUser(
                request.nick, request.ip, request.port, request.protocols, ts, credential
            )
            assert self._store is not None
            await self.loop.run_in_executor(self._db_pool, self._store.upsert, user)
            self.directory.put(user)
        logger.info("REGISTER %s %s:%d from %s", request.nick, request.ip, request.port, address)
        return format_reply(Welcome(request.nick, ts))

    @contextlib.asynccontextmanager
    async def _nick_lock(self, nick: str) -> AsyncIterator[None]:
        """Serialise REGISTERs of one nick (two first registrations must not both win)."""
        lock, users = self._nick_locks.get(nick, (asyncio.Lock(), 0))
        self._nick_locks[nick] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._nick_locks[nick]
            if users == 1:
                del self._nick_locks[nick]
            else:
                self._nick_locks[nick] = (lock, users - 1)


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
    add("--port", type=int, default=8000, help="TCP port; 0 picks a free one (default: 8000)")
    add("--db", default=None, help=f"SQLite file or :memory: (default: {default_db_path()})")
    add("--max-request", type=int, default=d.max_size, help="bytes (default: %(default)s)")
    add("--gap-timeout", type=float, default=d.gap, help="s of quiet that ends a message")
    add("--request-timeout", type=float, default=d.request_timeout, help="s to finish one")
    add("--idle-timeout", type=float, default=d.idle_timeout, help="s before idle drop")
    add("--max-errors", type=int, default=d.max_errors, help="bad requests in a row")
    add("--max-connections", type=int, default=c.max_connections)
    add("--max-per-address", type=int, default=c.max_per_address)
    add("--throttle-failures", type=int, default=t.max_failures, help="wrong passwords...")
    add("--throttle-window", type=float, default=t.window, help="...within this many s...")
    add("--throttle-lockout", type=float, default=t.lockout, help="...lock for this many s")
    add("--scrypt-n", type=int, default=ScryptParams().n, help="scrypt cost for new hashes")


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    return ServerConfig(
        host=args.host,
        port=args.port,
        db=args.db if args.db is not None else str(default_db_path()),
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
    )


async def serve(config: ServerConfig) -> None:
    """Run until SIGTERM or SIGINT."""
    server = DiscoveryServer(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
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
    except (OSError, sqlite3.Error) as exc:
        logger.error("cannot serve on %s:%d (db %s): %s", config.host, config.port, config.db, exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
