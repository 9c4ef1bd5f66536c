"""Jitter buffer on complete frames. Pure: ``now`` is passed in, nothing reads a clock.

API::

    @dataclass(frozen=True, slots=True)
    class JitterStats:
        pushed; played; late; duplicates; skipped; overflow; lost; resets: int
        buffered: int; jitter_s: float; delay_s: float
    class JitterBuffer(Generic[T]):
        def __init__(self, *, clock_rate: int = 90000, max_delay: float = 0.1,
                     min_delay: float = 0.0, jitter_factor: float = 3.0,
                     max_frames: int = 8, window: float = 2.0,
                     reset_after: float = 10.0, max_seq_gap: int = 1000,
                     skip_older: bool = True) -> None
        def push(self, item: T, ts: int | None, now: float, seq: int | None = None,
                 *, repaired: bool = False) -> bool
        def pop(self, now: float) -> T | None        # the newest due frame (skip_older) or the
                                                     # oldest due one (in order), or None
        def next_due(self, now: float) -> float | None   # seconds until a frame is due (0: now)
        delay_s, jitter_s, stats

``ts`` is the frame's media timestamp, 32-bit at ``clock_rate`` (the RTP timestamp; for V0,
``to_rtp_ts(sender_ts)``), wraparound included; None plays the frame on arrival. ``seq`` is an
optional frame counter (V0's seq) used only to count frames that never arrived: a gap of more
than ``max_seq_gap`` (a restarted sender, or a forged seq) is not counted as loss, and a seq
that far behind starts the count afresh.

How playout works: each frame's transit (arrival minus media time) is compared with the
smallest transit seen in the last ``window`` seconds, which is the best case of this path.
A frame is due at its media time plus that best transit plus the playout delay, or on arrival
if it came later than that, and never more than ``max_delay`` after its arrival. The delay is
``jitter_factor`` times the RFC 3550 interarrival jitter of frames, clamped to
[min_delay, max_delay]: on a clean link it is about a millisecond, so frames are shown as they
arrive. Delay never builds up: with ``skip_older`` (the codec's ``intra_only``: every frame
decodes on its own, as JPEG) ``pop`` returns the newest due frame and drops older ones
(``skipped``); without it (an inter-frame codec, where a skipped frame breaks the ones after
it) ``pop`` returns due frames in order, oldest first, and none is skipped. In both cases
frames older than the last one played are dropped on arrival (``late``), and at most
``max_frames`` wait (the oldest goes first, ``overflow``). A timestamp jump of more than
``reset_after`` seconds starts a new timeline (``resets``).
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

from pipeline.wire.rtp import ts_diff

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class JitterStats:
    pushed: int
    played: int
    late: int
    duplicates: int
    skipped: int
    overflow: int
    lost: int
    resets: int
    buffered: int
    jitter_s: float
    delay_s: float


@dataclass(slots=True)
class _Entry(Generic[T]):
    item: T
    media: float  # seconds, on the unwrapped timeline
    arrival: float


class JitterBuffer(Generic[T]):
    """Holds complete frames until their playout time; the newest due frame wins."""

    def __init__(
        self,
        *,
        clock_rate: int = 90000,
        max_delay: float = 0.1,
        min_delay: float = 0.0,
        jitter_factor: float = 3.0,
        max_frames: int = 8,
        window: float = 2.0,
        reset_after: float = 10.0,
        max_seq_gap: int = 1000,
        skip_older: bool = True,
    ) -> None:
        if max_frames < 1 or clock_rate <= 0 or not 0 <= min_delay <= max_delay:
            raise ValueError("bad jitter buffer parameters")
        self.clock_rate = clock_rate
        self.max_delay = max_delay
        self.min_delay = min_delay
        self._configured = (min_delay, max_delay)
        self.jitter_factor = jitter_factor
        self.max_frames = max_frames
        self.window = window
        self.reset_after = reset_after
        self.max_seq_gap = max_seq_gap
        self.skip_older = skip_older
        self._frames: dict[int, _Entry[T]] = {}  # unwrapped ts -> entry
        self._last_ts: int | None = None  # 32-bit ts of the newest pushed frame
        self._last_ext = 0  # its unwrapped value
        self._last_arrival = 0.0
        self._jitter_ext: int | None = None  # the newest frame in the jitter estimate
        self._played_ext: int | None = None
        self._max_seq: int | None = None
        self._transits: deque[tuple[float, float]] = deque()  # (arrival, transit), min-queue
        self._jitter = 0.0  # seconds
        self._c = {
            k: 0 for k in ("pushed", "played", "late", "duplicates", "skipped", "overflow", "lost")
        }
        self._c["resets"] = 0

    @property
    def jitter_s(self) -> float:
        return self._jitter

    def set_repair_floor(self, seconds: float) -> None:
        """Hold every frame at least ``seconds`` (0: back to the configured range): while
        packets are being repaired (NACK/RTX), a steady delay about one repair long plays
        repaired frames on time instead of freezing on each and bursting after it (libwebrtc
        adds the RTT to its jitter delay while NACK is active, for the same reason)."""
        low, high = self._configured
        floor = max(seconds, 0.0)
        self.min_delay = max(low, floor)
        self.max_delay = max(high, floor)

    @property
    def delay_s(self) -> float:
        """The current playout delay added to the best-case transit."""
        return min(max(self.jitter_factor * self._jitter, self.min_delay), self.max_delay)

    @property
    def stats(self) -> JitterStats:
        return JitterStats(
            **self._c,
            buffered=len(self._frames),
            jitter_s=self._jitter,
            delay_s=self.delay_s,
        )

    def _reset(self) -> None:
        self._c["resets"] += 1
        self._c["skipped"] += len(self._frames)
        self._frames.clear()
        self._last_ts = None
        self._jitter_ext = None
        self._played_ext = None
        self._max_seq = None
        self._transits.clear()
        self._jitter = 0.0

    def _count_seq(self, seq: int) -> None:
        """Count frames skipped by the sender's frame counter."""
        last = self._max_seq
        if last is None or seq > last + self.max_seq_gap or seq < last - self.max_seq_gap:
            self._max_seq = seq  # the first frame, or a restarted (or forged) counter
        elif seq > last:
            self._c["lost"] += seq - last - 1
            self._max_seq = seq
        elif self._c["lost"] > 0:
            self._c["lost"] -= 1  # a reordered frame that was counted lost arrived after all

    def push(
        self, item: T, ts: int | None, now: float, seq: int | None = None, *, repaired: bool = False
    ) -> bool:
        """Offer a complete frame; False if it was dropped (late or duplicate). A ``repaired``
        frame (some packet came by retransmission) is played but does not enter the jitter and
        transit estimates: its delay is the repair's, not the path's (libwebrtc's jitter
        estimator skips frames delayed by retransmission the same way)."""
        if ts is None:
            ts = int(now * self.clock_rate) & 0xFFFFFFFF
        if self._last_ts is not None:
            jump = ts_diff(ts, self._last_ts) / self.clock_rate
            if abs(jump) > self.reset_after:
                logger.info("media timestamp jumped %.1f s: new playout timeline", jump)
                self._reset()
        ext = ts if self._last_ts is None else self._last_ext + ts_diff(ts, self._last_ts)
        if (self._played_ext is not None and ext <= self._played_ext) or ext in self._frames:
            late = self._played_ext is not None and ext < self._played_ext
            self._c["late" if late else "duplicates"] += 1
            return False
        if seq is not None:
            self._count_seq(seq)
        self._c["pushed"] += 1
        media = ext / self.clock_rate
        transit = now - media
        q = self._transits
        if self._last_ts is None or ext > self._last_ext:
            # The timeline follows every frame; the jitter estimate only unrepaired ones.
            if not repaired or not q:
                if self._jitter_ext is not None and ext > self._jitter_ext:
                    d = (now - self._last_arrival) - (ext - self._jitter_ext) / self.clock_rate
                    self._jitter += (abs(d) - self._jitter) / 16
                self._jitter_ext, self._last_arrival = ext, now
            self._last_ts, self._last_ext = ts, ext
        if not repaired or not q:
            # Windowed minimum of transit, as a monotonic queue.
            while q and q[-1][1] >= transit:
                q.pop()
            q.append((now, transit))
            while q[0][0] < now - self.window:
                q.popleft()
        self._frames[ext] = _Entry(item, media, now)
        if len(self._frames) > self.max_frames:
            del self._frames[min(self._frames)]
            self._c["overflow"] += 1
        return True

    def _deadline(self, entry: _Entry[T], base: float) -> float:
        # Never later than arrival + max_delay, even if the best-case transit moved meanwhile.
        target = max(entry.arrival, entry.media + base + self.delay_s)
        return min(target, entry.arrival + self.max_delay)

    def next_due(self, now: float) -> float | None:
        """Seconds until the next frame is due (0.0 if one is due now); None when empty."""
        if not self._frames:
            return None
        base = self._transits[0][1]
        first = min(self._deadline(e, base) for e in self._frames.values())
        return max(first - now, 0.0)

    def pop(self, now: float) -> T | None:
        """The newest frame whose playout time has come, older waiting frames dropped; without
        ``skip_older``, the oldest due frame (frames keep their order)."""
        if not self._frames:
            return None
        base = self._transits[0][1]
        due = [ext for ext, e in self._frames.items() if self._deadline(e, base) <= now]
        if not due:
            return None
        if not self.skip_older:
            chosen = min(due)
            self._c["played"] += 1
            self._played_ext = chosen
            return self._frames.pop(chosen).item
        chosen = max(due)
        older = [ext for ext in self._frames if ext < chosen]
        for ext in older:
            del self._frames[ext]
        self._c["skipped"] += len(older)
        self._c["played"] += 1
        self._played_ext = chosen
        return self._frames.pop(chosen).item
