"""The SDP vcall writes carries the audio and says how to decrypt (issues 12 and 14), checked
with the real tools: a real MediaSession (video pattern + ``tone:440`` through its audio stage,
SRTP or not) sends, ffmpeg or GStreamer receives.

- ffmpeg reads ``MediaSession.sdp()`` (audio on a port of its own, ``connect(audio_port=...)``:
  libavformat's SDP reader binds one socket per m-line) and decodes video frames, every one
  carrying a valid pattern stamp, and an audio track whose dominant frequency is 440 Hz; with
  SRTP it decrypts with the key of the SDP's ``a=crypto`` line (RFC 4568).
- GStreamer, on the single port a vcall peer receives both streams on: the pipeline of
  docs/interop.md (``rtpptdemux`` by payload type, ``srtpdec`` per SSRC with the SDP's key).
"""

from __future__ import annotations

import base64
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.audio_call import dominant_hz
from pipeline.audio.sources import read_wav
from pipeline.control import AudioSpec, MediaMode, audio_ssrc_of
from pipeline.session import MediaSession, MediaSessionError, PeerEndpoint
from pipeline.transport.srtp import new_master_key
from pipeline.wire.sdp import write_sdp
from tests.interop.test_session_interop import assert_stamped_in_order
from tests.interop.tools import free_port, running, wait_bound

pytestmark = pytest.mark.interop
LOCAL = "127.0.0.1"
VIDEO_FRAMES = 10
AUDIO_S = 1.2  # seconds of audio analysed
TONE_HZ = 440
SSRC = 0x0DDBA11
RATE = 48000


@pytest.fixture
def session() -> Iterator[MediaSession]:
    s = MediaSession(
        bind_ip=LOCAL, preset="low", audio=AudioSpec(f"tone:{TONE_HZ}", "null", processing=False)
    )
    try:
        yield s
    finally:
        s.close()


def _two_ports() -> tuple[int, int]:
    video = free_port()
    for _ in range(20):
        audio = free_port()
        if abs(audio - video) >= 2:
            return video, audio
    raise AssertionError("no second free UDP port pair")


def _sdp_key(text: str) -> bytes:
    """The master key + salt of the one ``a=crypto`` suite vcall writes (RFC 4568 9.1)."""
    keys = set(re.findall(r"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:([A-Za-z0-9+/=]+)", text))
    assert len(keys) == 1, text
    return base64.b64decode(keys.pop(), validate=True)


def _assert_tone(wav: Path) -> None:
    pcm = read_wav(str(wav))
    assert len(pcm) >= AUDIO_S * RATE * 0.9, len(pcm)
    tail = pcm[-int(AUDIO_S * RATE * 0.8) :]  # past the decoder's start
    assert abs(dominant_hz(tail) - TONE_HZ) < 3, dominant_hz(tail)
    assert float(abs(tail.astype(float)).mean()) > 1000  # a tone, not silence or noise


@pytest.mark.parametrize("srtp", [False, True], ids=["plain", "srtp"])
def test_ffmpeg_plays_sound_and_picture_from_the_sdp(
    session: MediaSession, tmp_path: Path, srtp: bool
) -> None:
    port, audio_port = _two_ports()
    tx_key = new_master_key() if srtp else None
    rx_key = new_master_key() if srtp else None
    session.open()
    peer = PeerEndpoint(LOCAL, port, MediaMode.RTP, local_ssrc=SSRC, tx_key=tx_key, rx_key=rx_key)
    session.connect(peer, audio_port=audio_port)
    sdp = tmp_path / "call.sdp"
    write_sdp(sdp, session.sdp())
    text = sdp.read_text()
    assert f"m=audio {audio_port} RTP/{'SAVP' if srtp else 'AVP'} 111" in text
    assert "a=rtpmap:111 opus/48000/2" in text
    assert f"a=ssrc:{audio_ssrc_of(SSRC)} " in text
    if srtp:
        assert sdp.stat().st_mode & 0o777 == 0o600
        assert _sdp_key(text) == tx_key
    else:
        assert "a=crypto" not in text
    wav = tmp_path / "heard.wav"
    cmd = [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
        "-probesize", "32", "-analyzeduration", "0",
        "-protocol_whitelist", "file,udp,rtp", "-i", str(sdp),
        "-map", "0:v", "-fps_mode", "passthrough", "-frames:v", str(VIDEO_FRAMES),
        str(tmp_path / "f%03d.png"),
        "-map", "0:a", "-ac", "1", "-ar", str(RATE), "-t", str(AUDIO_S), str(wav),
    ]  # fmt: skip
    with running(cmd) as proc:
        proc.wait(30)
        assert proc.stderr is not None
        stderr = proc.stderr.read().decode(errors="replace")
    assert proc.returncode == 0, stderr
    assert_stamped_in_order(tmp_path, VIDEO_FRAMES)
    _assert_tone(wav)


