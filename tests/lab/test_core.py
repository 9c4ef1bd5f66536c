"""The lab's pure layers, without namespaces: the impairment model (made-up times), the control
protocol (round trips and garbage), the profiles (validation). No root needed."""

from __future__ import annotations

import contextlib
import json
import math
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.netlab.control import (
    MAX_LINE,
    Configure,
    ControlError,
    CutLink,
    LineReader,
    Quit,
    StatsRequest,
    decode_command,
    decode_reply,
    encode_command,
)
from benchmarks.netlab.impairment import ImpairmentCore
from benchmarks.netlab.profiles import (
    BOTH,
    PROFILES,
    Direction,
    Impairment,
    Jitter,
    Profile,
    RateLimit,
    RateStep,
    get_profile,
)

pytestmark = pytest.mark.lab

AB, BA = Direction.A_TO_B, Direction.B_TO_A


def _flow(
    core: ImpairmentCore,
    count: int,
    interval: float = 0.001,
    direction: Direction = AB,
    start: float = 0.0,
) -> dict[int, list[float]]:
    """Submit ``count`` packets (payload = index) and drain; index -> release times."""
    out: dict[int, list[float]] = {}
    for i in range(count):
        now = start + i * interval
        core.submit(direction, i.to_bytes(4, "big"), now)
        for d, packet in core.release_due(now):
            if d is direction:
                out.setdefault(int.from_bytes(packet, "big"), []).append(now)
    while (due := core.next_release()) is not None:
        for d, packet in core.release_due(due):
            if d is direction:
                out.setdefault(int.from_bytes(packet, "big"), []).append(due)
    return out


def _release_order(core: ImpairmentCore, count: int, interval: float) -> list[tuple[int, float]]:
    """(index, exact release time) in release order."""
    for i in range(count):
        core.submit(AB, i.to_bytes(4, "big"), i * interval)
    order = []
    while (due := core.next_release()) is not None:
        order += [(int.from_bytes(p, "big"), due) for _, p in core.release_due(due)]
    return order


def test_loss_is_seeded_and_near_its_probability() -> None:
    def lost(seed: int) -> set[int]:
        core = ImpairmentCore(seed)
        core.configure(AB, Impairment(loss=0.1))
        return set(range(10_000)) - set(_flow(core, 10_000))

    first = lost(7)
    assert lost(7) == first  # same seed, same packets lost
    assert lost(8) != first
    assert abs(len(first) - 1000) < 4 * math.sqrt(10_000 * 0.1 * 0.9)


def test_each_packet_draws_the_same_numbers_whatever_the_settings() -> None:
    delays = {}
    for loss in (0.0, 0.5):
        core = ImpairmentCore(3)
        core.configure(AB, Impairment(loss=loss, delay_ms=50, jitter_ms=20, reorder=0.2,
                                      reorder_ms=100))  # fmt: skip
        delays[loss] = {i: times[0] - i for i, times in _flow(core, 500, interval=1.0).items()}
    survivors = delays[0.5]
    assert 150 < len(survivors) < 350
    assert all(delays[0.0][i] == pytest.approx(d) for i, d in survivors.items())


def test_directions_do_not_disturb_each_other() -> None:
    alone = ImpairmentCore(5)
    alone.configure(AB, Impairment(loss=0.3))
    mixed = ImpairmentCore(5)
    mixed.configure(AB, Impairment(loss=0.3))
    mixed.configure(BA, Impairment(loss=0.3))
    for i in range(300):  # other-direction traffic interleaved with the measured one
        mixed.submit(BA, b"x", i * 0.001)
    assert set(_flow(alone, 1000)) == set(_flow(mixed, 1000, start=1.0))


def test_uniform_jitter_stays_in_bounds_and_never_reorders() -> None:
    core = ImpairmentCore(1)
    core.configure(AB, Impairment(delay_ms=40, jitter_ms=10))
    order = _release_order(core, 2000, interval=0.02)  # 20 ms apart: the FIFO floor rarely acts
    assert [i for i, _ in order] == list(range(2000))
    delays = [(t - i * 0.02) * 1000 for i, t in order]
    assert 30 <= min(delays) < 31 and 49 < max(delays) <= 50
    assert statistics.mean(delays) == pytest.approx(40, abs=0.5)
    # Packets 1 ms apart: jitter of ±10 ms would reorder them; the floor keeps the order and
    # only ever raises a delay, never beyond the previous packet's.
    core = ImpairmentCore(1)
    core.configure(AB, Impairment(delay_ms=40, jitter_ms=10))
    order = _release_order(core, 2000, interval=0.001)
    assert [i for i, _ in order] == list(range(2000))
    delays = [(t - i * 0.001) * 1000 for i, t in order]
    assert min(delays) >= 30 and max(delays) <= 50
    assert statistics.mean(delays) > 45  # the running maximum skews delays upward


