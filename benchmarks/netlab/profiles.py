"""Named network conditions for the impairment lab: pure data, no I/O.

A :class:`Profile` says what each direction of the path between host A and host B does to
packets: an :class:`Impairment` (loss, delay, jitter, reordering, duplication; applied by the
userspace impairer in the router namespace) and an optional :class:`RateLimit` (a token bucket,
``tc tbf``, on the router's interface toward the receiving host). Timed events change the
conditions mid-run: :class:`RateStep` (a new rate) and :class:`Cut` (nothing passes for a while);
they are played by ``Lab.start_timeline`` at offsets from the moment it is called.

Units: delays are one-way, per direction, in milliseconds (a symmetric 20 ms profile adds 40 ms
to a round trip); rates are bits per second at the IP layer plus the 14-byte Ethernet header, as
``tc`` counts them; event times are seconds from the start of the timeline.

Guarantees:
- Every dataclass is frozen and slotted, and validates itself on construction: a probability
  outside [0, 1], a negative delay, a rate step in a direction without a rate limit, or a
  reorder fraction without a hold-back delay raise ``ValueError`` (a local misuse).
- ``PROFILES`` maps each name to its profile; ``get_profile`` raises ``ValueError`` naming the
  known profiles for an unknown name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import StrEnum


class Direction(StrEnum):
    A_TO_B = "a_to_b"
    B_TO_A = "b_to_a"


BOTH = (Direction.A_TO_B, Direction.B_TO_A)


class Jitter(StrEnum):
    """How a packet's delay varies around ``delay_ms``."""

    UNIFORM = "uniform"  # delay_ms ± jitter_ms, every value equally likely (netem's default)
    NORMAL = "normal"  # standard deviation jitter_ms, truncated at zero delay


def _check_probability(name: str, value: float) -> None:
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")


