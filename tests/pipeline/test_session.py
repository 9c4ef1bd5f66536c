"""MediaSession end to end: two real sessions (real processes, real UDP on loopback) calling
each other on the test pattern, in V0 and RTP modes."""

from __future__ import annotations

import contextlib
import functools
import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from pipeline.presets import UnknownPresetError
from pipeline.session import Frame, MediaSession, MediaSessionError, PeerEndpoint
from pipeline.sources.pattern import read_stamp
from pipeline.sources.video import SourceSpecError
from pipeline.stats import LatencySummary
from pipeline.wire.v0 import encode_v0

pytestmark = pytest.mark.usefixtures("no_leaks")

LOCAL = "127.0.0.1"
WAIT_S = 15.0  # generous: the machine is shared and slow; the loops exit as soon as it flows


def wait_for(predicate: Callable[[], Any], timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout} s")


Pair = tuple[MediaSession, MediaSession]


@contextlib.contextmanager
def call(mode: str, preset: str = "low") -> Iterator[Pair]:
    a = MediaSession(bind_ip=LOCAL, preset=preset)
    b = MediaSession(bind_ip=LOCAL, preset=preset)
    try:
        port_a, port_b = a.open(), b.open()
        a.connect(PeerEndpoint(LOCAL, port_b, mode, local_ssrc=0x1111, peer_ssrc=0x2222))  # type: ignore[arg-type]
        b.connect(PeerEndpoint(LOCAL, port_a, mode, local_ssrc=0x2222, peer_ssrc=0x1111))  # type: ignore[arg-type]
        yield a, b
    finally:
        a.close()
        b.close()


@pytest.fixture(params=["v0", "rtp"])
def pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    with call(request.param) as p:
        yield p


def peer_frame(session: MediaSession) -> Frame | None:
    return session.latest()[0]


def stamped_peer_frame(session: MediaSession) -> Frame | None:
    frame = peer_frame(session)
    return frame if frame is not None and read_stamp(frame.image) is not None else None


def newer_stamped_frame(session: MediaSession, than: Frame) -> Frame | None:
    frame = stamped_peer_frame(session)
    return frame if frame is not None and frame.frame_id > than.frame_id else None


def test_frames_flow_both_ways_with_the_moving_pattern(pair: Pair) -> None:
    a, b = pair
    for session in (a, b):
        first = wait_for(functools.partial(stamped_peer_frame, session))
        stamp1 = read_stamp(first.image)
        assert stamp1 is not None
        assert first.pattern_id == stamp1.frame_id
        assert first.capture_ns == stamp1.capture_ns
        assert first.image.shape == (first.height, first.width, 3)
        later = wait_for(functools.partial(newer_stamped_frame, session, first))
        stamp2 = read_stamp(later.image)
        assert stamp2 is not None
        assert stamp2.frame_id > stamp1.frame_id  # the pattern moves on
        assert stamp2.capture_ns > stamp1.capture_ns
        assert not np.array_equal(later.image, first.image)
        self_view = session.latest()[1]
        assert self_view is not None
        assert self_view.width <= 160
        assert self_view.height <= 120


def _count(summary: LatencySummary | None) -> int:
    return 0 if summary is None else summary.count


def test_stats_are_sane_and_json_serialisable(pair: Pair) -> None:
    _a, b = pair
    wait_for(
        lambda: (
            b.stats().to_dict()["latency_ms"].get("capture_to_display", {}).get("count", 0) >= 10
        )
    )
    st = b.stats().to_dict()
    json.dumps(st)
    assert st["state"] == "open"
    assert st["dead_stages"] == []
    assert st["codec"] in ("turbojpeg", "opencv")
    c2d = st["latency_ms"]["capture_to_display"]
    assert 0 < c2d["p50"] <= c2d["p95"] <= c2d["p99"] <= c2d["max"] < 5000
    for name in ("capture", "encode", "send", "decode"):
        assert st["latency_ms"][name]["count"] > 0, name
    assert st["fps_shown"] > 0
    assert st["fps_sent"] > 0
    assert st["bitrate_sent_bps"] > 0
    assert st["bitrate_received_bps"] > 0
    assert set(st["cpu_percent"]) >= {"capture", "encode", "send", "receive", "display", "total"}
    assert all(v >= 0 for v in st["cpu_percent"].values())
    assert st["drops"]["wrong_address"] == 0
    if st["mode"] == "rtp":
        wait_for(lambda: b.stats().to_dict()["rtt_ms"] is not None)
        st = b.stats().to_dict()
        assert 0 <= st["rtt_ms"] < 1000
        assert st["loss"]["lost_packets"] is not None
        assert st["jitter_ms"] is not None


