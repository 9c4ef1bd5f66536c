"""The audio jitter buffer: RTP packets in any order in, one playout decision per frame out.

API::

    class PlayoutKind(StrEnum): FRAME, FEC, CONCEAL, SILENCE
    @dataclass(frozen=True, slots=True)
    class Playout: kind; payload: bytes | None; seq: int | None   # seq: the frame it stands for
        timestamp: int | None                   # FRAME: the packet's RTP timestamp
    @dataclass(frozen=True, slots=True)
    class AudioJitterStats: received; played; late; lost; concealed; fec; duplicates; overflow;
        shrunk; flushed; underruns; resyncs; stretched; jitter_ms; target_frames; extra_frames;
        level_frames; buffered
        discarded -> int         # late + duplicates + overflow + shrunk + flushed
    class AudioJitterBuffer:
        def __init__(self, clock_rate=48000, frame_samples=960, *, min_frames=1,
                     max_frames=10, jitter_factor=3.0, window=0.5, capacity=50,
                     stall_frames=5) -> None                      # LocalProtocolError
        def push(self, seq, timestamp, payload, now) -> None     # never raises on peer data
        def pull(self, now) -> Playout                           # once per frame period
        extra_frames: int          # added to the target (lip sync), 0..MAX_EXTRA_FRAMES
        stats -> AudioJitterStats; target_frames -> int; level -> int; playing -> bool

The playout clock (the sound card, or a timer) calls ``pull`` once per frame (20 ms); ``push``
takes each packet as it arrives. Time is passed in (seconds, any monotonic origin).

**Sizing.** The interarrival jitter J is estimated as RFC 3550 A.8 does (J += (|D| - J) / 16,
D the change in transit time, in RTP clock units) over every packet. The target level is
``1 + ceil(jitter_factor * J / frame - 0.1)`` frames (the frame being played plus cover for
``jitter_factor`` x J of lateness), within [min_frames, max_frames]. Playout starts (and
restarts after a stall) when that many frames are buffered.

**Each pull:** the expected frame if it is here (FRAME); else, if a later one is here, the
expected one is lost: FEC when the next packet is here (its in-band FEC carries the lost
frame, RFC 6716 2.1.7), else CONCEAL, and playout moves on; else (nothing buffered) an
underrun: CONCEAL without moving on, which lets the level grow by one frame (the "expand" of a
time-scaler); after ``stall_frames`` underruns in a row playout stops and returns SILENCE until
it has rebuffered to the target.

**Added delay (lip sync).** ``extra_frames`` (set by the audio path from
``pipeline.audio.sync``) is added to the target. While the level stays under the target by more
than a frame, one frame per window is stretched: the decision is CONCEAL without moving on
(``stretched``; the decoder's concealment continues the sound), so the delay grows by 20 ms a
window. Setting it back lets the rule below shrink the delay again. A start or a restart after
a stall waits for the target without the extra (sound sooner; the extra grows back).

**No growth of delay.** The lowest level seen over each ``window`` seconds is delay that was
never needed; when it exceeds the target the oldest frames are dropped (``shrunk``): one per
window, or all of the excess at once when it is over 4 frames (after a burst). So the delay
comes back to target within a few windows and cannot drift over a call. We drop whole 20 ms
frames rather than time-stretch: simpler, and one frame in a window is hardly heard.

**Order and bad input.** Packets are ordered by their 16-bit sequence number, extended as in
RFC 3550 A.1; within the buffer's depth reordering costs nothing. A packet for a frame already
played or concealed is ``late``; a repeated one a ``duplicate``; beyond ``capacity`` the
oldest is dropped (``overflow``). A jump of more than ``capacity`` frames ahead, or more than
``capacity`` late packets in a row (a restarted sender), resyncs on the new numbers
(``flushed`` counts what that threw away).

Guarantees: memory is bounded by ``capacity`` packets; ``push`` and ``pull`` are O(log n)
apart from the O(n) ``min`` after a loss; every packet received ends up counted exactly once:
``received == played + discarded + buffered``.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from pipeline.errors import LocalProtocolError

BURST_FRAMES = 4  # an excess over this many frames is dropped at once
MAX_EXTRA_FRAMES = 20  # 400 ms: the most lip sync may add
# Cover under a tenth of a frame (0.7 ms of jitter at factor 3, 20 ms) adds no frame: clock
# rounding and scheduling noise on a clean link must not cost 20 ms of delay.
DEAD_ZONE = 0.1


class PlayoutKind(enum.StrEnum):
    FRAME = "frame"  # decode ``payload``
    FEC = "fec"  # rebuild the lost frame from ``payload`` (the next packet) with its FEC
    CONCEAL = "conceal"  # the decoder's concealment for one frame
    SILENCE = "silence"  # not playing (buffering, or stalled): play silence


@dataclass(frozen=True, slots=True)
class Playout:
    """One frame period's decision."""

    kind: PlayoutKind
    payload: bytes | None = None
    seq: int | None = None  # the 16-bit sequence number of the frame this stands for
    timestamp: int | None = None  # FRAME: the RTP timestamp of the packet decoded


