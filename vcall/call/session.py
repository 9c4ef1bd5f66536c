"""One call's life on the event loop: the wire rules of call control around the state machine.

A :class:`CallSession` is created by the CallManager for each outgoing or incoming call and lives
on the manager's event loop. It guarantees:

- every user action and peer message goes through the shared :class:`CallStateMachine`;
- the session is the one writer of "are we sending": it keeps the user's choices for the call
  (:class:`~vcall.call.media.UserChoices`: the pause) and, whenever the state or a choice
  changes, tells the media ``set_sending(...)`` of :func:`~vcall.call.media.sending`, only
  when that value changes (a pause outlasts a hold; un-pausing while held sends nothing);
- the media gets the peer as one ``PeerEndpoint``, built here once when the call starts;
- extension-only bytes (tokens, LF terminator, CALL_ALIVE) reach only a peer that advertised
  V2435 (the callee's QUERY result, or the caller's CALLING tokens);
- the video codec is negotiated once (:func:`~vcall.call.policy.choose_codec` as callee,
  :func:`~vcall.call.policy.accepted_codec` as caller) and is the same in the ``PeerEndpoint``
  and in ``CallStarted``; a classic call, or an answer without a valid choice, is JPEG;
- the minority dialect is accepted: peer messages on a fresh connection from the peer's address,
  and EOF right after CALL_ACCEPTED from a classic peer; our own messages then go on a fresh
  connection to the peer's registered port;
- when the call ends, ``CallEnded`` is emitted at once and the connection, media session and
  timers are released by one cleanup task (``shutdown()`` waits for it);
- an unexpected error in one of the call's tasks or readers is logged and ends the call
  (``failed``): a call is never left without its reader or timers;
- identity and encryption (issue 14, docs/protocol.md 4.1): with an ``identity``, a callee
  whose directory record carries a key fingerprint is called over TLS, and the call ends
  (``identity_mismatch``) before CALLING is sent unless the callee proves that key; each side
  of a TLS call sends a fresh SRTP master key in its extension tokens, and the media get both
  (``PeerEndpoint.tx_key`` / ``rx_key``); keys never travel in clear. ``protection`` says in
  words what protects the call (events, final stats);
- peer media state (docs/protocol.md 4.1, "Peer media state"): when both sides announced the
  ``media-state`` feature, each change of the user's mute or pause is told to the peer
  (CALL_MEDIA, in the order the changes happened), and the peer's CALL_MEDIA becomes
  ``PeerMediaChanged`` (only on a change; a new call starts with the peer neither muted nor
  paused). Nothing of it reaches a peer that did not announce the feature; what a CALL_MEDIA
  carries that vcall does not understand, or one outside a call, is counted in
  :data:`PEER_STATE_DISCARDS` and ignored.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from pipeline.control import MediaMode, PeerEndpoint
from vcall import EXTENSION_VERSION
from vcall.call import policy, secure, transport
from vcall.call.callmedia import CallMedia
from vcall.call.codec import (
    FALLBACK_CODEC,
    FEATURE_MEDIA_STATE,
    LOCAL_FEATURES,
    SRTP_KEY_LEN,
    AudioState,
    CallAccepted,
    CallAlive,
    CallBusy,
    CallDenied,
    CallEnd,
    CallHold,
    Calling,
    CallResume,
    Extension,
    LocalMessageError,
    MediaState,
    Message,
    PeerProtocolError,
    VideoState,
)
from vcall.call.events import (
    CallEnded,
    CallEvent,
    CallStarted,
    HoldChanged,
    IncomingCall,
    LinkChanged,
    MuteChanged,
    Outgoing,
    PauseChanged,
    PeerMediaChanged,
    StateChanged,
)
from vcall.call.heartbeat import Heartbeat, HeartbeatConfig
from vcall.call.media import MediaLike, Sending, UserChoices, sending
from vcall.call.state import (
    ACTIVE_STATES,
    CallInput,
    CallState,
    CallStateMachine,
    EndReason,
    IllegalTransitionError,
    hold_flags,
)
from vcall.discovery.client import DiscoveryClient, DiscoveryError
from vcall.identity import Identity

logger = logging.getLogger(__name__)

T = TypeVar("T")
SEND_TIMEOUT = 2.0  # s for one write to drain
FRESH_IDLE_TIMEOUT = 5.0  # s a minority-dialect connection may stay idle
MAX_GARBAGE = 8  # bad messages tolerated on one connection before closing it
# CALL_MEDIA content ignored, by cause (all calls of this process): fields vcall does not
# understand (unknown key or value, a repeat, past the cap) and messages outside a call.
PEER_STATE_DISCARDS: dict[str, int] = {"unknown_field": 0, "out_of_call": 0}


@dataclass(frozen=True, slots=True)
class SessionConfig:
    nick: str
    extension: bool  # we advertise V2435
    ring_timeout: float
    answer_timeout: float
    connect_timeout: float
    heartbeat: HeartbeatConfig
    bind_ip: str
    codecs: tuple[str, ...]  # our video codec preference, validated (policy.DEFAULT_CODECS)
    identity: Identity | None = None  # our key pair: TLS call control with keyed peers
    features: tuple[str, ...] = LOCAL_FEATURES  # optional extension features we announce


class CallSession:
    """The I/O side of one call (see the module docstring)."""

    def __init__(
        self,
        *,
        config: SessionConfig,
        sm: CallStateMachine,
        emit: Callable[[CallEvent], None],
        in_thread: Callable[[Callable[[], Any]], Awaitable[Any]],
        media_pool: concurrent.futures.Executor,
        media_factory: Callable[[], MediaLike] | None,
        discovery: Callable[[Callable[[DiscoveryClient], Any]], Any],
        on_finished: Callable[[CallSession], None],
        stats_sink: Callable[[dict[str, Any]], None],
    ) -> None:
        self.config = config
        self._sm = sm
        self._emit = emit
        self._in_thread = in_thread
        self._discovery = discovery
        self._on_finished = on_finished
        self._stats_sink = stats_sink
        self.peer = ""
        self.role = ""
        self.peer_ip = ""
        self.peer_port: int | None = None  # the peer's registered TCP port, when known
        self.conn: transport.ControlConnection | None = None
        self.peer_ext = False  # the peer speaks V2435 (and so do we)
        self.negotiated = False  # both confirmed V2435 in CALLING / CALL_ACCEPTED
        self.local_ssrc = secrets.randbits(32) or 1
        self.peer_ssrc = 0
        self.peer_offer: tuple[str, ...] | None = None  # the caller's codecs= (None: absent)
        self.peer_features: tuple[str, ...] | None = None  # the caller's features= (callee)
        self.media_state = False  # both announced FEATURE_MEDIA_STATE: CALL_MEDIA may flow
        self.peer_muted = False  # as the peer's CALL_MEDIA said (PeerMediaChanged)
        self.peer_paused = False
        self.codec = FALLBACK_CODEC  # the negotiated video codec (V0: always JPEG)
        self.local_rx_port = 0
        self.peer_rx_port = 0
        self._media = CallMedia(media_factory, media_pool, config.bind_ip)
        self._choices = UserChoices()  # the user's, for this call only
        self._sent: Sending | None = None  # what the media was last told; None: not connected
        self.minority = False
        self._accepted_at: float | None = None
        self._unread_answer = ""  # a reply to our CALLING that could not be parsed
        self._accepting = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._finished = False
        self._cleanup_task: asyncio.Task[None] | None = None
        # Issue 14: the key the peer proved over TLS (and the directory has for its nick).
        self.peer_fingerprint: str | None = None
        self.tx_key: bytes | None = None  # our SRTP master key for this call (TLS only)
        self.rx_key: bytes | None = None  # the peer's
        self.protection = ""

    @property
    def media(self) -> MediaLike | None:
        """The call's MediaSession, once opened (None without a media factory)."""
        return self._media.session

    @property
    def finished(self) -> bool:
        return self._finished

    # -- state -----------------------------------------------------------------------------

    def _apply(self, inp: CallInput, detail: str = "", farewell: Message | None = None) -> None:
        """Feed the state machine (raises IllegalTransitionError) and perform the consequences."""
        t = self._sm.handle(inp)
        self._emit(StateChanged(t.old.value, t.new.value))
        if t.new is CallState.ENDED:
            assert t.reason is not None
            self._finish(t.reason, detail, farewell)
            return
        self._update_sending()
        if hold_flags(t.old) != hold_flags(t.new):
            self._emit(HoldChanged(*hold_flags(t.new)))

    def _update_sending(self) -> None:
        """Tell the media what the call sends now, if that changed.

        The only caller of the media's ``set_sending``; a no-op until the media is connected.
        """
        if self._sent is None:
            return
        now = sending(self._sm.state, self._choices)
        if now.video != self._sent.video:  # e.g. held by one side -> by both: nothing
            self._media.set_sending(now.video)
        if now.audio != self._sent.audio:
            set_audio = getattr(self._media, "set_audio_sending", None)
            if set_audio is not None:  # media without audio (a stub, the V0 path) has none
                set_audio(now.audio)
        self._sent = now

    def _peer_input(self, inp: CallInput, detail: str = "") -> None:
        try:
            self._apply(inp, detail)
        except IllegalTransitionError as exc:
            logger.warning("ignoring %s from %s: %s", inp.value, self.peer, exc)

    def _fail(self, inp: CallInput, detail: str, farewell: Message | None = None) -> None:
        if not self._finished and self._sm.allowed(inp):
            logger.info("call with %s: %s", self.peer, detail)
            self._apply(inp, detail, farewell)

    def _finish(self, reason: EndReason, detail: str, farewell: Message | None) -> None:
        self._finished = True
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        self._cleanup_task = asyncio.get_running_loop().create_task(self._cleanup(farewell))
        self._emit(CallEnded(self.peer, reason.value, detail))
        self._on_finished(self)

    async def _cleanup(self, farewell: Message | None) -> None:
        if farewell is not None:
            await self._send(farewell)
        conn, self.conn = self.conn, None
        if conn is not None:
            await conn.aclose()
        stats = await self._media.close()
        if stats is not None:
            self._stats_sink({**stats, "protection": self.protection})

    def cleanup_done(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the loop once the cleanup of an ended call has finished."""
        assert self._cleanup_task is not None, "only for an ended call"
        self._cleanup_task.add_done_callback(lambda _task: callback())

    async def shutdown(self) -> None:
        """End the call as the user would (CALL_END / CALL_DENIED) and wait for the cleanup."""
        state = self._sm.state
        if not self._finished:
            if state is CallState.RINGING:
                self._fail(CallInput.HANGUP, "shutting down", CallDenied(self.config.nick))
            elif state is CallState.OUTGOING or state in ACTIVE_STATES:
                self._fail(CallInput.HANGUP, "shutting down", CallEnd(self.config.nick))
        if self._cleanup_task is not None:
            await self._cleanup_task

    # -- helpers ---------------------------------------------------------------------------

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        # A bug in a call's task (dialing, timer, heartbeat) ends the call rather than hanging it.
        exc = task.exception()
        logger.error("call task failed for %s", self.peer, exc_info=exc)
        self._fail(CallInput.FAILED, f"internal error: {exc!r}")

    async def _send(self, msg: Message) -> None:
        """Send to the peer on the control connection, or on a fresh one (minority dialect)."""
        try:
            terminated = policy.terminated_for(
                msg, peer_ext=self.peer_ext, negotiated=self.negotiated
            )
        except ValueError as exc:
            raise LocalMessageError(str(exc)) from None
        conn = self.conn
        try:
            if conn is not None and not conn.closed:
                await asyncio.wait_for(conn.send(msg, terminated=terminated), SEND_TIMEOUT)
                return
            if not (self.minority or self.role == "callee") or not self.peer_ip:
                return
            port = self.peer_port
            if port is None:
                record = await self._in_thread(
                    lambda: self._discovery(lambda c: c.query(self.peer))
                )
                port = self.peer_port = record.port
            fresh = await transport.connect(
                self.peer_ip,
                port,
                self.config.connect_timeout,
                identity=self.config.identity if self.peer_fingerprint else None,
            )
            if fresh.peer_fingerprint != self.peer_fingerprint:
                await fresh.aclose()
                logger.warning("not sending %s: %s's key changed", type(msg).__name__, self.peer)
                return
            try:
                await asyncio.wait_for(fresh.send(msg, terminated=terminated), SEND_TIMEOUT)
            finally:
                await fresh.aclose()
        except (OSError, TimeoutError, transport.ConnectFailedError, DiscoveryError) as exc:
            logger.warning("could not send %s to %s: %s", type(msg).__name__, self.peer, exc)

    async def _timer(
        self, delay: float, when: CallState, inp: CallInput, detail: str, farewell: Message | None
    ) -> None:
        await asyncio.sleep(delay)
        if self._sm.state is when and not self._finished:
            self._fail(inp, detail, farewell)

    # -- outgoing --------------------------------------------------------------------------

    def begin_outgoing(self, nick: str) -> None:
        self.peer, self.role = nick, "caller"
        self._apply(CallInput.DIAL)
        self._spawn(self._dial())

    async def _dial(self) -> None:
        try:
            record = await self._in_thread(lambda: self._discovery(lambda c: c.query(self.peer)))
        except DiscoveryError as exc:
            self._fail(CallInput.FAILED, f"lookup of {self.peer} failed: {exc}")
            return
        self.peer_ip, self.peer_port = record.ip, record.port
        self.peer_ext = self.config.extension and EXTENSION_VERSION in record.protocols
        self._emit(Outgoing(self.peer, record.ip, record.port, self.peer_ext))
        try:
            self.local_rx_port = await self._media.open()
        except Exception as exc:
            logger.exception("media open failed")
            self._fail(CallInput.FAILED, f"media session failed to open: {exc}")
            return
        keyed = record.fingerprint if self.config.identity is not None else None
        try:
            conn = await transport.connect(
                record.ip,
                record.port,
                self.config.connect_timeout,
                identity=self.config.identity if keyed else None,
            )
        except transport.ConnectFailedError as exc:
            self._fail(CallInput.FAILED, f"connect {exc.reason}: {exc.detail}")
            return
        if self._finished:
            await conn.aclose()
            return
        if keyed and conn.peer_fingerprint != keyed:
            await conn.aclose()
            self._fail(
                CallInput.IDENTITY_MISMATCH,
                f"{self.peer}'s key {conn.peer_fingerprint} is not the one the directory has "
                f"({keyed}): the call was not placed",
            )
            return
        self.peer_fingerprint = keyed
        self.conn = conn
        if conn.tls and self.peer_ext:
            self.tx_key = secrets.token_bytes(SRTP_KEY_LEN)
        ext = None
        if self.peer_ext:
            features = self.config.features or None  # () offers none: no token at all
            ext = Extension(self.local_ssrc, self.config.codecs, self.tx_key, features)
        await self._send(Calling(self.config.nick, self.local_rx_port, ext))
        timeout = self.config.answer_timeout
        self._spawn(
            self._timer(
                timeout,
                CallState.OUTGOING,
                CallInput.ANSWER_TIMEOUT,
                f"{self.peer} did not answer within {timeout:g} s",
                CallEnd(self.config.nick),
            )
        )
        await self._read_loop(conn, control=True)

    # -- incoming --------------------------------------------------------------------------

    async def serve_incoming(self, conn: transport.ControlConnection, msg: Calling) -> None:
        """Ring for ``msg`` (state must allow it) and read the control connection until the end."""
        self.peer, self.role, self.peer_ip, self.conn = msg.nick, "callee", conn.peer_ip, conn
        self.peer_rx_port = msg.udp_port
        self.peer_ext = self.config.extension and msg.ext is not None
        self.peer_ssrc = msg.ext.ssrc if msg.ext is not None and self.peer_ext else 0
        self.peer_offer = msg.ext.codecs if msg.ext is not None and self.peer_ext else None
        self.peer_features = msg.ext.features if msg.ext is not None and self.peer_ext else None
        # The manager let this CALLING ring: over TLS, the key was checked (secure.py).
        self.peer_fingerprint = conn.peer_fingerprint
        if conn.tls and msg.ext is not None and self.peer_ext:
            self.rx_key = msg.ext.srtp_key
        self.protection = self._protection(srtp=self.rx_key is not None)
        self._apply(CallInput.PEER_CALLING)
        self._emit(IncomingCall(self.peer, conn.peer_ip, self.peer_ext, self.protection))
        timeout = self.config.ring_timeout
        self._spawn(
            self._timer(
                timeout,
                CallState.RINGING,
                CallInput.RING_TIMEOUT,
                f"not answered within {timeout:g} s",
                CallDenied(self.config.nick),
            )
        )
        await self._read_loop(conn, control=True)
        if self._cleanup_task is not None:
            # The listener closes this connection when we return: let the farewell go first.
            await self._cleanup_task

    def takes_fresh_connection(self, conn: transport.ControlConnection, msg: Message) -> bool:
        """Is ``msg``, first on a new connection, from this call's peer (minority dialect)?"""
        if self._finished:
            return False
        if self.peer_fingerprint is not None and conn.peer_fingerprint != self.peer_fingerprint:
            return False  # a verified call takes messages only from the key it verified
        return policy.belongs_to_call(
            msg, conn_ip=conn.peer_ip, peer_ip=self.peer_ip, peer_nick=self.peer
        )

    async def serve_fresh_connection(self, conn: transport.ControlConnection, msg: Message) -> None:
        logger.info("minority dialect: %s on a fresh connection from %s", msg, conn.peer_ip)
        self._on_peer_message(msg, fresh=True)
        await self._read_loop(conn, control=False)

    async def accept(self) -> None:
        if self._sm.state is not CallState.RINGING or self._accepting:
            raise IllegalTransitionError(self._sm.state, CallInput.ACCEPT)
        self._accepting = True
        try:
            self.local_rx_port = await self._media.open()
        except Exception as exc:
            logger.exception("media open failed")
            self._fail(
                CallInput.FAILED,
                f"media session failed to open: {exc}",
                CallDenied(self.config.nick),
            )
            return
        if self._finished:
            raise IllegalTransitionError(self._sm.state, CallInput.ACCEPT)
        self.negotiated = self.peer_ext
        ext = None
        if self.negotiated:
            # No codecs= from the caller: an older vcall peer, which sends JPEG; it gets no
            # codecs= back either (the answer names a choice only when there was an offer).
            offer = (FALLBACK_CODEC,) if self.peer_offer is None else self.peer_offer
            self.codec = policy.choose_codec(offer, self.config.codecs)
            answer = None if self.peer_offer is None else (self.codec,)
            if self.rx_key is not None:
                self.tx_key = secrets.token_bytes(SRTP_KEY_LEN)
            # The agreed features, only when the caller named some (an older vcall caller
            # gets the answer it knows), and only those both sides have.
            agreed = tuple(f for f in self.config.features if f in (self.peer_features or ()))
            self.media_state = FEATURE_MEDIA_STATE in agreed
            ext = Extension(self.local_ssrc, answer, self.tx_key, agreed or None)
        await self._send(CallAccepted(self.config.nick, self.local_rx_port, ext))
        self._accepted_at = time.monotonic()
        self._apply(CallInput.ACCEPT)
        self._start_call()

    # -- user actions ----------------------------------------------------------------------

    async def deny(self) -> None:
        if self._sm.state is not CallState.RINGING:
            raise IllegalTransitionError(self._sm.state, CallInput.DENY)
        self._apply(CallInput.DENY, "", CallDenied(self.config.nick))

    async def hold(self) -> None:
        self._apply(CallInput.HOLD)
        await self._send(CallHold(self.config.nick))

    async def resume(self) -> None:
        self._apply(CallInput.RESUME)
        await self._send(CallResume(self.config.nick))

    def set_paused(self, paused: bool) -> None:
        """Record the user's pause for this call; emits PauseChanged if it changed.

        The choice outlasts holds and applies once the media is connected; it dies with the
        call. Whether the user may pause in the current state is the manager's rule.
        """
        if paused == self._choices.paused:
            return
        self._choices = replace(self._choices, paused=paused)
        self._update_sending()
        self._emit(PauseChanged(paused))
        self._tell_media_state()

    def set_muted(self, muted: bool) -> None:
        """Record the user's mute for this call; emits MuteChanged if it changed. As the
        pause: it outlasts holds, applies once the media is connected and dies with the call."""
        if muted == self._choices.muted:
            return
        self._choices = replace(self._choices, muted=muted)
        self._update_sending()
        self._emit(MuteChanged(muted))
        self._tell_media_state()

    def _tell_media_state(self) -> None:
        """Tell the peer our mute and pause (CALL_MEDIA), when both announced the feature.

        The sends are tasks taken in order by the connection's send lock: the peer learns
        the changes in the order they happened."""
        if not self.media_state or self._sent is None or self._finished:
            return
        audio = AudioState.MUTED if self._choices.muted else AudioState.ON
        video = VideoState.PAUSED if self._choices.paused else VideoState.ON
        self._spawn(self._send(MediaState(self.config.nick, audio, video)))

    async def hangup(self) -> None:
        ringing = self._sm.state is CallState.RINGING
        farewell: Message = CallDenied(self.config.nick) if ringing else CallEnd(self.config.nick)
        self._apply(CallInput.HANGUP, "", farewell)
        if self._cleanup_task is not None:
            await self._cleanup_task

    # -- call running ----------------------------------------------------------------------

    def _protection(self, *, srtp: bool) -> str:
        return secure.protection_label(
            tls=self.peer_fingerprint is not None,
            srtp=srtp,
            verified=self.peer_fingerprint is not None,
            classic=not self.peer_ext,
        )

    def _start_call(self) -> None:
        srtp = self.negotiated and self.tx_key is not None and self.rx_key is not None
        self.protection = self._protection(srtp=srtp)
        peer = PeerEndpoint(
            ip=self.peer_ip,
            rx_port=self.peer_rx_port,
            mode=MediaMode.RTP if self.negotiated else MediaMode.V0,
            local_ssrc=self.local_ssrc,
            peer_ssrc=self.peer_ssrc,
            codec=self.codec,
            tx_key=self.tx_key if srtp else None,
            rx_key=self.rx_key if srtp else None,
        )
        self._media.connect(peer)
        # A connected media session sends (docs/architecture.md): from here on, it is told
        # whenever what the call sends changes.
        self._sent = Sending(video=True)
        self._update_sending()
        self._emit(
            CallStarted(
                peer=self.peer,
                mode=str(peer.mode),
                codec=peer.codec,
                peer_ip=self.peer_ip,
                local_rx_port=self.local_rx_port,
                peer_rx_port=self.peer_rx_port,
                media=self._media.real,
                role=self.role,
                protection=self.protection,
            )
        )
        if self.negotiated and self.conn is not None:
            self._spawn(self._heartbeat())

    async def _heartbeat(self) -> None:
        hb = Heartbeat(time.monotonic(), self.config.heartbeat)
        reconnecting = False
        while not self._finished:
            conn = self.conn
            if conn is None:
                return
            now = time.monotonic()
            silent_for = hb.silence(now)  # before what was just heard, for the "back" event
            hb.on_heard(conn.last_heard)
            if hb.gone(now):
                self._fail(
                    CallInput.HEARTBEAT_TIMEOUT,
                    f"no sign of life from {self.peer} for {hb.silence(now):.1f} s",
                )
                return
            if hb.expired(now) != reconnecting:
                reconnecting = not reconnecting
                silence = round(hb.silence(now) if reconnecting else silent_for, 3)
                logger.info(
                    "%s %s after %.1f s of silence",
                    self.peer,
                    "unreachable: reconnecting" if reconnecting else "heard again",
                    silence,
                )
                self._emit(LinkChanged(self.peer, reconnecting, silence))
            if hb.send_due(now):
                hb.on_sent(now)
                self._spawn(self._send(CallAlive(self.config.nick)))
            now = time.monotonic()
            await asyncio.sleep(max(0.02, hb.next_deadline(now) - now))

    async def _read_loop(self, conn: transport.ControlConnection, *, control: bool) -> None:
        try:
            await self._read_messages(conn, control=control)
        except Exception as exc:
            # A bug must not leave the call without its reader (nothing would notice the
            # peer leave): end it, with the reason, and let the cleanup release everything.
            logger.exception("call-control reader failed for %s", self.peer)
            self._fail(CallInput.FAILED, f"internal error reading from {self.peer}: {exc!r}")

    async def _read_messages(self, conn: transport.ControlConnection, *, control: bool) -> None:
        garbage = 0
        idle = None if control else FRESH_IDLE_TIMEOUT
        while not self._finished:
            error = ""
            try:
                msg = await conn.read_message(idle)
            except PeerProtocolError as exc:
                garbage += 1
                logger.warning("bad message from %s: %s", conn.peer_ip, exc)
                if control and self._sm.state is CallState.OUTGOING:
                    self._unread_answer = str(exc)  # an answer after all, should EOF follow
                if garbage < MAX_GARBAGE:
                    continue
                msg, error = None, "too many bad messages"
            except TimeoutError:
                return
            except OSError as exc:
                msg, error = None, f"control connection error: {exc}"
            if msg is None:
                if control:
                    self._on_control_eof(conn, error)
                return
            if not self._finished:
                self._on_peer_message(msg, fresh=not control)

    def _on_peer_message(self, msg: Message, *, fresh: bool) -> None:
        logger.debug("<- %s %s", self.peer, msg)
        match msg:
            case CallAccepted():
                self._on_accepted(msg, fresh=fresh)
            case CallDenied():
                self._peer_input(CallInput.PEER_DENIED, f"{self.peer} denied the call")
            case CallBusy():
                self._peer_input(CallInput.PEER_BUSY, f"{self.peer} is busy")
            case CallHold():
                self._peer_input(CallInput.PEER_HOLD)
            case CallResume():
                self._peer_input(CallInput.PEER_RESUME)
            case CallEnd():
                self._peer_input(CallInput.PEER_END, f"{self.peer} hung up")
            case CallAlive():
                pass  # its bytes already refreshed conn.last_heard
            case MediaState():
                self._on_media_state(msg)
            case Calling():
                logger.warning("ignoring CALLING inside the call with %s", self.peer)

    def _on_media_state(self, msg: MediaState) -> None:
        """The peer's mute / pause: PeerMediaChanged when either changed (docs/protocol.md
        4.1). Liberal: accepted from any extension peer in a call, whatever it announced."""
        if msg.ignored:
            PEER_STATE_DISCARDS["unknown_field"] += msg.ignored
            logger.info("%s: %d CALL_MEDIA field(s) not understood", self.peer, msg.ignored)
        if self._sm.state not in ACTIVE_STATES:
            PEER_STATE_DISCARDS["out_of_call"] += 1
            logger.info("ignoring CALL_MEDIA from %s in state %s", self.peer, self._sm.state)
            return
        muted = self.peer_muted if msg.audio is None else msg.audio is AudioState.MUTED
        paused = self.peer_paused if msg.video is None else msg.video is VideoState.PAUSED
        if (muted, paused) == (self.peer_muted, self.peer_paused):
            return
        self.peer_muted, self.peer_paused = muted, paused
        self._emit(PeerMediaChanged(self.peer, muted, paused))

    def _on_accepted(self, msg: CallAccepted, *, fresh: bool) -> None:
        if self._sm.state is not CallState.OUTGOING:
            logger.warning("ignoring CALL_ACCEPTED in state %s", self._sm.state.value)
            return
        self.peer_rx_port = msg.udp_port
        self.negotiated = self.peer_ext and msg.ext is not None
        self.peer_ssrc = msg.ext.ssrc if msg.ext is not None and self.negotiated else 0
        if msg.ext is not None and self.negotiated:
            self.codec = self._answered_codec(msg.ext)
            # Both sides must have announced it: our offer and the callee's answer.
            self.media_state = FEATURE_MEDIA_STATE in self.config.features and (
                FEATURE_MEDIA_STATE in (msg.ext.features or ())
            )
            if self.tx_key is not None and not fresh:
                self.rx_key = msg.ext.srtp_key
        if fresh:
            self.minority = True
        self._accepted_at = time.monotonic()
        self._apply(CallInput.PEER_ACCEPTED)
        self._start_call()

    def _answered_codec(self, ext: Extension) -> str:
        """The codec the callee chose; JPEG, with a warning, for an invalid choice."""
        codec = policy.accepted_codec(ext.offered, self.config.codecs)
        if codec is None:
            # The peer's protocol error; JPEG is what every vcall peer can do, so the call goes
            # on rather than failing (docs/protocol.md 4.1).
            logger.warning(
                "%s chose codecs=%s, not one of our offer %s: using %s",
                self.peer,
                ",".join(ext.offered),
                ",".join(self.config.codecs),
                FALLBACK_CODEC,
            )
            return FALLBACK_CODEC
        return codec

    def _on_control_eof(self, conn: transport.ControlConnection, error: str) -> None:
        if self._finished or conn is not self.conn:
            return
        self.conn = None
        state = self._sm.state
        action = policy.on_control_eof(
            state,
            peer_ext=self.peer_ext,
            negotiated=self.negotiated,
            minority=self.minority,
            accepted_at=self._accepted_at,
            now=time.monotonic(),
        )
        if action is policy.EofAction.WAIT_FOR_FRESH and self._unread_answer:
            # The callee did answer, in words vcall does not know, and closed: the call is
            # over now, not after the answer timeout.
            self._fail(
                CallInput.FAILED,
                f"{self.peer} answered something vcall does not understand "
                f"({self._unread_answer}) and closed the connection",
            )
            return
        if action is not policy.EofAction.END:
            logger.info("%s closed the control connection in %s: %s", self.peer, state, action)
            self.minority = True  # from now on, our messages go on fresh connections
            return
        if state is CallState.RINGING:
            detail = error or f"{self.peer} gave up (closed the connection)"
        else:
            detail = error or f"{self.peer} closed the control connection"
        self._fail(CallInput.CONNECTION_LOST, detail)
