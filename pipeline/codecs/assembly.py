"""The frames a depacketizer is still assembling, keyed by RTP timestamp. Pure: ``now`` is
passed in.

API::

    class FrameAssembly(Generic[P]):      # P: any partial-frame object with ``last_arrival``
        def __init__(self, counters: dict[str, int], *, timeout: float, max_partial: int,
                     on_drop: Callable[[], None] | None = None) -> None
        frames: dict[int, P]              # RTP timestamp -> the frame being assembled
        last_done: int | None             # the newest frame completed or dropped (or the first
                                          # of a new timeline, RESET_TICKS or more behind)
        def finished(self, ts: int) -> bool        # ts at or behind last_done: counted, drop it
        def open(self, ts, now, new: Callable[[float], P]) -> P
        def drop(self, ts: int, reason: str) -> None
        def complete(self, ts: int) -> P           # remove it, mark it done
        def take(self, ts: int) -> P               # remove it, not done yet (held back)
        def older(self, ts: int) -> list[int]      # open frames older than ts
        def mark_done(self, ts: int) -> None
        def expire(self, now: float) -> int
        def reset(self) -> None

Shared by the payload formats (RFC 2435 JPEG, RFC 6184 H.264): what a frame is made of is
theirs; which frames are open, how many, for how long, and which timestamps are already past is
this class's. Rules: a timestamp at or up to RESET_TICKS behind the last frame done is a
``duplicates`` (equal) or ``late`` (behind) packet; further behind it is a new timeline. A new
frame first expires the stale ones (no packet for ``timeout`` s), and when ``max_partial`` are
open the oldest is dropped. Every drop is counted under its reason in ``counters`` (the
depacketizer's own statistics) and reported to ``on_drop``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from pipeline.wire.rtp import ts_diff

# 1 s at 90 kHz: further behind is a new timeline, not a late packet. Bounds how long one frame
# stamped far ahead (a peer's clock jump, or a forged but authenticated packet) can make the real
# frames after it look late: at most this long. A real packet is never this late: NACK asks for
# repairs for at most nack.MAX_AGE_S (0.5 s), and the in-order wait gives up after 0.5 s.
RESET_TICKS = 90000


class _Partial(Protocol):
    last_arrival: float


P = TypeVar("P", bound=_Partial)


class FrameAssembly(Generic[P]):
    def __init__(
        self,
        counters: dict[str, int],
        *,
        timeout: float,
        max_partial: int,
        on_drop: Callable[[], None] | None = None,
    ) -> None:
        self.frames: dict[int, P] = {}
        self.last_done: int | None = None
        self.timeout = timeout
        self.max_partial = max_partial
        self._c = counters
        self._on_drop = on_drop

    def reset(self) -> None:
        self.frames.clear()
        self.last_done = None

    def finished(self, ts: int) -> bool:
        """Whether ``ts`` belongs to a frame already completed or dropped (counted)."""
        if self.last_done is None:
            return False
        behind = ts_diff(ts, self.last_done)
        if -RESET_TICKS < behind <= 0:
            self._c["duplicates" if behind == 0 else "late"] += 1
            return True
        return False

    def open(self, ts: int, now: float, new: Callable[[float], P]) -> P:
        """The frame of ``ts``, opened with ``new(now)`` if it is not open yet."""
        frame = self.frames.get(ts)
        if frame is None:
            # Stale frames go before a new one opens (not per packet: the hot path).
            self.expire(now)
            if len(self.frames) >= self.max_partial:
                self.drop(min(self.frames, key=lambda t: ts_diff(t, ts)), "incomplete")
            frame = self.frames[ts] = new(now)
        return frame

    def drop(self, ts: int, reason: str) -> None:
        if self.frames.pop(ts, None) is not None:
            self._c[reason] += 1
            if self._on_drop is not None:
                self._on_drop()
        self.mark_done(ts)

    def complete(self, ts: int) -> P:
        """Remove a finished frame and mark its timestamp done."""
        frame = self.frames.pop(ts)
        self.mark_done(ts)
        return frame

    def take(self, ts: int) -> P:
        """Remove a finished frame that is not done yet (it waits to be released in order:
        older frames' packets must still be accepted meanwhile)."""
        return self.frames.pop(ts)

    def older(self, ts: int) -> list[int]:
        return [t for t in self.frames if ts_diff(t, ts) < 0]

    def mark_done(self, ts: int) -> None:
        """``ts`` is done: the newest so far, or the start of a new timeline (more than
        RESET_TICKS behind: a peer's clock stepped back, or the frame before was stamped far
        ahead). Without the second case the old timeline would catch up with the new one
        RESET_TICKS later and its frames would turn "late" then."""
        behind = None if self.last_done is None else ts_diff(ts, self.last_done)
        if behind is None or behind > 0 or behind <= -RESET_TICKS:
            self.last_done = ts

    def expire(self, now: float) -> int:
        """Drop frames that got no packet for ``timeout`` seconds; how many."""
        stale = [t for t, f in self.frames.items() if now - f.last_arrival > self.timeout]
        for t in stale:
            self.drop(t, "incomplete")
        return len(stale)
