"""``vcall view`` counts every discard under a named reason (issue 15, fault 4).

The status line used to say "dropped 0" while every frame was thrown away (duplicates, late
packets and frames, skipped frames and decode errors were left out of the sum). Real JPEG
frames through the real RTP sender and the viewer core; then the real ``vcall view`` process
fed over a real UDP socket.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pipeline.codecs.base import EncodedFrame
from pipeline.codecs.registry import get_codec
from pipeline.sources.pattern import PatternRenderer
from pipeline.transport.stream import RtpSender
from vcall.view import DISCARD_REASONS, Viewer, discards, status_line

JPEG = get_codec("JPEG")
FRAMES = 60
SSRC = 0xABC


@pytest.fixture(scope="module")
def frame() -> EncodedFrame:
    image = np.zeros((240, 320, 3), np.uint8)
    PatternRenderer(320, 240).render_into(image, 1, 5)
    return JPEG.encoder().encode(image, 70)


def datagrams(frame: EncodedFrame, ts_of: Callable[[int], int]) -> list[list[bytes]]:
    """FRAMES frames at 20 fps from one sender, frame k stamped ts_of(k)."""
    sender = RtpSender(JPEG.packetizer(1200), ssrc=SSRC, payload_type=26)
    return [
        sender.packetize(frame.data, frame.width, frame.height, ts_of(k)) for k in range(FRAMES)
    ]


def feed(viewer: Viewer, frames: list[list[bytes]]) -> None:
    now = 0.0
    for packets in frames:
        for d in packets:
            viewer.push(d, now)
        viewer.pop(now)
        now += 0.05
    viewer.pop(now + 1.0)


def dropped_of(line: str) -> int:
    match = re.search(r"dropped (\d+)", line)
    assert match, line
    return int(match.group(1))


@pytest.mark.parametrize(
    ("case", "ts_of", "ssrc", "reason"),
    [
        ("frozen timestamp", lambda k: 90_000, None, "duplicate packets"),
        # 0.5 s back, inside the depacketizer's late window (RESET_TICKS, 1 s): late packets.
        # (A step of more than that is a new timeline and shows every frame: test_jitter.py.)
        ("timestamp stepped back", lambda k: 90_000 + (k - 10 * (k >= 20)) * 4500, None, "late"),
        ("another sender", lambda k: 90_000 + k * 4500, 5, "wrong source"),
    ],
)
def test_every_discard_is_in_the_status_line(
    frame: EncodedFrame, case: str, ts_of: Callable[[int], int], ssrc: int | None, reason: str
) -> None:
    viewer = Viewer(JPEG, ssrc)
    frames = datagrams(frame, ts_of)
    feed(viewer, frames)
    counts = discards(viewer)
    assert set(counts) == {name for name, _, _ in DISCARD_REASONS}
    line = status_line(viewer, 3.0)
    assert viewer.counts.frames < FRAMES - 1, case  # most frames were thrown away ...
    assert dropped_of(line) == sum(counts.values()) > 0  # ... and the line says so
    assert re.search(rf"{reason}[a-z ]* \d+", line), line
    for name, n in counts.items():  # every reason that is not zero is named, with its count
        assert (f"{name} {n}" in line) == (n > 0), (name, line)
    stats = viewer.stats()
    assert stats["dropped"] == dropped_of(line) and stats["discards"] == counts
    # Packets in = packets accepted or named as discarded (RTP level).
    packets = sum(len(p) for p in frames)
    rtp = viewer.rtp_stats()
    packet_discards = ("wrong_source", "malformed", "unknown_payload_type")
    assert rtp["packets"] + sum(rtp[k] for k in packet_discards) == packets


def test_a_clean_stream_drops_only_what_it_says(frame: EncodedFrame) -> None:
    viewer = Viewer(JPEG)
    feed(viewer, datagrams(frame, lambda k: 90_000 + k * 4500))
    counts = discards(viewer)
    # Frames are either shown or counted: nothing vanishes.
    frame_discards = ("incomplete frames", "late frames", "duplicate frames", "skipped frames")
    frame_discards += ("overflow", "undecodable")
    buffered = viewer.jitter.stats.buffered
    assert viewer.counts.frames + sum(counts[k] for k in frame_discards) + buffered == FRAMES
    assert viewer.counts.frames >= FRAMES - 5


def test_an_undecodable_frame_is_counted(frame: EncodedFrame) -> None:
    viewer = Viewer(JPEG)
    # A JPEG whose scan is replaced by garbage after the headers: reassembled, not decodable.
    data = bytearray(frame.data)
    data[len(data) // 2 : -2] = b"\xff\x01" * ((len(data) - 2 - len(data) // 2) // 2)
    bad = EncodedFrame(bytes(data), frame.width, frame.height, frame.quality, frame.keyframe)
    feed(viewer, datagrams(bad, lambda k: 90_000 + k * 4500)[:3])
    line = status_line(viewer, 1.0)
    assert viewer.counts.frames == 0
    assert discards(viewer)["undecodable"] >= 1 and "undecodable" in line
    assert dropped_of(line) == sum(discards(viewer).values())


def test_the_real_view_process_names_its_discards(frame: EncodedFrame, tmp_path: Path) -> None:
    """A classic-style sender whose timestamp is frozen: one frame shown, the rest counted."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    stats_file = tmp_path / "stats.json"
    view = subprocess.Popen(
        [
            *(sys.executable, "-m", "vcall", "view", "--rtp", str(port), "--bind", "127.0.0.1"),
            *("--seconds", "20", "--headless", "--stats-json", str(stats_file)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert view.stdout is not None
        assert "listening" in view.stdout.readline()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for packets in datagrams(frame, lambda k: 90_000):
                for d in packets:
                    sock.sendto(d, ("127.0.0.1", port))
                time.sleep(0.05)
        finally:
            sock.close()
        time.sleep(1.2)  # one more status line
        view.terminate()
        out, _ = view.communicate(timeout=30)
    finally:
        if view.poll() is None:
            view.kill()
            view.communicate(timeout=10)
    last = [line for line in out.splitlines() if line.startswith("view:")][-1]
    stats = json.loads(stats_file.read_text())
    assert stats["frames"] == 1
    assert dropped_of(last) == stats["dropped"] == sum(stats["discards"].values()) > 0
    assert "duplicate packets" in last, last
