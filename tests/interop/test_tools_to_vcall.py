"""Real ffmpeg 5.1 and GStreamer 1.22 RTP/JPEG senders -> vcall's reassembler and `vcall view`.

Every sender streams the same picture (coloured quadrants); the tests check the exact frame
count, nothing lost or incomplete, what the tool put on the wire (type, Q, tables) and the
decoded colours. Neither tool sends Q 1-99 or Q 128-254 (ffmpeg and GStreamer 1.22's
rtpjpegpay always use Q 255, whatever their quality setting): vcall's handling of those is
covered by tests/pipeline/test_rtpjpeg.py and, towards the tools, by test_vcall_to_tools.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.wire.sdp import build_sdp
from tests.fixtures.rtpjpeg import JpegRtpReceiver
from tests.interop.tools import (
    QUADRANTS,
    H,
    W,
    check_pattern,
    decode,
    encode,
    free_port,
    receive_vcall,
    running,
    udp_socket,
    wait_bound,
    write_pattern_png,
)

pytestmark = pytest.mark.interop
COUNT = 15


def ffmpeg_sender(png: Path, port: int, *extra: str) -> list[str]:
    return [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
        "-re", "-loop", "1", "-framerate", "30", "-i", str(png), "-frames:v", str(COUNT),
        "-pix_fmt", "yuvj420p", "-c:v", "mjpeg", "-huffman", "default", *extra,
        "-f", "rtp", f"rtp://127.0.0.1:{port}",
    ]  # fmt: skip


def gst_sender(source: list[str], port: int) -> list[str]:
    return [
        "gst-launch-1.0", "-q", *source,
        # ~200 frames/s: paced, so a burst never overflows a socket buffer
        "!", "identity", "sleep-time=5000",
        # sync=false: paced by identity; with sync=true and do-timestamp GStreamer 1.22
        # sometimes never reaches EOS
        "!", "rtpjpegpay", "!", "udpsink", "sync=false", "host=127.0.0.1", f"port={port}",
    ]  # fmt: skip


def gst_png_source(png: Path, fmt: str, quality: int) -> list[str]:
    return [
        # imagefreeze repeats the picture with proper timestamps (rtpjpegpay needs them)
        "filesrc", f"location={png}", "!", "pngdec",
        "!", "imagefreeze", f"num-buffers={COUNT}", "!", "video/x-raw,framerate=30/1",
        "!", "videoconvert",
        # JPEG means full-range YCbCr: without this videoconvert hands jpegenc video range
        "!", f"video/x-raw,format={fmt},colorimetry=1:4:0:0", "!", "jpegenc", f"quality={quality}",
    ]  # fmt: skip


def stream_into_vcall(cmd: list[str], port: int) -> tuple[list[np.ndarray], list[bytes]]:
    """Run a sender, reassemble its frames; -> (decoded frames, first-fragment payloads)."""
    reassembler = JpegRtpReceiver()
    seen: list[bytes] = []
    with udp_socket(port) as sock, running(cmd) as proc:
        frames = receive_vcall(sock, COUNT, 20.0, reassembler, seen)
        proc.wait(20)
        assert proc.stderr is not None
        stderr = proc.stderr.read().decode(errors="replace")
    assert proc.returncode == 0, stderr
    assert "ERROR" not in stderr.upper(), stderr
    stats = reassembler.stats
    assert len(frames) == COUNT, stats
    assert (stats.incomplete, stats.lost_packets, stats.unsupported, stats.malformed) == (
        0, 0, 0, 0,
    ), stats  # fmt: skip
    decoded = [decode(f.data) for f in frames]
    for f, rgb in zip(frames, decoded, strict=True):
        assert (f.width, f.height) == (W, H)
        check_pattern(rgb, 0)
    return decoded, seen


def header(payload: bytes) -> tuple[int, int, int]:
    """(type, Q, quantisation table bytes in band) of a first fragment."""
    rtype, q = payload[4], payload[5]
    pos = 8 + (4 if rtype >= 64 else 0)
    tables = int.from_bytes(payload[pos + 2 : pos + 4], "big") if q >= 128 else 0
    return rtype, q, tables


def test_ffmpeg_two_tables(tmp_path: Path) -> None:
    port = free_port()
    cmd = ffmpeg_sender(
        write_pattern_png(tmp_path / "p.png"), port, "-force_duplicated_matrix", "1"
    )
    _, seen = stream_into_vcall(cmd, port)
    assert {header(p) for p in seen} == {(1, 255, 128)}


def test_ffmpeg_one_table(tmp_path: Path) -> None:
    """Without -force_duplicated_matrix ffmpeg sends one 64-byte table for all components."""
    port = free_port()
    cmd = ffmpeg_sender(write_pattern_png(tmp_path / "p.png"), port, "-q:v", "4")
    _, seen = stream_into_vcall(cmd, port)
    assert {header(p) for p in seen} == {(1, 255, 64)}


@pytest.mark.parametrize(
    ("fmt", "quality", "rtype"),
    [("I420", 85, 1), ("Y42B", 85, 0), ("I420", 30, 1)],
    ids=["type1-q85", "type0-422", "type1-q30"],
)
def test_gstreamer_jpegenc(tmp_path: Path, fmt: str, quality: int, rtype: int) -> None:
    port = free_port()
    png = write_pattern_png(tmp_path / "p.png")
    _, seen = stream_into_vcall(gst_sender(gst_png_source(png, fmt, quality), port), port)
    assert {header(p) for p in seen} == {(rtype, 255, 128)}


def test_gstreamer_restart_markers(tmp_path: Path) -> None:
    """A JPEG with a DRI makes rtpjpegpay send type 65 with a restart marker header."""
    port = free_port()
    dri = tmp_path / "dri.jpg"
    dri.write_bytes(encode(0, restart=4))
    source = [
        "multifilesrc", f"location={dri}", "loop=true", f"num-buffers={COUNT}", "do-timestamp=true",
        f"caps=image/jpeg,framerate=30/1,width={W},height={H}",
    ]  # fmt: skip
    _, seen = stream_into_vcall(gst_sender(source, port), port)
    assert {header(p)[:2] for p in seen} == {(65, 255)}


def test_vcall_view_headless_shows_ffmpeg_stream(tmp_path: Path) -> None:
    """The real `vcall view` process: frame count, stats JSON and the saved last frame."""
    port = free_port()
    stats_file, png_out = tmp_path / "stats.json", tmp_path / "last.png"
    view = [
        sys.executable, "-m", "vcall", "view", "--rtp", str(port), "--bind", "127.0.0.1",
        "--frames", str(COUNT), "--seconds", "30", "--headless",
        "--stats-json", str(stats_file), "--save-last", str(png_out),
    ]  # fmt: skip
    sender = ffmpeg_sender(
        write_pattern_png(tmp_path / "p.png"), port, "-force_duplicated_matrix", "1"
    )
    with running(view) as viewer:
        wait_bound(port, viewer)
        subprocess.run(sender, check=True, timeout=30, capture_output=True)
        viewer.wait(30)
        assert viewer.stdout is not None
        out = viewer.stdout.read().decode()
    assert viewer.returncode == 0, out
    assert f"frames {COUNT}" in out.splitlines()[-1]
    stats = json.loads(stats_file.read_text())
    assert stats["frames"] == COUNT and stats["decode_errors"] == 0
    assert stats["reassembler"]["incomplete"] == 0 and stats["reassembler"]["lost_packets"] == 0
    expected_mean = np.array(
        [np.mean([c[i] for c in QUADRANTS.values()]) * 224 / 240 + 16 * 16 / 240 for i in range(3)]
    )
    assert np.abs(np.array(stats["last_mean_rgb"]) - expected_mean).max() < 6
    saved = cv2.imread(str(png_out))
    assert saved is not None
    check_pattern(np.ascontiguousarray(saved[:, :, ::-1]), 0)


def test_vcall_view_from_sdp_with_dynamic_payload_type(tmp_path: Path) -> None:
    """`vcall view --sdp` takes the port and payload type (here 96) from the description."""
    port = free_port()
    sdp = tmp_path / "stream.sdp"
    sdp.write_text(build_sdp("127.0.0.1", port, payload_type=96))
    stats_file = tmp_path / "stats.json"
    view = [
        sys.executable, "-m", "vcall", "view", "--sdp", str(sdp), "--bind", "127.0.0.1",
        "--frames", str(COUNT), "--seconds", "30", "--headless", "--stats-json", str(stats_file),
    ]  # fmt: skip
    png = write_pattern_png(tmp_path / "p.png")
    sender = ffmpeg_sender(png, port, "-force_duplicated_matrix", "1", "-payload_type", "96")
    with running(view) as viewer:
        wait_bound(port, viewer)
        subprocess.run(sender, check=True, timeout=30, capture_output=True)
        viewer.wait(30)
    assert viewer.returncode == 0
    stats = json.loads(stats_file.read_text())
    assert stats["frames"] == COUNT
    assert stats["reassembler"]["wrong_source"] == 0
