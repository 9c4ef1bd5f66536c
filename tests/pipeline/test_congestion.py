"""Congestion control (issue 11): the receiver's delay-based estimator (transport/bwe.py) on
simulated paths (a FIFO bottleneck queue, random jitter, abs-send-time wraparound), the
sender's rate controller (transport/rate.py) and the quality ladder of JPEG-style codecs
(codecs/ladder.py). Pure logic: the paths are simulated, times are passed in."""

from __future__ import annotations

import itertools
import random
import statistics
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.codecs.ladder import DOWN_HOLD_S, DOWN_MARGIN, UP_HOLD_S, QualityLadder
from pipeline.transport.bwe import (
    BETA,
    MAX_BPS,
    MIN_BPS,
    REMB_DROP_FRACTION,
    REMB_INTERVAL_S,
    DelayBasedEstimator,
)
from pipeline.transport.rate import (
    LOSS_HIGH,
    LOSS_INCREASE,
    LOSS_LOW,
    MAX_PLAUSIBLE_BPS,
    REMB_TIMEOUT_S,
    SendRateController,
)
from pipeline.wire.rtp import ABS_SEND_TIME_MOD

TICKS_PER_S = 1 << 18
MTU = 1200
FPS = 30

# -- a simulated path -------------------------------------------------------------------------


@dataclass
class Run:
    estimator: DelayBasedEstimator
    rembs: list[tuple[float, int]] = field(default_factory=list)  # (arrival time, bit/s)
    packets: int = 0


