"""Playing a video file at its own frame rate: which file frame is due at a capture time.

API::

    class FileTimeline(fps: float, *, max_lag_s: float = 1.0)
        .stamp(pos_ms: float) -> float     # a decoded frame's file position -> media time (s)
        .rewound() -> None                 # the file looped: later stamps continue after the last
        .due(media_s: float, now_ns: int) -> bool   # whether that frame should be shown by now
        .lagging(media_s: float, now_ns: int) -> bool
        .resync(media_s: float, now_ns: int) -> None
        .bad_timestamps: int               # frames whose position did not advance (guessed)

Pure: no I/O, no clock (capture times are passed in as ``time.monotonic_ns()`` values).

The file source reads one frame ahead: it decodes frames while the next one is due, so it shows
the newest frame whose media time has been reached (dropping the ones in between when the file
is faster than the preset) and shows the same frame again when the next is not yet due (the
file is slower). A 5 fps file at a 15 fps preset gives each file frame three times; a 60 fps
file gives every fourth frame. Media time is continuous across loops of the file.

Guarantees:
- Media times returned by ``stamp`` strictly increase, whatever the container says: a
  position that is missing, negative, beyond a day, not finite or not after the previous one
  is replaced by the previous time plus one nominal frame period (counted in
  ``bad_timestamps``).
- The first frame asked about with ``due`` is due at once and anchors media time 0 of the
  timeline to that capture time.
- The nominal period is ``1 / fps`` for 0.1 <= fps <= 1000 (what containers report for real
  files) and 1/30 s otherwise.
"""

from __future__ import annotations

import math

_FALLBACK_FPS = 30.0
_MIN_FPS = 0.1
_MAX_FPS = 1000.0
# A frame stamped within this much of the capture time is due: capture ticks are integer
# nanoseconds of a float period, so exact equality would be luck.
_EPSILON_S = 0.001
# A position beyond a day is garbage from the container (and would cost float precision).
_MAX_POSITION_MS = 86_400_000.0


class FileTimeline:
    """Maps capture times onto a file's media time (see the module docstring)."""

    def __init__(self, fps: float, *, max_lag_s: float = 1.0) -> None:
        ok = math.isfinite(fps) and _MIN_FPS <= fps <= _MAX_FPS
        self.period_s = 1.0 / (fps if ok else _FALLBACK_FPS)
        self.max_lag_s = max_lag_s
        self.bad_timestamps = 0
        self._origin_ns: int | None = None  # capture time of media time 0
        self._loop_offset_s = 0.0
        self._last_s: float | None = None

    def stamp(self, pos_ms: float) -> float:
        """Media time in seconds of a frame at file position ``pos_ms`` (CAP_PROP_POS_MSEC)."""
        sane = 0.0 <= pos_ms <= _MAX_POSITION_MS  # also False for NaN
        candidate = self._loop_offset_s + pos_ms / 1000.0 if sane else math.nan
        last = self._last_s
        if last is not None and not candidate > last:  # also catches NaN
            self.bad_timestamps += 1
            candidate = last + self.period_s
        elif last is None and not math.isfinite(candidate):
            self.bad_timestamps += 1
            candidate = 0.0
        self._last_s = candidate
        return candidate

    def rewound(self) -> None:
        """The file starts again: its position 0 continues one period after the last frame."""
        if self._last_s is not None:
            self._loop_offset_s = self._last_s + self.period_s

    def _media_now(self, now_ns: int) -> float:
        assert self._origin_ns is not None
        return (now_ns - self._origin_ns) / 1e9

    def due(self, media_s: float, now_ns: int) -> bool:
        """Whether the frame at ``media_s`` should be on screen at capture time ``now_ns``."""
        if self._origin_ns is None:
            self.resync(media_s, now_ns)
            return True
        return media_s <= self._media_now(now_ns) + _EPSILON_S

    def lagging(self, media_s: float, now_ns: int) -> bool:
        """Whether the frame at ``media_s`` is more than ``max_lag_s`` behind capture time."""
        return self._origin_ns is not None and self._media_now(now_ns) - media_s > self.max_lag_s

    def resync(self, media_s: float, now_ns: int) -> None:
        """Make ``media_s`` the media time of capture time ``now_ns`` (a jump, not a burst)."""
        self._origin_ns = now_ns - round(media_s * 1e9)