@dataclass(frozen=True, slots=True)
class AudioJitterStats:
    """Counters since the start (packets or frames) and the current sizing."""

    received: int = 0
    played: int = 0  # FRAME decisions
    late: int = 0  # arrived after their frame was played or concealed
    lost: int = 0  # frames never received in time (CONCEAL or FEC stood for them)
    concealed: int = 0  # CONCEAL decisions (losses and underruns)
    fec: int = 0  # FEC decisions
    duplicates: int = 0
    overflow: int = 0  # dropped: buffer full
    shrunk: int = 0  # dropped to bring the delay back to target
    flushed: int = 0  # dropped by a resync
    underruns: int = 0
    resyncs: int = 0
    stretched: int = 0  # frames of concealment inserted to grow the delay (lip sync)
    jitter_ms: float = 0.0  # RFC 3550 A.8 estimate
    target_frames: int = 0
    extra_frames: int = 0  # of the target, added for lip sync
    level_frames: int = 0
    buffered: int = 0  # packets held now

    @property
    def discarded(self) -> int:
        return self.late + self.duplicates + self.overflow + self.shrunk + self.flushed


def _signed16(value: int) -> int:
    return ((value + 0x8000) & 0xFFFF) - 0x8000


def _signed32(value: int) -> int:
    return ((value + 0x8000_0000) & 0xFFFF_FFFF) - 0x8000_0000


