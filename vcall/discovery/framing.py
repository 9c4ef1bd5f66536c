"""Server-side framing of discovery requests: buffer, timers and limits, with no I/O.

The classic grammar has no terminator, so a message ends when (a) it parses as a complete
request, (b) a newline ends it (some clients send CR/LF), or (c) the sender goes quiet for
``gap`` seconds with an unfinished message, which is then judged as it is. Time is passed in.

Guarantees (the adapter only moves bytes and calls :meth:`RequestFramer.poll` on a timer):

* every byte sequence, in any split, leads to a request, a rejection or a drop; never to a
  buffer that waits forever (``gap``), nor to one that grows past ``max_size``;
* a client that trickles bytes and never completes a valid request is dropped: an unfinished
  message must complete within ``request_timeout``, and ``max_errors`` rejections in a row
  close the connection;
* a connection with no bytes for ``idle_timeout`` is dropped.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from vcall.discovery.codec import (
    EMPTY,
    INCOMPLETE,
    NokCode,
    Rejected,
    Request,
    parse_request,
)


@dataclass(frozen=True, slots=True)
class Limits:
    max_size: int = 1024  # bytes of one request
    gap: float = 0.5  # quiet time after which an unfinished message is judged as it is
    request_timeout: float = 5.0  # an unfinished message must complete within this
    idle_timeout: float = 300.0  # no bytes at all for this long: drop
    max_errors: int = 10  # rejections in a row before the connection is dropped


class DropReason(enum.StrEnum):
    TOO_LONG = "request too long"
    SLOW = "request not completed in time"
    IDLE = "idle"
    ERRORS = "too many bad requests"


@dataclass(frozen=True, slots=True)
class Drop:
    """Close the connection (after sending ``reply`` first, when there is one)."""

    reason: DropReason
    reply: Rejected | None = None


Event = Request | Rejected | Drop


class RequestFramer:
    """Turns the bytes of one connection into events. Not thread-safe; one per connection."""

    __slots__ = ("_buf", "_errors", "_last_rx", "_limits", "_started", "closed")

    def __init__(self, limits: Limits, now: float) -> None:
        self._limits = limits
        self._buf = b""
        self._last_rx = now
        self._started = 0.0  # when the unfinished message in _buf began
        self._errors = 0
        self.closed = False

    @property
    def pending(self) -> bool:
        """True while an unfinished message waits in the buffer."""
        return bool(self._buf)

    def receive_data(self, data: bytes, now: float) -> None:
        if not self._buf:
            self._started = now
        self._buf += data
        self._last_rx = now

    def next_event(self, now: float) -> Event | None:
        """The next event the bytes received so far give, or None if more are needed."""
        if self.closed:
            return None
        while self._buf:
            buf = self._buf
            newline = buf.find(b"\n")
            if newline >= 0:
                candidate, rest, final = buf[:newline], buf[newline + 1 :], True
            else:
                candidate, rest = buf, b""
                final = now >= self._last_rx + self._limits.gap
            if len(candidate) > self._limits.max_size:
                return self._drop(DropReason.TOO_LONG, reply=True)
            result = parse_request(candidate, final=final)
            if result is INCOMPLETE:
                return None
            self._buf = rest
            if rest:
                self._started = now
            if result is EMPTY:
                continue
            if isinstance(result, Rejected):
                self._errors += 1
                if self._errors >= self._limits.max_errors:
                    return self._drop(DropReason.ERRORS, reply=True, rejected=result)
                return result
            self._errors = 0
            return result
        return None

    def poll(self, now: float) -> Event | None:
        """Called on a timer: judge a message whose sender went quiet, or drop the connection.
        Deadlines are compared as ``now >= start + limit``: a timer set to fire at exactly
        ``start + limit`` fires (``now - start`` could round to just below the limit).

        Must not be called while the adapter is still answering an earlier request.
        """
        if self.closed:
            return None
        if self._buf:
            if now >= self._started + self._limits.request_timeout:
                return self._drop(DropReason.SLOW, reply=False)
            if now >= self._last_rx + self._limits.gap:
                return self.next_event(now)
            return None
        if now >= self._last_rx + self._limits.idle_timeout:
            return self._drop(DropReason.IDLE, reply=False)
        return None

    def touch(self, now: float) -> None:
        """The server finished answering: idle time counts from now, not from the request."""
        self._last_rx = now

    def _drop(self, reason: DropReason, *, reply: bool, rejected: Rejected | None = None) -> Drop:
        self.closed = True
        self._buf = b""
        if reply and rejected is None:
            rejected = Rejected(NokCode.SYNTAX_ERROR, reason)
        return Drop(reason, rejected if reply else None)
