"""The sender's retransmission buffer: recent RTP packets by sequence number, for NACK repair
(RFC 4585 6.2.1, answered with RTX, RFC 4588). Pure: ``now`` is passed in.

API::

    class RetransmissionBuffer:
        def __init__(self, *, max_bytes: int = MAX_BYTES, max_age: float = MAX_AGE_S) -> None
        def store(self, seq: int, datagram: bytes, now: float) -> None
        def take(self, seq: int, now: float, min_interval: float) -> bytes | None
        stats -> HistoryStats      # stored, evicted, answered, unknown, too_soon
        bytes_held: int

Bounded in bytes and in age: a packet older than ``max_age`` cannot make any playout time, and
``max_bytes`` caps memory whatever a peer asks for. ``take`` answers a NACK for one packet: None
(counted) when the packet is gone (``unknown``) or was resent less than ``min_interval`` ago
(``too_soon``: the peer asked again before our copy could have arrived, RFC 4588 8.4's
"retransmission flood" guard).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

MAX_BYTES = 2 << 20  # 2 MiB: 1 s of 720p H.264 at 16 Mbit/s, or ~0.7 s of 720p MJPEG
MAX_AGE_S = 1.0


@dataclass(frozen=True, slots=True)
class HistoryStats:
    stored: int = 0
    evicted: int = 0  # pushed out by the byte cap before their age ran out
    answered: int = 0  # packets handed back for retransmission
    unknown: int = 0  # asked for, not held (too old, evicted, never sent)
    too_soon: int = 0  # asked for again within min_interval of our last resend


class _Entry:
    __slots__ = ("datagram", "last_resent", "sent")

    def __init__(self, datagram: bytes, sent: float) -> None:
        self.datagram = datagram
        self.sent = sent
        self.last_resent: float | None = None


class RetransmissionBuffer:
    def __init__(self, *, max_bytes: int = MAX_BYTES, max_age: float = MAX_AGE_S) -> None:
        if max_bytes <= 0 or max_age <= 0:
            raise ValueError("max_bytes and max_age must be positive")
        self.max_bytes = max_bytes
        self.max_age = max_age
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self.bytes_held = 0
        self._c = dict.fromkeys(("stored", "evicted", "answered", "unknown", "too_soon"), 0)

    def store(self, seq: int, datagram: bytes, now: float) -> None:
        """Keep the packet sent as ``seq`` (a 16-bit sequence number) at ``now``."""
        old = self._entries.pop(seq & 0xFFFF, None)
        if old is not None:
            self.bytes_held -= len(old.datagram)
        self._entries[seq & 0xFFFF] = _Entry(datagram, now)
        self.bytes_held += len(datagram)
        self._c["stored"] += 1
        self._trim(now)

    def take(self, seq: int, now: float, min_interval: float) -> bytes | None:
        """The packet to resend for a NACK of ``seq``, or None (counted)."""
        self._trim(now)
        entry = self._entries.get(seq & 0xFFFF)
        if entry is None:
            self._c["unknown"] += 1
            return None
        if entry.last_resent is not None and now - entry.last_resent < min_interval:
            self._c["too_soon"] += 1
            return None
        entry.last_resent = now
        self._c["answered"] += 1
        return entry.datagram

    def _trim(self, now: float) -> None:
        entries = self._entries
        while entries:
            seq, oldest = next(iter(entries.items()))
            too_old = now - oldest.sent > self.max_age
            if not too_old and self.bytes_held <= self.max_bytes:
                return
            del entries[seq]
            self.bytes_held -= len(oldest.datagram)
            if not too_old:
                self._c["evicted"] += 1

    @property
    def stats(self) -> HistoryStats:
        return HistoryStats(**self._c)