def _gst_branch(key: bytes, ssrc: int, pt: int, rtp_caps: str, tail: list[str]) -> list[str]:
    srtp = (
        f"application/x-srtp,ssrc=(uint){ssrc},srtp-key=(buffer){key.hex()},"
        "srtp-cipher=(string)aes-128-icm,srtp-auth=(string)hmac-sha1-80,"
        "srtcp-cipher=(string)aes-128-icm,srtcp-auth=(string)hmac-sha1-80"
    )
    return [
        f"d.src_{pt}", "!", "queue", "!", "capssetter", "join=false", "replace=true",
        f"caps={srtp}", "!", "srtpdec", "!", "capssetter", f"caps={rtp_caps},payload=(int){pt}",
        "!", *tail,
    ]  # fmt: skip


def test_gstreamer_decrypts_sound_and_picture_on_one_port(
    session: MediaSession, tmp_path: Path
) -> None:
    # srtpdec is in gst-plugins-bad (Debian: gstreamer1.0-plugins-bad, scripts/system-deps.sh).
    probe = subprocess.run(["gst-inspect-1.0", "srtpdec"], capture_output=True, check=False)
    assert probe.returncode == 0, "GStreamer's srtpdec is missing: install gstreamer1.0-plugins-bad"
    port = free_port()
    session.open()
    # A vcall peer's port: video and audio both arrive on it (no audio_port).
    peer = PeerEndpoint(
        LOCAL,
        port,
        MediaMode.RTP,
        local_ssrc=SSRC,
        tx_key=new_master_key(),
        rx_key=new_master_key(),
    )
    sdp = tmp_path / "call.sdp"
    cmd = ["gst-launch-1.0", "-e", "udpsrc", f"address={LOCAL}", f"port={port}"]
    cmd += ["caps=application/x-rtp", "!", "rtpptdemux", "name=d"]
    wav = tmp_path / "heard.wav"
    session.connect(peer)
    write_sdp(sdp, session.sdp())
    text = sdp.read_text()
    assert "m=audio" not in text  # one port: an SDP reader could not take it (see sdp.py)
    key = _sdp_key(text)
    ssrc = int(re.findall(r"a=ssrc:(\d+) ", text)[0])
    cmd += _gst_branch(
        key, ssrc, 26, "application/x-rtp,media=(string)video,clock-rate=(int)90000,"
        "encoding-name=(string)JPEG",
        ["rtpjpegdepay", "!", "jpegdec", "!", "videoconvert", "!", "pngenc", "!",
         "multifilesink", f"location={tmp_path / 'f%03d.png'}"],
    )  # fmt: skip
    cmd += _gst_branch(
        key, audio_ssrc_of(ssrc), 111, "application/x-rtp,media=(string)audio,"
        "clock-rate=(int)48000,encoding-name=(string)OPUS",
        ["rtpopusdepay", "!", "opusdec", "!", "audioconvert", "!", "audioresample", "!",
         f"audio/x-raw,format=S16LE,channels=1,rate={RATE}", "!", "wavenc", "!",
         "filesink", f"location={wav}"],
    )  # fmt: skip
    with running(cmd) as proc:
        wait_bound(port, proc)
        deadline = time.monotonic() + 20
        need = 44 + 2 * RATE * (AUDIO_S + 0.3)
        while time.monotonic() < deadline and proc.poll() is None:
            pngs = len(list(tmp_path.glob("f*.png")))
            if pngs >= VIDEO_FRAMES and wav.exists() and wav.stat().st_size > need:
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)  # -e: an EOS first, so wavenc completes its header
        proc.wait(10)
        assert proc.stdout is not None and proc.stderr is not None
        output = proc.stdout.read() + proc.stderr.read()
    assert proc.returncode == 0, output
    assert b"ERROR" not in output, output
    frames = sorted(tmp_path.glob("f*.png"))
    assert len(frames) >= VIDEO_FRAMES, output
    for extra in frames[VIDEO_FRAMES:]:  # the check wants exactly the first ones
        extra.unlink()
    assert_stamped_in_order(tmp_path, VIDEO_FRAMES)
    _assert_tone(wav)


@pytest.mark.parametrize("audio_port", [5004, 5005, 5003, 0, 65535])
def test_an_audio_port_that_meets_the_video_ports_is_refused(audio_port: int) -> None:
    session = MediaSession(bind_ip=LOCAL, audio=AudioSpec("silence", "null", processing=False))
    with pytest.raises(MediaSessionError):  # refused before anything starts
        session.connect(PeerEndpoint(LOCAL, 5004, MediaMode.RTP), audio_port=audio_port)
    session.close()
