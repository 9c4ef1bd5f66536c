"""Jitter buffer: in order, reordered, lost, duplicated, wraparound, delay bounds."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.jitter import JitterBuffer

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
