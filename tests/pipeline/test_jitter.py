"""Jitter buffer: in order, reordered, lost, duplicated, wraparound, delay bounds."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.codecs.assembly import FrameAssembly
from pipeline.jitter import JitterBuffer
from pipeline.wire.rtp import to_rtp_ts

TICK = 3000  # 30 fps at 90 kHz


def run(
    buf: JitterBuffer[int], arrivals: list[tuple[float, int, int]], step: float = 0.001
) -> list[tuple[float, int]]:
    """Push (arrival, ts, id) in arrival order; poll pop() every ``step`` s; -> (time, id)."""
    events = sorted(arrivals)
    shown = []
    now = 0.0
    end = events[-1][0] + 0.5
    i = 0
    while now <= end:
        while i < len(events) and events[i][0] <= now:
            _, ts, ident = events[i]
            buf.push(ident, ts, events[i][0])
            i += 1
        item = buf.pop(now)
        if item is not None:
            shown.append((now, item))
        now = round(now + step, 6)
    return shown


def test_clean_link_plays_on_arrival() -> None:
    buf: JitterBuffer[int] = JitterBuffer()
    shown = run(buf, [(1.0 + n / 30, n * TICK, n) for n in range(60)])
    assert [ident for _, ident in shown] == list(range(60))
    delays = [t - (1.0 + ident / 30) for t, ident in shown]
    assert max(delays) <= 0.0015  # one polling step
    assert buf.delay_s < 0.001
    s = buf.stats
    assert (s.played, s.late, s.skipped, s.lost) == (60, 0, 0, 0)


def test_jittery_link_adds_bounded_delay_and_smooths() -> None:
    rng = random.Random(1)
    buf: JitterBuffer[int] = JitterBuffer(max_delay=0.05)
    arrivals = [(1.0 + n / 30 + rng.uniform(0, 0.02), n * TICK, n) for n in range(300)]
    shown = run(buf, arrivals)
    assert 0.005 < buf.delay_s <= 0.05
    assert buf.jitter_s > 0.002
    # Played in order, never later than arrival + the maximum delay (+ one polling step).
    ids = [ident for _, ident in shown]
    assert ids == sorted(ids)
    arrival = {ident: t for t, _, ident in arrivals}
    assert all(t - arrival[ident] <= 0.05 + 0.0015 for t, ident in shown)
    assert len(shown) >= 290


def test_reordered_frames_and_late_drop() -> None:
    buf: JitterBuffer[str] = JitterBuffer()
    assert buf.push("a", 0, 0.0)
    assert buf.pop(0.0) == "a"
    assert buf.push("c", 2 * TICK, 2 / 30)
    assert buf.push("b", 1 * TICK, 2 / 30 + 0.001)  # b came after c: still not played
    assert buf.pop(2 / 30 + 0.001) == "c"  # newest due wins
    assert buf.stats.skipped == 1
    assert not buf.push("b", 1 * TICK, 0.1)  # older than what was played: late
    assert buf.stats.late == 1


def test_duplicates_and_lost_frames_counted() -> None:
    buf: JitterBuffer[int] = JitterBuffer()
    assert buf.push(1, 0, 0.0, seq=1)
    assert not buf.push(1, 0, 0.0, seq=1)
    assert buf.pop(0.0) == 1
    assert not buf.push(1, 0, 0.01, seq=1)
    assert buf.push(4, 3 * TICK, 0.1, seq=4)  # 2 and 3 never came
    s = buf.stats
    assert s.duplicates == 2 and s.lost == 2


def test_timestamp_wraparound() -> None:
    buf: JitterBuffer[int] = JitterBuffer()
    base = 2**32 - 2 * TICK
    shown = run(buf, [(1.0 + n / 30, (base + n * TICK) % 2**32, n) for n in range(10)])
    assert [ident for _, ident in shown] == list(range(10))
    assert buf.stats.resets == 0


def test_delay_never_builds_up() -> None:
    """A burst (a stalled network releasing 20 frames at once) yields the newest frame."""
    buf: JitterBuffer[int] = JitterBuffer(max_frames=8)
    buf.push(0, 0, 0.0)
    assert buf.pop(0.0) == 0
    for n in range(1, 21):
        buf.push(n, n * TICK, 1.0)
    assert buf.stats.overflow == 12
    assert buf.pop(1.0) == 20
    assert buf.pop(1.0) is None
    assert buf.stats.skipped == 7
    assert buf.next_due(1.0) is None


def test_next_due_and_reset() -> None:
    buf: JitterBuffer[int] = JitterBuffer(min_delay=0.02)
    buf.push(0, 0, 0.0)
    assert buf.next_due(0.0) == pytest.approx(0.02)
    assert buf.pop(0.01) is None
    assert buf.pop(0.02) == 0
    buf.push(1, 90000 * 60, 0.05)  # a one-minute jump: a new timeline
    assert buf.stats.resets == 1
    assert buf.pop(0.07) == 1


def test_no_timestamp_plays_on_arrival() -> None:
    buf: JitterBuffer[int] = JitterBuffer()
    buf.push(1, None, 5.0)
    assert buf.pop(5.0) == 1


def test_bad_parameters() -> None:
    with pytest.raises(ValueError):
        JitterBuffer(max_frames=0)
    with pytest.raises(ValueError):
        JitterBuffer(min_delay=0.5, max_delay=0.1)


@settings(deadline=None)  # a loaded 2-core box: no per-example deadline
@given(
    st.lists(st.tuples(st.integers(0, 2**32 - 1), st.floats(0, 0.05), st.booleans()), max_size=60)
)
def test_random_streams_keep_invariants(events: list[tuple[int, float, bool]]) -> None:
    buf: JitterBuffer[int] = JitterBuffer(max_frames=5)
    now = 0.0
    played: list[int] = []
    for ts, gap, poll in events:
        now += gap
        buf.push(ts, ts, now)
        if poll:
            item = buf.pop(now)
            if item is not None:
                played.append(item)
        assert buf.stats.buffered <= 5
        due = buf.next_due(now)
        assert due is None or 0.0 <= due <= buf.max_delay + 1e-9
    assert len(played) == buf.stats.played


def test_delay_follows_jitter_up_and_back_down() -> None:
    """The playout delay tracks the measured jitter both ways: a jittery spell raises it,
    a clean spell brings it back near zero (it is not a high-water mark)."""
    rng = random.Random(2)
    buf: JitterBuffer[int] = JitterBuffer(max_delay=0.1)
    clean = [(1.0 + n / 30, n * TICK, n) for n in range(30)]
    jittery = [(1.0 + n / 30 + rng.uniform(0, 0.03), n * TICK, n) for n in range(30, 150)]
    run(buf, clean + jittery)
    raised = buf.delay_s
    assert raised > 0.01
    calm = [(1.0 + n / 30 + 0.05, n * TICK, n) for n in range(160, 400)]
    shown = run(buf, calm)
    assert buf.delay_s < 0.002 < raised
    # Once calm, frames are shown on arrival again (within one polling step of 1 ms).
    assert all(t - (1.05 + ident / 30) <= 0.0015 for t, ident in shown[-30:])
    assert buf.stats.resets == 0


def test_seq_restart_or_forgery_is_not_counted_as_loss() -> None:
    """A classic sender that restarts its counter, or a forged huge seq, costs no 'lost'."""
    buf: JitterBuffer[int] = JitterBuffer()
    for n in range(1, 6):
        assert buf.push(n, n * TICK, n / 30, seq=n)
    assert buf.push(9, 9 * TICK, 9 / 30, seq=9)  # 6, 7, 8 lost
    assert buf.stats.lost == 3
    assert buf.push(10, 10 * TICK, 10 / 30, seq=10**9)  # forged: no billion lost frames
    assert buf.push(11, 11 * TICK, 11 / 30, seq=1)  # the sender restarted at 1
    assert buf.push(12, 12 * TICK, 12 / 30, seq=3)  # then 2 was lost
    assert buf.stats.lost == 4


@settings(max_examples=100, deadline=None)
@given(
    # Half the starts wrap within the stream (40 frames span 120000 ticks).
    base=st.one_of(st.integers(0, 2**32 - 1), st.integers(2**32 - 120000, 2**32 - 1)),
    delays=st.lists(st.floats(0, 0.04), min_size=2, max_size=40),
)
def test_any_start_timestamp_plays_in_order_and_accounts_for_every_frame(
    base: int, delays: list[float]
) -> None:
    """Wherever the 32-bit timestamp starts (wrapping or not) and whatever the network delay:
    frames play in order, the timeline never resets, and every accepted frame is either
    played, skipped, evicted or still waiting."""
    buf: JitterBuffer[int] = JitterBuffer(max_frames=4)
    arrivals = [(1.0 + n / 30 + d, (base + n * TICK) % 2**32, n) for n, d in enumerate(delays)]
    shown = run(buf, arrivals)
    ids = [ident for _, ident in shown]
    assert ids == sorted(set(ids))
    assert ids[-1] == len(delays) - 1  # the newest frame is always shown
    s = buf.stats
    assert s.resets == 0
    assert s.pushed == s.played + s.skipped + s.overflow + s.buffered
    assert s.pushed + s.late + s.duplicates == len(delays)


# -- a peer's clock is a hint, not an identity (issue #15 fault 1, issue #14) ----------------

FPS = 20
N = 60
T0 = 1_700_000_000.3  # a sender's time.time() at its first frame


def run_v0(
    buf: JitterBuffer[int], frames: list[tuple[float, float, int]], step: float = 0.001
) -> list[tuple[float, int]]:
    """Push V0-like frames (arrival, sender ts in seconds, seq) with their seq; poll pop()
    every ``step`` s; -> (time, seq) shown."""
    shown = []
    now, i = 0.0, 0
    end = frames[-1][0] + 0.5
    while now <= end:
        while i < len(frames) and frames[i][0] <= now:
            arrival, sender_ts, seq = frames[i]
            buf.push(seq, to_rtp_ts(sender_ts), arrival, seq=seq)
            i += 1
        item = buf.pop(now)
        if item is not None:
            shown.append((now, item))
        now = round(now + step, 6)
    return shown


def classic(sender_ts: Callable[[int], float]) -> list[tuple[float, float, int]]:
    """60 frames at 20 fps from a classic sender, seq 1..60, arriving 1 s + n/20 here."""
    return [(1.0 + n / FPS, sender_ts(n), n + 1) for n in range(N)]


def on_arrival(shown: list[tuple[float, int]]) -> bool:
    return all(t - (1.0 + (seq - 1) / FPS) <= 0.0015 for t, seq in shown)


def test_frozen_sender_timestamp_shows_every_frame() -> None:
    """A ts frozen at import time (a default argument evaluated once): every new seq is a new
    frame, shown on arrival; the stall is counted as lagging, never as duplicates or loss."""
    buf: JitterBuffer[int] = JitterBuffer()
    shown = run_v0(buf, classic(lambda n: T0))
    assert [seq for _, seq in shown] == list(range(1, N + 1))  # was 1 of 60
    assert on_arrival(shown)
    s = buf.stats
    assert (s.duplicates, s.late, s.lost, s.skipped) == (0, 0, 0, 0)
    assert s.lagging >= N - 15  # every frame once the stall passed max_skew (10 frames)


@pytest.mark.parametrize("phase", [0.3, 0.8])
def test_one_second_resolution_timestamp_shows_every_frame(phase: float) -> None:
    """``int(time.time())``: 20 frames share a ts, then it jumps by 1 s. The first frame's ts
    lags its capture by ``phase``; past 0.5 s the first tick looks early by as much and starts
    a timeline (once: later ticks line up with it)."""
    buf: JitterBuffer[int] = JitterBuffer()
    shown = run_v0(buf, classic(lambda n: float(int(T0 - 0.3 + phase + n / FPS))))
    assert [seq for _, seq in shown] == list(range(1, N + 1))  # was 4 of 60
    assert on_arrival(shown)
    s = buf.stats
    assert (s.duplicates, s.late, s.lost) == (0, 0, 0)  # was 38 "lost"
    assert s.resets == (phase > 0.5)


def test_sender_clock_stepped_back_shows_every_frame() -> None:
    """An NTP correction steps the sender's clock back 3 s at frame 20: one new timeline."""
    buf: JitterBuffer[int] = JitterBuffer()
    shown = run_v0(buf, classic(lambda n: T0 + n / FPS - (3.0 if n >= 20 else 0.0)))
    assert [seq for _, seq in shown] == list(range(1, N + 1))  # was 20 of 60
    assert on_arrival(shown)
    s = buf.stats
    assert (s.late, s.duplicates, s.lost, s.resets) == (0, 0, 0, 1)  # was 40 "late"


