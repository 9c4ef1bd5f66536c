"""H.264 (RFC 6184) against real ffmpeg and GStreamer, both ways (issue 10).

- A vcall MediaSession sending H.264 -> ffmpeg (from the session's own SDP) and GStreamer
  (rtph264depay ! avdec_h264): every decoded frame carries a valid pattern stamp, in order.
- ffmpeg (libx264, zerolatency, -f rtp with its own SDP) and GStreamer (x264enc ! rtph264pay)
  -> `vcall view --sdp` / `--rtp --codec h264`: exact frame counts and the picture's content.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.control import MediaMode
from pipeline.session import MediaSession, PeerEndpoint
from tests.interop.test_session_interop import assert_stamped_in_order
from tests.interop.tools import check_pattern, free_port, running, wait_bound, write_pattern_png

pytestmark = pytest.mark.interop
LOCAL = "127.0.0.1"
COUNT = 12


@pytest.fixture
def session() -> Iterator[MediaSession]:
    s = MediaSession(bind_ip=LOCAL, preset="medium")  # 640x480, 30 fps, 800 kbit/s
    try:
        yield s
    finally:
        s.close()


def _connect(session: MediaSession, port: int) -> None:
    session.connect(PeerEndpoint(LOCAL, port, MediaMode.RTP, local_ssrc=0x0DDBA11, codec="H264"))


def test_ffmpeg_plays_a_vcall_h264_session_from_its_sdp(
    session: MediaSession, tmp_path: Path
) -> None:
    port = free_port()
    session.open()
    session.set_sending(False)  # nothing goes out (no IDR wasted) until ffmpeg listens
    _connect(session, port)
    sdp = tmp_path / "call.sdp"
    sdp.write_text(session.sdp())
    text = sdp.read_text()
    assert "a=rtpmap:96 H264/90000" in text and "packetization-mode=1" in text
    cmd = [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
        "-protocol_whitelist", "file,udp,rtp", "-i", str(sdp),
        "-fps_mode", "passthrough", "-frames:v", str(COUNT), str(tmp_path / "f%03d.png"),
    ]  # fmt: skip
    with running(cmd) as proc:
        wait_bound(port, proc)
        session.set_sending(True)  # the first frame the encoder sees is an IDR with SPS/PPS
        proc.wait(40)
        assert proc.stderr is not None
        stderr = proc.stderr.read().decode(errors="replace")
    assert proc.returncode == 0, stderr
    assert_stamped_in_order(tmp_path, COUNT)


def test_gstreamer_plays_a_vcall_h264_session(session: MediaSession, tmp_path: Path) -> None:
    port = free_port()
    caps = "application/x-rtp,media=video,clock-rate=90000,encoding-name=H264,payload=96"
    cmd = [
        "gst-launch-1.0", "-q", "udpsrc", f"address={LOCAL}", f"port={port}", f"caps={caps}",
        "!", "rtph264depay", "!", "avdec_h264", "!", "videoconvert", "!", "pngenc",
        "!", "identity", f"eos-after={COUNT + 1}",
        "!", "multifilesink", f"location={tmp_path / 'f%03d.png'}",
    ]  # fmt: skip
    with running(cmd) as proc:
        wait_bound(port, proc)
        session.open()
        _connect(session, port)
        proc.wait(40)
        assert proc.stderr is not None and proc.stdout is not None
        output = proc.stderr.read() + proc.stdout.read()
    assert proc.returncode == 0, output
    assert_stamped_in_order(tmp_path, COUNT)


def _view(port_args: list[str], stats: Path, png: Path) -> list[str]:
    return [
        sys.executable, "-m", "vcall", "view", *port_args, "--bind", LOCAL,
        "--frames", str(COUNT), "--seconds", "40", "--headless",
        "--stats-json", str(stats), "--save-last", str(png),
    ]  # fmt: skip


def _check_view(viewer: subprocess.Popen[bytes], stats_file: Path, png_out: Path) -> None:
    assert viewer.returncode == 0
    stats = json.loads(stats_file.read_text())
    assert stats["frames"] == COUNT and stats["decode_errors"] == 0
    assert stats["codec_name"] == "H264"
    assert stats["reassembler"]["incomplete"] == 0
    saved = cv2.imread(str(png_out))
    assert saved is not None
    check_pattern(np.ascontiguousarray(saved[:, :, ::-1]), None, tolerance=20.0)


def test_vcall_view_shows_ffmpeg_libx264_from_its_sdp(tmp_path: Path) -> None:
    port = free_port()
    png = write_pattern_png(tmp_path / "p.png")
    sdp, stats_file, png_out = tmp_path / "s.sdp", tmp_path / "stats.json", tmp_path / "last.png"
    sender = [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
        "-re", "-loop", "1", "-framerate", "30", "-i", str(png), "-frames:v", str(COUNT + 20),
        "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
        "-x264-params", "keyint=1000", "-f", "rtp", "-payload_type", "96",
        "-sdp_file", str(sdp), f"rtp://{LOCAL}:{port}",
    ]  # fmt: skip
    probe = list(sender)  # one frame to the same port (nobody listens yet): writes the SDP
    probe[probe.index(str(COUNT + 20))] = "1"
    subprocess.run(probe, check=True, timeout=30, capture_output=True)
    assert "H264/90000" in sdp.read_text()
    with running(_view(["--sdp", str(sdp)], stats_file, png_out)) as viewer:
        wait_bound(port, viewer)
        subprocess.run(sender, check=True, timeout=40, capture_output=True)
        viewer.wait(40)
    _check_view(viewer, stats_file, png_out)


def test_vcall_view_shows_gstreamer_x264enc(tmp_path: Path) -> None:
    port = free_port()
    png = write_pattern_png(tmp_path / "p.png")
    stats_file, png_out = tmp_path / "stats.json", tmp_path / "last.png"
    sender = [
        "gst-launch-1.0", "-q", "multifilesrc", f"location={png}", "loop=true",
        f"num-buffers={COUNT + 20}", "caps=image/png,framerate=30/1",
        "!", "pngdec", "!", "videoconvert", "!", "video/x-raw,format=I420",
        "!", "x264enc", "tune=zerolatency", "speed-preset=ultrafast", "key-int-max=1000",
        "!", "rtph264pay", "config-interval=-1", "pt=96",
        "!", "udpsink", "sync=true", "host=127.0.0.1", f"port={port}",
    ]  # fmt: skip
    with running(_view(["--rtp", str(port), "--codec", "h264"], stats_file, png_out)) as viewer:
        wait_bound(port, viewer)
        subprocess.run(sender, check=True, timeout=40, capture_output=True)
        viewer.wait(40)
    _check_view(viewer, stats_file, png_out)
