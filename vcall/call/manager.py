"""CallManager: discovery + call-control transport + state machine + media, for one user.

Threading: the manager runs one asyncio event loop in a daemon thread. Public methods are
blocking, thread-safe wrappers (never call them from ``on_event``, which runs on that loop's
thread). An action racing ``close()`` from another thread either runs before the shutdown or
raises :class:`CallUsageError`; it never waits on a stopped loop. Blocking work (discovery
client, media session) runs in executors, never on the loop; media operations go through one
single-thread executor so they keep their order.

Every user action and network event passes through :class:`CallStateMachine`. A user action the
table forbids raises :class:`CallUsageError`; a peer message the table forbids is logged and
dropped. The wire rules (docs/protocol.md, sections 2 and 4.1) live in :mod:`vcall.call.session`.

Whether we send video is decided by the call session alone, from the call's state and the
user's pause (:meth:`CallManager.pause`): nobody else calls the media's ``set_sending``.

``codecs`` is our video codec preference (registry names, upper case, best first): offered in
CALLING, and the callee's choice is the first of its own list that the caller offered
(docs/protocol.md 4.1). The negotiated codec reaches the media in ``PeerEndpoint.codec`` and
the user in ``CallStarted.codec``; a classic call is always JPEG. :meth:`CallManager.set_codecs`
changes it for the calls that begin afterwards; each call keeps the preference in force when it
began (dialled, or its CALLING arrived).

Identity (issue 14): with ``identity`` (vcall/identity.py) the manager registers its key's
fingerprint, accepts TLS call control on its port (vcall/call/secure.py) and calls keyed peers
over TLS. Every incoming CALLING is checked against the directory before it rings
(:func:`vcall.call.secure.caller_refusal`): a caller whose TLS key is not the directory's key
for the nick it claims, a CALLING in clear for a nick that has a key (a downgrade), or a
classic CALLING from an address other than the nick's registered one is refused with
CALL_DENIED, never shown; ``refused`` counts them by cause.

A busy callee learns that someone tried: a CALLING answered CALL_BUSY (we were in a call,
ringing or calling) is checked against the directory the same way once the connection is
closed, and becomes :class:`~vcall.call.events.MissedWhileBusy` when it passes; ``busy_calls``
counts what became of each (``reported``, ``unverified``, ``over_cap``: too many lookups
pending).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from pipeline.errors import LocalProtocolError
from vcall import EXTENSION_VERSION, PROTOCOLS
from vcall.call import secure, transport
from vcall.call.codec import (
    CallBusy,
    CallDenied,
    Calling,
    PeerProtocolError,
    validate_codecs,
    validate_nick,
)
from vcall.call.events import CallEvent, MissedWhileBusy, Registered
from vcall.call.heartbeat import HeartbeatConfig
from vcall.call.media import MediaLike
from vcall.call.policy import DEFAULT_CODECS
from vcall.call.session import CallSession, SessionConfig
from vcall.call.state import (
    ACTIVE_STATES,
    CallInput,
    CallState,
    CallStateMachine,
    IllegalTransitionError,
)
from vcall.discovery.client import DiscoveryClient, DiscoveryError, UserUnknown
from vcall.identity import Identity

logger = logging.getLogger(__name__)

T = TypeVar("T")
API_TIMEOUT = 30.0  # s a blocking public method waits for the loop
FIRST_MESSAGE_TIMEOUT = 5.0  # s a new connection has to send its first message
MAX_PENDING_CONNECTIONS = 32  # connections still waiting for their first message


class CallUsageError(LocalProtocolError):
    """A local misuse: an action not allowed in the current state, or a bad argument."""


class CallManager:
    """One user's calls; see docs/architecture.md ("Call manager") for the contract."""

    def __init__(
        self,
        *,
        nick: str,
        password: str,
        server: tuple[str, int],
        listen: tuple[str, int] = ("0.0.0.0", 0),
        advertise_ip: str | None = None,
        media_factory: Callable[[], MediaLike] | None = None,
        on_event: Callable[[CallEvent], None],
        ring_timeout: float = 30.0,
        answer_timeout: float | None = None,
        connect_timeout: float = 3.0,
        heartbeat: HeartbeatConfig | None = None,
        protocols: Sequence[str] = PROTOCOLS,
        codecs: Sequence[str] = DEFAULT_CODECS,
        identity: Identity | None = None,
    ) -> None:
        """See the class's contract; a bad ``nick`` raises CallUsageError, bad ``codecs``
        (names outside 1-16 characters ``[A-Z0-9]``, none, more than 8, repeated) raise
        LocalMessageError, a ValueError."""
        try:
            validate_nick(nick)
        except LocalProtocolError as exc:
            raise CallUsageError(str(exc)) from None
        codecs = validate_codecs(codecs)
        self.nick = nick
        self._password = password
        self._server = server
        self._listen = listen
        self._advertise_ip = advertise_ip
        self._on_event = on_event
        self.protocols = tuple(protocols)
        self.config = SessionConfig(
            nick=nick,
            extension=EXTENSION_VERSION in self.protocols,
            ring_timeout=ring_timeout,
            answer_timeout=ring_timeout + 5.0 if answer_timeout is None else answer_timeout,
            connect_timeout=connect_timeout,
            heartbeat=heartbeat or HeartbeatConfig(),
            bind_ip=listen[0],
            codecs=codecs,
            identity=identity,
        )
        self.identity = identity
        # Incoming CALLINGs refused before ringing, by cause (issue 14).
        self.refused: dict[str, int] = {"tls": 0, "downgrade": 0, "address": 0, "unknown": 0}
        # CALLINGs answered CALL_BUSY, by what became of them (see the module docstring).
        self.busy_calls: dict[str, int] = {"reported": 0, "unverified": 0, "over_cap": 0}
        # Guards ``config`` against set_codecs() from another thread while a session is made.
        self._config_lock = threading.Lock()
        self._media_factory = media_factory
        self._sm = CallStateMachine()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="vcall-call", daemon=True)
        self._media_pool = concurrent.futures.ThreadPoolExecutor(1, "vcall-media")
        self._server_obj: asyncio.Server | None = None
        self._session: CallSession | None = None
        self._pending_conns = 0
        self._ending: set[CallSession] = set()  # ended calls whose cleanup is still running
        self._started = False
        self._closed = False
        # Orders submissions to the loop against close(): once close() has queued the shutdown,
        # nothing else is queued behind it (it would wait on a stopped loop until API_TIMEOUT).
        self._submit_lock = threading.Lock()
        self.registered_port = 0
        self.registered_ip = ""
        self.last_stats: dict[str, Any] | None = None

    # -- public, blocking ------------------------------------------------------------------

    @property
    def codecs(self) -> tuple[str, ...]:
        """Our video codec preference for the next call (best first)."""
        return self.config.codecs

    def set_codecs(self, codecs: Sequence[str]) -> None:
        """Use ``codecs`` (validated as the constructor's) for the calls that begin after this.

        Thread-safe and non-blocking; allowed in any state, before :meth:`start` too. A call
        already begun (dialling, ringing or connected) keeps the preference it began with: its
        offer or answer is, or will be, made from that. Bad names raise LocalMessageError (a
        ValueError) and change nothing.
        """
        checked = validate_codecs(codecs)
        with self._config_lock:
            self.config = dataclasses.replace(self.config, codecs=checked)
        logger.info("video codec preference for the next calls: %s", ",".join(checked))

    @property
    def state(self) -> CallState:
        return self._sm.state

    @property
    def media(self) -> MediaLike | None:
        session = self._session
        return session.media if session is not None else None

    @property
    def peer(self) -> str | None:
        session = self._session
        return session.peer if session is not None else None

    def start(self) -> None:
        """Listen on the call-control port and register; raises DiscoveryError subclasses."""
        if self._started:
            raise CallUsageError("already started")
        self._started = True
        self._thread.start()
        try:
            self._run(self._start())
        except BaseException:
            self.close()
            raise

    def call(self, nick: str) -> None:
        """Place a call; progress and failures arrive as events."""
        self._run(self._action(lambda: self._dial(nick)))

    def accept(self) -> None:
        self._run(self._action(lambda: self._require_session().accept()))

    def deny(self) -> None:
        self._run(self._action(lambda: self._require_session().deny()))

    def hold(self) -> None:
        self._run(self._action(lambda: self._require_session().hold()))

    def resume(self) -> None:
        self._run(self._action(lambda: self._require_session().resume()))

    def pause(self, paused: bool) -> None:
        """Pause (True) or resume (False) sending our video in the current call.

        Allowed only in a call (``in_call`` or held, by either side); in any other state,
        ringing and dialling included, raises :class:`CallUsageError` and nothing is
        remembered: a pause belongs to one call and ends with it (the next call starts
        un-paused). The pause outlasts holds: video flows again only when the call is neither
        held nor paused. Emits :class:`~vcall.call.events.PauseChanged` when the choice
        changes; asking for the current choice again does nothing. The peer stops receiving
        frames and, when both announced ``features=media-state``, is told with CALL_MEDIA
        (docs/protocol.md 4.1) so that it can say why.
        """
        self._run(self._action(lambda: self._pause(paused)))

    def hangup(self) -> None:
        self._run(self._action(lambda: self._require_session().hangup()))

    def close(self) -> None:
        """End any call (CALL_END / CALL_DENIED), stop listening, stop the loop. Idempotent."""
        if threading.current_thread() is self._thread:
            raise CallUsageError("CallManager methods must not be called from its event thread")
        with self._submit_lock:
            if self._closed:
                return
            self._closed = True
            shutdown = (
                asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
                if self._thread.is_alive()
                else None
            )
        if shutdown is not None:
            try:
                shutdown.result(API_TIMEOUT)
            except Exception:
                logger.exception("error while closing the call manager")
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5.0)
        if not self._thread.is_alive():
            self._loop.close()
        self._media_pool.shutdown(wait=True)

    # -- loop plumbing ---------------------------------------------------------------------

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise CallUsageError("CallManager methods must not be called from its event thread")
        with self._submit_lock:
            if self._closed or not self._started:
                coro.close()
                raise CallUsageError("the call manager is not running (start() it first)")
            future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(API_TIMEOUT)
        except concurrent.futures.CancelledError:
            # close() cancels what is still running when the loop stops.
            raise CallUsageError("the call manager was closed during this action") from None

    def _emit(self, event: CallEvent) -> None:
        try:
            self._on_event(event)
        except Exception:
            logger.exception("on_event callback failed for %r", event)

    async def _in_thread(self, fn: Callable[[], T]) -> T:
        return await self._loop.run_in_executor(None, fn)

    def _require_session(self) -> CallSession:
        if self._session is None:
            raise CallUsageError(f"no call in progress (state {self._sm.state.value})")
        return self._session

    async def _action(self, fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        try:
            await fn()
        except (IllegalTransitionError, LocalProtocolError) as exc:
            raise CallUsageError(str(exc)) from None

    # -- coroutines on the loop ------------------------------------------------------------

    async def _start(self) -> None:
        host, port = self._listen
        self._server_obj = await transport.listen(
            host, port, self._on_connection, identity=self.identity
        )
        self.registered_port = self._server_obj.sockets[0].getsockname()[1]
        ip = self._advertise_ip
        if ip is None and host not in ("0.0.0.0", ""):
            ip = host
        elif ip is None:
            # In a thread: the server may be named by a host name, and resolving it blocks.
            server_host = self._server[0]
            ip = await self._in_thread(lambda: transport.local_ip_towards(server_host))
        self.registered_ip = ip
        fingerprint = None if self.identity is None else self.identity.fingerprint
        ts = await self._in_thread(
            lambda: self._discovery(
                lambda c: c.register(
                    self.nick,
                    ip,
                    self.registered_port,
                    self._password,
                    self.protocols,
                    fingerprint=fingerprint,
                )
            )
        )
        logger.info(
            "registered %s at %s:%d %s", self.nick, ip, self.registered_port, self.protocols
        )
        self._emit(Registered(self.nick, ip, self.registered_port, self.protocols, ts))

    def _discovery(self, op: Callable[[DiscoveryClient], T]) -> T:
        with DiscoveryClient(self._server[0], self._server[1]) as client:
            return op(client)

    def _new_session(self) -> CallSession:
        with self._config_lock:
            config = self.config  # the call keeps this one, whatever set_codecs() does later
        return CallSession(
            config=config,
            sm=self._sm,
            emit=self._emit,
            in_thread=self._in_thread,
            media_pool=self._media_pool,
            media_factory=self._media_factory,
            discovery=self._discovery,
            on_finished=self._on_session_finished,
            stats_sink=self._store_stats,
        )

    def _store_stats(self, stats: dict[str, Any]) -> None:
        self.last_stats = stats

    def _on_session_finished(self, session: CallSession) -> None:
        if self._session is session:
            self._session = None
        # close() waits for the farewell, the connection and the media session to be released.
        self._ending.add(session)
        session.cleanup_done(lambda: self._ending.discard(session))

    async def _dial(self, nick: str) -> None:
        try:
            validate_nick(nick)
        except LocalProtocolError as exc:
            raise CallUsageError(str(exc)) from None
        if nick == self.nick:
            raise CallUsageError("cannot call yourself")
        session = self._new_session()
        session.begin_outgoing(nick)  # raises IllegalTransitionError when not idle
        self._session = session

    def mute(self, muted: bool) -> None:
        """Mute (True) or unmute (False) the microphone in the current call; as ``pause``:
        only in a call (``CallUsageError`` otherwise), per call, outlasting holds. Emits
        :class:`~vcall.call.events.MuteChanged` when the choice changes. Audio packets stop;
        a peer that announced ``features=media-state`` is told with CALL_MEDIA."""
        self._run(self._action(lambda: self._mute(muted)))

    async def _mute(self, muted: bool) -> None:
        if self._sm.state not in ACTIVE_STATES:
            raise CallUsageError(f"mute is only possible in a call (state {self._sm.state.value})")
        self._require_session().set_muted(muted)

    async def _pause(self, paused: bool) -> None:
        if self._sm.state not in ACTIVE_STATES:
            raise CallUsageError(f"pause is only possible in a call (state {self._sm.state.value})")
        self._require_session().set_paused(paused)

    async def _on_connection(self, conn: transport.ControlConnection) -> None:
        """A new TCP connection on our listener: a CALLING, or the minority dialect."""
        if self._pending_conns >= MAX_PENDING_CONNECTIONS:
            logger.warning("too many connections waiting for a first message: closing one")
            return
        self._pending_conns += 1
        try:
            msg = await conn.read_message(FIRST_MESSAGE_TIMEOUT)
        except (PeerProtocolError, TimeoutError, OSError) as exc:
            logger.info("dropping connection from %s: %s", conn.peer_ip, exc)
            return
        finally:
            self._pending_conns -= 1
        if msg is None:
            return
        session = self._session
        if isinstance(msg, Calling):
            if session is not None or self._closed or not self._sm.allowed(CallInput.PEER_CALLING):
                logger.info("busy: answering CALL_BUSY to %s from %s", msg.nick, conn.peer_ip)
                with contextlib.suppress(OSError):
                    await conn.send(CallBusy(), terminated=False)  # bare, classic form
                if not self._closed:
                    await self._missed_while_busy(conn, msg)
                return
            # Counted as pending while the directory is asked: a CALLING flood queues at most
            # MAX_PENDING_CONNECTIONS lookups.
            self._pending_conns += 1
            try:
                refusal = await self._check_caller(conn, msg)
            finally:
                self._pending_conns -= 1
            if refusal is not None:
                logger.warning("refused CALLING %s from %s: %s", msg.nick, conn.peer_ip, refusal)
                with contextlib.suppress(OSError, TimeoutError):
                    await asyncio.wait_for(
                        conn.send(CallDenied(self.nick), terminated=False), FIRST_MESSAGE_TIMEOUT
                    )
                return
            # The directory lookup took time: another call may have begun meanwhile.
            if self._session is not None or self._closed:
                with contextlib.suppress(OSError):
                    await conn.send(CallBusy(), terminated=False)
                return
            session = self._new_session()
            self._session = session
            await session.serve_incoming(conn, msg)
        elif session is not None and session.takes_fresh_connection(conn, msg):
            await session.serve_fresh_connection(conn, msg)
        else:
            logger.info("ignoring %s from %s: no matching call", msg, conn.peer_ip)

    async def _missed_while_busy(self, conn: transport.ControlConnection, msg: Calling) -> None:
        """Tell the user that ``msg``'s caller tried (MissedWhileBusy), once the directory
        vouches for the nick; the busy answer went first and the connection is closed first."""
        await conn.aclose()
        if self._pending_conns >= MAX_PENDING_CONNECTIONS:
            self.busy_calls["over_cap"] += 1
            return
        self._pending_conns += 1
        try:
            refusal = await self._check_caller(conn, msg, count=False)
        finally:
            self._pending_conns -= 1
        if refusal is not None:
            self.busy_calls["unverified"] += 1
            logger.info("not reporting the busy CALLING %s: %s", msg.nick, refusal)
            return
        self.busy_calls["reported"] += 1
        self._emit(MissedWhileBusy(msg.nick, conn.peer_ip))

    async def _check_caller(
        self, conn: transport.ControlConnection, msg: Calling, *, count: bool = True
    ) -> str | None:
        """Why ``msg`` must not ring (counted in ``refused`` when ``count``), after asking the
        directory for the nick it claims; None: it may ring. An unreachable directory refuses
        (fail closed)."""
        record_ip: str | None = None
        record_fp: str | None = None
        try:
            record = await self._in_thread(lambda: self._discovery(lambda c: c.query(msg.nick)))
            record_ip, record_fp = record.ip, record.fingerprint
        except UserUnknown:
            pass
        except DiscoveryError as exc:
            if count:
                self.refused["unknown"] += 1
            return f"the directory could not be asked about {msg.nick!r}: {exc}"
        refusal = secure.caller_refusal(
            nick=msg.nick,
            conn_ip=conn.peer_ip,
            conn_fingerprint=conn.peer_fingerprint,
            record_ip=record_ip,
            record_fingerprint=record_fp,
        )
        if refusal is not None and count:
            if record_ip is None:
                cause = "unknown"
            elif conn.tls:
                cause = "tls"
            elif record_fp is not None:
                cause = "downgrade"
            else:
                cause = "address"
            self.refused[cause] += 1
        return refusal

    async def _shutdown(self) -> None:
        session = self._session
        if session is not None:
            await session.shutdown()
        for ending in list(self._ending):
            await ending.shutdown()
        if self._server_obj is not None:
            self._server_obj.close()
        # Whatever is left (connections waiting for a first message, minority-dialect readers)
        # is cancelled and awaited, so that the loop stops with no pending task.
        current = asyncio.current_task()
        leftovers = [t for t in asyncio.all_tasks() if t is not current]
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)