def test_loss_is_counted_from_seq_not_from_timestamps() -> None:
    buf: JitterBuffer[int] = JitterBuffer()
    frames = [f for f in classic(lambda n: float(int(T0 + n / FPS))) if f[2] not in (7, 30, 31)]
    shown = run_v0(buf, frames)
    assert len(shown) == N - 3
    assert buf.stats.lost == 3


@pytest.mark.parametrize("skip_older", [True, False])
def test_one_far_ahead_timestamp_costs_one_frame_not_seconds(skip_older: bool) -> None:
    """RTP (no seq): one frame 8 s ahead (a peer's clock jump, or a forged but authenticated
    packet) starts a timeline, and the real frame after it another: every real frame is
    shown on arrival, none 'late'. JPEG (skip_older) and H.264 (in order) alike."""
    buf: JitterBuffer[int] = JitterBuffer(skip_older=skip_older)
    arrivals = [(1.0 + n / FPS, n * 4500, n) for n in range(N)]
    arrivals.append((1.0 + 20.5 / FPS, 20 * 4500 + 8 * 90000, 1000))
    shown = run(buf, arrivals)
    ids = [ident for _, ident in shown]
    assert [i for i in ids if i != 1000] == list(range(N))  # was 21 of 60 real frames
    s = buf.stats
    assert (s.late, s.duplicates, s.resets) == (0, 0, 2)
    real = [(t, i) for t, i in shown if i != 1000]
    assert all(t - (1.0 + i / FPS) <= 0.0015 for t, i in real)


