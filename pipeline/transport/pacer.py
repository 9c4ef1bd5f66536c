"""The send pacer: a frame's packets leave spread at a pacing rate instead of in one burst
(a 34-packet burst overflows small router queues and reads as congestion). Pure: the send
stage asks ``pop`` for what may leave now and sleeps until ``next_send``.

API::

    class Pacer:
        def __init__(self, rate_bps: int) -> None
        def set_rate(self, bps: int) -> None          # PACING_FACTOR x the target bitrate
        def push(self, datagram, now, *, priority=False) -> None   # priority: retransmissions
        def pop(self, now) -> list[bytearray | bytes]  # what may leave now, in order
        def next_send(self, now) -> float | None      # seconds until the next may leave
        queued_packets; queued_bytes; stats -> PacerStats

A leaky bucket (after libwebrtc's pacing and draft-ietf-rmcat-gcc-02 section 4): the budget
refills at the pacing rate up to ``burst_bytes`` (at least MIN_BURST_BYTES, or BURST_S of the
rate), so a small frame leaves at once (no added delay on a clean link) and only the part of a
large one beyond the burst is spread. Latency never accumulates: when the queue holds more than
MAX_QUEUE_S at the pacing rate, the queue drains at the rate that empties it in MAX_QUEUE_S
(nothing is dropped; the encoder's target, not the pacer, has to come down). The queue is
bounded in packets too (MAX_QUEUE_PACKETS): beyond it the oldest packets go (counted).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

PACING_FACTOR = 2.5  # libwebrtc's: pace at 2.5x the target so a frame leaves in ~40% of its slot
MIN_RATE_BPS = 100_000
MIN_BURST_BYTES = 16 * 1200
BURST_S = 0.01
MAX_QUEUE_S = 0.1
MAX_QUEUE_PACKETS = 4096


@dataclass(frozen=True, slots=True)
class PacerStats:
    packets: int = 0
    waits: int = 0  # times packets had to wait for budget (the pacing at work)
    dropped: int = 0  # pushed out by MAX_QUEUE_PACKETS
    drained: int = 0  # pops while the queue exceeded MAX_QUEUE_S and drained faster
    rate_bps: int = 0


Datagram = bytes | bytearray


class Pacer:
    def __init__(self, rate_bps: int) -> None:
        self._queue: deque[Datagram] = deque()
        self._priority: deque[Datagram] = deque()
        self.queued_bytes = 0
        self._budget = 0.0
        self._last: float | None = None
        self._c = dict.fromkeys(("packets", "waits", "dropped", "drained"), 0)
        self.rate_bps = MIN_RATE_BPS
        self.burst_bytes = MIN_BURST_BYTES
        self.set_rate(rate_bps)
        self._budget = float(self.burst_bytes)

    @property
    def queued_packets(self) -> int:
        return len(self._queue) + len(self._priority)

    def set_rate(self, bps: int) -> None:
        """The pacing rate in bit/s (at least MIN_RATE_BPS)."""
        self.rate_bps = max(int(bps), MIN_RATE_BPS)
        self.burst_bytes = max(MIN_BURST_BYTES, int(self.rate_bps / 8 * BURST_S))
        self._budget = min(self._budget, self.burst_bytes)

    def push(self, datagram: Datagram, now: float, *, priority: bool = False) -> None:
        (self._priority if priority else self._queue).append(datagram)
        self.queued_bytes += len(datagram)
        while self.queued_packets > MAX_QUEUE_PACKETS:
            victim = self._queue.popleft() if self._queue else self._priority.popleft()
            self.queued_bytes -= len(victim)
            self._c["dropped"] += 1

    def _rate_now(self) -> float:
        """Bytes per second to drain at: the pacing rate, or faster when the queue is long."""
        rate = self.rate_bps / 8
        return max(rate, self.queued_bytes / MAX_QUEUE_S)

    def _refill(self, now: float) -> None:
        rate = self._rate_now()
        if rate > self.rate_bps / 8:
            self._c["drained"] += 1
        if self._last is not None:
            self._budget = min(self._budget + (now - self._last) * rate, self.burst_bytes)
        self._last = now

    def pop(self, now: float) -> list[Datagram]:
        """The packets that may leave at ``now``: retransmissions first, then in order."""
        self._refill(now)
        out: list[Datagram] = []
        waited = False
        while self._priority or self._queue:
            if self._budget <= 0:
                waited = True
                break
            d = self._priority.popleft() if self._priority else self._queue.popleft()
            self._budget -= len(d)
            self.queued_bytes -= len(d)
            out.append(d)
        self._c["packets"] += len(out)
        if waited:
            self._c["waits"] += 1
        return out

    def next_send(self, now: float) -> float | None:
        if not self.queued_packets:
            return None
        if self._budget > 0:
            return 0.0
        return -self._budget / self._rate_now() + 1e-4

    @property
    def stats(self) -> PacerStats:
        return PacerStats(**self._c, rate_bps=self.rate_bps)
