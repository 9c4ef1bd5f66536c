"""The adaptation ladder of a codec steered by quality, not bitrate (JPEG): to meet a target
bitrate it steps down quality, then resolution, then frame rate, and back up when the link
allows. Pure: times and sizes are passed in.

API::

    @dataclass(frozen=True, slots=True)
    class Rung: quality: int; scale: float; fps_divisor: int
    class QualityLadder:
        def __init__(self, top_quality: int) -> None
        def set_target(self, bps: int | None) -> None
        def on_frame(self, nbytes: int, now: float, fps: float) -> None   # an encoded frame
        def take(self, frame_index: int) -> bool   # whether to encode this captured frame
        rung: Rung; index: int; reason: str; measured_bps: float

The measured rate is an exponential average of bytes per encoded frame times the frames per
second actually encoded. Each rung's cost relative to another is predicted from a size model
(pixels x a JPEG size-versus-quality curve / frames skipped), calibrated by what the current
rung measures. When the measured rate exceeds the target by DOWN_MARGIN (for DOWN_HOLD_S, or at
once beyond twice the target) the ladder jumps straight to the best rung predicted to fit under
DOWN_FIT of the target, so an 11 Mbit/s start meets a 2 Mbit/s link in one step, not six. It
climbs one rung at a time, when that rung is predicted to fit under UP_FIT of the target, and
not sooner than UP_HOLD_S after the last change (no oscillation). The rungs are ordered so each
costs roughly 0.5-0.7x the one above: quality first (cheapest in what the eye sees), then
resolution, then frame rate (the most visible).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

DOWN_MARGIN = 1.05
DOWN_HOLD_S = 0.25
DOWN_FIT = 0.9
UP_FIT = 0.75
UP_HOLD_S = 1.5
SMOOTHING = 0.2
# JPEG size relative to quality 70 (libjpeg-turbo, 4:2:0, camera-like pictures), interpolated.
_QUALITY_SIZE = ((10, 0.3), (30, 0.5), (50, 0.72), (70, 1.0), (85, 1.5), (95, 2.6), (100, 4.0))


def quality_size(quality: int) -> float:
    """The size of a JPEG at ``quality`` relative to one at 70 (a model, within ~20 %)."""
    q = min(max(quality, 1), 100)
    for (q0, s0), (q1, s1) in itertools.pairwise(_QUALITY_SIZE):
        if q <= q1:
            return s0 + (s1 - s0) * max(q - q0, 0) / (q1 - q0)
    return _QUALITY_SIZE[-1][1]


@dataclass(frozen=True, slots=True)
class Rung:
    quality: int  # JPEG-style 1-100
    scale: float  # of the preset's resolution, each side
    fps_divisor: float  # encode one captured frame in this many (1.5: two in three)


def _rungs(top_quality: int) -> tuple[Rung, ...]:
    q = top_quality
    return (
        Rung(q, 1.0, 1),
        Rung(min(q, 50), 1.0, 1),
        Rung(min(q, 50), 0.75, 1),
        Rung(min(q, 45), 0.625, 1),
        Rung(min(q, 45), 0.5, 1),
        Rung(min(q, 40), 0.5, 1.25),
        Rung(min(q, 40), 0.5, 1.5),
        Rung(min(q, 40), 0.5, 2),
        Rung(min(q, 35), 0.375, 2),
        Rung(min(q, 30), 0.25, 3),
    )


class QualityLadder:
    def __init__(self, top_quality: int) -> None:
        self.rungs = _rungs(top_quality)
        self.index = 0
        self.reason = "top"
        self.target_bps: int | None = None
        self.measured_bps = 0.0
        self._bytes_per_frame: float | None = None
        self._changed = 0.0
        self._over_since: float | None = None

    @property
    def rung(self) -> Rung:
        return self.rungs[self.index]

    @staticmethod
    def _cost(r: Rung) -> float:
        return r.scale * r.scale * quality_size(r.quality) / r.fps_divisor

    def predicted_bps(self, index: int) -> float:
        """The rate rung ``index`` would take, from what the current rung measures."""
        return self.measured_bps * self._cost(self.rungs[index]) / self._cost(self.rung)

    def set_target(self, bps: int | None) -> None:
        self.target_bps = bps

    def take(self, frame_index: int) -> bool:
        """Whether the ``frame_index``-th captured frame is encoded at this rung's frame rate."""
        div = self.rung.fps_divisor
        return int(frame_index / div) != int((frame_index - 1) / div)

    def _move(self, step: int, now: float, why: str) -> None:
        self.index = min(max(self.index + step, 0), len(self.rungs) - 1)
        self._reset(now, why)

    def _reset(self, now: float, why: str) -> None:
        self._changed = now
        self._over_since = None
        self._bytes_per_frame = None  # a new rung: measure afresh
        self.reason = why

    def on_frame(self, nbytes: int, now: float, fps: float) -> None:
        """An encoded frame of ``nbytes`` at ``now``; ``fps``: the capture rate (preset)."""
        bpf = self._bytes_per_frame
        self._bytes_per_frame = nbytes if bpf is None else bpf + SMOOTHING * (nbytes - bpf)
        self.measured_bps = self._bytes_per_frame * 8 * fps / self.rung.fps_divisor
        target = self.target_bps
        if target is None:
            return
        if self.measured_bps > target * DOWN_MARGIN and self.index < len(self.rungs) - 1:
            if self._over_since is None:
                self._over_since = now
            if now - self._over_since >= DOWN_HOLD_S or self.measured_bps > 2 * target:
                best = next(
                    (
                        i
                        for i in range(self.index + 1, len(self.rungs))
                        if self.predicted_bps(i) <= target * DOWN_FIT
                    ),
                    len(self.rungs) - 1,
                )
                self.index = best
                self._reset(now, "bandwidth")
            return
        self._over_since = None
        if (
            self.index > 0
            and self.predicted_bps(self.index - 1) < target * UP_FIT
            and now - self._changed >= UP_HOLD_S
        ):
            self._move(-1, now, "recovered" if self.index > 1 else "top")
