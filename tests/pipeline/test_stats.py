"""Pure statistics helpers: latency windows and rate meters (time passed in)."""

from __future__ import annotations

import json

import pytest

from pipeline.stats import LatencyWindow, RateMeter, percentile

pytestmark = pytest.mark.usefixtures("no_leaks")


def test_percentiles_of_a_known_distribution() -> None:
    win = LatencyWindow()
    for ms in range(1, 101):
        win.add_ns(ms * 1_000_000)
    s = win.summary()
    assert s["count"] == 100
    assert s["p50"] == pytest.approx(50.0, abs=1)
    assert s["p95"] == pytest.approx(95.0, abs=1)
    assert s["p99"] == pytest.approx(99.0, abs=1)
    assert s["max"] == 100.0
    assert s["mean"] == pytest.approx(50.5)
    json.dumps(s)


def test_window_is_bounded_and_ignores_missing_stamps() -> None:
    win = LatencyWindow(size=10)
    for ms in range(1000):
        win.add_ns(ms * 1_000_000)
    win.add_ns(-5)  # a stamp that was never set: not a negative latency
    s = win.summary()
    assert s["count"] == 1000
    assert s["p50"] >= 990
    assert LatencyWindow().summary() == {"count": 0}


def test_percentile_nearest_rank() -> None:
    assert percentile([1.0], 99) == 1.0
    assert percentile([1.0, 2.0, 3.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0], 0) == 1.0


def test_rate_meter_counts_events_and_bits_over_its_window() -> None:
    meter = RateMeter(window_s=2.0)
    second = 1_000_000_000
    for i in range(31):  # 30 intervals of 1/30 s: 30 frames/s, 1000 bytes each
        meter.add(i * second // 30, 1000)
    now = second
    assert meter.rate(now) == pytest.approx(30.0, rel=0.01)
    assert meter.bits_per_second(now) == pytest.approx(30 * 8000, rel=0.01)
    assert meter.total == 31
    assert meter.rate(10 * second) == 0.0  # everything expired
    assert RateMeter().rate(0) == 0.0


def test_freezes_and_pauses_follow_the_webrtc_stats_rules() -> None:
    from pipeline.stats import FreezeDetector

    d = FreezeDetector()
    t = 0.0
    for _ in range(40):  # steady 30 fps
        d.shown(t)
        t += 1 / 30
    assert d.stats(t).freeze_count == 0
    t += 0.1  # 133 ms: under mean + 150 ms, not a freeze
    d.shown(t)
    assert d.stats(t).freeze_count == 0
    t += 0.4  # 400 ms: over max(3 x mean, mean + 150 ms)
    d.shown(t)
    s = d.stats(t)
    assert (s.freeze_count, s.total_freezes_duration_s) == (1, 0.4)
    t += 6.0  # held or paused: a pause, not a freeze
    d.shown(t)
    s = d.stats(t + 0.25)
    assert (s.freeze_count, s.pause_count, s.total_pauses_duration_s) == (1, 1, 6.0)
    assert s.longest_gap_ms == 6000.0 and s.since_last_frame_ms == 250.0
    assert s.frames_shown == 43 and s.showing_s == round(t + 0.25 - 0.0, 3)  # first at 0.0
    assert FreezeDetector().stats(1.0).since_last_frame_ms is None
    assert FreezeDetector().stats(1.0).showing_s == 0.0
