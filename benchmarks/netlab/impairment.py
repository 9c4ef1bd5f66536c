"""The impairment model, without I/O: packets in with a time, packets out when they are due.

:class:`ImpairmentCore` holds both directions of the path. ``submit(direction, packet, now)``
decides a packet's fate at once (lost, or released at some time, maybe twice) and
``release_due(now)`` hands back the packets whose time has come, in release order. The impairer
process is a thin loop around it (``impairer.py``); tests drive it with made-up times.

Guarantees:
- Time is passed in (seconds on any monotonic clock); nothing here reads a clock or does I/O.
- Deterministic: each direction has its own generator seeded from (seed, direction), and every
  packet consumes exactly four uniform draws (loss, jitter, hold-back, duplicate) whatever the
  settings, so packet *i*'s fate depends only on the seed, *i* and the impairment in force, not
  on the other direction's traffic.
- No reordering unless asked: a packet that is not held back is never released before an
  earlier packet of its direction that was not held back (each release time is at least the
  previous one, as on a FIFO link; with jitter at high packet rates this skews delays upward).
  Packets released at the same time keep their submission order.
- A cut drops every packet of its direction that is submitted, or scheduled for release,
  within [start, end).
- Bounded: at most ``max_pending`` packets wait; more are dropped and counted as ``overflow``.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

from benchmarks.netlab.profiles import BOTH, Direction, Impairment, Jitter

MAX_PENDING = 20_000  # ~20 s of a 1000 packet/s flow
_STANDARD_NORMAL = NormalDist()
_TINY = 1e-12


@dataclass(frozen=True, slots=True)
class DirectionStats:
    """Counters of one direction since the start (packets unless said otherwise)."""

    submitted: int = 0
    lost: int = 0  # random loss
    cut: int = 0  # dropped by a cut, on arrival or at release
    overflow: int = 0  # dropped because max_pending packets were waiting
    held_back: int = 0  # reordered: released reorder_ms late
    duplicated: int = 0
    released: int = 0  # duplicates included
    bytes_released: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class _DirectionState:
    __slots__ = ("cut_end", "cut_start", "floor", "impairment", "rng", "stats")

    def __init__(self, seed: int, direction: Direction, impairment: Impairment) -> None:
        self.impairment = impairment
        # String seeds go through SHA-512 in ``random``: stable across runs and platforms.
        self.rng = random.Random(f"vclab:{seed}:{direction.value}")
        self.floor = float("-inf")  # the latest release time of a packet not held back
        self.cut_start = self.cut_end = float("-inf")
        self.stats: dict[str, int] = DirectionStats().to_dict()

    def in_cut(self, t: float) -> bool:
        return self.cut_start <= t < self.cut_end


class ImpairmentCore:
    """Both directions of the impaired path (see the module docstring for the guarantees)."""

    def __init__(self, seed: int = 0, *, max_pending: int = MAX_PENDING) -> None:
        self.seed = seed
        self.max_pending = max_pending
        self._dirs = {d: _DirectionState(seed, d, Impairment()) for d in BOTH}
        # (release time, submission counter, direction, packet): the counter keeps FIFO order
        # among equal times and spares comparing packets.
        self._heap: list[tuple[float, int, Direction, bytes]] = []
        self._counter = 0

    def configure(self, direction: Direction, impairment: Impairment) -> None:
        """Applies to packets submitted from now on (waiting ones keep their times)."""
        self._dirs[direction].impairment = impairment

    def impairment(self, direction: Direction) -> Impairment:
        return self._dirs[direction].impairment

    def cut(self, direction: Direction, start: float, end: float) -> None:
        """Replaces the direction's cut window with [start, end)."""
        if end < start:
            raise ValueError(f"a cut cannot end ({end}) before it starts ({start})")
        state = self._dirs[direction]
        state.cut_start, state.cut_end = start, end

    def submit(self, direction: Direction, packet: bytes, now: float) -> None:
        state = self._dirs[direction]
        imp = state.impairment
        stats = state.stats
        stats["submitted"] += 1
        rng = state.rng
        u_loss, u_jitter, u_hold, u_dup = rng.random(), rng.random(), rng.random(), rng.random()
        if state.in_cut(now):
            stats["cut"] += 1
            return
        if u_loss < imp.loss:
            stats["lost"] += 1
            return
        delay_s = _delay_ms(imp, u_jitter) / 1000.0
        if u_hold < imp.reorder:
            stats["held_back"] += 1
            release = now + delay_s + imp.reorder_ms / 1000.0
        else:
            release = max(now + delay_s, state.floor)
            state.floor = release
        copies = 2 if u_dup < imp.duplicate else 1
        if copies == 2:
            stats["duplicated"] += 1
        for _ in range(copies):
            if len(self._heap) >= self.max_pending:
                stats["overflow"] += 1
                continue
            heapq.heappush(self._heap, (release, self._counter, direction, packet))
            self._counter += 1

    def next_release(self) -> float | None:
        """When the earliest waiting packet is due (None when nothing waits)."""
        return self._heap[0][0] if self._heap else None

    @property
    def pending(self) -> int:
        return len(self._heap)

    def release_due(self, now: float) -> list[tuple[Direction, bytes]]:
        """The packets due at ``now``, in release order; those whose release time falls in
        their direction's cut are dropped instead."""
        out: list[tuple[Direction, bytes]] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            release, _, direction, packet = heapq.heappop(heap)
            state = self._dirs[direction]
            if state.in_cut(release):
                state.stats["cut"] += 1
                continue
            state.stats["released"] += 1
            state.stats["bytes_released"] += len(packet)
            out.append((direction, packet))
        return out

    def stats(self, direction: Direction) -> DirectionStats:
        return DirectionStats(**self._dirs[direction].stats)

    def to_dict(self) -> dict[str, Any]:
        return {d.value: self.stats(d).to_dict() for d in BOTH} | {"pending": self.pending}


def _delay_ms(imp: Impairment, u: float) -> float:
    if imp.jitter_ms == 0:
        return imp.delay_ms
    if imp.distribution is Jitter.NORMAL:
        # The inverse CDF keeps the draw count fixed at one (gauss() may take two).
        z = _STANDARD_NORMAL.inv_cdf(min(max(u, _TINY), 1.0 - _TINY))
        return max(0.0, imp.delay_ms + imp.jitter_ms * z)
    return max(0.0, imp.delay_ms + imp.jitter_ms * (2.0 * u - 1.0))
