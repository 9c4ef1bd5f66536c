"""The receiver's NACK list: which packets of one stream are missing, and when to ask for them
again (RFC 4585 6.2.1 generic NACK; the sender answers with RTX, RFC 4588). Pure.

API::

    class NackTracker:
        def __init__(self, *, max_pending: int = MAX_PENDING, max_retries: int = MAX_RETRIES,
                     max_age: float = MAX_AGE_S) -> None
        def on_packet(self, seq: int, now: float, *, retransmitted: bool = False) -> None
        def due(self, now: float, rtt: float | None) -> list[int]   # ask for these now
        def next_due(self, now: float, rtt: float | None) -> float | None  # seconds from now
        def repair_rtt(self, now: float) -> float | None  # seconds, measured by repairs
        repair_rtt_at: float | None   # when its newest sample was taken
        def pending_before(self, seq: int) -> bool  # a packet before seq is still asked for
        overflowed: bool          # the list overflowed since last read: ask for a keyframe
        stats -> NackStats
        def reset(self) -> None

Rules (after libwebrtc's NackRequester, written from the RFCs): a gap in the sequence numbers
puts the missing ones on the list. A packet is first asked for after ``reorder_wait``: the 75th
percentile of how late reordered packets came recently (0 on a clean link; capped at
MAX_REORDER_WAIT_S), so reordering does not turn into retransmissions. It is asked again every
RTT x RETRY_RTT_FACTOR (at least MIN_RETRY_S; 100 ms while the RTT is unknown), at most
``max_retries`` times and for at most ``max_age`` seconds. When a retry would come later than
REPEAT_MIN_RETRY_S (a long RTT), each request is also sent once more REPEAT_AFTER_S after it
(``repeats``, not a retry): a NACK lost on the way would otherwise cost a whole RTT, and on the
5% loss, 40 ms path of the lab one request in ten failed (the NACK or its RTX lost); the sender
answers only one of the two (its guard of half an RTT, pipeline/stages/send.py). Then it is
abandoned (the frame cannot make its playout time: the depacketizer drops it and an
inter-frame codec asks for a keyframe).
The repair round trip is measured here too: from a request to the retransmission that answers
it, only for packets asked for once (Karn's rule: an answer after a retry could belong to either
request). ``repair_rtt`` is the median of the last REPAIR_RTT_SAMPLES such samples, none older
than REPAIR_RTT_FRESH_S; a sample is clamped to [MIN_RTT_SAMPLE_S, max_age] (the peer chooses
when an RTX comes: a hint, bounded). It follows the path within a few repairs, where RTCP's RTT
(RFC 3550 6.4.1) comes once a second: after a bandwidth drop that RTT still said 236 ms for up
to a second after the bottleneck queue had drained, so retries came every 283 ms, and with the
0.5 s age limit a repair lost once was abandoned (a keyframe request and a freeze of about a
second). When the RTT grows, every repair is asked twice and gives no sample: the receiver then
takes RTCP's RTT, which is newer (pipeline/stages/receive.py).
A jump of more than ``max_pending`` packets, or a gap after OUTAGE_S without any packet (an
outage: what was missed is older than any repair can make up), does not list them: the list is
cleared and ``overflowed`` set, and a keyframe request repairs faster than hundreds of NACKs.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from pipeline.wire.rtp import seq_diff

MAX_PENDING = 500
MAX_RETRIES = 10
MAX_AGE_S = 0.5  # no frame waits longer for a repair (MAX_REPAIR_WAIT_S, assembly.RESET_TICKS)
MAX_REORDER_WAIT_S = 0.03
RETRY_RTT_FACTOR = 1.2
MIN_RETRY_S = 0.01
UNKNOWN_RTT_RETRY_S = 0.1
REORDER_WINDOW = 64
OUTAGE_S = 0.5
REORDER_PERCENTILE = 0.75
REPEAT_AFTER_S = 0.015
REPEAT_MIN_RETRY_S = 0.045
REPAIR_RTT_SAMPLES = 5
REPAIR_RTT_FRESH_S = 1.0
MIN_RTT_SAMPLE_S = 0.001


@dataclass(frozen=True, slots=True)
class NackStats:
    missing: int = 0  # packets that went on the list
    requests: int = 0  # sequence numbers asked for (a retry counts again)
    recovered: int = 0  # arrived by retransmission
    reordered: int = 0  # arrived by themselves, late
    abandoned: int = 0  # given up (retries or age ran out)
    superseded: int = 0  # no longer asked for: a keyframe made them unneeded (forget_before)
    repeats: int = 0  # requests sent a second time REPEAT_AFTER_S later (long RTT)
    overflows: int = 0  # the list was cleared: too many at once
    reorder_wait_ms: float = 0.0
    repair_rtt_ms: float | None = None  # the newest repair_rtt (None: no fresh sample)


class _Missing:
    __slots__ = ("repeat_at", "sent", "since", "tries")

    def __init__(self, since: float) -> None:
        self.since = since
        self.sent: float | None = None
        self.repeat_at: float | None = None  # when to send the last request once more
        self.tries = 0


class NackTracker:
    def __init__(
        self,
        *,
        max_pending: int = MAX_PENDING,
        max_retries: int = MAX_RETRIES,
        max_age: float = MAX_AGE_S,
    ) -> None:
        self.max_pending = max_pending
        self.max_retries = max_retries
        self.max_age = max_age
        self._highest: int | None = None
        self._last_packet: float | None = None
        self._missing: dict[int, _Missing] = {}
        self._reorder_delays: deque[float] = deque(maxlen=REORDER_WINDOW)
        self._reorder_wait = 0.0
        self._rtt_samples: deque[tuple[float, float]] = deque(maxlen=REPAIR_RTT_SAMPLES)
        self._repair_rtt: float | None = None
        self.overflowed = False
        self._c = dict.fromkeys(
            (
                "missing",
                "requests",
                "recovered",
                "reordered",
                "abandoned",
                "superseded",
                "overflows",
                "repeats",
            ),
            0,
        )

    def reset(self) -> None:
        self._highest = None
        self._missing.clear()
        self._rtt_samples.clear()
        self.overflowed = False

    def on_packet(self, seq: int, now: float, *, retransmitted: bool = False) -> None:
        """A packet of the stream arrived (``retransmitted``: unwrapped from RTX)."""
        quiet = self._last_packet is not None and now - self._last_packet > OUTAGE_S
        self._last_packet = now
        if self._highest is None:
            self._highest = seq
            return
        ahead = seq_diff(seq, self._highest)
        if ahead > 0:
            if ahead - 1 > self.max_pending or (quiet and ahead > 1):
                self._missing.clear()
                self._c["overflows"] += 1
                self.overflowed = True
            else:
                for i in range(1, ahead):
                    self._missing[(self._highest + i) & 0xFFFF] = _Missing(now)
                self._c["missing"] += ahead - 1
                if len(self._missing) > self.max_pending:
                    self._missing.clear()
                    self._c["overflows"] += 1
                    self.overflowed = True
            self._highest = seq
            return
        entry = self._missing.pop(seq, None)
        if entry is None:
            return
        if retransmitted:
            self._c["recovered"] += 1
            if entry.tries == 1 and entry.sent is not None:
                sample = min(max(now - entry.sent, MIN_RTT_SAMPLE_S), self.max_age)
                self._rtt_samples.append((now, sample))
        else:
            self._c["reordered"] += 1
            self._reorder_delays.append(now - entry.since)
            ordered = sorted(self._reorder_delays)
            self._reorder_wait = min(
                ordered[int(REORDER_PERCENTILE * (len(ordered) - 1))], MAX_REORDER_WAIT_S
            )

    def forget_before(self, seq: int) -> None:
        """Stop asking for every listed packet before ``seq`` (RFC 3550 serial order): a
        keyframe from ``seq`` on made the frames they belong to unneeded (the depacketizer's
        ``repair_moot``). Asking on would spend the peer's repair budget, on a congested path,
        on packets that could only arrive late (libwebrtc's NackRequester.ClearUpTo)."""
        gone = [s for s in self._missing if seq_diff(s, seq) < 0]
        for s in gone:
            del self._missing[s]
        self._c["superseded"] += len(gone)

    def pending_before(self, seq: int) -> bool:
        """Whether a packet before ``seq`` (RFC 3550 serial order) is still listed: it may
        still be repaired (it leaves the list when it arrives or is abandoned)."""
        return any(seq_diff(s, seq) < 0 for s in self._missing)

    @property
    def repair_rtt_at(self) -> float | None:
        """When the newest repair RTT sample was taken (None: none yet)."""
        return self._rtt_samples[-1][0] if self._rtt_samples else None

    def repair_rtt(self, now: float) -> float | None:
        """Seconds from a request to its retransmission: the median of the fresh samples
        (None when there are none in the last REPAIR_RTT_FRESH_S)."""
        fresh = sorted(rtt for t, rtt in self._rtt_samples if now - t <= REPAIR_RTT_FRESH_S)
        self._repair_rtt = fresh[len(fresh) // 2] if fresh else None
        return self._repair_rtt

    def _retry_interval(self, rtt: float | None) -> float:
        if rtt is None:
            return UNKNOWN_RTT_RETRY_S
        return max(rtt * RETRY_RTT_FACTOR, MIN_RETRY_S)

    def due(self, now: float, rtt: float | None) -> list[int]:
        """The sequence numbers to put in a NACK now (each counted as a request)."""
        if not self._missing:
            return []
        retry = self._retry_interval(rtt)
        repeat = rtt is not None and retry > REPEAT_MIN_RETRY_S
        out: list[int] = []
        requests = 0
        for seq, entry in list(self._missing.items()):
            if entry.tries >= self.max_retries or now - entry.since > self.max_age:
                del self._missing[seq]
                self._c["abandoned"] += 1
                continue
            if entry.repeat_at is not None and now >= entry.repeat_at:
                entry.repeat_at = None
                self._c["repeats"] += 1
                out.append(seq)
                continue
            if entry.sent is None:
                if now - entry.since < self._reorder_wait:
                    continue
            elif now - entry.sent < retry:
                continue
            entry.sent = now
            entry.repeat_at = now + REPEAT_AFTER_S if repeat else None
            entry.tries += 1
            requests += 1
            out.append(seq)
        self._c["requests"] += requests
        return out

    def next_due(self, now: float, rtt: float | None) -> float | None:
        """Seconds until ``due`` has something to ask (None: nothing is missing)."""
        if not self._missing:
            return None
        retry = self._retry_interval(rtt)
        soonest = min(
            e.repeat_at
            if e.repeat_at is not None
            else (e.since + self._reorder_wait)
            if e.sent is None
            else (e.sent + retry)
            for e in self._missing.values()
        )
        return max(0.0, soonest - now)

    @property
    def stats(self) -> NackStats:
        rtt = self._repair_rtt
        return NackStats(
            **self._c,
            reorder_wait_ms=round(self._reorder_wait * 1000, 3),
            repair_rtt_ms=None if rtt is None else round(rtt * 1000, 3),
        )
