"""TCP adapter for call control: moves bytes between asyncio streams and the sans-IO codec.

Guarantees: every read has a size cap (the codec's) and a timeout chosen by the caller; classic
messages are never written back to back (a minimum gap separates two unterminated writes on one
connection, because classic clients treat one ``recv()`` as one message); a reset, a refused or
timed-out connect surface as :class:`ConnectFailedError` with a reason a user can read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable

from vcall.call.codec import (
    DEFAULT_GAP,
    MAX_MESSAGE_SIZE,
    Message,
    MessageReader,
    encode,
)

logger = logging.getLogger(__name__)

READ_CHUNK = 4096
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
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._framer = MessageReader(max_size=max_size, gap=gap)
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


async def connect(ip: str, port: int, timeout: float) -> ControlConnection:
    """Open a call-control connection or raise ConnectFailedError with a readable reason."""
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
    return ControlConnection(reader, writer)


async def listen(
    host: str, port: int, handler: Callable[[ControlConnection], Awaitable[None]]
) -> asyncio.Server:
    """Listen for call-control connections; ``handler`` owns each connection."""

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = ControlConnection(reader, writer)
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
