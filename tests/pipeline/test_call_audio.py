"""Audio in a real call between two media sessions on loopback (issue 12): real processes, real
UDP sockets, the audio on the video's port told apart by payload type and SSRC."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from benchmarks.audio_call import dominant_hz
from pipeline.audio.sinks import read_write_times
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


def _rms_db(pcm: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(pcm.astype(np.float64)))) / 32768))


def test_lip_sync_level_and_volume_in_a_protected_call(tmp_path: Path) -> None:
    """Audio SRs travel (SRTCP, from the audio stage's own socket) beside the video's and both
    reach the peer's lip sync, which measures the offset and adds nothing on this clean link;
    the sender's input level is in its stats; the receiver's volume changes what it plays."""
    key_a, key_b = bytes(range(30)), bytes(range(100, 130))
    wav_b = tmp_path / "b_hears.wav"
    a = MediaSession(bind_ip=LOCAL, preset="low", audio=AudioSpec("tone:440", "null", False))
    b = MediaSession(
        bind_ip=LOCAL, preset="low", audio=AudioSpec("silence", f"wavlog:{wav_b}", False)
    )
    try:
        port_a, port_b = a.open(), b.open()
        a.connect(PeerEndpoint(LOCAL, port_b, MediaMode.RTP, 11, 22, "H264", key_a, key_b))
        b.connect(PeerEndpoint(LOCAL, port_a, MediaMode.RTP, 22, 11, "H264", key_b, key_a))

        def synced() -> bool:
            sync = _audio(b).get("path", {}).get("sync", {})  # type: ignore[union-attr]
            return bool(sync.get("audio_srs", 0) >= 2 and sync.get("measurements", 0) >= 5)

        wait_for(synced)
        stats_b = b.stats()
        # Lip sync measured an offset (no SR from the peer would leave it None) and, the
        # loopback video and audio being within 40 ms of each other, added nothing.
        assert stats_b.audio.sync_offset_ms is not None
        assert abs(stats_b.audio.sync_offset_ms) < 150
        assert stats_b.audio.sync_delay_ms == 0.0
        assert _audio(b)["counters"]["rtcp_in"] >= 3  # type: ignore[index]
        # The audio SRs stayed out of the video's RTCP session (no "wrong source" report), and
        # SRTCP took them (nothing failed to unprotect).
        assert stats_b.drops.wrong_source == 0 and stats_b.drops.unprotect_failed == 0
        # The sender's microphone level: a -10 dBFS sine has an RMS of -13 dBFS.
        assert abs(a.stats().audio.input_dbfs - (-13.0)) < 1.5
        assert b.stats().audio.input_dbfs == -100.0  # silence
        time.sleep(1.0)
        heard_at = time.monotonic()
        b.set_audio_volume(0.5)
        wait_for(lambda: b.stats().audio.volume == 0.5)
        time.sleep(1.5)
    finally:
        a.close()
        b.close()
    pcm, times = read_wav(str(wav_b)), read_write_times(str(wav_b))
    frame_at = np.searchsorted(times, heard_at)
    before = pcm[(frame_at - 40) * 960 : (frame_at - 5) * 960]
    after = pcm[(frame_at + 30) * 960 : (frame_at + 65) * 960]
    assert len(before) > 0 and len(after) > 0
    # Half the amplitude is -6 dB (Opus keeps the level of a steady tone within a dB).
    assert abs((_rms_db(after) - _rms_db(before)) - (-6.0)) < 1.5
