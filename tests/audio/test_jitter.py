"""The audio jitter buffer as pure logic: simulated networks with time passed in."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.audio.jitter import AudioJitterBuffer, AudioJitterStats, Playout, PlayoutKind
from pipeline.errors import LocalProtocolError

FRAME = 0.02
SAMPLES = 960


def conserved(s: AudioJitterStats) -> bool:
    return s.received == s.played + s.discarded + s.buffered


@dataclass
class Run:
    decisions: list[tuple[float, Playout]]
    delays: list[float]  # per played frame: playout time - send time (s)
    stats: AudioJitterStats


def simulate(
    frames: int,
    *,
    base: float = 0.01,
    jitter: float = 0.0,
    loss: float = 0.0,
    seed: int = 1,
    seq0: int = 0,
    ts0: int = 0,
    skew: float = 0.0,  # the receiver's clock runs this much faster (e.g. 1e-3)
    buf: AudioJitterBuffer | None = None,
) -> Run:
    """Frame i is sent at i * 20 ms and arrives after base + U(-jitter, +jitter) unless lost;
    the receiver pulls every 20 ms of its own clock."""
    rng = random.Random(seed)
    jb = buf or AudioJitterBuffer()
    arrivals = []
    for i in range(frames):
        if rng.random() < loss:
            continue
        at = i * FRAME + base + rng.uniform(-jitter, jitter) + jitter
        arrivals.append((at, i))
    arrivals.sort()
    decisions: list[tuple[float, Playout]] = []
    delays: list[float] = []
    k, pull = 0, 0
    end = frames * FRAME + base + 2 * jitter + 0.5
    while pull * FRAME / (1 + skew) < end:
        now = pull * FRAME / (1 + skew)
        while k < len(arrivals) and arrivals[k][0] <= now:
            at, i = arrivals[k]
            jb.push((seq0 + i) & 0xFFFF, (ts0 + i * SAMPLES) & 0xFFFFFFFF, b"p%d" % i, at)
            k += 1
        d = jb.pull(now)
        decisions.append((now, d))
        if d.kind is PlayoutKind.FRAME:
            assert d.seq is not None and d.payload is not None
            i = (d.seq - seq0) & 0xFFFF
            assert d.payload == b"p%d" % i
            delays.append(now - i * FRAME)
        pull += 1
    return Run(decisions, delays, jb.stats)


def jb_stall() -> int:
    return AudioJitterBuffer().stall_frames


def test_clean_link_plays_everything_in_order_with_small_delay() -> None:
    run = simulate(500)
    played = [d.seq for _, d in run.decisions if d.kind is PlayoutKind.FRAME]
    assert played == list(range(500))
    s = run.stats
    assert (s.lost, s.late, s.fec, s.discarded) == (0, 0, 0, 0)
    # Concealment only after the last frame (the stream ended), then silence.
    kinds = [d.kind for _, d in run.decisions]
    tail = kinds[len(kinds) - kinds[::-1].index(PlayoutKind.FRAME) :]
    assert PlayoutKind.CONCEAL not in kinds[: len(kinds) - len(tail)]
    assert s.concealed == tail.count(PlayoutKind.CONCEAL) <= jb_stall() + 1
    assert s.target_frames == 1
    assert max(run.delays) <= 0.01 + FRAME + 1e-9


def test_sized_from_jitter_and_no_loss_of_late_packets_within_the_target() -> None:
    run = simulate(3000, jitter=0.01, base=0.04)  # 40 +- 10 ms
    s = run.stats
    # A.8 of U(-10, 10) ms is mean |D| = 6.7 ms in sending order; in arrival order (what a
    # receiver sees, reordering included) a little more.
    assert 5.0 < s.jitter_ms < 9.0
    assert s.target_frames in (2, 3)  # 1 + ceil(3 J / 20 ms)
    assert s.late <= 3000 * 0.02 and s.lost <= 3000 * 0.02  # a rare straggler at most
    assert conserved(s)


def test_reordering_within_the_depth_costs_nothing() -> None:
    jb = AudioJitterBuffer(min_frames=3)
    order = [0, 2, 1, 3, 5, 4, 6, 7, 9, 8, 10, 11]
    for n, i in enumerate(order):
        jb.push(i, i * SAMPLES, b"%d" % i, n * FRAME)
    got = []
    for n in range(len(order)):
        d = jb.pull((n + 3) * FRAME)
        got.append(d.seq if d.kind is PlayoutKind.FRAME else d.kind)
    assert got == list(range(12))
    assert jb.stats.lost == 0 and jb.stats.late == 0


def test_a_lost_packet_is_concealed_or_rebuilt_from_fec() -> None:
    jb = AudioJitterBuffer(min_frames=3)
    for i in (0, 1, 3, 4, 7, 8, 9):  # 2 lost (3 is here: FEC), 5 and 6 lost (6: FEC from 7)
        jb.push(i, i * SAMPLES, b"%d" % i, 0.0)
    kinds = [(d.kind, d.seq) for d in (jb.pull(n * FRAME) for n in range(10))]
    assert kinds == [
        (PlayoutKind.FRAME, 0),
        (PlayoutKind.FRAME, 1),
        (PlayoutKind.FEC, 2),
        (PlayoutKind.FRAME, 3),
        (PlayoutKind.FRAME, 4),
        (PlayoutKind.CONCEAL, 5),
        (PlayoutKind.FEC, 6),
        (PlayoutKind.FRAME, 7),
        (PlayoutKind.FRAME, 8),
        (PlayoutKind.FRAME, 9),
    ]
    s = jb.stats
    assert (s.lost, s.fec, s.concealed, s.played) == (3, 2, 1, 7)
    jb.push(5, 5 * SAMPLES, b"5", 1.0)
    assert jb.stats.late == 1


def test_delay_does_not_grow_under_loss_jitter_and_clock_skew() -> None:
    # 60 s at 5% loss and 40 +- 10 ms, the receiver's clock 0.1% slow: the sender gets ahead
    # by 60 ms over the call, which the buffer must shed.
    run = simulate(3000, base=0.04, jitter=0.01, loss=0.05, skew=-1e-3, seed=3)
    first = sorted(run.delays[200:700])[250]
    last = sorted(run.delays[-500:])[250]
    assert last - first < 0.025, (first, last)
    assert max(run.delays[200:]) < 0.04 + 0.02 + 10 * FRAME
    s = run.stats
    assert s.shrunk >= 2  # it shed the skew
    assert 0.03 < s.lost / 3000 < 0.08
    assert conserved(s)


def test_a_burst_that_grows_the_buffer_is_shed() -> None:
    jb = AudioJitterBuffer()
    for i in range(20):  # one burst of 20 frames held back, then all at once
        jb.push(i, i * SAMPLES, b"x", 0.4)
    levels = []
    for n in range(100):
        jb.pull(0.4 + n * FRAME)
        i = 20 + n
        jb.push(i, i * SAMPLES, b"x", 0.4 + n * FRAME)
        levels.append(jb.level)
    assert levels[0] >= 19
    assert max(levels[-20:]) <= jb.target_frames + 1
    assert jb.stats.shrunk >= 15


def test_underrun_expands_then_stalls_to_silence_then_restarts() -> None:
    jb = AudioJitterBuffer(stall_frames=3)
    jb.push(0, 0, b"a", 0.0)
    assert jb.pull(0.0).kind is PlayoutKind.FRAME
    kinds = [jb.pull(n * FRAME).kind for n in range(1, 7)]
    assert kinds == [PlayoutKind.CONCEAL] * 3 + [PlayoutKind.SILENCE] * 3
    for i in range(1, 5):  # the frames after it, late but not lost: rebuffered and played
        jb.push(i, i * SAMPLES, b"b", 0.2)
    d = jb.pull(0.2)
    assert (d.kind, d.seq) == (PlayoutKind.FRAME, 1)
    assert jb.stats.underruns == 4 and jb.stats.lost == 0


def test_sequence_wrap_and_a_restarted_sender() -> None:
    run = simulate(200, seq0=0xFFF0, ts0=0xFFFFF000)
    assert run.stats.played == 200 and run.stats.lost == 0
    jb = AudioJitterBuffer()
    for i in range(10):
        jb.push(1000 + i, i * SAMPLES, b"old", i * FRAME)
        jb.pull(i * FRAME)
    for i in range(10):  # a new sender far ahead: resync, not 30000 frames of concealment
        jb.push(30000 + i, i * SAMPLES, b"new", 0.2 + i * FRAME)
    got = [jb.pull(0.2 + n * FRAME) for n in range(10)]
    assert any(d.payload == b"new" for d in got)
    assert jb.stats.resyncs == 1 and jb.stats.concealed < 5


def test_bad_arguments_are_local_errors() -> None:
    with pytest.raises(LocalProtocolError):
        AudioJitterBuffer(min_frames=0)
    with pytest.raises(LocalProtocolError):
        AudioJitterBuffer(max_frames=60, capacity=50)


ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("push"),
            st.integers(0, 0xFFFF),
            st.integers(0, 0xFFFFFFFF),
            st.floats(0, 100, allow_nan=False),
        ),
        st.tuples(st.just("pull"), st.floats(0, 100, allow_nan=False)),
    ),
    max_size=300,
)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_any_input_keeps_the_books_and_the_bounds(seq_ops: list[tuple]) -> None:  # type: ignore[type-arg]
    jb = AudioJitterBuffer(capacity=20, max_frames=8)
    for op in seq_ops:
        if op[0] == "push":
            jb.push(op[1], op[2], b"x", op[3])
        else:
            d = jb.pull(op[1])
            assert (d.payload is None) == (d.kind in (PlayoutKind.CONCEAL, PlayoutKind.SILENCE))
        s = jb.stats
        assert conserved(s)
        assert s.buffered <= 20 and 1 <= s.target_frames <= 8


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.0, 0.03), st.floats(0.0, 0.1),
       st.integers(0, 0xFFFF))  # fmt: skip
def test_any_network_keeps_delay_bounded(seed: int, jitter: float, loss: float, seq0: int) -> None:
    run = simulate(1500, jitter=jitter, loss=loss, seed=seed, seq0=seq0)
    s = run.stats
    assert conserved(s)
    # Playout delay never beyond the largest transit plus the largest target plus a window.
    assert max(run.delays[100:]) <= 0.01 + 2 * jitter + (10 + 25) * FRAME
    late_half = sorted(run.delays[len(run.delays) // 2 :])
    early_half = sorted(run.delays[100 : len(run.delays) // 2])
    assert late_half[len(late_half) // 2] - early_half[len(early_half) // 2] < 0.05