def simulate(
    seconds: float,
    send_bps: int,
    capacity_bps: int,
    *,
    jitter_s: float = 0.0,
    seed: int = 0,
    follow: bool = False,
    send_time_offset: int = 0,
    keyframe_every: int = 0,
    propagation_s: float = 0.02,
    capacity_from: tuple[float, int] | None = None,
) -> Run:
    """A 30 fps sender, each frame's packets paced at 2.5x its rate, through a FIFO bottleneck
    of ``capacity_bps`` (a router queue: a packet leaves when the ones before it have), then
    ``propagation_s`` plus uniform random ``jitter_s`` per packet (which may reorder them).
    The receiver feeds the estimator in arrival order and asks for a REMB after each packet;
    with ``follow`` the sender obeys the REMB (at most ``send_bps``). abs-send-time is the
    sender's clock in 6.18 fixed point, plus ``send_time_offset`` ticks, modulo 2**24.
    ``capacity_from`` = (t, bps): the bottleneck's capacity from time t on."""
    rng = random.Random(seed)
    run = Run(DelayBasedEstimator())
    rate = send_bps
    link_free = 0.0
    in_flight: list[tuple[float, int, int]] = []  # (arrival, abs-send-time, size)
    frame = 0
    while frame / FPS < seconds:
        now = frame / FPS
        in_flight.sort()
        while in_flight and in_flight[0][0] <= now:
            arrival, send_time, size = in_flight.pop(0)
            run.estimator.on_packet(send_time, arrival, size)
            run.packets += 1
            remb = run.estimator.remb_due(arrival)
            if remb is not None:
                run.rembs.append((arrival, remb))
                if follow:
                    rate = min(send_bps, remb)
        frame_bytes = int(rate / 8 / FPS) * (
            5 if keyframe_every and frame % keyframe_every == 0 else 1
        )
        sent = now
        for i in range(max(1, -(-frame_bytes // MTU))):
            size = max(min(MTU, frame_bytes - i * MTU), 100) + 20
            send_time = (send_time_offset + int(sent * TICKS_PER_S)) % ABS_SEND_TIME_MOD
            capacity = capacity_bps
            if capacity_from is not None and link_free >= capacity_from[0]:
                capacity = capacity_from[1]
            link_free = max(sent, link_free) + size * 8 / capacity
            arrival = link_free + propagation_s + rng.uniform(0.0, jitter_s)
            in_flight.append((arrival, send_time, size))
            sent += size * 8 / (2.5 * rate)
        frame += 1
    return run


# -- DelayBasedEstimator ------------------------------------------------------------------------


# Random per-packet jitter (it reorders packets) up to 12 ms. Measured (see the report of the
# tests' author): up to 15 ms no false estimate in 360 seeded runs; at 20 ms 2 of 120 runs
# send a REMB (above the send rate), and from 25 ms a follow-the-REMB sender is held below
# its rate in a third of the runs or more: GCC cannot tell such jitter from queueing.
@settings(max_examples=25, deadline=None)
@given(
    st.integers(0, 2**32),
    st.floats(0.0, 0.012),
    st.integers(300_000, 4_000_000),
    st.sampled_from([0, 30, 90]),
)
def test_no_estimate_and_no_remb_on_an_uncongested_path(
    seed: int, jitter_s: float, send_bps: int, keyframe_every: int
) -> None:
    run = simulate(
        15, send_bps, 10 * send_bps, jitter_s=jitter_s, seed=seed, keyframe_every=keyframe_every
    )
    s = run.estimator.stats
    assert s.groups > 300  # the estimator did see the call
    assert run.rembs == [] and s.rembs == 0
    assert s.estimate_bps is None and s.overuses == 0
    assert run.estimator.remb_due(100.0) is None


def test_an_uncongested_path_over_the_64_s_wrap_stays_unlimited() -> None:
    # 70 s: abs-send-time wraps once on its own (64 s), and a second time with the offset.
    run = simulate(
        70,
        1_500_000,
        20_000_000,
        jitter_s=0.01,
        seed=3,
        send_time_offset=ABS_SEND_TIME_MOD - 3 * TICKS_PER_S,
    )
    assert run.estimator.stats.estimate_bps is None and run.rembs == []
    assert run.estimator.stats.groups > 1500


def test_a_bottleneck_below_the_send_rate_is_found() -> None:
    capacity = 1_000_000
    run = simulate(10, 2_000_000, capacity)  # the sender does not listen: the queue grows
    s = run.estimator.stats
    assert s.overuses > 0 and s.state == "overusing"
    first_at, first = run.rembs[0]
    assert first_at < 1.5  # the queue shows within a second or so
    # Decrease to BETA x the incoming rate, which the bottleneck caps at its capacity.
    assert 0.7 * capacity <= first <= capacity
    assert all(0.7 * capacity <= bps <= 1.2 * capacity for _, bps in run.rembs)


def test_after_a_capacity_drop_the_first_cut_is_from_the_new_capacity() -> None:
    """The lab's 5 -> 1.5 Mbit/s step with a 1.8 Mbit/s sender: overuse shows ~0.3 s after the
    drop, when the half-second incoming rate still holds what came before (1.6-1.7 Mbit/s, a
    cut to 95% of the new link that left its queue full). The cut uses the rate of the last
    DECREASE_WINDOW_S, which the bottleneck caps at its new capacity."""
    run = simulate(6, 1_800_000, 5_000_000, capacity_from=(3.0, 1_500_000))
    first_at, first = run.rembs[0]
    assert 3.0 < first_at < 3.6
    assert first <= BETA * 1_500_000 * 1.1, (first_at, first)  # was 1.5 Mbit/s: the whole link


@pytest.mark.parametrize("capacity", [600_000, 1_000_000, 3_000_000])
def test_a_sender_that_follows_remb_settles_near_the_bottleneck(capacity: int) -> None:
    run = simulate(30, 4 * capacity, capacity, follow=True, jitter_s=0.002, seed=capacity)
    late = [bps for t, bps in run.rembs if t > 5.0]
    assert len(late) >= 40
    # AIMD: down to BETA x what arrives, up until the queue shows again (the estimate may
    # not pass 1.5 x the incoming rate), so it saws around the capacity.
    assert all(0.8 * capacity <= bps <= 1.6 * capacity for bps in late), late
    assert 0.85 * capacity <= statistics.median(late) <= 1.1 * capacity
    assert run.estimator.stats.overuses > 1  # it keeps probing and backing off


@pytest.mark.parametrize("offset", [0, ABS_SEND_TIME_MOD - 4 * TICKS_PER_S])
def test_a_bottleneck_is_found_through_reordering(offset: int) -> None:
    """Packets reordered by the path (send times a little behind the last one, across the
    24-bit wrap too) are not taken for a 64 s jump."""
    capacity = 1_000_000
    run = simulate(12, 2_000_000, capacity, jitter_s=0.02, seed=7, send_time_offset=offset)
    assert run.rembs and run.estimator.stats.overuses > 0
    assert all(0.6 * capacity <= bps <= 1.2 * capacity for _, bps in run.rembs), run.rembs


def test_remb_cadence_in_a_congested_call() -> None:
    run = simulate(30, 3_000_000, 1_000_000, follow=True)
    assert len(run.rembs) > 30
    for (t0, b0), (t1, b1) in zip(run.rembs, run.rembs[1:], strict=False):
        dropped = b1 < b0 * (1 - REMB_DROP_FRACTION)
        assert t1 - t0 >= REMB_INTERVAL_S or dropped, (t0, b0, t1, b1)
        # Packets arrive every few ms, so a due REMB is not held back.
        assert t1 - t0 <= REMB_INTERVAL_S + 0.05
    assert any(
        t1 - t0 < REMB_INTERVAL_S
        for (t0, _), (t1, _) in zip(run.rembs, run.rembs[1:], strict=False)
    )


def test_remb_every_interval_and_at_once_on_a_drop() -> None:
    e = DelayBasedEstimator(start_bps=1_000_000)
    assert e.remb_due(0.0) == 1_000_000
    assert e.remb_due(0.49) is None
    assert e.remb_due(0.5) == 1_000_000
    e.estimate_bps = 980_000  # 2 % lower: waits for the interval
    assert e.remb_due(0.6) is None
    e.estimate_bps = 969_000  # 3.1 % below the last one sent: at once
    assert e.remb_due(0.61) == 969_000
    e.estimate_bps = 2_000_000  # a rise waits for the interval
    assert e.remb_due(0.7) is None
    assert e.remb_due(1.11) == 2_000_000
    assert e.stats.rembs == 4


def test_abs_send_time_wraparound_changes_nothing() -> None:
    """The same congested call with the 24-bit send time wrapping at 5 s, or on the first
    packet, gives exactly the same estimates as without a wrap."""
    base = simulate(15, 3_000_000, 1_000_000, follow=True)
    assert base.rembs
    for offset in (ABS_SEND_TIME_MOD - 5 * TICKS_PER_S, ABS_SEND_TIME_MOD - 1, 12345):
        wrapped = simulate(15, 3_000_000, 1_000_000, follow=True, send_time_offset=offset)
        assert wrapped.rembs == base.rembs
        assert wrapped.estimator.stats == base.estimator.stats


def test_the_estimate_stays_within_min_and_max() -> None:
    run = simulate(15, 400_000, 100_000, follow=True)  # a path below MIN_BPS
    assert run.rembs and all(MIN_BPS <= bps <= MAX_BPS for _, bps in run.rembs)
    assert min(bps for _, bps in run.rembs) == MIN_BPS
    capped = DelayBasedEstimator(min_bps=200_000, max_bps=300_000)
    for i in range(400):  # a burst of arrivals, growing delay: overuse at some rate
        capped.on_packet(int(i * 0.001 * TICKS_PER_S), i * 0.0015, 1200)
    est = capped.estimate_bps
    assert est is None or 200_000 <= est <= 300_000


def test_incoming_rate_counts_the_last_half_second() -> None:
    e = DelayBasedEstimator()
    for i in range(100):  # 1000 bytes every 10 ms: 800 kbit/s
        e.on_packet(int(i * 0.01 * TICKS_PER_S), i * 0.01, 1000)
    assert e.incoming_bps(0.99) == pytest.approx(800_000, rel=0.03)
    assert e.incoming_bps(5.0) == 0


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, ABS_SEND_TIME_MOD - 1), st.floats(0, 0.2), st.integers(0, 1500)),
        max_size=200,
    )
)
def test_arbitrary_send_times_never_break_the_estimator(
    packets: list[tuple[int, float, int]],
) -> None:
    e = DelayBasedEstimator()
    t = 0.0
    for send_time, step, size in packets:
        t += step
        e.on_packet(send_time, t, size)
        bps = e.remb_due(t)
        assert bps is None or MIN_BPS <= bps <= MAX_BPS
    assert e.state in {"normal", "overusing", "underusing"}