def _check_non_negative(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class Impairment:
    """What the impairer does to one direction's packets (all off by default).

    ``reorder`` is the fraction of packets held back by an extra ``reorder_ms`` on top of their
    delay, so that later packets overtake them; without it jitter never reorders (a packet is
    never released before the one sent before it, as on a FIFO link).
    """

    loss: float = 0.0
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    distribution: Jitter = Jitter.UNIFORM
    reorder: float = 0.0
    reorder_ms: float = 0.0
    duplicate: float = 0.0

    def __post_init__(self) -> None:
        for name in ("loss", "reorder", "duplicate"):
            _check_probability(name, getattr(self, name))
        for name in ("delay_ms", "jitter_ms", "reorder_ms"):
            _check_non_negative(name, getattr(self, name))
        if self.reorder > 0 and self.reorder_ms <= 0:
            raise ValueError("reorder needs reorder_ms > 0 (how long a packet is held back)")
        if not isinstance(self.distribution, Jitter):
            raise ValueError(f"distribution must be a Jitter, got {self.distribution!r}")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket: ``rate_bps`` with a queue that holds about ``queue_ms`` of traffic.

    Packets that find the queue full are dropped (tail drop), so the queueing delay stays
    bounded by ``queue_ms`` plus one burst.
    """

    rate_bps: int
    queue_ms: float = 100.0

    def __post_init__(self) -> None:
        if self.rate_bps < 8_000:
            raise ValueError(f"rate_bps must be >= 8000, got {self.rate_bps!r}")
        _check_non_negative("queue_ms", self.queue_ms)
        if self.queue_ms < 1.0:
            raise ValueError(f"queue_ms must be >= 1, got {self.queue_ms!r}")

    @property
    def burst_bytes(self) -> int:
        """The bucket size: 5 ms at the rate, at least two full Ethernet frames (tbf cannot
        send a packet larger than its bucket)."""
        return max(2 * 1514, self.rate_bps // 8 * 5 // 1000)


@dataclass(frozen=True, slots=True)
class Link:
    """One direction of the path."""

    impairment: Impairment = field(default_factory=Impairment)
    rate: RateLimit | None = None


@dataclass(frozen=True, slots=True)
class RateStep:
    """At ``at_s`` the direction's rate becomes ``rate_bps`` (its queue length in ms kept)."""

    at_s: float
    rate_bps: int
    direction: Direction = Direction.A_TO_B

    def __post_init__(self) -> None:
        _check_non_negative("at_s", self.at_s)
        RateLimit(self.rate_bps)  # the same bounds as a rate limit


@dataclass(frozen=True, slots=True)
class Cut:
    """From ``at_s`` for ``duration_s`` seconds nothing passes in the given directions
    (packets already in flight in the impairer whose release falls in the cut are lost too)."""

    at_s: float
    duration_s: float
    directions: tuple[Direction, ...] = BOTH

    def __post_init__(self) -> None:
        _check_non_negative("at_s", self.at_s)
        _check_non_negative("duration_s", self.duration_s)
        if not self.directions:
            raise ValueError("a cut needs at least one direction")


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    description: str
    a_to_b: Link = field(default_factory=Link)
    b_to_a: Link = field(default_factory=Link)
    steps: tuple[RateStep, ...] = ()
    cuts: tuple[Cut, ...] = ()

    def __post_init__(self) -> None:
        for step in self.steps:
            if self.link(step.direction).rate is None:
                raise ValueError(
                    f"profile {self.name}: a rate step in {step.direction} needs a starting rate"
                )

    def link(self, direction: Direction) -> Link:
        return self.a_to_b if direction is Direction.A_TO_B else self.b_to_a

    @property
    def timeline_s(self) -> float:
        """When the last timed event is over (0 for a profile without events)."""
        ends = [s.at_s for s in self.steps] + [c.at_s + c.duration_s for c in self.cuts]
        return max(ends, default=0.0)

    @classmethod
    def symmetric(
        cls,
        name: str,
        description: str,
        impairment: Impairment | None = None,
        rate: RateLimit | None = None,
        *,
        steps: tuple[RateStep, ...] = (),
        cuts: tuple[Cut, ...] = (),
    ) -> Profile:
        """The same link both ways; each step is applied to both directions."""
        link = Link(impairment or Impairment(), rate)
        both_steps = tuple(replace(s, direction=d) for s in steps for d in BOTH)
        return cls(name, description, link, link, both_steps, cuts)


MBIT = 1_000_000

CLEAN = Profile.symmetric("clean", "no impairment: the lab's own overhead only")

PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        CLEAN,
        Profile.symmetric("loss1_20ms", "1% loss, 20 ms", Impairment(loss=0.01, delay_ms=20)),
        Profile.symmetric(
            "loss5_reorder",
            "5% loss, 40±10 ms (uniform), 25% of packets held back 20 ms",
            Impairment(loss=0.05, delay_ms=40, jitter_ms=10, reorder=0.25, reorder_ms=20),
        ),
        Profile.symmetric(
            "loss10_jitter",
            "10% loss, 60±50 ms (uniform, in order)",
            Impairment(loss=0.10, delay_ms=60, jitter_ms=50),
        ),
        Profile.symmetric(
            "loss5_150ms",
            "5% loss, 150±10 ms (an RTT of 300 ms: where NACK repair is slow and FEC may pay)",
            Impairment(loss=0.05, delay_ms=150, jitter_ms=10),
        ),
        Profile.symmetric(
            "rate2m_20ms",
            "2 Mbit/s with a 100 ms queue, 20 ms",
            Impairment(delay_ms=20),
            RateLimit(2 * MBIT),
        ),
        Profile.symmetric(
            "rate5m_20ms",
            "5 Mbit/s with a 100 ms queue, 20 ms",
            Impairment(delay_ms=20),
            RateLimit(5 * MBIT),
        ),
        Profile.symmetric(
            "step_5_1_5",
            "5 Mbit/s, 1.5 Mbit/s from 10 s, 5 Mbit/s again from 20 s; 100 ms queue, 20 ms",
            Impairment(delay_ms=20),
            RateLimit(5 * MBIT),
            steps=(RateStep(10.0, 1_500_000), RateStep(20.0, 5 * MBIT)),
        ),
        Profile.symmetric(
            "cut3s",
            "20 ms; both directions cut for 3 s from 5 s",
            Impairment(delay_ms=20),
            cuts=(Cut(5.0, 3.0),),
        ),
    )
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}") from None