def test_pausing_stops_the_flow_and_resuming_restarts_it() -> None:
    with call("v0") as (a, b):
        wait_for(lambda: peer_frame(b))
        a.set_sending(False)
        time.sleep(0.5)  # frames already in flight land
        held = peer_frame(b)
        assert held is not None
        time.sleep(1.0)
        still = peer_frame(b)
        assert still is not None
        assert still.frame_id == held.frame_id
        assert peer_frame(a) is not None  # the other direction is not paused
        assert b.stats().to_dict()["sending"] is True
        a.set_sending(True)
        wait_for(lambda: (f := peer_frame(b)) is not None and f.frame_id > held.frame_id)


def _make_video(path: Path) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 15, (320, 240))
    assert writer.isOpened()
    for i in range(20):
        img = np.full((240, 320, 3), (i * 12) % 256, dtype=np.uint8)
        writer.write(img)
    writer.release()


def test_preset_and_source_switch_during_a_call(tmp_path: Path) -> None:
    video = tmp_path / "clip.avi"
    _make_video(video)
    with call("rtp", preset="low") as (a, b):
        wait_for(lambda: (f := stamped_peer_frame(b)) is not None and f.source_size == (320, 240))
        a.set_preset("medium")
        wait_for(lambda: (f := stamped_peer_frame(b)) is not None and f.source_size == (640, 480))
        assert a.stats().to_dict()["preset"]["name"] == "medium"
        # A camera that does not exist: the old source stays and the error is reported.
        a.set_source("camera:/dev/video99")
        wait_for(lambda: a.stats().to_dict()["errors"]["source"])
        assert a.stats().to_dict()["source"] == "pattern"
        assert stamped_peer_frame(b) is not None or wait_for(lambda: stamped_peer_frame(b))
        a.set_source(f"file:{video}")
        wait_for(lambda: (f := peer_frame(b)) is not None and read_stamp(f.image) is None)
        wait_for(lambda: a.stats().to_dict()["source"] == f"file:{video}")  # snapshots lag a little
        assert a.stats().to_dict()["errors"]["source"] == ""
        a.set_source("pattern")
        wait_for(lambda: stamped_peer_frame(b))


def test_datagrams_from_a_third_address_are_dropped() -> None:
    with call("v0") as (_a, b):
        wait_for(lambda: peer_frame(b))
        jpeg = cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))[1].tobytes()
        intruder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        intruder.bind(("127.0.0.2", 0))  # all of 127/8 is loopback on Linux
        try:
            for seq in range(1, 21):
                intruder.sendto(
                    encode_v0(10**6 + seq, time.time(), 64, 48, 30, jpeg), (LOCAL, b.rx_port)
                )
            wait_for(lambda: b.stats().to_dict()["drops"]["wrong_address"] >= 20)
        finally:
            intruder.close()
        frame = peer_frame(b)
        assert frame is not None
        assert frame.source_size != (64, 48)


def test_rtp_from_another_ssrc_is_dropped() -> None:
    from tests.fixtures.rtpjpeg import JpegRtpSender

    with call("rtp") as (_a, b):
        wait_for(lambda: peer_frame(b))
        jpeg = cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))[1].tobytes()
        packets = JpegRtpSender(0xBAD).packetize_jpeg(jpeg, 1234)
        forger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for _ in range(5):
                for pkt in packets:
                    forger.sendto(pkt, (LOCAL, b.rx_port))
            wait_for(lambda: b.stats().to_dict()["drops"]["wrong_source"] >= 5)
        finally:
            forger.close()


def test_display_size_is_honoured_with_the_aspect_ratio() -> None:
    with call("rtp", preset="low") as (_a, b):
        b.set_display_size((200, 200), (64, 64))
        wait_for(lambda: (f := peer_frame(b)) is not None and f.width == 200)
        frame = peer_frame(b)
        assert frame is not None
        assert (frame.width, frame.height) == (200, 150)
        wait_for(lambda: (s := b.latest()[1]) is not None and s.width == 64)