# -- SendRateController -------------------------------------------------------------------------


def controller(start: int = 1_000_000) -> SendRateController:
    return SendRateController(min_bps=100_000, max_bps=2_000_000, start_bps=start)


def test_start_is_clamped() -> None:
    assert controller(50_000).target_bps == 100_000
    assert controller(9_000_000).target_bps == 2_000_000
    assert controller().reason == "start"
    odd = SendRateController(min_bps=500_000, max_bps=100_000, start_bps=0)
    assert odd.max_bps == 500_000 and odd.target_bps == 500_000


def test_target_is_the_smaller_of_remb_and_loss_based() -> None:
    c = controller()
    for t in range(30):  # clean reports raise the loss-based side to the max
        c.on_loss(0.0, float(t))
    assert (c.target_bps, c.reason) == (2_000_000, "max")
    c.on_remb(800_000, 30.0)
    assert (c.target_bps, c.reason) == (800_000, "remb")
    c.on_remb(1_500_000, 30.5)
    assert (c.target_bps, c.reason) == (1_500_000, "remb")
    c.on_remb(5_000_000, 31.0)  # more than the codec can use: clamped
    assert (c.target_bps, c.reason) == (2_000_000, "max")
    c.on_loss(0.5, 31.5)  # heavy loss: the loss-based side is the smaller now
    assert c.reason == "loss" and c.target_bps == c.stats.loss_based_bps < 2_000_000
    s = c.stats
    assert (s.rembs, s.absurd, s.remb_bps) == (3, 0, 5_000_000)