def test_normal_jitter_has_its_mean_and_deviation_and_no_negative_delay() -> None:
    core = ImpairmentCore(2)
    core.configure(AB, Impairment(delay_ms=100, jitter_ms=20, distribution=Jitter.NORMAL))
    order = _release_order(core, 4000, interval=1.0)  # far apart: no floor
    delays = [(t - i) * 1000 for i, t in order]
    assert statistics.mean(delays) == pytest.approx(100, abs=1.5)
    assert statistics.stdev(delays) == pytest.approx(20, rel=0.05)
    core = ImpairmentCore(2)
    core.configure(AB, Impairment(delay_ms=5, jitter_ms=20, distribution=Jitter.NORMAL))
    assert min((t - i) for i, t in _release_order(core, 1000, interval=1.0)) >= 0


def test_held_back_packets_are_overtaken() -> None:
    core = ImpairmentCore(4)
    core.configure(AB, Impairment(delay_ms=10, reorder=0.25, reorder_ms=30))
    order = _release_order(core, 4000, interval=0.005)
    held = core.stats(AB).held_back
    assert abs(held - 1000) < 4 * math.sqrt(4000 * 0.25 * 0.75)
    late = sum(
        1 for k, (i, _) in enumerate(order) if any(j > i for j, _ in order[max(0, k - 10) : k])
    )
    assert late == held  # every held packet (10 + 30 ms) is passed by the next ones (5 ms apart)
    delays = sorted(round((t - i * 0.005) * 1000, 6) for i, t in order)
    assert set(delays) == {10.0, 40.0}


def test_duplicates_are_released_together() -> None:
    core = ImpairmentCore(6)
    core.configure(AB, Impairment(delay_ms=5, duplicate=0.2))
    released = _flow(core, 2000)
    twice = [i for i, times in released.items() if len(times) == 2]
    assert len(twice) == core.stats(AB).duplicated
    assert abs(len(twice) - 400) < 4 * math.sqrt(2000 * 0.2 * 0.8)
    assert all(released[i][0] == released[i][1] for i in twice)
    assert core.stats(AB).released == 2000 + len(twice)


def test_a_cut_drops_arrivals_and_packets_in_flight_then_flow_resumes() -> None:
    core = ImpairmentCore(0)
    core.configure(AB, Impairment(delay_ms=50))
    for i in range(10):  # sent at 0..0.9 s, due 50 ms later
        core.submit(AB, bytes([i]), i * 0.1)
    core.cut(AB, 0.52, 0.81)
    core.submit(BA, b"other way", 0.6)  # the cut is per direction
    released = core.release_due(2.0)
    indices = [p[0] for d, p in released if d is AB]
    # due at 0.55, 0.65 and 0.75: in the cut, lost; due at 0.85 and later: released
    assert indices == [0, 1, 2, 3, 4, 8, 9]
    assert (BA, b"other way") in released
    assert core.stats(AB).cut == 3
    with pytest.raises(ValueError, match="before it starts"):
        core.cut(AB, 1.0, 0.5)


def test_a_cut_during_arrival_drops_without_scheduling() -> None:
    core = ImpairmentCore(0)
    core.cut(AB, 0.0, 1.0)
    core.submit(AB, b"x", 0.5)
    assert core.pending == 0 and core.stats(AB).cut == 1
    core.submit(AB, b"y", 1.0)  # the window is half-open
    assert core.release_due(1.0) == [(AB, b"y")]


def test_waiting_packets_are_bounded() -> None:
    core = ImpairmentCore(0, max_pending=100)
    core.configure(AB, Impairment(delay_ms=1000))
    for i in range(150):
        core.submit(AB, b"x", i * 0.001)
    assert core.pending == 100 and core.stats(AB).overflow == 50


