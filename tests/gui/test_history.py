"""The call history's pure parts: outcomes from end reasons, the tracker, the JSON file (any
bytes in it are survived), the rows shown; the shortcut table and the picture-in-picture
geometry; the notices over the pictures and the connection-quality bars."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vcall.call.state import EndReason
from vcall.gui.history import (
    MAX_FILE_BYTES,
    MAX_RECORDS,
    CallLog,
    CallRecord,
    Direction,
    HistoryTracker,
    Outcome,
    describe_record,
    outcome_of,
)
from vcall.gui.logic import StatsView, connection_quality, pip_box, pip_position, pip_size
from vcall.gui.model import Phase, UiModel, peer_notice, self_notice
from vcall.gui.shortcuts import SHORTCUTS, Scope, help_rows, plain_key_applies

IN, OUT = Direction.INCOMING, Direction.OUTGOING


@pytest.mark.parametrize(
    ("direction", "reason", "answered", "outcome"),
    [
        (IN, "ring_timeout", False, Outcome.MISSED),
        (IN, "peer_hangup", False, Outcome.MISSED),  # the caller gave up
        (IN, "denied", False, Outcome.DECLINED),
        (IN, "hangup", True, Outcome.ANSWERED),
        (OUT, "peer_denied", False, Outcome.DENIED),
        (OUT, "busy", False, Outcome.BUSY),
        (OUT, "answer_timeout", False, Outcome.NO_ANSWER),
        (OUT, "hangup", False, Outcome.CANCELLED),
        (OUT, "failed", False, Outcome.FAILED),
        (OUT, "connection_lost", True, Outcome.ANSWERED),
    ],
)
def test_outcomes(direction: Direction, reason: str, answered: bool, outcome: Outcome) -> None:
    assert outcome_of(direction, reason, answered) is outcome


def test_every_end_reason_has_an_outcome_both_ways() -> None:
    for reason in EndReason:
        for direction in Direction:
            assert isinstance(outcome_of(direction, reason.value, False), Outcome)


def test_tracker_durations_and_marks() -> None:
    tracker = HistoryTracker()
    assert tracker.ended("hangup", 10.0) is None  # no call under way
    tracker.dialing("bob", 1_000_000.0)
    tracker.connected(100.0)
    record = tracker.ended("hangup", 161.5)
    assert record == CallRecord("bob", OUT, Outcome.ANSWERED, 1_000_000.0, 61.5, True)
    tracker.ringing("carol", 2_000_000.0)
    missed = tracker.ended("ring_timeout", 200.0)
    assert missed is not None and missed.outcome is Outcome.MISSED and not missed.seen
    assert missed.duration_s == 0.0
    assert tracker.ended("hangup", 300.0) is None  # one record per call


def test_log_round_trip_cap_and_marks(tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    log = CallLog(path)
    log.load()
    assert log.records == []
    for i in range(MAX_RECORDS + 5):
        log.add(CallRecord(f"u{i}", IN, Outcome.MISSED, 1_700_000_000.0 + i, 0.0, seen=False))
    assert len(log.records) == MAX_RECORDS and log.records[0].peer == f"u{MAX_RECORDS + 4}"
    again = CallLog(path)
    again.load()
    assert again.records == log.records and again.unseen_missed == MAX_RECORDS
    assert again.mark_seen() and again.unseen_missed == 0 and not again.mark_seen()
    third = CallLog(path)
    third.load()
    assert third.unseen_missed == 0
    text = json.loads(path.read_text())[0]["at"]
    assert dt.datetime.fromisoformat(text).tzinfo is not None  # a date with its zone


def test_log_skips_bad_records(tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    good = CallRecord("bob", OUT, Outcome.BUSY, 1_700_000_000.0).to_json()
    bad = [
        {**good, "outcome": "exploded"},
        {**good, "at": "yesterday"},
        {**good, "at": "2026-01-01T00:00:00"},  # no time zone
        {**good, "duration_s": -1},
        7,
        {},
    ]
    path.write_text(json.dumps([good, *bad]))
    log = CallLog(path)
    log.load()
    assert [r.peer for r in log.records] == ["bob"] and log.skipped == len(bad)


@given(st.binary(max_size=2000))
def test_log_survives_any_bytes(raw: bytes) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.json"
        path.write_bytes(raw)
        log = CallLog(path)
        log.load()  # never raises
        assert all(isinstance(r, CallRecord) for r in log.records)


def test_log_ignores_an_oversized_file(tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    path.write_bytes(b"[" + b" " * MAX_FILE_BYTES + b"]")
    log = CallLog(path)
    log.load()
    assert log.records == []


def test_rows_show_dates_and_durations() -> None:
    now = dt.datetime(2026, 11, 30, 15, 0).timestamp()
    today = CallRecord("bob", OUT, Outcome.ANSWERED, now - 3600, 151.0)
    assert describe_record(today, now) == ("14:00", "bob", "↗ answered", "2:31")
    older = CallRecord("carol", IN, Outcome.MISSED, now - 3 * 86400, seen=False)
    assert describe_record(older, now) == ("2026-11-27 15:00", "carol", "↙ missed ●", "")


def test_shortcut_table() -> None:
    sequences = [seq for s in SHORTCUTS for seq in s.sequences]
    assert len(sequences) == len(set(sequences))
    by = {s.action: s for s in SHORTCUTS}
    assert by["quit"].key == "Ctrl+Q" and by["close"].key == "Ctrl+W"
    assert by["video"].key == "V" and by["mute"].key == "M" and by["help"].key == "F1"
    assert by["leave_fullscreen"].sequences == ("<Escape>",)
    assert "hangup" not in {s.action for s in SHORTCUTS if "<Escape>" in s.sequences}
    assert by["quit"].scope is Scope.ANY and by["video"].scope is Scope.CALL
    assert ("Ctrl+Q", "Quit") in help_rows()
    assert plain_key_applies(0, typing=False)
    assert not plain_key_applies(0, typing=True)
    assert not plain_key_applies(0x4, typing=False)  # Ctrl+V is not V


@given(
    st.tuples(st.integers(2, 4000), st.integers(2, 3000)),
    st.floats(-5, 5),
    st.floats(-5, 5),
)
def test_pip_stays_inside(area: tuple[int, int], fx: float, fy: float) -> None:
    x, y, w, h = pip_box(area, (fx, fy))
    assert (w, h) == pip_size(area)
    assert x >= 0 and y >= 0
    if area[0] >= w + 16 and area[1] >= h + 16:
        assert x + w <= area[0] - 8 and y + h <= area[1] - 8


def test_pip_position_round_trip() -> None:
    area = (1000, 600)
    assert pip_box(area, pip_position(area, 300, 200))[:2] == (300, 200)
    assert pip_position(area, -50, 10_000) == (0.0, 1.0)


CONNECTED = UiModel(phase=Phase.CONNECTED, peer="bob", connected_at=0.0, video_expected_at=0.0)


def test_notices_over_the_pictures() -> None:
    rep = dataclasses.replace
    assert peer_notice(CONNECTED, 1.0) == "" and self_notice(CONNECTED) == ""
    assert peer_notice(rep(CONNECTED, hold_remote=True), 9.0) == "bob put the call on hold"
    assert peer_notice(rep(CONNECTED, hold_local=True), 9.0) == "On hold: Ctrl+H resumes"
    both = rep(CONNECTED, hold_local=True, hold_remote=True)
    assert peer_notice(both, 9.0) == "On hold (both you and bob)"
    assert self_notice(both) == "On hold: not sent"
    assert self_notice(rep(CONNECTED, sending=False)) == "Your video is off (V turns it on)"
    assert peer_notice(CONNECTED, 5.0) == "No video from bob for 5 s"
    assert peer_notice(rep(CONNECTED, phase=Phase.IDLE), 50.0) == ""


@pytest.mark.parametrize(
    ("view", "bars"),
    [
        (StatsView(), 0),
        (StatsView(loss_pct=0.0, rtt_ms=3.0, jitter_ms=0.5), 4),
        (StatsView(loss_pct=2.0, rtt_ms=3.0, jitter_ms=0.5), 3),
        (StatsView(loss_pct=0.0, rtt_ms=400.0), 2),
        (StatsView(loss_pct=20.0, rtt_ms=3.0, jitter_ms=0.5), 1),
        (StatsView(jitter_ms=150.0), 1),
    ],
)
def test_connection_quality(view: StatsView, bars: int) -> None:
    got, words = connection_quality(view)
    assert got == bars and words
