"""TCP adapter for call control: moves bytes between asyncio streams and the sans-IO codec.

Guarantees: every read has a size cap (the codec's) and a timeout chosen by the caller; classic
messages are never written back to back (a minimum gap separates two unterminated writes on one
connection, because classic clients treat one ``recv()`` as one message); a reset, a refused or
timed-out connect surface as :class:`ConnectFailedError` with a reason a user can read.

TLS (issue 14, docs/protocol.md 4.1): ``connect(..., identity=I)`` writes the preface of
:mod:`vcall.call.secure` and runs TLS 1.3 as the client; ``listen(..., identity=I)`` reads the
first bytes of each connection: a preface starts TLS as the server (the caller's certificate
required), anything else is a classic connection and those bytes are its first message's. A
connection knows ``tls`` and ``peer_fingerprint`` (the key the peer proved it holds). Extension
tokens carrying a key (``srtp=``) are never written on a connection without TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Awaitable, Callable

from vcall.call import secure
from vcall.call.codec import (
    DEFAULT_GAP,
    MAX_MESSAGE_SIZE,
    CallAccepted,
    Calling,
    LocalMessageError,
    Message,
    MessageReader,
    PeerProtocolError,
    encode,
)
from vcall.identity import Identity, fingerprint_of_cert

logger = logging.getLogger(__name__)

READ_CHUNK = 4096
# Connections our listener closed before their first message: TLS set-ups that failed (bad
# preface, handshake, wrong key), and connections over the cap of those waiting.
LISTENER_DROPS: dict[str, int] = {"tls_failed": 0, "over_cap": 0}


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if peer else "?"


CLASSIC_SEND_GAP = 0.15  # s between two unterminated messages on one connection


class ConnectFailedError(Exception):
    """A connect to a peer failed; ``reason`` is "refused", "timeout" or "error"."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class ControlConnection:
    """One call-control TCP connection (ours or the peer's)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        gap: float = DEFAULT_GAP,
        max_size: int = MAX_MESSAGE_SIZE,
        initial: bytes = b"",
        peer_fingerprint: str | None = None,
    ) -> None:
        """``initial``: bytes already read from the connection (its first message's);
        ``peer_fingerprint``: the key the peer proved over TLS (None: no TLS)."""
        self._reader = reader
        self._writer = writer
        self._framer = MessageReader(max_size=max_size, gap=gap)
        self.peer_fingerprint = peer_fingerprint
        self.tls = peer_fingerprint is not None
        if initial:
            self._framer.feed(initial, time.monotonic())
        self._send_lock = asyncio.Lock()
        self._last_unterminated = -1e9
        self.last_heard = time.monotonic()  # last time any byte arrived (heartbeat)
        peer = writer.get_extra_info("peername")
        self.peer_ip: str = peer[0] if peer else "?"
        self.peer_port: int = peer[1] if peer else 0
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed or self._writer.is_closing()

    def __repr__(self) -> str:
        return f"<ControlConnection {self.peer_ip}:{self.peer_port}>"

    async def read_message(self, timeout: float | None = None) -> Message | None:
        """Next message; None at EOF. Raises TimeoutError, PeerProtocolError, ConnectionError."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            now = time.monotonic()
            msg = self._framer.next_message(now)
            if msg is not None:
                return msg
            if self._framer.eof:
                return None
            if end is not None and now >= end:
                raise TimeoutError("no complete message in time")
            # Wake up for the caller's timeout or when a pending message completes by the gap.
            waits = [] if end is None else [end - now]
            deadline = self._framer.deadline()
            if deadline is not None:
                waits.append(deadline - now + 0.001)
            wait = max(0.0, min(waits)) if waits else None
            try:
                data = await asyncio.wait_for(self._reader.read(READ_CHUNK), wait)
            except TimeoutError:
                continue  # either the gap elapsed (loop re-checks) or the caller's timeout
            self.last_heard = time.monotonic()
            self._framer.feed(data, self.last_heard)

    async def send(self, msg: Message, *, terminated: bool) -> None:
        """Write one message. Unterminated (classic) writes are spaced by CLASSIC_SEND_GAP."""
        if (
            isinstance(msg, Calling | CallAccepted)
            and msg.ext is not None
            and msg.ext.srtp_key is not None
            and not self.tls
        ):
            raise LocalMessageError("an SRTP key is only ever sent over TLS")
        data = encode(msg, terminated=terminated)
        async with self._send_lock:
            if not terminated:
                wait = self._last_unterminated + CLASSIC_SEND_GAP - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            logger.debug("-> %s %r", self.peer_ip, data)
            self._writer.write(data)
            await self._writer.drain()
            if not terminated:
                self._last_unterminated = time.monotonic()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._writer.close()

    async def aclose(self) -> None:
        self.close()
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await asyncio.wait_for(self._writer.wait_closed(), 1.0)


async def connect(
    ip: str, port: int, timeout: float, *, identity: Identity | None = None
) -> ControlConnection:
    """Open a call-control connection or raise ConnectFailedError with a readable reason.

    With ``identity``: the TLS preface and a TLS 1.3 handshake follow (within
    ``secure.PREFACE_TIMEOUT``); a callee that does not answer the preface, or fails the
    handshake, is ConnectFailedError "tls". The caller then checks ``peer_fingerprint``."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), timeout)
    except TimeoutError:
        raise ConnectFailedError(
            "timeout", f"no answer from {ip}:{port} within {timeout:g} s"
        ) from None
    except ConnectionRefusedError:
        raise ConnectFailedError("refused", f"connection refused by {ip}:{port}") from None
    except OSError as exc:
        raise ConnectFailedError("error", f"cannot connect to {ip}:{port}: {exc}") from None
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if identity is None:
        return ControlConnection(reader, writer)
    try:
        fingerprint = await asyncio.wait_for(
            _client_tls(reader, writer, identity), secure.PREFACE_TIMEOUT
        )
    except (OSError, EOFError, TimeoutError, ssl.SSLError, ValueError, PeerProtocolError) as exc:
        writer.close()
        raise ConnectFailedError(
            "tls", f"no TLS call control with {ip}:{port}: {exc or type(exc).__name__}"
        ) from None
    return ControlConnection(reader, writer, peer_fingerprint=fingerprint)


async def _client_tls(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, identity: Identity
) -> str:
    writer.write(secure.preface_line(identity))
    await writer.drain()
    answer = await reader.readexactly(len(secure.PREFACE_OK))  # EOFError if it closes
    if answer != secure.PREFACE_OK:
        raise PeerProtocolError(f"unexpected answer to the TLS preface: {answer[:40]!r}")
    await writer.start_tls(secure.client_context(identity))
    return _peer_fingerprint(writer)


def _peer_fingerprint(writer: asyncio.StreamWriter) -> str:
    ssl_object = writer.get_extra_info("ssl_object")
    der = None if ssl_object is None else ssl_object.getpeercert(binary_form=True)
    if not der:
        raise PeerProtocolError("the peer presented no certificate")
    return fingerprint_of_cert(der)


async def _sniff(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, identity: Identity
) -> tuple[str | None, bytes]:
    """The first bytes of an accepted connection: (fingerprint, b"") for a TLS caller that
    completed the preface and the handshake; (None, bytes read) for a classic connection.
    Raises PeerProtocolError, ssl.SSLError, OSError, TimeoutError (the caller closes)."""
    data = b""
    while True:
        start = secure.is_preface_start(data)
        if start is False:
            return None, data
        if start is True:
            break
        chunk = await reader.read(READ_CHUNK)
        if not chunk:
            return None, data
        data += chunk
    while b"\n" not in data:
        if len(data) > secure.MAX_PREFACE:
            raise PeerProtocolError("TLS preface too long")
        chunk = await reader.read(READ_CHUNK)
        if not chunk:
            raise PeerProtocolError("EOF inside the TLS preface")
        data += chunk
    line, _, rest = data.partition(b"\n")
    if rest:  # the caller must wait for our answer before its ClientHello
        raise PeerProtocolError("bytes after the TLS preface before its answer")
    ctx = secure.server_context(identity, secure.parse_preface(line))
    writer.write(secure.PREFACE_OK)
    await writer.drain()
    await writer.start_tls(ctx)
    return _peer_fingerprint(writer), b""


async def listen(
    host: str,
    port: int,
    handler: Callable[[ControlConnection], Awaitable[None]],
    *,
    identity: Identity | None = None,
    max_pending: int = 32,
) -> asyncio.Server:
    """Listen for call-control connections; ``handler`` owns each connection.

    With ``identity``, a connection that starts with the TLS preface is taken through TLS
    first (within ``secure.PREFACE_TIMEOUT``; a failure is logged, counted in
    ``LISTENER_DROPS`` and closes it); any other connection is classic, as without. At most
    ``max_pending`` connections wait for their first bytes there; more are closed at once."""
    pending = 0

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal pending
        fingerprint: str | None = None
        first = b""
        if identity is not None:
            if pending >= max_pending:
                LISTENER_DROPS["over_cap"] += 1
                writer.close()
                return
            pending += 1
            try:
                fingerprint, first = await asyncio.wait_for(
                    _sniff(reader, writer, identity), secure.PREFACE_TIMEOUT
                )
            except (
                OSError,
                EOFError,
                TimeoutError,
                ssl.SSLError,
                ValueError,
                PeerProtocolError,
            ) as exc:
                LISTENER_DROPS["tls_failed"] += 1
                logger.info("call-control TLS from %s failed: %r", _peer(writer), exc)
                writer.close()
                return
            except asyncio.CancelledError:
                writer.close()
                return
            finally:
                pending -= 1
        conn = ControlConnection(reader, writer, initial=first, peer_fingerprint=fingerprint)
        try:
            await handler(conn)
        except asyncio.CancelledError:
            # Shutting down. A handler task must not end cancelled: asyncio 3.11's stream
            # callback calls task.exception() on it and logs a spurious error.
            pass
        except Exception:
            logger.exception("call-control handler failed for %r", conn)
        finally:
            await conn.aclose()

    return await asyncio.start_server(on_client, host, port, reuse_address=True)


class DiscardSink(asyncio.DatagramProtocol):
    """Placeholder UDP receiver used when no media pipeline runs: counts and drops datagrams."""

    def __init__(self) -> None:
        self.datagrams = 0
        self.bytes = 0

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.datagrams += 1
        self.bytes += len(data)


def local_ip_towards(host: str) -> str:
    """The local address the OS would use to reach ``host`` (no packet is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host, 9))
            ip: str = s.getsockname()[0]
            return ip
    except OSError:
        return "127.0.0.1"