class AudioJitterBuffer:
    """Pure playout logic for one audio source; see the module docstring for the rules."""

    def __init__(
        self,
        clock_rate: int = 48_000,
        frame_samples: int = 960,
        *,
        min_frames: int = 1,
        max_frames: int = 10,
        jitter_factor: float = 3.0,
        window: float = 0.5,
        capacity: int = 50,
        stall_frames: int = 5,
    ) -> None:
        if clock_rate <= 0 or frame_samples <= 0:
            raise LocalProtocolError("clock_rate and frame_samples must be positive")
        if not 1 <= min_frames <= max_frames < capacity:
            raise LocalProtocolError("need 1 <= min_frames <= max_frames < capacity")
        if jitter_factor < 0 or window <= 0 or stall_frames < 1:
            raise LocalProtocolError("jitter_factor >= 0, window > 0 and stall_frames >= 1")
        self.clock_rate, self.frame_samples = clock_rate, frame_samples
        self.min_frames, self.max_frames = min_frames, max_frames
        self.jitter_factor, self.capacity, self.stall_frames = jitter_factor, capacity, stall_frames
        self._window_pulls = max(1, round(window * clock_rate / frame_samples))
        self._buf: dict[int, tuple[int, bytes]] = {}  # extended seq -> (timestamp, payload)
        self._extra = 0
        self._stretch = False  # the next pull stretches (a CONCEAL without moving on)
        self._top: int | None = None  # highest extended seq seen
        self._next: int | None = None  # extended seq of the next frame to play
        self.playing = False
        self._jitter = 0.0  # RTP clock units
        self._last_transit: int | None = None
        self._underruns_in_row = 0
        self._late_in_row = 0
        self._window_min: int | None = None
        self._window_count = 0
        self._c: dict[str, int] = dict.fromkeys(
            ("received", "played", "late", "lost", "concealed", "fec", "duplicates",
             "overflow", "shrunk", "flushed", "underruns", "resyncs", "stretched"), 0
        )  # fmt: skip

    # -- sizing --------------------------------------------------------------------------

    @property
    def extra_frames(self) -> int:
        return self._extra

    @extra_frames.setter
    def extra_frames(self, frames: int) -> None:
        # The whole target must fit in the buffer with room for jitter.
        room = self.capacity - self.max_frames - 1
        self._extra = max(0, min(MAX_EXTRA_FRAMES, room, frames))

    @property
    def target_frames(self) -> int:
        cover = math.ceil(self.jitter_factor * self._jitter / self.frame_samples - DEAD_ZONE)
        return max(self.min_frames, min(self.max_frames, 1 + cover)) + self._extra

    @property
    def level(self) -> int:
        """Frames from the next to play to the newest buffered (0 when empty)."""
        if not self._buf:
            return 0
        start = self._next if self._next is not None else min(self._buf)
        return max(self._buf) - start + 1

    def _update_jitter(self, timestamp: int, now: float) -> None:
        arrival = int(now * self.clock_rate)
        transit = _signed32(arrival - timestamp)
        if self._last_transit is not None:
            d = abs(_signed32(transit - self._last_transit))
            self._jitter += (d - self._jitter) / 16.0
        self._last_transit = transit

    # -- input ---------------------------------------------------------------------------

    def push(self, seq: int, timestamp: int, payload: bytes, now: float) -> None:
        """Take one packet (16-bit ``seq``, 32-bit RTP ``timestamp``) arriving at ``now``."""
        self._c["received"] += 1
        seq &= 0xFFFF
        if self._top is None:
            ext = seq
        else:
            ext = self._top + _signed16(seq - (self._top & 0xFFFF))
            ahead = ext - (self._next if self._next is not None else self._top)
            if ahead > self.capacity:
                self._resync()
                ext = seq
        if self._next is not None and ext < self._next:
            self._c["late"] += 1
            self._late_in_row += 1
            if self._late_in_row > self.capacity:
                self._resync()
            return
        self._late_in_row = 0
        if ext in self._buf:
            self._c["duplicates"] += 1
            return
        self._update_jitter(timestamp & 0xFFFF_FFFF, now)
        self._buf[ext] = (timestamp & 0xFFFF_FFFF, bytes(payload))
        self._top = ext if self._top is None else max(self._top, ext)
        while len(self._buf) > self.capacity:
            oldest = min(self._buf)
            del self._buf[oldest]
            self._c["overflow"] += 1
            if self._next is not None and oldest >= self._next:
                self._next = oldest + 1

    def _resync(self) -> None:
        self._c["resyncs"] += 1
        self._c["flushed"] += len(self._buf)
        self._buf.clear()
        self._top = self._next = None
        self.playing = False
        self._late_in_row = self._underruns_in_row = 0
        self._last_transit = None
        self._window_min, self._window_count = None, 0

    # -- output --------------------------------------------------------------------------

    def pull(self, now: float) -> Playout:
        """The decision for the frame period starting at ``now``."""
        if not self.playing:
            # (Re)start at the jitter's own target: the lip-sync part grows back by stretching
            # rather than lengthening the silence of a start or a stall.
            if not self._buf or self.level < self.target_frames - self._extra:
                return Playout(PlayoutKind.SILENCE)
            first = min(self._buf)
            if self._next is not None and first > self._next:
                self._c["lost"] += first - self._next  # skipped while stalled
            self._next, self.playing, self._underruns_in_row = first, True, 0
        assert self._next is not None
        self._track_level()
        ext = self._next
        if self._stretch and ext in self._buf:
            self._stretch = False
            self._c["stretched"] += 1
            self._c["concealed"] += 1
            return Playout(PlayoutKind.CONCEAL, None, (ext - 1) & 0xFFFF)
        entry = self._buf.pop(ext, None)
        if entry is not None:
            self._underruns_in_row = 0
            self._next += 1
            self._c["played"] += 1
            return Playout(PlayoutKind.FRAME, entry[1], ext & 0xFFFF, entry[0])
        if self._buf:  # a later frame is here: this one is lost
            self._underruns_in_row = 0
            self._next += 1
            self._c["lost"] += 1
            following = self._buf.get(ext + 1)
            if following is not None:
                self._c["fec"] += 1
                return Playout(PlayoutKind.FEC, following[1], ext & 0xFFFF)
            self._c["concealed"] += 1
            return Playout(PlayoutKind.CONCEAL, None, ext & 0xFFFF)
        self._c["underruns"] += 1
        self._underruns_in_row += 1
        if self._underruns_in_row > self.stall_frames:
            self.playing = False
            return Playout(PlayoutKind.SILENCE)
        self._c["concealed"] += 1
        return Playout(PlayoutKind.CONCEAL, None, ext & 0xFFFF)

    def _track_level(self) -> None:
        level = self.level
        self._window_min = level if self._window_min is None else min(self._window_min, level)
        self._window_count += 1
        if self._window_count < self._window_pulls:
            return
        excess = self._window_min - self.target_frames
        self._window_min, self._window_count = None, 0
        if self._extra and excess < -1:
            self._stretch = True  # grow toward the lip-sync target: one frame this window
            return
        if excess <= 0:
            return
        for _ in range(excess if excess > BURST_FRAMES else 1):
            assert self._next is not None
            if self._buf.pop(self._next, None) is not None:
                self._c["shrunk"] += 1
            else:
                self._c["lost"] += 1
            self._next += 1

    @property
    def stats(self) -> AudioJitterStats:
        return AudioJitterStats(
            **self._c,
            jitter_ms=1000.0 * self._jitter / self.clock_rate,
            target_frames=self.target_frames,
            level_frames=self.level,
            buffered=len(self._buf),
        )