@pytest.mark.parametrize("bad", [0, -1, -(10**12), MAX_PLAUSIBLE_BPS + 1, 10**18])
def test_absurd_rembs_are_counted_and_ignored(bad: int) -> None:
    c = controller()
    c.on_remb(700_000, 1.0)
    c.on_remb(bad, 1.1)
    assert (c.target_bps, c.reason) == (700_000, "remb")
    assert c.stats.absurd == 1 and c.stats.rembs == 1 and c.stats.remb_bps == 700_000


def test_the_largest_plausible_remb_is_clamped_not_refused() -> None:
    c = controller()
    c.on_remb(MAX_PLAUSIBLE_BPS, 1.0)
    assert c.stats.absurd == 0 and c.target_bps == 1_000_000  # the loss-based side limits


def test_a_tiny_remb_clamps_to_min() -> None:
    c = controller()
    c.on_remb(1, 1.0)
    assert (c.target_bps, c.reason) == (100_000, "min")


def test_a_remb_stops_limiting_after_the_timeout() -> None:
    c = controller()
    c.on_remb(300_000, 10.0)
    c.on_loss(0.05, 10.0 + REMB_TIMEOUT_S)  # exactly 5 s: still fresh
    assert (c.target_bps, c.reason) == (300_000, "remb")
    c.on_loss(0.05, 10.0 + REMB_TIMEOUT_S + 0.01)
    assert (c.target_bps, c.reason) == (1_000_000, "loss")
    c.on_remb(400_000, 16.0)  # a fresh one limits again
    assert c.target_bps == 400_000