# --- control protocol ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "cmd",
    [
        Configure(BA, Impairment(loss=0.25, delay_ms=3, jitter_ms=1, distribution=Jitter.NORMAL)),
        CutLink((AB,), 2.5),
        CutLink(BOTH, 0.0),
        StatsRequest(),
        Quit(),
    ],
)
def test_commands_round_trip(cmd: Configure | CutLink | StatsRequest | Quit) -> None:
    line = encode_command(cmd)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode_command(line[:-1]) == cmd


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"op": "explode"}', "unknown op"),
        (b'{"op": "cut", "directions": [], "seconds": 1}', "non-empty"),
        (b'{"op": "cut", "directions": ["a_to_b"], "seconds": -1}', "seconds >= 0"),
        (b'{"op": "cut", "directions": ["a_to_b"], "seconds": NaN}', "seconds >= 0"),
        (b'{"op": "cut", "directions": ["up"], "seconds": 1}', "unknown direction"),
        (b'{"op": "configure", "direction": "a_to_b", "impairment": {"loss": 2}}', "loss"),
        (b'{"op": "configure", "direction": "a_to_b", "impairment": {"loss": true}}', "number"),
        (b'{"op": "configure", "direction": "a_to_b", "impairment": {"x": 1}}', "unknown"),
        (b'{"op": "configure", "direction": "a_to_b", "impairment": []}', "object"),
    ],
)
def test_garbage_commands_are_the_senders_fault(line: bytes, message: str) -> None:
    with pytest.raises(ControlError, match=message):
        decode_command(line)


@given(st.binary(max_size=200))
def test_decode_command_raises_only_control_errors_on_bytes(data: bytes) -> None:
    with contextlib.suppress(ControlError):
        decode_command(data)


_json = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@given(
    st.fixed_dictionaries(
        {"op": st.sampled_from(["configure", "cut", "stats", "quit", "x"])},
        optional={
            "direction": _json | st.sampled_from(["a_to_b", "b_to_a"]),
            "directions": _json,
            "seconds": _json,
            "impairment": st.dictionaries(
                st.sampled_from(["loss", "delay_ms", "jitter_ms", "distribution", "reorder"]),
                _json,
            )
            | _json,
        },
    )
)
def test_decode_command_raises_only_control_errors_on_json(obj: dict[str, object]) -> None:
    with contextlib.suppress(ControlError):
        decode_command(json.dumps(obj).encode())
    with contextlib.suppress(ControlError):
        decode_reply(json.dumps(obj).encode())


def test_line_reader_reassembles_and_bounds_lines() -> None:
    reader = LineReader()
    assert reader.feed(b'{"a":') == []
    assert reader.feed(b'1}\n{"b"') == [b'{"a":1}']
    assert reader.feed(b":2}\n\n") == [b'{"b":2}', b""]
    with pytest.raises(ControlError, match="longer than"):
        reader.feed(b"x" * (MAX_LINE + 1))
    assert reader.feed(b"ok\n") == [b"ok"]  # the overlong line was dropped, framing goes on
    with pytest.raises(ControlError):
        LineReader(max_line=4).feed(b"12345\n")


def test_a_reply_needs_ok() -> None:
    assert decode_reply(b'{"ok": true, "start": 1}') == {"ok": True, "start": 1}
    with pytest.raises(ControlError, match="ok"):
        decode_reply(b'{"start": 1}')


# --- profiles -----------------------------------------------------------------------------


def test_the_named_profiles() -> None:
    assert list(PROFILES) == [
        "clean", "loss1_20ms", "loss5_reorder", "loss10_jitter", "loss5_150ms", "rate2m_20ms",
        "rate5m_20ms", "step_5_1_5", "cut3s",
    ]  # fmt: skip
    assert all(p.name == name for name, p in PROFILES.items())
    assert get_profile("loss1_20ms").a_to_b.impairment == Impairment(loss=0.01, delay_ms=20)
    rate = get_profile("rate2m_20ms").b_to_a.rate
    assert rate == RateLimit(2_000_000, 100.0)
    step = get_profile("step_5_1_5")
    assert [(s.at_s, s.rate_bps) for s in step.steps if s.direction is AB] == [
        (10.0, 1_500_000), (20.0, 5_000_000),
    ]  # fmt: skip
    assert step.timeline_s == 20.0
    cut = get_profile("cut3s").cuts[0]
    assert (cut.at_s, cut.duration_s, cut.directions) == (5.0, 3.0, BOTH)
    with pytest.raises(ValueError, match="known: clean, loss1_20ms"):
        get_profile("dialup")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"loss": 1.5}, "loss"),
        ({"duplicate": -0.1}, "duplicate"),
        ({"delay_ms": -1}, "delay_ms"),
        ({"jitter_ms": math.inf}, "jitter_ms"),
        ({"reorder": 0.1}, "reorder_ms"),
    ],
)
def test_impairments_validate(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Impairment(**kwargs)  # type: ignore[arg-type]


def test_rates_validate() -> None:
    assert RateLimit(2_000_000).burst_bytes == 3028  # two full frames: 5 ms would be 1250 B
    assert RateLimit(50_000_000).burst_bytes == 31_250
    with pytest.raises(ValueError, match="rate_bps"):
        RateLimit(100)
    with pytest.raises(ValueError, match="needs a starting rate"):
        Profile("x", "steps without a limit", steps=(RateStep(1.0, 1_000_000),))
