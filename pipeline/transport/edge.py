"""The datagram edge: every RTP, RTCP or V0 datagram of one UDP socket leaves and enters here.

API::

    class Protection(Protocol):          # the hook SRTP (RFC 3711) plugs into
        def protect(self, datagram: bytes) -> bytes
        def unprotect(self, datagram: bytes) -> bytes   # RemoteProtocolError: drop it
    class ReplayError(RemoteProtocolError)   # unprotect: a replay (counted apart too)
    IDENTITY: Protection                 # no protection (today's calls)
    @dataclass(frozen=True, slots=True)
    class EdgeStats: received; sent; dropped_before_connect; dropped_wrong_address;
                     unprotect_failed (replays included); unprotect_replayed; socket_errors;
                     send_errors
    class DatagramEdge:
        def __init__(self, sock: socket.socket, *, protection: Protection = IDENTITY,
                     max_datagram: int = 65536) -> None
        def connect(self, peer_ip: str, peer_port: int | None) -> None
        def receive(self) -> tuple[bytes, int] | None   # (datagram, arrival monotonic_ns)
        def send(self, datagram: bytes | bytearray) -> int   # bytes sent, 0: the kernel refused
        stats -> EdgeStats; fileno() -> int; close()

After aiortc's ``RTCDtlsTransport._send_rtp`` and aioquic's ``CryptoPair``: one object in the
packet path of each socket, so that encryption, and the rule of whom we accept datagrams from,
live in exactly one place. The sockets are non-blocking; the stages wait on ``fileno()``.

Rules: nothing is accepted before ``connect``; after it, only datagrams whose source IP is the
peer's (the source port is arbitrary in this protocol family, docs/protocol.md 2). Every
datagram passes ``protection.unprotect`` on the way in and ``protect`` on the way out. One
``recvfrom`` reads at most ``max_datagram`` bytes, and one ``receive`` skips at most
``MAX_DISCARDS_PER_CALL`` discarded datagrams. Every discard is counted in ``stats`` by
name; a socket error (an ICMP-reported ECONNREFUSED, ENOBUFS) is counted, never raised.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any, Protocol

from pipeline.errors import RemoteProtocolError

logger = logging.getLogger(__name__)

MAX_DATAGRAM = 65536
# receive() gives up after this many discards in a row (the caller's loop comes back later), so
# a flood of foreign datagrams cannot hold a stage: a caller that allows itself N calls per turn
# reads at most N x MAX_DISCARDS_PER_CALL datagrams.
MAX_DISCARDS_PER_CALL = 8


class Protection(Protocol):
    def protect(self, datagram: bytes) -> bytes: ...

    def unprotect(self, datagram: bytes) -> bytes: ...


class _Identity:
    """No protection: datagrams pass unchanged."""

    def protect(self, datagram: bytes) -> bytes:
        return datagram

    def unprotect(self, datagram: bytes) -> bytes:
        return datagram


IDENTITY: Protection = _Identity()


class ReplayError(RemoteProtocolError):
    """``unprotect``: an authentic datagram seen before (RFC 3711 3.3.2): dropped, counted in
    ``unprotect_failed`` and ``unprotect_replayed``."""


SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux
_TIMESPEC = struct.Struct("@qq")
_TIMESTAMP_SPACE = socket.CMSG_SPACE(_TIMESPEC.size)


@dataclass(frozen=True, slots=True)
class EdgeStats:
    received: int = 0  # accepted from the peer
    sent: int = 0
    dropped_before_connect: int = 0
    dropped_wrong_address: int = 0
    unprotect_failed: int = 0
    unprotect_replayed: int = 0  # of unprotect_failed: replays
    socket_errors: int = 0  # recvfrom errors (e.g. ECONNREFUSED for an earlier send)
    send_errors: int = 0  # sendto refused by the kernel


class DatagramEdge:
    """One UDP socket's way in and out."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        protection: Protection = IDENTITY,
        max_datagram: int = MAX_DATAGRAM,
    ) -> None:
        sock.setblocking(False)
        self._sock = sock
        # Kernel receive timestamps: the arrival times the bandwidth estimator and the jitter
        # buffer use then exclude this process's own scheduling delay (a busy machine).
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            self._kernel_time = True
        except OSError:
            self._kernel_time = False
        self.protection = protection
        self._max = max_datagram
        self._peer_ip: str | None = None
        self._peer: tuple[str, int] | None = None
        self._c = dict.fromkeys(EdgeStats.__dataclass_fields__, 0)

    @property
    def stats(self) -> EdgeStats:
        return EdgeStats(**self._c)

    @property
    def peer(self) -> tuple[str, int] | None:
        return self._peer

    def reset_stats(self) -> None:
        """Start the counters afresh (``ResetStats``: benchmarks, after warm-up)."""
        self._c = dict.fromkeys(EdgeStats.__dataclass_fields__, 0)

    def fileno(self) -> int:
        return self._sock.fileno()

    def connect(self, peer_ip: str, peer_port: int | None) -> None:
        """Accept datagrams from ``peer_ip`` only; send to ``peer_ip:peer_port`` (None: this
        edge only receives). ValueError if ``peer_ip`` is not an IP address."""
        # Canonical text, as the kernel reports sources: a string compare per datagram is exact.
        self._peer_ip = str(ipaddress.ip_address(peer_ip))
        self._peer = None if peer_port is None else (self._peer_ip, peer_port)

    def _read(self) -> tuple[bytes, Any, int]:
        """One datagram, its source and its arrival (monotonic ns): the kernel's receive time
        (SO_TIMESTAMPNS) when the socket gives it, else now."""
        if not self._kernel_time:
            data, addr = self._sock.recvfrom(self._max)
            return data, addr, time.monotonic_ns()
        data, ancillary, _flags, addr = self._sock.recvmsg(self._max, _TIMESTAMP_SPACE)
        now = time.monotonic_ns()
        for level, kind, raw in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(raw) >= 16:
                sec, nsec = _TIMESPEC.unpack_from(raw)
                # The kernel stamps CLOCK_REALTIME; the pipeline runs on CLOCK_MONOTONIC.
                arrival = sec * 1_000_000_000 + nsec - (time.time_ns() - now)
                return data, addr, min(arrival, now)
        return data, addr, now

    def receive(self) -> tuple[bytes, int] | None:
        """The next datagram from the peer, unprotected, with its arrival time; None when the
        socket has nothing more, or after MAX_DISCARDS_PER_CALL discards in a row (discards are
        counted and skipped)."""
        for _ in range(MAX_DISCARDS_PER_CALL):
            try:
                data, addr, arrival_ns = self._read()
            except (BlockingIOError, InterruptedError):
                return None
            except OSError as exc:  # e.g. ECONNREFUSED reported for an earlier send
                self._c["socket_errors"] += 1
                logger.debug("edge: recvfrom: %s", exc)
                return None
            if self._peer_ip is None:
                self._c["dropped_before_connect"] += 1
                continue
            if addr[0] != self._peer_ip:
                self._c["dropped_wrong_address"] += 1
                continue
            try:
                data = self.protection.unprotect(data)
            except RemoteProtocolError as exc:
                self._c["unprotect_failed"] += 1
                if isinstance(exc, ReplayError):
                    self._c["unprotect_replayed"] += 1
                continue
            self._c["received"] += 1
            return data, arrival_ns
        return None

    def send(self, datagram: bytes | bytearray) -> int:
        """Protect and send one datagram to the peer; the bytes sent (0: refused, counted)."""
        if self._peer is None:
            raise RuntimeError("DatagramEdge.send before connect() named a destination")
        protection = self.protection
        out = datagram if protection is IDENTITY else protection.protect(bytes(datagram))
        try:
            sent = self._sock.sendto(out, self._peer)
        except OSError as exc:
            self._c["send_errors"] += 1
            logger.debug("edge: sendto: %s", exc)
            return 0
        self._c["sent"] += 1
        return sent

    def close(self) -> None:
        self._sock.close()
