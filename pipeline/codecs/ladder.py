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
second actually encoded. Down a rung when it exceeds the target by DOWN_MARGIN for DOWN_HOLD_S;
up a rung when even the next rung up (about UP_RATIO times more) would fit under the target,
and not sooner than UP_HOLD_S after the last change (no oscillation between two rungs). The
rungs are ordered so each costs roughly 0.5-0.7x the one above: quality first (cheapest in
what the eye sees), then resolution, then frame rate (the most visible).
"""

from __future__ import annotations

from dataclasses import dataclass

DOWN_MARGIN = 1.05
DOWN_HOLD_S = 0.25
UP_RATIO = 1.8
UP_HOLD_S = 3.0
SMOOTHING = 0.2


@dataclass(frozen=True, slots=True)
class Rung:
    quality: int  # JPEG-style 1-100
    scale: float  # of the preset's resolution, each side
    fps_divisor: int  # encode one captured frame in this many


def _rungs(top_quality: int) -> tuple[Rung, ...]:
    q = top_quality
    return (
        Rung(q, 1.0, 1),
        Rung(min(q, 50), 1.0, 1),
        Rung(min(q, 50), 0.75, 1),
        Rung(min(q, 45), 0.5, 1),
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

    def set_target(self, bps: int | None) -> None:
        self.target_bps = bps

    def take(self, frame_index: int) -> bool:
        """Whether the ``frame_index``-th captured frame is encoded at this rung's frame rate."""
        return frame_index % self.rung.fps_divisor == 0

    def _move(self, step: int, now: float, why: str) -> None:
        self.index = min(max(self.index + step, 0), len(self.rungs) - 1)
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
            elif now - self._over_since >= DOWN_HOLD_S:
                self._move(+1, now, "bandwidth")
            return
        self._over_since = None
        if (
            self.index > 0
            and self.measured_bps * UP_RATIO < target
            and now - self._changed >= UP_HOLD_S
        ):
            self._move(-1, now, "recovered" if self.index > 1 else "top")