def test_far_ahead_v0_timestamp_with_a_new_seq() -> None:
    buf: JitterBuffer[int] = JitterBuffer()
    shown = run_v0(buf, classic(lambda n: T0 + n / FPS + (8.0 if n == 20 else 0.0)))
    assert [seq for _, seq in shown] == list(range(1, N + 1))
    assert (buf.stats.late, buf.stats.resets) == (0, 2)


def test_a_jump_within_the_bound_freezes_at_most_that_long() -> None:
    """RTP: a timestamp 0.3 s ahead (under max_skew) is played; real frames older than it
    are late, so the picture holds for at most 0.3 s: the bound is what a clock can cost."""
    buf: JitterBuffer[int] = JitterBuffer()
    arrivals = [(1.0 + n / FPS, n * 4500, n) for n in range(N)]
    arrivals.append((1.0 + 20.5 / FPS, 20 * 4500 + 27000, 1000))
    shown = run(buf, arrivals)
    assert 1000 in [i for _, i in shown]
    assert buf.stats.resets == 0
    assert 0 < buf.stats.late <= 0.3 * FPS
    assert len(shown) >= N - 0.3 * FPS


def test_rtp_clock_stepped_back_starts_a_new_timeline() -> None:
    buf: JitterBuffer[int] = JitterBuffer(skip_older=False)
    arrivals = [
        (1.0 + n / FPS, (n * 4500 - (270000 if n >= 20 else 0)) % 2**32, n) for n in range(N)
    ]
    shown = run(buf, arrivals)
    assert [i for _, i in shown] == list(range(N))
    assert (buf.stats.late, buf.stats.resets) == (0, 1)