def test_misuse_is_reported_locally() -> None:
    with pytest.raises(UnknownPresetError):
        MediaSession(preset="ultra")
    with pytest.raises(SourceSpecError):
        MediaSession(source="nonsense:thing")
    session = MediaSession(bind_ip=LOCAL)
    with pytest.raises(MediaSessionError):
        session.connect(PeerEndpoint(LOCAL, 5000, "v0"))
    with pytest.raises(MediaSessionError):
        session.notify_fd()
    assert session.latest() == (None, None)
    session.close()
    session.close()  # idempotent
    with pytest.raises(MediaSessionError):
        session.open()


def test_notify_fd_becomes_readable_and_latest_drains_it() -> None:
    import select

    with call("v0") as (a, _b):
        fd = a.notify_fd()
        ready, _, _ = select.select([fd], [], [], WAIT_S)
        assert ready
        a.latest()
        # Drained: readable again only when the next frame lands (the self view at 15 fps).
        ready, _, _ = select.select([fd], [], [], WAIT_S)
        assert ready


def test_rx_port_is_even_with_rtcp_on_the_next_port() -> None:
    session = MediaSession(bind_ip=LOCAL)
    try:
        port = session.open()
        assert port % 2 == 0
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with pytest.raises(OSError):
            probe.bind((LOCAL, port + 1))
        probe.close()
    finally:
        session.close()


def test_a_jpeg_bomb_from_the_peer_is_rejected_before_decoding() -> None:
    """A 600-byte JPEG declaring 30000x30000, from the peer's own address."""
    header = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    sof = header.index(b"\xff\xc0")
    bomb = bytearray(header)
    bomb[sof + 5 : sof + 9] = (30000).to_bytes(2, "big") + (30000).to_bytes(2, "big")
    with call("v0") as (_a, b):
        wait_for(lambda: peer_frame(b))
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for seq in range(10**6, 10**6 + 5):
                datagram = encode_v0(seq, time.time(), 30000, 30000, 30, bytes(bomb))
                sock.sendto(datagram, (LOCAL, b.rx_port))
                time.sleep(0.05)
            wait_for(lambda: b.stats().to_dict()["drops"]["rejected_frame"] >= 1)
        finally:
            sock.close()
        st = b.stats().to_dict()
        assert st["dead_stages"] == []
        first = peer_frame(b)
        assert first is not None
        wait_for(lambda: (f := peer_frame(b)) is not None and f.shown_ns > first.shown_ns)


def test_v0_datagrams_are_classic_and_under_the_peer_safe_size() -> None:
    """A classic peer (a plain UDP socket here) gets strict V0 under 32 KB, even at 720p."""
    from pipeline.wire.v0 import decode_v0

    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind((LOCAL, 0))
    peer.settimeout(WAIT_S)
    session = MediaSession(bind_ip=LOCAL, preset="high")
    try:
        session.open()
        session.connect(PeerEndpoint(LOCAL, peer.getsockname()[1], "v0"))
        seqs = []
        for _ in range(10):
            datagram, _addr = peer.recvfrom(65536)
            header = datagram.split(b"#", 4)
            assert len(datagram) <= 32 * 1024 + 64
            assert header[3] == b"30"  # integer fps
            frame = decode_v0(datagram)
            assert frame.width <= 640
            assert frame.height <= 480
            assert frame.ts is not None
            assert abs(frame.ts - time.time()) < 60
            seqs.append(frame.seq)
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == len(seqs)
    finally:
        session.close()
        peer.close()


def test_a_peer_given_by_host_name_is_resolved_once_at_connect() -> None:
    a = MediaSession(bind_ip=LOCAL, preset="low")
    b = MediaSession(bind_ip=LOCAL, preset="low")
    try:
        port_a, port_b = a.open(), b.open()
        a.connect(PeerEndpoint("localhost", port_b, "v0"))
        b.connect(PeerEndpoint(LOCAL, port_a, "v0"))
        wait_for(lambda: peer_frame(b))
        assert a.stats().to_dict()["peer"] == f"{LOCAL}:{port_b}"
        with pytest.raises(MediaSessionError):
            a.connect(PeerEndpoint("no-such-host.invalid", port_b, "v0"))
    finally:
        a.close()
        b.close()
