"""One discovery client connection: the thin adapter between a transport and its framer.

It moves bytes from the transport into a :class:`RequestFramer` and answers the framer's
events in order: QUERY and LIST_USERS with the directory's pre-built bytes (one
``transport.write`` each), REGISTER through the server (reading paused until it is answered),
vcall's VCALL_PRESENCE from the directory too, VCALL_OFFLINE through the server like a
REGISTER (and VCALL_SESSION / VCALL_HERE, keepalive.py), rejections with ``NOK <code>``,
QUIT with ``BYE`` and a close, drops with a close.
Everything shared (caps, timers, registrations) belongs to the server, reached through
:class:`ServerSide`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, Protocol, cast

from vcall.discovery.codec import (
    Bye,
    Here,
    ListUsers,
    Nok,
    NokCode,
    Offline,
    PresenceQuery,
    Query,
    Quit,
    Register,
    Rejected,
    SessionOpen,
    TlsPort,
    TlsPortQuery,
    format_reply,
)
from vcall.discovery.directory import Directory
from vcall.discovery.framing import Drop, Event, Limits, RequestFramer

logger = logging.getLogger(__name__)

_BYE = format_reply(Bye())
_NOK = {code: format_reply(Nok(code)) for code in NokCode}


class ServerSide(Protocol):
    """What a connection needs from the server that owns it."""

    loop: asyncio.AbstractEventLoop
    limits: Limits
    directory: Directory
    requests: int
    tls_port: int | None  # the TLS listener's port, None without one

    def admit(self, conn: Connection) -> bool: ...
    def forget(self, conn: Connection) -> None: ...
    def track_pending(self, conn: Connection, pending: bool) -> None: ...
    def spawn(self, coro: Coroutine[Any, Any, None]) -> None: ...
    def note_drop(self, reason: str) -> None: ...
    def handshake(self, conn: Connection, started: bool) -> None: ...
    async def register(self, request: Register, address: str) -> bytes: ...
    async def offline(self, request: Offline, address: str) -> bytes: ...
    async def session(self, request: SessionOpen, address: str) -> bytes: ...
    async def here(self, request: Here, address: str) -> bytes: ...
    def presence_reply(self) -> bytes: ...


class Connection(asyncio.Protocol):
    """One client connection: moves bytes between the transport and its RequestFramer."""

    def __init__(self, server: ServerSide, *, secure: bool = False) -> None:
        self._server = server
        # On the TLS port (vcall clients only): QUERY replies carry the key token.
        self.secure = secure
        self._loop = server.loop
        self._transport: asyncio.Transport | None = None
        self._framer = RequestFramer(server.limits, self._loop.time())
        # Reasons to stop reading and answering: a REGISTER being answered (replies stay in
        # order), and a peer that does not read its replies (pause_writing). While held,
        # requests wait in the kernel, not in our memory.
        self._holds = 0
        self._write_paused_at: float | None = None
        self._eof = False
        self.address = "?"
        self.admitted = False
        if secure:  # created at accept; connection_made comes after the TLS handshake
            server.handshake(self, True)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its interface.
        self._transport = cast(asyncio.Transport, transport)
        if self.secure:
            self._server.handshake(self, False)
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
        if not self._holds:
            self._drain(now)

    def eof_received(self) -> bool | None:
        # A one-shot client that half-closes: answer what it sent, then close.
        self._eof = True
        if not self._holds:
            self._drain(self._loop.time() + self._server.limits.gap)
            self._close_if_done()
        # Keep the write side open until the answers are out (TLS cannot half-close: asyncio
        # closes an SSL transport after EOF whatever we return, and warns if we return True).
        return None if self.secure else True

    def _close_if_done(self) -> None:
        if self._eof and not self._holds and self._transport is not None:
            self._transport.close()

    def pause_writing(self) -> None:
        # The peer does not read its replies (e.g. LIST_USERS in a loop): stop reading its
        # requests until the buffer drains, so its output never grows past the high-water mark.
        self._write_paused_at = self._loop.time()
        self._hold()

    def resume_writing(self) -> None:
        self._write_paused_at = None
        self._release()

    def _hold(self) -> None:
        self._holds += 1
        if self._holds == 1 and self._transport is not None:
            self._transport.pause_reading()

    def _release(self) -> None:
        self._holds -= 1
        transport = self._transport
        if self._holds or transport is None or transport.is_closing():
            return
        now = self._loop.time()
        self._framer.touch(now)
        transport.resume_reading()
        self._drain(now + (self._server.limits.gap if self._eof else 0.0))
        self._close_if_done()

    def poll(self, now: float) -> bool:
        """Run this connection's timers; True if they closed it."""
        if self._transport is None:
            return False
        if self._write_paused_at is not None:
            # Not reading our replies for a whole idle timeout: drop it.
            if now - self._write_paused_at >= self._server.limits.idle_timeout:
                self._server.note_drop("not reading replies")
                self._framer.closed = True
                self._transport.abort()
                return True
            return False
        if self._holds:
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
        while not self._holds:
            event = framer.next_event(now)
            if event is None:
                break
            self._handle(event)
        self._server.track_pending(self, framer.pending and not framer.closed)

    def _handle(self, event: Event) -> None:
        transport = self._transport
        assert transport is not None
        self._server.requests += 1
        kind = type(event)
        # Ordered by frequency; QUERY and LIST_USERS are the hot path.
        if kind is Query:
            assert isinstance(event, Query)
            reply = self._server.directory.query_reply(event.nick, secure=self.secure)
            transport.write(reply)
        elif kind is ListUsers:
            transport.write(self._server.directory.list_reply())
        elif kind is Register or kind is Here or kind is Offline or kind is SessionOpen:
            assert isinstance(event, Register | Here | Offline | SessionOpen)
            self._hold()
            self._server.spawn(self._register(event))
        elif kind is PresenceQuery:
            transport.write(self._server.presence_reply())
        elif kind is Rejected:
            assert isinstance(event, Rejected)
            logger.debug("%s: %s (%s)", self.address, event.code, event.reason)
            transport.write(_NOK[event.code])
        elif kind is TlsPortQuery:
            tls_port = self._server.tls_port
            if tls_port is None:
                transport.write(_NOK[NokCode.UNKNOWN_COMMAND])  # as a classic server answers
            else:
                transport.write(format_reply(TlsPort(tls_port)))
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

    async def _register(self, request: Register | Here | Offline | SessionOpen) -> None:
        try:
            if isinstance(request, Register):
                reply = await self._server.register(request, self.address)
            elif isinstance(request, Here):
                reply = await self._server.here(request, self.address)
            elif isinstance(request, Offline):
                reply = await self._server.offline(request, self.address)
            else:
                reply = await self._server.session(request, self.address)
        except Exception:
            logger.exception("REGISTER %s failed", request.nick)
            reply = None
        transport = self._transport
        if transport is not None and not transport.is_closing():
            if reply is None:
                transport.abort()  # the store failed: better no answer than a false WELCOME
            else:
                transport.write(reply)
        self._release()
