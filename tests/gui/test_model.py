"""vcall.gui.model: the whole user journey's screen logic, without a display."""

from __future__ import annotations

import dataclasses

from pipeline.presets import get_preset
from pipeline.stats import FreezeStats, MediaStats, SessionInfo, summarise
from vcall.gui import events as ev
from vcall.gui.model import (
    Phase,
    Screen,
    UiModel,
    no_video_notice,
    reduce,
    status_line,
    window_title,
)


def run(events: list[ev.Event], start: UiModel | None = None, now: float = 100.0) -> UiModel:
    model = start or UiModel()
    for event in events:
        model = reduce(model, event, now)
    return model


def test_login_failure_stays_on_login_with_message() -> None:
    model = run([ev.LoginFailed("Wrong password for alice.")])
    assert model.screen is Screen.LOGIN
    assert model.message_error and "Wrong password" in model.message


def test_journey() -> None:
    model = run([ev.LoggedIn("alice", ("127.0.0.1", 8000))])
    assert model.screen is Screen.MAIN and model.nick == "alice"
    model = run([ev.Dialing("bob")], model)
    assert (model.screen, model.phase) == (Screen.CALL, Phase.DIALING)
    assert status_line(model, 100.0) == "Calling bob…"
    model = reduce(model, ev.Connected("bob", "rtp", "H264"), 100.0)
    assert model.phase is Phase.CONNECTED
    assert status_line(model, 165.0) == "In call with bob · 1:05 · RTP H264 medium"
    model = run([ev.HoldState(True, False), ev.SendingChanged(False)], model)
    assert (
        status_line(model, 100.0)
        == "In call with bob · 0:00 · on hold · sending paused · RTP H264 medium"
    )
    model = run([ev.HoldState(False, True)], model)
    assert "held by bob" in status_line(model, 100.0)
    model = run([ev.PresetChanged("high"), ev.SourceChanged("file:/x.mp4")], model)
    assert (model.preset, model.source) == ("high", "file:/x.mp4")
    model = run([ev.Ended("bob hung up.")], model)
    assert (model.screen, model.phase, model.peer) == (Screen.MAIN, Phase.IDLE, "")
    assert model.sending and not model.hold_remote and model.codec == ""
    assert model.preset == "high"  # settings outlive the call
    assert status_line(model, 0) == "Not in a call"


def test_status_line_without_a_codec_and_for_a_classic_call() -> None:
    unknown = run([ev.Connected("bob", "rtp")])  # a Connected that does not name the codec
    assert status_line(unknown, 100.0) == "In call with bob · 0:00 · RTP medium"
    classic = run([ev.Connected("bob", "v0", "JPEG")], unknown)
    assert status_line(classic, 100.0) == "In call with bob · 0:00 · V0 JPEG medium"


def test_status_line_says_muted_and_what_protects_the_call() -> None:
    secure = run([ev.Connected("bob", "rtp", "H264", "srtp+tls, verified")])
    assert status_line(secure, 100.0) == (
        "In call with bob · 0:00 · encrypted, bob's key matches the directory · RTP H264 medium"
    )
    muted = run([ev.MutedChanged(True)], secure)
    assert "· muted ·" in status_line(muted, 100.0) and muted.sending  # a mute is no pause
    assert not run([ev.MutedChanged(False)], muted).muted
    classic = run([ev.Connected("bob", "v0", "JPEG", "none: classic peer")])
    assert "not encrypted: classic peer" in status_line(classic, 100.0)
    # A new call starts unmuted.
    again = run([ev.Ended("bob hung up."), ev.Connected("bob", "rtp", "H264")], muted)
    assert not again.muted


def test_incoming_ring_countdown_and_logout() -> None:
    model = run([ev.LoggedIn("bob", ("h", 1)), ev.Ringing("alice", 30.0)], now=10.0)
    assert model.phase is Phase.RINGING and model.screen is Screen.MAIN
    assert status_line(model, 25.0) == "alice is calling (15 s)"
    model = run([ev.Ended("Missed call from alice.")], model)
    assert model.phase is Phase.IDLE
    model = run([ev.PresetChanged("low"), ev.LoggedOut()], model)
    assert model.screen is Screen.LOGIN and model.nick == "" and model.preset == "low"


def test_unrelated_events_change_nothing() -> None:
    model = UiModel()
    info = SessionInfo(
        "connected", 5004, "rtp", "127.0.0.1:5006", True, get_preset("medium"), "pattern", "jpeg",
        1.0, {}, (),
    )  # fmt: skip
    assert reduce(model, ev.StatsUpdate(summarise(info, {}, {}), 0.0), 0.0) is model
    assert reduce(model, ev.MediaDetached(), 0.0) is model


def test_window_title_says_who_and_the_call_state() -> None:
    model = UiModel()
    assert window_title("vcall", model) == "vcall"
    model = run([ev.LoggedIn("alice", ("127.0.0.1", 8000))])
    assert window_title("vcall", model) == "vcall — alice"
    assert window_title("vcall", run([ev.Dialing("bob")], model)) == "vcall — alice — calling bob"
    ringing = run([ev.Ringing("bob", 20.0)], model)
    assert window_title("vcall", ringing) == "vcall — alice — bob is calling"
    connected = run([ev.Connected("bob", "rtp")], model)
    assert window_title("vcall", connected) == "vcall — alice — in call with bob"
    held = run([ev.HoldState(False, True)], connected)
    assert window_title("vcall", held) == "vcall — alice — in call with bob (on hold)"
    ended = run([ev.Ended("Call with bob ended.", False)], held)
    assert window_title("vcall", ended) == "vcall — alice"
    assert window_title("vcall", run([ev.LoggedOut()], ended)) == "vcall"