# BUG (transport/rate.py, in d6ac281 and still in the working tree): set_range() calls
# _update(None), and _remb_limit(None) skips the REMB_TIMEOUT_S check, so a REMB that had
# already timed out limits the target again after a preset change, contradicting the
# docstring's "A REMB older than REMB_TIMEOUT_S stops limiting".
def test_a_timed_out_remb_stays_out_after_set_range() -> None:
    c = controller()
    c.on_remb(300_000, 0.0)
    c.on_loss(0.05, 10.0)
    assert c.target_bps == 1_000_000
    c.set_range(min_bps=100_000, max_bps=3_000_000)
    assert c.target_bps == 1_000_000


@pytest.mark.parametrize("loss", [0.11, 0.2, 0.5, 0.8])
def test_loss_above_10_percent_cuts_by_half_the_loss(loss: float) -> None:
    c = controller()
    c.on_loss(loss, 1.0)
    assert c.stats.loss_based_bps == int(1_000_000 * (1 - 0.5 * loss))
    assert c.target_bps == c.stats.loss_based_bps


@pytest.mark.parametrize("loss", [LOSS_LOW, 0.05, LOSS_HIGH])
def test_loss_between_2_and_10_percent_holds(loss: float) -> None:
    c = controller()
    for t in range(5):
        c.on_loss(loss, float(t))
        assert c.target_bps == 1_000_000 and c.reason == "loss"


@pytest.mark.parametrize("loss", [0.0, 0.019, -3.0])
def test_loss_under_2_percent_rises(loss: float) -> None:
    c = controller()
    c.on_loss(loss, 1.0)
    assert c.target_bps == int(1_000_000 * LOSS_INCREASE)  # the first report
    previous = c.target_bps
    for t in range(2, 8):
        c.on_loss(loss, float(t))
        assert c.target_bps > previous or c.target_bps == 2_000_000
        previous = c.target_bps


def test_heavy_loss_never_goes_below_min_and_clean_never_above_max() -> None:
    c = controller()
    for t in range(50):
        c.on_loss(0.5, float(t))
    assert (c.target_bps, c.reason) == (100_000, "min")
    for t in range(50, 200):
        c.on_loss(0.0, float(t))
    assert (c.target_bps, c.reason) == (2_000_000, "max")


