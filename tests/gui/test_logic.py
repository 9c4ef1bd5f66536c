"""vcall.gui.logic: the pure helpers behind the widgets."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.presets import get_preset
from pipeline.stats import (
    CongestionStats,
    DropStats,
    FreezeStats,
    LatencySummary,
    LossStats,
    MediaStats,
    RepairStats,
    SessionInfo,
)
from vcall.discovery.client import DiscoveryTimeout, ServerUnreachable, UserUnknown, WrongPassword
from vcall.gui.events import UserRow
from vcall.gui.logic import (
    CODEC_CHOICES,
    STAGE_ORDER,
    History,
    StatsView,
    chart_segments,
    codec_label,
    describe_end,
    describe_error,
    filter_users,
    fit_rows,
    fit_size,
    fit_text,
    format_duration,
    nice_ceiling,
    summarize_stats,
    to_ppm,
    valid_nick,
)

USERS = [UserRow(n, "127.0.0.1", 9000 + i) for i, n in enumerate(["bob", "Alice", "albert", "x"])]


def test_filter_as_you_type() -> None:
    assert [u.nick for u in filter_users(USERS, "")] == ["albert", "Alice", "bob", "x"]
    assert [u.nick for u in filter_users(USERS, "al")] == ["albert", "Alice"]
    assert [u.nick for u in filter_users(USERS, "ALI")] == ["Alice"]
    assert [u.nick for u in filter_users(USERS, " b ")] == ["albert", "bob"]
    assert filter_users(USERS, "zz") == []
    assert [u.nick for u in filter_users(USERS, "", exclude="bob")] == ["albert", "Alice", "x"]


def test_valid_nick() -> None:
    assert valid_nick("alice") is None
    for bad in ("", "a b", "a#b", "x" * 65, "a\nb"):
        assert valid_nick(bad)


def test_error_words() -> None:
    assert "Wrong password for alice" in describe_error(WrongPassword("x"), nick="alice")
    down = describe_error(ServerUnreachable("h:1 refused"), server="h:1")
    assert "h:1" in down and "down or unreachable" in down
    assert "did not answer" in describe_error(DiscoveryTimeout("t"), server="h:1")
    assert "No user called carol" in describe_error(UserUnknown("carol"), peer="carol")
    assert describe_error(ValueError("something odd")) == "Something odd"


@pytest.mark.parametrize(
    ("reason", "needle", "error"),
    [
        ("busy", "bob is busy", True),
        ("peer_denied", "bob declined", True),
        ("answer_timeout", "did not answer", True),
        ("failed", "Could not call bob: media broke", True),
        ("connection_lost", "Lost the connection", True),
        ("peer_hangup", "bob hung up", False),
        ("hangup", "ended", False),
        ("ring_timeout", "Missed call from bob", False),
        ("weird", "Call ended: weird", False),
    ],
)
def test_end_words(reason: str, needle: str, error: bool) -> None:
    message, is_error = describe_end(reason, "bob", "media broke" * (reason == "failed"))
    assert needle in message
    assert is_error is error
    assert describe_end(reason, "")[0][0].isupper()  # "The peer ...", "Call ..."


@pytest.mark.parametrize(
    ("detail", "expected"),
    [
        (
            "connect refused: connection refused by 127.0.0.1:9.",
            "Cannot reach bob: the user seems to be offline (connection refused by 127.0.0.1:9).",
        ),
        ("lookup of bob failed: NOK USER_UNKNOWN", "No user called bob is registered."),
        ("lookup of bob failed: timed out", "Cannot look bob up on the discovery server"),
        ("", "Could not call bob."),
    ],
)
def test_failure_words(detail: str, expected: str) -> None:
    message, error = describe_end("failed", "bob", detail)
    assert message.startswith(expected) and error


def test_format_duration() -> None:
    assert format_duration(0) == "0:00"
    assert format_duration(-3) == "0:00"
    assert format_duration(61.9) == "1:01"
    assert format_duration(3600 + 62) == "1:01:02"


@given(st.integers(1, 4000), st.integers(1, 4000), st.integers(2, 3000), st.integers(2, 3000))
def test_fit_size_keeps_inside_and_even(sw: int, sh: int, bw: int, bh: int) -> None:
    w, h = fit_size((sw, sh), (bw, bh))
    assert w % 2 == 0 and h % 2 == 0
    assert 2 <= w <= max(2, bw) and 2 <= h <= max(2, bh)


def test_fit_size_letterboxes() -> None:
    assert fit_size((1280, 720), (800, 800)) == (800, 450)
    assert fit_size((640, 480), (1000, 450)) == (600, 450)


def test_to_ppm() -> None:
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[0, 0] = (1, 2, 3)
    data = to_ppm(rgb)
    assert data.startswith(b"P6 3 2 255\n")
    assert data[len(b"P6 3 2 255\n") :][:3] == b"\x01\x02\x03"
    assert len(data) == len(b"P6 3 2 255\n") + 18
    with pytest.raises(ValueError):
        to_ppm(np.zeros((2, 3), np.uint8))


def media_stats(*, mode: str | None = "rtp", **figures: Any) -> MediaStats:
    """A MediaStats of a connected session with nothing measured yet, plus ``figures``."""
    info = SessionInfo(
        state="connected",
        rx_port=5004,
        mode=mode,
        peer="127.0.0.1:5006",
        sending=True,
        preset=get_preset("high"),
        source="pattern",
        codec_name="jpeg",
        uptime_s=1.0,
        controller_read_ms={},
        dead_stages=(),
    )
    defaults: dict[str, Any] = {
        "info": info,
        "latency_ms": {},
        "codec": None,
        "fps_sent": 0.0,
        "fps_received": 0.0,
        "fps_shown": 0.0,
        "fps_self_view": 0.0,
        "bitrate_sent_bps": 0,
        "bitrate_received_bps": 0,
        "loss": LossStats(None, 0, None, None),
        "jitter_ms": None,
        "jitter_buffer_delay_ms": None,
        "rtt_ms": None,
        "drops": DropStats(),
        "cpu_percent": {},
        "source": "pattern",
        "source_error": "",
        "stages": {},
    }
    return MediaStats(**(defaults | figures))


def test_summarize_stats_reads_the_session_snapshot() -> None:
    view = summarize_stats(
        media_stats(
            fps_shown=29.5,
            fps_sent=30,
            bitrate_received_bps=1_800_000,
            bitrate_sent_bps=2_000_000,
            loss=LossStats(
                lost_packets=3, lost_frames=0, remote_fraction_lost=0.005, remote_cumulative_lost=1
            ),
            rtt_ms=1.2,
            jitter_ms=0.4,
            latency_ms={
                "capture_to_display": LatencySummary(count=9, p50=40.0, p95=55.0),
                "decode": LatencySummary(count=1, p50=4.0),
                "capture": LatencySummary(count=1, p50=1.0),
                "encode": LatencySummary(count=0),
            },
            cpu_percent={"capture": 10.0, "total": 55.5},
            repair=RepairStats(recovered=12, packets_requested=15),
            congestion=CongestionStats(
                target_bps=1_234_000, target_reason="remb", adaptation="H264 1.23 Mbit/s"
            ),
        )
    )
    assert (view.fps_in, view.fps_out, view.kbps_in, view.kbps_out) == (29.5, 30, 1800, 2000)
    assert view.loss_pct == pytest.approx(0.5) and view.lost_packets == 3
    assert (view.c2d_p50_ms, view.c2d_p95_ms, view.rtt_ms) == (40.0, 55.0, 1.2)
    assert view.stages == (("capture", 1.0), ("decode", 4.0))  # pipeline order
    assert view.sending == "high 1280x720 q70"
    assert view.mode == "rtp" and view.source_error == ""
    labels = dict(view.lines())
    assert labels["RTT / jitter"] == "1.2 / 0.4 ms"
    assert labels["capture→display p50/p95"] == "40 / 55 ms"
    assert labels["media / CPU"] == "RTP / 56 %"
    assert labels["kbit/s in / out / target"] == "1800 / 2000 / 1234"
    assert labels["loss (peer) / lost / RTX"] == "0.5 % / 3 / 12"
    assert labels["encoder"] == "H264 1.23 Mbit/s, estimate"
    assert "source error" not in labels
    broken = summarize_stats(media_stats(source_error="cannot open /x.mp4"))
    assert dict(broken.lines())["source error"] == "cannot open /x.mp4"
    # Nothing measured yet, before the media connects: every figure but the rates is "–".
    empty = summarize_stats(media_stats(mode=None, rtt_ms=float("nan")))
    assert empty == StatsView(
        fps_in=0.0, fps_out=0.0, kbps_in=0.0, kbps_out=0.0, sending="high 1280x720 q70"
    )
    assert dict(empty.lines())["RTT / jitter"] == "– / –"
    assert "media / CPU" not in dict(empty.lines())


# Optional figures as a session may report them, the non-finite ones included (a NaN must never
# reach the chart or show as "nan").
figure = st.none() | st.floats()
count = st.none() | st.integers(0, 10**12)
latency = st.builds(LatencySummary, count=st.integers(0, 10**6), p50=figure, p95=figure)


@given(
    st.builds(
        media_stats,
        mode=st.none() | st.sampled_from(["v0", "rtp"]),
        fps_shown=st.floats(),
        fps_sent=st.floats(),
        bitrate_received_bps=st.integers(0, 10**12),
        loss=st.builds(LossStats, count, st.integers(0, 10**9), figure, count),
        rtt_ms=figure,
        jitter_ms=figure,
        latency_ms=st.dictionaries(st.sampled_from(["capture_to_display", *STAGE_ORDER]), latency),
        cpu_percent=st.dictionaries(st.sampled_from(["total", "capture"]), st.floats()),
        source_error=st.sampled_from(["", "no camera"]),
        freezes=st.builds(
            FreezeStats,
            frames_shown=st.integers(0, 10**9),
            freeze_count=st.integers(0, 10**9),
            total_freezes_duration_s=st.floats(),
            longest_gap_ms=st.floats(),
        ),
    )
)
def test_summarize_stats_shows_no_nan(stats: MediaStats) -> None:
    view = summarize_stats(stats)
    for label, value in view.lines():
        assert "nan" not in value and "inf" not in value, (label, value)
    for name in History.SERIES:
        number = getattr(view, name)
        assert number is None or math.isfinite(number)


def test_history_and_chart() -> None:
    history = History(length=4)
    for fps in (10.0, None, 20.0, 30.0, 40.0):
        history.add(StatsView(fps_in=fps))
    assert history.series("fps_in") == [None, 20.0, 30.0, 40.0]  # bounded: oldest dropped
    top = nice_ceiling(40.0)
    assert top == 50.0
    segments = chart_segments(history.series("fps_in"), 31, 11, 4, top)
    assert len(segments) == 1
    xs, ys = segments[0][0::2], segments[0][1::2]
    assert xs == [10.0, 20.0, 30.0]  # newest at the right edge
    assert ys[-1] == pytest.approx(10 * (1 - 40 / 50))
    assert chart_segments([1.0, None, 2.0], 31, 11, 3, 10) == []  # single points dropped
    assert chart_segments([5.0, 500.0], 11, 11, 2, 10)[0][3] == 0.0  # clipped to the top


@pytest.mark.parametrize(
    ("value", "top"), [(0, 1.0), (0.3, 0.5), (1, 1), (1.5, 2), (7, 10), (30, 50), (101, 200)]
)
def test_nice_ceiling(value: float, top: float) -> None:
    assert nice_ceiling(value) == pytest.approx(top)


def test_fit_text_takes_the_longest_that_fits() -> None:
    variants = ("Ctrl+E hang up · Ctrl+H hold", "^E ^H", "Call menu")
    measure = len  # one pixel a character
    assert fit_text(variants, 100, measure) == variants[0]
    assert fit_text(variants, len(variants[0]), measure) == variants[0]
    assert fit_text(variants, len(variants[0]) - 1, measure) == "^E ^H"
    assert fit_text(variants, 4, measure) == ""
    assert fit_text(variants, -50, measure) == ""


def test_fit_rows_drops_the_stage_rows_first() -> None:
    rows = [("fps", "1"), ("kbit/s", "2"), ("  capture", "3"), ("  encode", "4"), ("cpu", "5")]
    assert fit_rows(rows, 10) == rows
    assert fit_rows(rows, 5) == rows
    assert fit_rows(rows, 4) == [("fps", "1"), ("kbit/s", "2"), ("cpu", "5")]
    assert fit_rows(rows, 3) == [("fps", "1"), ("kbit/s", "2"), ("cpu", "5")]
    assert fit_rows(rows, 2) == [("fps", "1"), ("kbit/s", "2")]
    assert fit_rows(rows, 0) == fit_rows(rows, -3) == []


def test_freezes_row_says_how_many_how_long_and_the_longest_gap() -> None:
    label = "freezes / longest gap"

    def row(**figures: Any) -> str:
        return dict(summarize_stats(media_stats(freezes=FreezeStats(**figures))).lines())[label]

    assert row() == "– / –"  # no frame shown yet
    assert row(frames_shown=1) == "0 / –"  # one frame: no gap yet
    assert row(frames_shown=90, longest_gap_ms=71.4) == "0 / 71 ms"
    two = row(frames_shown=300, freeze_count=2, total_freezes_duration_s=0.84, longest_gap_ms=450.2)
    assert two == "2 (0.8 s) / 450 ms"
    assert dict(StatsView().lines())[label] == "– / –"
    # Where it sits: after the headline latency, before the per-stage rows and media / CPU, so
    # a short panel drops the stages, then media / CPU, and only then this row.
    view = summarize_stats(
        media_stats(
            freezes=FreezeStats(frames_shown=9, longest_gap_ms=70.0),
            latency_ms={"capture": LatencySummary(count=1, p50=1.0)},
            cpu_percent={"total": 50.0},
        )
    )
    labels = [name for name, _value in view.lines()]
    assert labels.index(label) == labels.index("capture→display p50/p95") + 1
    assert labels[-1] == "media / CPU" and labels[-2] == "  capture"
    kept = [name for name, _value in fit_rows(view.lines(), len(labels) - 1)]
    assert label in kept and "media / CPU" in kept and "  capture" not in kept
    kept = [name for name, _value in fit_rows(view.lines(), len(labels) - 2)]
    assert label in kept and "media / CPU" not in kept


def test_codec_choices_and_labels() -> None:
    assert CODEC_CHOICES == {
        "Automatic (H.264, else JPEG)": ("H264", "JPEG"),
        "H.264": ("H264",),
        "JPEG": ("JPEG",),
    }
    for label, codecs in CODEC_CHOICES.items():
        assert codec_label(codecs) == label
        assert codec_label(list(codecs)) == label
    assert codec_label(("JPEG", "H264")) == "JPEG, then H.264"  # not offered: still readable
