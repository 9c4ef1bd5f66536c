"""Audio in a real call between two media sessions on loopback (issue 12): real processes, real
UDP sockets, the audio on the video's port told apart by payload type and SSRC."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from benchmarks.audio_call import dominant_hz
from pipeline.audio.sources import read_wav
from pipeline.control import AudioSpec, MediaMode, PeerEndpoint
from pipeline.session import MediaSession
from tests.pipeline.test_session import wait_for

LOCAL = "127.0.0.1"


@contextmanager
def audio_call(
    tmp_path: Path, tone_a: str, tone_b: str, codec: str = "H264"
) -> Iterator[tuple[MediaSession, MediaSession, Path, Path]]:
    wav_a, wav_b = tmp_path / "a_hears.wav", tmp_path / "b_hears.wav"
    a = MediaSession(
        bind_ip=LOCAL,
        preset="low",
        audio=AudioSpec(source=tone_a, sink=f"wav:{wav_a}", processing=False),
    )
    b = MediaSession(
        bind_ip=LOCAL,
        preset="low",
        audio=AudioSpec(source=tone_b, sink=f"wav:{wav_b}", processing=False),
    )
    try:
        port_a, port_b = a.open(), b.open()
        a.connect(PeerEndpoint(LOCAL, port_b, MediaMode.RTP, 11, 22, codec=codec))
        b.connect(PeerEndpoint(LOCAL, port_a, MediaMode.RTP, 22, 11, codec=codec))
        yield a, b, wav_a, wav_b
    finally:
        a.close()
        b.close()


def _audio(session: MediaSession) -> dict[str, object]:
    return dict(session.stats().stages.get("audio", {}))


def _packets_in(session: MediaSession) -> int:
    counters = _audio(session).get("counters", {})
    assert isinstance(counters, dict)
    return int(counters.get("packets_in", 0))


def test_each_side_hears_the_others_tone_beside_the_video(tmp_path: Path) -> None:
    with audio_call(tmp_path, "tone:440", "tone:1000") as (a, b, wav_a, wav_b):
        wait_for(lambda: _packets_in(a) > 100 and _packets_in(b) > 100)  # 2 s of 20 ms packets
        wait_for(lambda: a.stats().fps_shown > 0 and b.stats().fps_shown > 0)  # video too
        stats_b = _audio(b)
        assert stats_b["active"] is True and stats_b["error"] == ""
    heard_by_a, heard_by_b = read_wav(str(wav_a)), read_wav(str(wav_b))
    # The last second of each recording is the other side's tone (Opus keeps the pitch).
    assert abs(dominant_hz(heard_by_a[-48000:]) - 1000) < 10
    assert abs(dominant_hz(heard_by_b[-48000:]) - 440) < 10
    assert np.abs(heard_by_b[-48000:]).max() > 3000  # a tone, not concealment noise


def test_the_audio_decision_stops_the_voice_and_a_video_pause_does_not(tmp_path: Path) -> None:
    with audio_call(tmp_path, "tone:440", "tone:1000") as (a, b, _wav_a, _wav_b):
        wait_for(lambda: _packets_in(b) > 50)
        a.set_audio_sending(False)  # mute (or hold): the call session's decision
        time.sleep(0.3)  # what was in flight arrives
        muted_at = _packets_in(b)
        time.sleep(1.0)
        assert _packets_in(b) - muted_at <= 2
        assert _audio(a)["sending"] is False and a.stats().audio.sending is False
        a.set_audio_sending(True)
        wait_for(lambda: _packets_in(b) > muted_at + 25)
        # A video pause is not a mute: the voice goes on.
        a.set_sending(False)
        paused_at = _packets_in(b)
        wait_for(lambda: _packets_in(b) > paused_at + 25)
        assert a.stats().audio.sending is True


def test_a_classic_v0_call_has_no_audio(tmp_path: Path) -> None:
    with audio_call(tmp_path, "tone:440", "tone:1000", codec="JPEG") as (a, b, _wa, _wb):
        pass  # RTP, JPEG: audio flows (the codec does not matter)
    a = MediaSession(bind_ip=LOCAL, preset="low", audio=AudioSpec("tone:440", "null", False))
    b = MediaSession(bind_ip=LOCAL, preset="low")
    try:
        port_a, port_b = a.open(), b.open()
        a.connect(PeerEndpoint(LOCAL, port_b, MediaMode.V0, codec="JPEG"))
        b.connect(PeerEndpoint(LOCAL, port_a, MediaMode.V0, codec="JPEG"))
        wait_for(lambda: b.stats().fps_shown > 0)
        assert _audio(a)["active"] is False  # nothing was started for a classic peer
        assert b.stats().drops.malformed == 0  # and nothing but V0 datagrams reached b
    finally:
        a.close()
        b.close()


def test_a_device_that_cannot_open_leaves_a_video_call_without_audio(tmp_path: Path) -> None:
    spec = AudioSpec(source="tone:440", sink="device:no-such-speaker-here", processing=False)
    a = MediaSession(bind_ip=LOCAL, preset="low", audio=spec)
    b = MediaSession(bind_ip=LOCAL, preset="low")
    try:
        port_a, port_b = a.open(), b.open()
        a.connect(PeerEndpoint(LOCAL, port_b, MediaMode.RTP, 11, 22, codec="H264"))
        b.connect(PeerEndpoint(LOCAL, port_a, MediaMode.RTP, 22, 11, codec="H264"))
        wait_for(lambda: a.stats().audio.error != "")
        wait_for(lambda: a.stats().fps_shown > 0 and b.stats().fps_shown > 0)  # the call goes on
        audio = a.stats().audio
        assert audio.active is False and "no-such-speaker-here" in audio.error
        assert a.stats().info.dead_stages == ()
    finally:
        a.close()
        b.close()
