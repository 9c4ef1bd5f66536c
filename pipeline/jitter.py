"""Jitter buffer on complete frames. Pure: ``now`` is passed in, nothing reads a clock.

API::

    MAX_SKEW_S = 0.5
    @dataclass(frozen=True, slots=True)
    class JitterStats:
        pushed; played; late; duplicates; skipped; overflow; lost; resets; lagging: int
        buffered: int; jitter_s: float; delay_s: float
    class JitterBuffer(Generic[T]):
        def __init__(self, *, clock_rate: int = 90000, max_delay: float = 0.1,
                     min_delay: float = 0.0, jitter_factor: float = 3.0,
                     max_frames: int = 8, window: float = 2.0,
                     max_skew: float = MAX_SKEW_S, max_seq_gap: int = 1000,
                     skip_older: bool = True) -> None
        def push(self, item: T, ts: int | None, now: float, seq: int | None = None,
                 *, repaired: bool = False) -> bool
        def pop(self, now: float) -> T | None        # the newest due frame (skip_older) or the
                                                     # oldest due one (in order), or None
        def next_due(self, now: float) -> float | None   # seconds until a frame is due (0: now)
        set_repair_floor(seconds); delay_s, jitter_s, stats

``ts`` is the frame's media timestamp, 32-bit at ``clock_rate`` (the RTP timestamp; for V0,
``to_rtp_ts(sender_ts)``), wraparound included; None plays the frame on arrival. ``seq`` is the
sender's frame counter (V0's seq), an integer of any size, not wrapping.

A peer's clock is a hint, not an identity (issue #15 fault 1, issue #14): classic senders have
sent a timestamp frozen at import time, timestamps of one-second resolution and wall-clock time
that an NTP correction stepped back, and an authenticated peer's clock can still jump. So:

- **What a frame is** comes from ``seq`` when there is one: a frame with a new ``seq`` is a new
  frame whatever its timestamp; the same ``seq`` again is a ``duplicate``, one older than the
  frame last played is ``late``; frames keep the order of their ``seq``. Without ``seq`` (RTP:
  the depacketizer has already told packets of new frames, by their advancing sequence numbers,
  from repeated ones) frames are known and ordered by timestamp (RFC 3550 5.1: the packets of
  one frame share its timestamp, and it grows with the sampling instant).
- **Loss** is counted from ``seq`` only (never from timestamps): a gap of more than
  ``max_seq_gap`` either way (a restarted sender, or a forged seq) is not loss but a new
  sequence (``resets``).
- **Timing** compares media-time advance with arrival-time advance. A frame whose media time is
  more than ``max_skew`` ahead of what its arrival allows (its transit is more than ``max_skew``
  below the best transit of the last ``window`` seconds), or more than ``max_skew`` behind the
  newest frame of the timeline, starts a new timeline (``resets``): the frames already waiting
  become due at once (in their order), and, without ``seq``, the frames after it are ordered
  afresh, so one far-ahead timestamp never makes the real frames after it "late". A frame whose
  media time lags its arrival by more than ``max_skew`` (a stalled clock, a one-second clock
  between its ticks, a network delay spike) is counted ``lagging`` and plays on arrival; a
  one-second clock starts at most one timeline, at its first tick (the first frame's ts may lag
  its capture by up to a second, so the tick may look that early). The RFC 3550 (6.4.1)
  jitter assumes timestamps are sampling instants: after a frame numbered later than every
  other whose media time did not advance, the next jitter sample waits for two frames that do.
- ``max_skew`` (``MAX_SKEW_S``, half a second) bounds what a timestamp can do to playout: on the
  timestamp-ordered path a jumped or forged timestamp within the bound freezes the picture at
  most that long, and one beyond it starts a new timeline. It is above what a real path produces:
  the depacketizers give up a frame after 0.5 s without a packet and the receive stage waits at
  most 0.5 s for a repair (``MAX_REPAIR_WAIT_S``), so a genuine frame is not more than about half
  a second behind the newest one; a path whose queue drains faster than that starts a new
  timeline, which costs nothing but the count.

How playout works: each frame's transit (arrival minus media time) is compared with the
smallest transit seen in the last ``window`` seconds, which is the best case of this path.
A frame is due at its media time plus that best transit plus the playout delay, or on arrival
if it came later than that, and never more than ``max_delay`` after its arrival. The delay is
``jitter_factor`` times the RFC 3550 (section 6.4.1) interarrival jitter of frames, clamped to
[min_delay, max_delay]: on a clean link it is about a millisecond, so frames are shown as they
arrive. Delay never builds up: with ``skip_older`` (the codec's ``intra_only``: every frame
decodes on its own, as JPEG) ``pop`` returns the newest due frame and drops older ones
(``skipped``); without it (an inter-frame codec, where a skipped frame breaks the ones after
it) ``pop`` returns due frames in order, oldest first, and none is skipped. In both cases
frames older than the last one played are dropped on arrival (``late``), and at most
``max_frames`` wait (the oldest goes first, ``overflow``).

Guarantees: ``push``, ``pop`` and ``next_due`` raise nothing on any timestamp, seq and finite
arrival time (the constructor raises ``ValueError`` on bad parameters); no frame waits more than
``max_delay`` after its arrival; every frame offered is counted once as ``late``,
``duplicates`` or ``pushed``, and every pushed one ends ``played``, ``skipped``, ``overflow``
or is still ``buffered``.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

from pipeline.wire.rtp import ts_diff

logger = logging.getLogger(__name__)

T = TypeVar("T")

MAX_SKEW_S = 0.5  # seconds; why this value: the module docstring
_TS_MASK = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class JitterStats:
    pushed: int  # frames accepted
    played: int
    late: int  # older than the frame last played: dropped on arrival
    duplicates: int  # a frame already buffered or played: dropped on arrival
    skipped: int  # older frames passed over for a newer due one
    overflow: int  # the oldest frame pushed out by ``max_frames``
    lost: int  # frames the sender's seq says never came
    resets: int  # new timelines (a timestamp jump either way, a restarted seq)
    lagging: int  # frames whose media time lagged their arrival by over max_skew
    buffered: int
    jitter_s: float
    delay_s: float


@dataclass(slots=True)
class _Entry(Generic[T]):
    item: T
    media: float | None  # seconds on the unwrapped timeline; None: due on arrival
    arrival: float


_Key = tuple[int, int]  # (sequence epoch, seq or unwrapped timestamp)


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
        max_skew: float = MAX_SKEW_S,
        max_seq_gap: int = 1000,
        skip_older: bool = True,
    ) -> None:
        if max_frames < 1 or clock_rate <= 0 or not 0 <= min_delay <= max_delay:
            raise ValueError("bad jitter buffer parameters")
        if max_skew <= 0 or window <= 0 or max_seq_gap < 1:
            raise ValueError("bad jitter buffer parameters")
        self.clock_rate = clock_rate
        self.max_delay = max_delay
        self.min_delay = min_delay
        self._configured = (min_delay, max_delay)
        self.jitter_factor = jitter_factor
        self.max_frames = max_frames
        self.window = window
        self.max_skew = max_skew
        self.max_seq_gap = max_seq_gap
        self.skip_older = skip_older
        self._frames: dict[_Key, _Entry[T]] = {}
        # Order: frames are keyed (epoch, seq) or (epoch, unwrapped ts); a new epoch orders
        # everything after it above everything before it.
        self._epoch = 0
        self._played: _Key | None = None
        self._max_seq: int | None = None
        # Timing, on the current media timeline.
        self._last_ts: int | None = None  # 32-bit ts of the newest frame of the timeline
        self._last_ext = 0  # its unwrapped value
        self._last_arrival = 0.0
        self._jitter_ext: int | None = None  # the newest frame in the jitter estimate
        self._transits: deque[tuple[float, float]] = deque()  # (arrival, transit), min-queue
        self._jitter = 0.0  # seconds
        self._c = dict.fromkeys(
            (
                "pushed",
                "played",
                "late",
                "duplicates",
                "skipped",
                "overflow",
                "lost",
                "resets",
                "lagging",
            ),
            0,
        )

    @property
    def jitter_s(self) -> float:
        return self._jitter

    @property
    def overflows(self) -> int:
        """Frames pushed out by ``max_frames`` so far (``stats.overflow``, without building
        the stats)."""
        return self._c["overflow"]

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

    def _new_epoch(self) -> None:
        """Order afresh: every frame from now on comes after every frame before."""
        self._epoch += 1
        self._max_seq = None

    def _new_timeline(self, why: str, seconds: float, ordered_by_ts: bool) -> None:
        """Media time disagrees with arrival time: frames waiting play at once, in order, and
        timing starts again from the next frame (the path's jitter stays what it was)."""
        logger.info("media timestamp %s %.3f s: new playout timeline", why, seconds)
        self._c["resets"] += 1
        for entry in self._frames.values():
            entry.media = None
        self._last_ts = None
        self._jitter_ext = None
        self._transits.clear()
        if ordered_by_ts:
            self._new_epoch()

    def _base(self) -> float | None:
        """The best transit of the window (seconds), None on a fresh timeline."""
        return self._transits[0][1] if self._transits else None

    def _unwrap(self, ts: int, now: float, ordered_by_ts: bool) -> int:
        """``ts`` on the unwrapped timeline; a new timeline first when it disagrees with
        arrival time by more than ``max_skew`` (see the module docstring)."""
        if self._last_ts is None:
            return ts
        ext = self._last_ext + ts_diff(ts, self._last_ts)
        media = ext / self.clock_rate
        base = self._base()
        behind = (self._last_ext - ext) / self.clock_rate
        if base is not None and (now - media) - base < -self.max_skew:
            self._new_timeline("ran ahead of arrival by", base - (now - media), ordered_by_ts)
            return ts
        if behind > self.max_skew:
            self._new_timeline("stepped back", behind, ordered_by_ts)
            return ts
        return ext

    def _refused(self, key: _Key) -> bool:
        """Count and refuse a frame already played or buffered, or older than the last one
        played."""
        played = self._played
        if key in self._frames or key == played:
            self._c["duplicates"] += 1
            return True
        if played is not None and key < played:
            self._c["late"] += 1
            return True
        return False

    def _count_seq(self, seq: int) -> None:
        """Count frames skipped by the sender's frame counter."""
        last = self._max_seq
        if last is None:
            self._max_seq = seq
        elif seq > last:
            self._c["lost"] += seq - last - 1
            self._max_seq = seq
        elif self._c["lost"] > 0:
            self._c["lost"] -= 1  # a reordered frame that was counted lost arrived after all

    def push(
        self, item: T, ts: int | None, now: float, seq: int | None = None, *, repaired: bool = False
    ) -> bool:
        """Offer a complete frame; False if it was dropped (``late`` or ``duplicates``).
        ``ts``: 32-bit media timestamp at ``clock_rate`` (None: play on arrival); ``now``:
        arrival time in seconds; ``seq``: the sender's frame counter, if it has one. A
        ``repaired`` frame (some packet came by retransmission) is played but does not enter
        the jitter and transit estimates: its delay is the repair's, not the path's
        (libwebrtc's jitter estimator skips frames delayed by retransmission the same way)."""
        ts = int(now * self.clock_rate) & _TS_MASK if ts is None else ts & _TS_MASK
        ordered_by_ts = seq is None
        if seq is not None:
            last = self._max_seq
            if last is not None and abs(seq - last) > self.max_seq_gap:
                logger.info("frame counter jumped %d -> %d: a new sequence", last, seq)
                self._c["resets"] += 1
                self._new_epoch()
            if self._refused((self._epoch, seq)):
                return False
        ext = self._unwrap(ts, now, ordered_by_ts)
        key = (self._epoch, ext if seq is None else seq)
        if ordered_by_ts and self._refused(key):
            return False
        # A frame the sender numbered after every other one so far.
        newest = seq is not None and (self._max_seq is None or seq > self._max_seq)
        if seq is not None:
            self._count_seq(seq)
        self._c["pushed"] += 1
        media = ext / self.clock_rate
        transit = now - media
        q = self._transits
        if q and transit - q[0][1] > self.max_skew:
            self._c["lagging"] += 1
        if self._last_ts is None or ext > self._last_ext:
            # The timeline follows every frame; the jitter estimate only unrepaired ones.
            if not repaired or not q:
                if self._jitter_ext is not None and ext > self._jitter_ext:
                    d = (now - self._last_arrival) - (ext - self._jitter_ext) / self.clock_rate
                    self._jitter += (abs(d) - self._jitter) / 16
                self._jitter_ext, self._last_arrival = ext, now
            self._last_ts, self._last_ext = ts, ext
        elif newest:
            # The sender's newest frame, but its media time stood still or went back: the
            # frames around it say nothing about the path (a one-second clock would read as
            # jitter at each tick), so the next jitter sample waits for two frames that advance.
            self._jitter_ext = None
        if not repaired or not q:
            # Windowed minimum of transit, as a monotonic queue.
            while q and q[-1][1] >= transit:
                q.pop()
            q.append((now, transit))
            while q[0][0] < now - self.window:
                q.popleft()
        self._frames[key] = _Entry(item, media, now)
        if len(self._frames) > self.max_frames:
            del self._frames[min(self._frames)]
            self._c["overflow"] += 1
        return True

    def _deadline(self, entry: _Entry[T], base: float | None) -> float:
        if entry.media is None or base is None:
            return entry.arrival
        # Never later than arrival + max_delay, even if the best-case transit moved meanwhile.
        target = max(entry.arrival, entry.media + base + self.delay_s)
        return min(target, entry.arrival + self.max_delay)

    def next_due(self, now: float) -> float | None:
        """Seconds until the next frame is due (0.0 if one is due now); None when empty."""
        if not self._frames:
            return None
        base = self._base()
        first = min(self._deadline(e, base) for e in self._frames.values())
        return max(first - now, 0.0)

    def pop(self, now: float) -> T | None:
        """The newest frame whose playout time has come, older waiting frames dropped; without
        ``skip_older``, the oldest due frame (frames keep their order)."""
        if not self._frames:
            return None
        base = self._base()
        due = [k for k, e in self._frames.items() if self._deadline(e, base) <= now]
        if not due:
            return None
        if not self.skip_older:
            chosen = min(due)
        else:
            chosen = max(due)
            older = [k for k in self._frames if k < chosen]
            for k in older:
                del self._frames[k]
            self._c["skipped"] += len(older)
        self._c["played"] += 1
        self._played = chosen
        return self._frames.pop(chosen).item
