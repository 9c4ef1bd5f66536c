"""The sender's retransmission buffer: recent RTP packets by sequence number, for NACK repair
(RFC 4585 6.2.1, answered with RTX, RFC 4588). Pure: ``now`` is passed in.

API::

    class RetransmissionBuffer:
        def __init__(self, *, max_bytes: int = MAX_BYTES, max_age: float = MAX_AGE_S) -> None
        def store(self, seq: int, datagram: bytes, now: float) -> None
        def take(self, seq: int, now: float, min_interval: float) -> bytes | None
        stats -> HistoryStats      # stored, evicted, answered, unknown, too_soon
        bytes_held: int
    class RepeatSchedule:           # retransmissions to send once more, a little later
        def __init__(self, *, min_rtt: float, after: float, max_pending: int) -> None
        def add(self, seq: int, now: float, rtt: float) -> bool   # False: full (counted)
        def due(self, now: float) -> list[int]
        def next_due(self, now: float) -> float | None            # seconds from now
        def clear(self) -> None                                   # a new stream
        dropped: int

Bounded in bytes and in age: a packet older than ``max_age`` cannot make any playout time, and
``max_bytes`` caps memory whatever a peer asks for. ``take`` answers a NACK for one packet: None
(counted) when the packet is gone (``unknown``) or was resent less than ``min_interval`` ago
(``too_soon``: the peer asked again before our copy could have arrived, RFC 4588 8.4's
"retransmission flood" guard).
"""

from __future__ import annotations

from collections import OrderedDict, deque
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


class RepeatSchedule:
    """Which retransmissions to send once more, ``after`` seconds later, on a long RTT.

    A lost retransmission costs the receiver a NACK retry (RTT x 1.2) plus an RTT; on a path
    whose RTT is at least ``min_rtt`` that is longer than the playout delay, and the frame
    freezes. A second copy a little later (not back to back: losses come in bursts) makes a
    lost answer as unlikely as a lost request (the receiver repeats its NACKs the same way,
    pipeline.transport.nack). Bounded: at most ``max_pending`` wait, the rest are not repeated
    and counted in ``dropped``.
    """

    def __init__(self, *, min_rtt: float, after: float, max_pending: int) -> None:
        self.min_rtt = min_rtt
        self.after = after
        self.max_pending = max_pending
        self.dropped = 0
        self._due: deque[tuple[float, int]] = deque()

    def add(self, seq: int, now: float, rtt: float) -> bool:
        """Schedule ``seq`` (just retransmitted) once more if the RTT is long enough."""
        if rtt < self.min_rtt:
            return False
        if len(self._due) >= self.max_pending:
            self.dropped += 1
            return False
        self._due.append((now + self.after, seq & 0xFFFF))
        return True

    def due(self, now: float) -> list[int]:
        out: list[int] = []
        while self._due and self._due[0][0] <= now:
            out.append(self._due.popleft()[1])
        return out

    def next_due(self, now: float) -> float | None:
        return max(0.0, self._due[0][0] - now) if self._due else None

    def clear(self) -> None:
        self._due.clear()
