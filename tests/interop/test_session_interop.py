"""A real vcall call pipeline (MediaSession, rtp mode) against ffmpeg and GStreamer.

- MediaSession -> ffmpeg / GStreamer: the tool opens the SDP from ``MediaSession.sdp()`` and
  decodes vcall's test pattern; every decoded frame must carry a valid pattern stamp (frame id
  and capture time, CRC-checked), with strictly increasing frame ids.
- ffmpeg -> MediaSession: vcall's receive and display stages show ffmpeg's picture.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.session import MediaSession, PeerEndpoint
from pipeline.sources.pattern import read_stamp
from tests.interop.tools import (
    check_pattern,
    free_port,
    running,
    wait_bound,
    write_pattern_png,
)

pytestmark = pytest.mark.interop
LOCAL = "127.0.0.1"
COUNT = 12


@pytest.fixture
def session() -> Iterator[MediaSession]:
    s = MediaSession(bind_ip=LOCAL, preset="low")  # 320x240, 15 fps
    try:
        yield s
    finally:
        s.close()


def _stamped_ids(frames: list[np.ndarray]) -> list[int]:
    ids = []
    for rgb in frames:
        stamp = read_stamp(rgb)
        assert stamp is not None, "a decoded frame does not carry a valid pattern stamp"
        ids.append(stamp.frame_id)
    return ids


def assert_stamped_in_order(folder: Path, count: int) -> None:
    """The tool wrote exactly ``count`` frames, each with a valid pattern stamp, in order."""
    frames = _png_frames(folder)
    assert len(frames) == count
    ids = _stamped_ids(frames)
    assert ids == sorted(set(ids)), ids


def _png_frames(folder: Path) -> list[np.ndarray]:
    out = []
    for path in sorted(folder.glob("f*.png")):
        bgr = cv2.imread(str(path))
        assert bgr is not None
        out.append(np.ascontiguousarray(bgr[:, :, ::-1]))
    return out


def test_ffmpeg_plays_a_vcall_session_from_its_sdp(session: MediaSession, tmp_path: Path) -> None:
    port = free_port()
    session.open()
    session.connect(PeerEndpoint(LOCAL, port, "rtp", local_ssrc=0x0DDBA11))
    sdp = tmp_path / "call.sdp"
    sdp.write_text(session.sdp())
    assert "a=rtpmap:26 JPEG/90000" in sdp.read_text()
    cmd = [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
        "-probesize", "32", "-analyzeduration", "0",
        "-protocol_whitelist", "file,udp,rtp", "-i", str(sdp),
        "-fps_mode", "passthrough", "-frames:v", str(COUNT), str(tmp_path / "f%03d.png"),
    ]  # fmt: skip
    with running(cmd) as proc:
        proc.wait(30)
        assert proc.stderr is not None
        stderr = proc.stderr.read().decode(errors="replace")
    assert proc.returncode == 0, stderr
    assert_stamped_in_order(tmp_path, COUNT)


def test_gstreamer_plays_a_vcall_session(session: MediaSession, tmp_path: Path) -> None:
    port = free_port()
    caps = "application/x-rtp,media=video,clock-rate=90000,encoding-name=JPEG,payload=26"
    cmd = [
        "gst-launch-1.0", "-q", "udpsrc", f"address={LOCAL}", f"port={port}", f"caps={caps}",
        "!", "rtpjpegdepay", "!", "jpegdec", "!", "videoconvert", "!", "pngenc",
        "!", "identity", f"eos-after={COUNT + 1}",  # passes COUNT buffers, see tools
        "!", "multifilesink", f"location={tmp_path / 'f%03d.png'}",
    ]  # fmt: skip
    with running(cmd) as proc:
        wait_bound(port, proc)
        session.open()
        session.connect(PeerEndpoint(LOCAL, port, "rtp", local_ssrc=0x0DDBA11))
        proc.wait(30)
        assert proc.stderr is not None and proc.stdout is not None
        output = proc.stderr.read() + proc.stdout.read()
    assert proc.returncode == 0, output
    assert b"ERROR" not in output and b"WARNING" not in output, output
    assert_stamped_in_order(tmp_path, COUNT)


def test_a_vcall_session_shows_an_ffmpeg_stream(session: MediaSession, tmp_path: Path) -> None:
    rx_port = session.open()
    session.set_sending(False)
    session.set_display_size((320, 240), (160, 120))
    # ffmpeg is the peer: any SSRC (None: lock on the first source), from 127.0.0.1 only.
    session.connect(PeerEndpoint(LOCAL, free_port(), "rtp", local_ssrc=0x1234, peer_ssrc=None))
    png = write_pattern_png(tmp_path / "p.png")
    cmd = [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
        "-re", "-loop", "1", "-framerate", "30", "-i", str(png), "-t", "20",
        "-pix_fmt", "yuvj420p", "-c:v", "mjpeg", "-huffman", "default",
        "-force_duplicated_matrix", "1", "-f", "rtp", f"rtp://{LOCAL}:{rx_port}",
    ]  # fmt: skip
    shown = None
    with running(cmd):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            peer, _self_view = session.latest()
            if peer is not None:
                shown = peer
                if session.stats().to_dict().get("fps_received", 0) > 0:
                    break
            time.sleep(0.05)
    assert shown is not None, session.stats()
    assert (shown.width, shown.height) == (320, 240)
    check_pattern(shown.image, 0)
