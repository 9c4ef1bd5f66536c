"""The words of the call experience, as the pure model gives them (no display needed): the
peer's mute and pause over its picture, one's own mute mark, the reconnecting banner and a
busy attempt, and the history record of that attempt."""

from __future__ import annotations

import json
from pathlib import Path

from vcall.gui import events as ev
from vcall.gui.history import CallLog, CallRecord, Outcome, describe_record, missed_while_busy
from vcall.gui.model import (
    NO_VIDEO_AFTER_S,
    Phase,
    UiModel,
    peer_mark,
    peer_notice,
    reconnect_banner,
    reduce,
    self_mark,
)


def in_call(now: float = 100.0) -> UiModel:
    model = reduce(UiModel(), ev.Dialing("bob"), now)
    return reduce(model, ev.Connected("bob", "rtp", "H264"), now)


def test_the_peers_pause_and_mute_are_shown_and_die_with_the_call() -> None:
    model = reduce(in_call(), ev.PeerMedia(muted=True, paused=False), 101.0)
    assert (peer_notice(model, 101.0), peer_mark(model)) == ("", "bob is muted")
    model = reduce(model, ev.PeerMedia(muted=True, paused=True), 102.0)
    # Said instead of "No video from bob", however long the pause lasts.
    assert peer_notice(model, 150.0) == "bob paused their video"
    # A hold says more than a pause: it stops both ways.
    held = reduce(model, ev.HoldState(local=False, remote=True), 103.0)
    assert peer_notice(held, 103.0) == "bob put the call on hold"
    # Back: the video's gap counts from the resume, not from the start of the pause.
    model = reduce(model, ev.PeerMedia(muted=False, paused=False), 200.0)
    assert (peer_notice(model, 200.5), peer_mark(model)) == ("", "")
    late = 200.0 + NO_VIDEO_AFTER_S + 1
    assert peer_notice(model, late) == f"No video from bob for {int(NO_VIDEO_AFTER_S + 1)} s"
    for end in (ev.Ended("bob hung up."), ev.Connected("carol", "rtp")):
        after = reduce(reduce(model, ev.PeerMedia(True, True), 201.0), end, 202.0)
        assert not after.peer_muted and not after.peer_paused


def test_own_mute_mark() -> None:
    model = in_call()
    assert self_mark(model) == ""
    assert self_mark(reduce(model, ev.MutedChanged(True), 101.0)) == "Muted (M)"
    assert self_mark(UiModel(phase=Phase.IDLE, muted=True)) == ""  # only in a call


def test_the_reconnecting_banner_counts_the_silence_until_the_peer_is_back() -> None:
    model = reduce(in_call(), ev.LinkState(reconnecting=True, silence_s=2.0), 110.0)
    assert reconnect_banner(model, 110.0) == "Reconnecting to bob… 2 s"
    assert reconnect_banner(model, 120.4) == "Reconnecting to bob… 12 s"
    assert reconnect_banner(reduce(model, ev.LinkState(False, 5.0), 111.0), 111.0) == ""
    assert reconnect_banner(reduce(model, ev.Ended("lost", True), 111.0), 111.0) == ""
    assert reconnect_banner(in_call(), 500.0) == ""


def test_a_busy_attempt_is_told_and_kept_as_an_unseen_missed_call(tmp_path: Path) -> None:
    model = reduce(in_call(), ev.MissedBusy("carol"), 105.0)
    assert model.message == "carol tried to call you" and not model.message_error
    assert model.phase is Phase.CONNECTED  # nothing else changes
    record = missed_while_busy("carol", 1_700_000_000.0)
    assert (record.outcome, record.seen) == (Outcome.MISSED_BUSY, False)
    assert describe_record(record, 1_700_000_000.0)[1:] == ("carol", "↙ missed (busy) ●", "")
    assert CallRecord.from_json(json.loads(json.dumps(record.to_json()))) == record
    log = CallLog(tmp_path / "history.json")
    log.add(record)
    assert log.unseen_missed == 1 and log.mark_seen() and log.unseen_missed == 0