def test_a_new_timeline_plays_the_waiting_frames_at_once_in_order() -> None:
    """H.264 (in order): frames held by the playout delay are not dropped by a jump (that
    would break the chain of references); they become due at once, before the new frame."""
    buf: JitterBuffer[int] = JitterBuffer(skip_older=False, min_delay=0.1)
    for n in range(3):  # 50 fps
        assert buf.push(n, n * 1800, 1.0 + n * 0.02)
    assert buf.pop(1.05) is None  # held for the 100 ms delay
    assert buf.push(3, 2 * 1800 + 8 * 90000, 1.05)  # 8 s ahead
    s = buf.stats
    assert (s.resets, s.skipped, s.buffered) == (1, 0, 4)
    assert [buf.pop(1.05) for _ in range(4)] == [0, 1, 2, None]
    assert buf.pop(1.15) == 3


def test_a_restarted_frame_counter_is_a_new_sequence() -> None:
    buf: JitterBuffer[int] = JitterBuffer()
    for n, seq in enumerate((5000, 5001, 1, 2)):
        assert buf.push(n, n * 4500, n / FPS, seq=seq)
        assert buf.pop(n / FPS) == n  # the restart is not "late"
    assert (buf.stats.resets, buf.stats.lost, buf.stats.late) == (1, 0, 0)


def test_same_ts_new_seq_is_new_and_same_seq_is_a_duplicate() -> None:
    buf: JitterBuffer[str] = JitterBuffer(skip_older=False, min_delay=0.01)
    assert buf.push("a", 0, 0.0, seq=1)
    assert buf.push("b", 0, 0.001, seq=2)  # the same ts, a new frame
    assert not buf.push("b'", 9000, 0.002, seq=2)  # the same seq, another ts: a duplicate
    assert [buf.pop(0.05), buf.pop(0.05), buf.pop(0.05)] == ["a", "b", None]
    assert not buf.push("a", 0, 0.06, seq=1)  # an old seq after newer ones were played
    s = buf.stats
    assert (s.played, s.duplicates, s.late, s.lost) == (2, 1, 1, 0)