def test_set_range_clamps_the_loss_based_side() -> None:
    c = controller(1_800_000)
    c.set_range(min_bps=100_000, max_bps=500_000)
    assert (c.target_bps, c.reason) == (500_000, "max")
    c.set_range(min_bps=800_000, max_bps=900_000)
    assert c.target_bps == 800_000


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("remb"), st.integers(-(10**6), 2 * MAX_PLAUSIBLE_BPS)),
            st.tuples(st.just("loss"), st.floats(-1, 2, allow_nan=False)),
        ),
        max_size=60,
    ),
    st.integers(1, 1_000_000),
    st.integers(1, 20_000_000),
)
def test_target_always_in_range_and_under_a_fresh_remb(
    ops: list[tuple[str, float]], low: int, high: int
) -> None:
    c = SendRateController(min_bps=low, max_bps=high, start_bps=(low + high) // 2)
    t = 0.0
    absurd = 0
    for kind, value in ops:
        t += 1.0
        if kind == "remb":
            c.on_remb(int(value), t)
            if 0 < value <= MAX_PLAUSIBLE_BPS:
                assert c.target_bps <= max(int(value), c.min_bps)
            else:
                absurd += 1
        else:
            c.on_loss(value, t)
        assert c.min_bps <= c.target_bps <= c.max_bps
    assert c.stats.absurd == absurd


# -- QualityLadder --------------------------------------------------------------------------------


class Encoder:
    """A stand-in for a JPEG encoder, for the ladder's pure logic: frames cost ``top_bps`` at
    the top rung, scaled by pixels and (roughly) by quality; ``spike`` multiplies one frame."""

    def __init__(self, top_bps: float) -> None:
        self.top_bps = top_bps

    def frame_bytes(self, ladder: QualityLadder) -> int:
        top, r = ladder.rungs[0], ladder.rung
        cost = (r.scale**2) * (r.quality / top.quality)
        return int(self.top_bps * cost / 8 / FPS)


def drive(
    ladder: QualityLadder, encoder: Encoder, start: float, seconds: float
) -> tuple[float, list[tuple[float, int]]]:
    """Captured frames at 30 fps for ``seconds``, the ones the ladder takes encoded;
    -> (time of the next capture, [(time, new index)] for every change)."""
    changes: list[tuple[float, int]] = []
    i = 0
    while True:
        t = start + i / FPS
        if t >= start + seconds:
            return t, changes
        if ladder.take(i):
            before = ladder.index
            ladder.on_frame(encoder.frame_bytes(ladder), t, FPS)
            if ladder.index != before:
                changes.append((t, ladder.index))
        i += 1


def test_rungs_go_down_in_quality_then_size_then_frame_rate() -> None:
    rungs = QualityLadder(85).rungs
    assert rungs[0].quality == 85 and rungs[0].scale == 1.0 and rungs[0].fps_divisor == 1
    for a, b in itertools.pairwise(rungs):
        assert b.quality <= a.quality and b.scale <= a.scale and b.fps_divisor >= a.fps_divisor
        assert (b.quality, b.scale, b.fps_divisor) != (a.quality, a.scale, a.fps_divisor)
    # Quality goes first: the first step keeps size and frame rate.
    assert rungs[1].scale == 1.0 and rungs[1].fps_divisor == 1 and rungs[1].quality < 85
    assert all(r.quality <= 20 for r in QualityLadder(20).rungs)  # never above the top


@pytest.mark.parametrize("index", range(12))
def test_take_encodes_one_captured_frame_in_fps_divisor(index: int) -> None:
    ladder = QualityLadder(80)
    ladder.index = min(index, len(ladder.rungs) - 1)
    div = ladder.rung.fps_divisor
    taken = [i for i in range(300) if ladder.take(i)]
    assert abs(len(taken) - 300 / div) <= 1
    gaps = {b - a for a, b in itertools.pairwise(taken)}
    if div == int(div):
        assert gaps == {int(div)}  # evenly spread
    else:
        assert gaps <= {int(div), int(div) + 1}


def test_no_target_no_change() -> None:
    ladder = QualityLadder(80)
    _, changes = drive(ladder, Encoder(20_000_000), 0.0, 5.0)
    assert changes == [] and ladder.index == 0 and ladder.reason == "top"
    assert ladder.measured_bps == pytest.approx(20_000_000, rel=0.01)


def test_at_target_stays_over_target_steps_down_after_the_hold() -> None:
    ladder = QualityLadder(80)
    ladder.set_target(1_000_000)
    t, changes = drive(ladder, Encoder(1_000_000 * DOWN_MARGIN * 0.99), 0.0, 3.0)
    assert changes == []  # within DOWN_MARGIN: stays
    over = Encoder(1_500_000)  # over, but less than twice the target
    t, changes = drive(ladder, over, t, DOWN_HOLD_S - 0.05)
    assert changes == []  # not yet for DOWN_HOLD_S
    t, changes = drive(ladder, over, t, 2.0)
    assert changes and changes[0][1] >= 1 and ladder.reason == "bandwidth"
    assert ladder.rung.quality < 80
    # It comes to rest on a rung under the target, and stays there.
    assert ladder.measured_bps <= 1_000_000 * DOWN_MARGIN
    rest = ladder.index
    drive(ladder, over, t, 10.0)
    assert ladder.index == rest


def test_a_single_large_frame_does_not_step_down() -> None:
    ladder = QualityLadder(80)
    ladder.set_target(1_000_000)
    t = 0.0
    for _ in range(10):
        t, changes = drive(ladder, Encoder(1_000_000), t, 0.5)
        t, more = drive(ladder, Encoder(1_500_000), t, 1 / FPS)  # a keyframe-like frame
        assert changes == more == []
    assert ladder.index == 0


def test_never_below_the_last_rung() -> None:
    ladder = QualityLadder(80)
    ladder.set_target(10_000)
    drive(ladder, Encoder(20_000_000), 0.0, 20.0)
    assert ladder.index == len(ladder.rungs) - 1
    div = ladder.rung.fps_divisor
    assert div > 1
    # measured: bytes per encoded frame times the frames actually encoded
    frame = Encoder(20_000_000).frame_bytes(ladder)
    assert ladder.measured_bps == pytest.approx(frame * 8 * FPS / div, rel=0.01)


def test_steps_up_one_rung_at_a_time_after_up_hold_when_there_is_room() -> None:
    ladder = QualityLadder(80)
    ladder.set_target(1_000_000)
    encoder = Encoder(6_000_000)
    t, changes = drive(ladder, encoder, 0.0, 2.0)
    low = ladder.index
    assert low >= 2 and changes
    changed = changes[-1][0]
    ladder.set_target(50_000_000)  # plenty of room now
    t, ups = drive(ladder, encoder, t, changed + UP_HOLD_S - 0.1 - t)
    assert ups == []  # room, but UP_HOLD_S has not passed since the last change
    t, ups = drive(ladder, encoder, t, UP_HOLD_S * (low + 1))
    assert [i for _, i in ups] == list(range(low - 1, -1, -1))  # one rung at a time, to the top
    times = [changed] + [u for u, _ in ups]
    assert all(b - a >= UP_HOLD_S - 1e-9 for a, b in itertools.pairwise(times))
    assert ladder.reason == "top"


def test_no_room_no_step_up() -> None:
    ladder = QualityLadder(80)
    ladder.set_target(1_000_000)
    encoder = Encoder(1_500_000)
    t, _changes = drive(ladder, encoder, 0.0, 2.0)
    rest = ladder.index
    assert rest >= 1
    # The rung above did not fit: it never climbs back into it.
    _, later = drive(ladder, encoder, t, 20.0)
    assert later == [] and ladder.index == rest


def test_never_above_the_top_rung() -> None:
    ladder = QualityLadder(80)
    ladder.set_target(1_000_000)
    t, _ = drive(ladder, Encoder(3_000_000), 0.0, 1.0)
    assert ladder.index >= 1
    ladder.set_target(100_000_000)
    drive(ladder, Encoder(3_000_000), t, 60.0)
    assert ladder.index == 0 and ladder.reason == "top" and ladder.rung.quality == 80


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 200_000), st.one_of(st.none(), st.integers(1, 20_000_000))),
        min_size=1,
        max_size=40,
    )
)
def test_ladder_climbs_one_rung_at_a_time_within_the_ends(
    phases: list[tuple[int, int | None]],
) -> None:
    ladder = QualityLadder(90)
    t = 0.0
    i = 0
    last_index, last_change = 0, 0.0
    for nbytes, target in phases:
        ladder.set_target(target)
        for _ in range(15):
            if ladder.take(i):
                ladder.on_frame(nbytes, t, FPS)
            i += 1
            t += 1 / FPS
            assert 0 <= ladder.index < len(ladder.rungs)
            if ladder.index < last_index:  # up: one rung, not sooner than UP_HOLD_S
                assert ladder.index == last_index - 1
                assert t - last_change >= UP_HOLD_S - 1e-9
            if ladder.index > last_index:  # down: only with a target it was over
                assert target is not None
            if ladder.index != last_index:
                last_index, last_change = ladder.index, t