def test_codec_preference_changes_for_the_next_call_and_outlives_logout() -> None:
    model = run([ev.LoggedIn("alice", ("h", 1))])
    assert model.codec_preference == ("H264", "JPEG")  # automatic by default
    model = run([ev.CodecPreferenceChanged(("JPEG",))], model)
    assert model.codec_preference == ("JPEG",)
    assert (model.message, model.message_error) == ("Video codec for calls: JPEG.", False)
    model = run([ev.Ringing("bob", 30.0), ev.CodecPreferenceChanged(("H264", "JPEG"))], model)
    assert model.message == (
        "Video codec for calls: Automatic (H.264, else JPEG) (applies to the next call)."
    )
    assert model.phase is Phase.RINGING  # the ringing call goes on, with its own codec
    connected = run(
        [ev.Connected("bob", "rtp", "H264"), ev.CodecPreferenceChanged(("JPEG",))], model
    )
    assert connected.codec == "H264" and connected.codec_preference == ("JPEG",)
    assert status_line(connected, 100.0) == "In call with bob · 0:00 · RTP H264 medium"
    assert "applies to the next call" in connected.message
    ended = run([ev.Ended("bob hung up."), ev.LoggedOut()], connected)
    assert ended.codec_preference == ("JPEG",)  # a setting, like the preset


def _info() -> SessionInfo:
    return SessionInfo(
        "open", 5004, "rtp", "127.0.0.1:5006", True, get_preset("medium"), "pattern", "H264",
        1.0, {}, (),
    )  # fmt: skip


def shown(since_ms: float | None, at: float) -> ev.StatsUpdate:
    """A stats snapshot taken at ``at`` whose display stage last showed a frame ``since_ms``
    before (None: none yet)."""
    stats: MediaStats = dataclasses.replace(
        summarise(_info(), {}, {}),
        freezes=FreezeStats(
            frames_shown=0 if since_ms is None else 50, since_last_frame_ms=since_ms
        ),
    )
    return ev.StatsUpdate(stats, at)


def in_call(now: float = 100.0) -> UiModel:
    return run([ev.LoggedIn("alice", ("h", 1)), ev.Connected("bob", "rtp", "H264")], now=now)


def test_no_video_notice_counts_from_the_last_frame_shown() -> None:
    model = reduce(in_call(), shown(40.0, 110.0), 110.0)  # a frame at 109.96
    assert no_video_notice(model, 110.5) == ""
    assert no_video_notice(model, 112.9) == ""  # a gap under 3 s is not worth a word
    assert no_video_notice(model, 112.97) == "No video from bob for 3 s"
    assert no_video_notice(model, 114.5) == "No video from bob for 4 s"  # counts on
    # The next snapshots still see the same last frame: the gap keeps growing.
    model = reduce(model, shown(4040.0, 114.0), 114.0)
    assert no_video_notice(model, 115.0) == "No video from bob for 5 s"
    # Frames again: the notice goes with the first snapshot that shows them.
    model = reduce(model, shown(20.0, 115.5), 115.5)
    assert no_video_notice(model, 115.6) == ""
    # A stage clock a hair ahead of ours (a negative gap) counts as a frame just now.
    assert reduce(model, shown(-1.5, 116.0), 116.0).peer_video_at == 116.0


def test_no_video_notice_before_the_first_frame_counts_from_the_connection() -> None:
    model = reduce(in_call(now=100.0), shown(None, 102.0), 102.0)
    assert model.peer_video_at is None
    assert no_video_notice(model, 102.9) == ""
    assert no_video_notice(model, 103.2) == "No video from bob for 3 s"
    assert no_video_notice(run([ev.Dialing("bob")]), 200.0) == ""  # not in call yet


def test_no_video_notice_is_silent_while_held_and_counts_from_the_resume() -> None:
    model = reduce(in_call(), shown(10.0, 101.0), 101.0)
    for local, remote in ((True, False), (False, True), (True, True)):
        held = reduce(model, ev.HoldState(local, remote), 102.0)
        assert no_video_notice(held, 130.0) == "", (local, remote)
    held = reduce(model, ev.HoldState(False, True), 102.0)
    held = reduce(held, shown(19_000.0, 120.0), 120.0)  # no frame for 19 s: held
    resumed = reduce(held, ev.HoldState(False, False), 125.0)
    assert no_video_notice(resumed, 127.0) == ""  # the video has 3 s to come back
    assert no_video_notice(resumed, 128.5) == "No video from bob for 3 s"


def test_our_own_pause_does_not_silence_the_notice() -> None:
    model = reduce(in_call(), shown(10.0, 101.0), 101.0)
    paused = reduce(model, ev.SendingChanged(False), 101.0)
    assert no_video_notice(paused, 105.0) == "No video from bob for 4 s"


def test_the_call_end_forgets_the_video() -> None:
    model = reduce(in_call(), shown(10.0, 101.0), 101.0)
    ended = reduce(model, ev.Ended("bob hung up."), 102.0)
    assert (ended.peer_video_at, ended.video_expected_at) == (None, None)
    assert no_video_notice(ended, 200.0) == ""
    again = reduce(ended, ev.Connected("bob", "rtp", "H264"), 300.0)
    assert no_video_notice(again, 302.0) == ""  # counts from the new call, not the old frame
    assert no_video_notice(again, 303.0) == "No video from bob for 3 s"
