"""vcall's RTP/JPEG packetizer -> real ffmpeg 5.1 and GStreamer 1.22 decoders on loopback.

Each test sends a known picture (coloured quadrants, frame index as a grey strip) and checks
the decoder's raw output: exact frame count, frame order and colours, and no error output.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.wire.sdp import build_sdp
from tests.interop.tools import (
    H,
    W,
    check_pattern,
    free_port,
    raw_frames,
    running,
    send_vcall,
    wait_bound,
)

pytestmark = pytest.mark.interop
COUNT = 20

# (id, packetizer/encoder options): Q 255 (tables in every frame), Q 200 (cacheable tables),
# Q 70 (standard tables, none in band), type 0 (4:2:2), type 65 (restart markers).
VARIANTS = [
    ("q255-420", {"q": 255}),
    ("q200-420", {"q": 200}),
    ("q70-standard-tables", {"q": 70, "quality": 70}),
    ("type0-422", {"sub": "422"}),
    ("restart-markers", {"restart": 4}),
]


def _check_output(out: Path, stderr: bytes) -> None:
    frames = raw_frames(out)
    assert len(frames) == COUNT
    for i, rgb in enumerate(frames):
        check_pattern(rgb, i)


@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=[v[0] for v in VARIANTS])
def test_ffmpeg_decodes_vcall_stream(tmp_path: Path, name: str, options: dict[str, int]) -> None:
    port = free_port()
    sdp = tmp_path / "stream.sdp"
    sdp.write_text(build_sdp("127.0.0.1", port))
    out = tmp_path / "out.rgb"
    cmd = [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
        "-probesize", "32", "-analyzeduration", "0",  # start decoding at once
        "-protocol_whitelist", "file,udp,rtp", "-i", str(sdp),
        "-fps_mode", "passthrough",  # one output frame per received frame: no dup/drop
        "-frames:v", str(COUNT), "-f", "rawvideo", "-pix_fmt", "rgb24", "-y", str(out),
    ]  # fmt: skip
    with running(cmd) as proc:
        wait_bound(port, proc)
        send_vcall(port, COUNT, **options)  # type: ignore[arg-type]
        proc.wait(20)
        assert proc.stderr is not None
        stderr = proc.stderr.read()
    assert proc.returncode == 0, stderr
    assert stderr.decode().strip() == "", stderr  # -loglevel error: any line is an error
    _check_output(out, stderr)


@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=[v[0] for v in VARIANTS])
def test_gstreamer_decodes_vcall_stream(tmp_path: Path, name: str, options: dict[str, int]) -> None:
    port = free_port()
    out = tmp_path / "out.rgb"
    caps = "application/x-rtp,media=video,clock-rate=90000,encoding-name=JPEG,payload=26"
    cmd = [
        "gst-launch-1.0", "-q",
        "udpsrc", "address=127.0.0.1", f"port={port}", f"caps={caps}",
        "!", "rtpjpegdepay", "!", "jpegdec", "!", "videoconvert",
        "!", f"video/x-raw,format=RGB,width={W},height={H}",
        "!", "identity", f"eos-after={COUNT + 1}", "!", "filesink", f"location={out}",
    ]  # fmt: skip
    with running(cmd) as proc:
        wait_bound(port, proc)
        # identity eos-after=N passes N-1 buffers and ends the stream on the Nth: one more
        # frame than counted is the end marker.
        send_vcall(port, COUNT + 1, **options)  # type: ignore[arg-type]
        proc.wait(20)
        assert proc.stderr is not None and proc.stdout is not None
        stderr = proc.stderr.read() + proc.stdout.read()
    assert proc.returncode == 0, stderr
    assert b"ERROR" not in stderr and b"WARNING" not in stderr, stderr
    _check_output(out, stderr)