def test_v0_reordered_under_jitter_keeps_seq_order() -> None:
    buf: JitterBuffer[int] = JitterBuffer(skip_older=False, min_delay=0.02)
    for seq, arrival in ((1, 0.0), (3, 0.05), (2, 0.055), (4, 0.1)):
        assert buf.push(seq, to_rtp_ts(T0 + seq / FPS), arrival, seq=seq)
    got = []
    while (item := buf.pop(1.0)) is not None:
        got.append(item)
    assert got == [1, 2, 3, 4]
    assert buf.stats.lost == 0  # 2 was counted lost, then came


frame_event = st.tuples(
    st.integers(0, 2**32 - 1) | st.integers(0, 20) | st.sampled_from([0, 45000, 2**31, 2**32 - 1]),
    st.none() | st.integers(0, 2**64 - 1) | st.integers(0, 30),
    st.floats(0, 0.2) | st.floats(0, 20),
    st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(events=st.lists(frame_event, max_size=60), skip_older=st.booleans())
def test_any_frames_any_clock_keep_the_promises(
    events: list[tuple[int, int | None, float, bool]], skip_older: bool
) -> None:
    """Whatever (ts, seq, arrival) a peer produces: nothing raises, no frame waits more than
    max_delay after its arrival (pop is polled exactly when next_due says), and every frame
    offered is counted exactly once, every pushed one played, skipped, evicted or buffered."""
    buf: JitterBuffer[int] = JitterBuffer(max_frames=5, max_delay=0.05, skip_older=skip_older)
    arrival: dict[int, float] = {}
    now = 0.0

    def drain(until: float) -> None:
        t = now
        while (due := buf.next_due(t)) is not None and t + due <= until:
            t = t + due
            item = buf.pop(t + 1e-9)
            assert item is not None
            assert t - arrival[item] <= buf.max_delay + 1e-6

    for ident, (ts, seq, gap, repaired) in enumerate(events):
        drain(now + gap)
        now += gap
        arrival[ident] = now
        buf.push(ident, ts, now, seq, repaired=repaired)
        due = buf.next_due(now)
        assert due is None or 0.0 <= due <= buf.max_delay + 1e-9
    drain(now + 1.0)
    s = buf.stats
    assert s.buffered == 0
    assert s.pushed + s.late + s.duplicates == len(events)
    assert s.pushed == s.played + s.skipped + s.overflow + s.buffered


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(-(2**40), 2**40),
            st.none() | st.integers(-(2**70), 2**70),
            st.floats(-1e9, 1e9),
        ),
        max_size=40,
    )
)
def test_arrival_times_out_of_order_never_raise(
    events: list[tuple[int, int | None, float]],
) -> None:
    buf: JitterBuffer[int] = JitterBuffer(max_frames=3)
    for ident, (ts, seq, now) in enumerate(events):
        buf.push(ident, ts, now, seq)
        buf.next_due(now)
        buf.pop(now)
    s = buf.stats
    assert s.pushed + s.late + s.duplicates == len(events)
    assert s.pushed == s.played + s.skipped + s.overflow + s.buffered


def test_the_depacketizers_timeline_follows_a_clock_stepped_back_or_a_frame_far_ahead() -> None:
    """FrameAssembly: a frame RESET_TICKS or more behind starts a new timeline, so the old
    one never catches up with it (a 3 s step back used to turn frames "late" 2 s later)."""
    counts: dict[str, int] = {"late": 0, "duplicates": 0}
    fa: FrameAssembly[Any] = FrameAssembly(counts, timeout=0.5, max_partial=4)
    step = 90000 // 20  # 20 fps at 90 kHz
    ts = 10 * 90000
    fa.mark_done(ts)
    for stamp in (ts - 3 * 90000, ts + 8 * 90000 + step, ts - 2 * 90000):  # back; ahead; back
        for i in range(60):  # 3 s of frames on the new timeline: none is late
            t = (stamp + i * step) & 0xFFFFFFFF
            assert not fa.finished(t), (stamp, i)
            fa.mark_done(t)
        assert fa.finished(t)  # the same frame again is a duplicate
        assert fa.finished((t - step) & 0xFFFFFFFF)  # and one just behind is late
    assert counts == {"late": 3, "duplicates": 3}
