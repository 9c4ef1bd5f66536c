"""The receive stage driven by hand, in this process, on real loopback sockets and real rings:
V0 loss counted once, the negotiated SSRC as the per-call token (0 included), and no error a
peer can trigger ending the stage."""

from __future__ import annotations

import functools
import multiprocessing
import select
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import cv2
import numpy as np
import pytest

from pipeline.codecs.h264.codec import H264Encoder
from pipeline.codecs.h264.rfc6184 import H264Packetizer
from pipeline.codecs.registry import get_codec
from pipeline.control import Connect, MediaMode, PeerEndpoint
from pipeline.ipc.ring import Ring
from pipeline.ipc.shm import SegmentSet
from pipeline.presets import get_preset
from pipeline.sources.pattern import render_into
from pipeline.stages import receive
from pipeline.stages.base import StageContext
from pipeline.stages.receive import JITTER_MAX_FRAMES, ReceiveStage, bind_rx_sockets
from pipeline.stats import SessionInfo, StatsChannel, summarise
from pipeline.transport.stream import RtpSender
from pipeline.wire.rtcp import (
    PictureLossIndication,
    ReceiverReport,
    SenderInfo,
    parse_rtcp,
    serialize_rtcp,
)
from pipeline.wire.rtp import to_rtp_ts
from pipeline.wire.v0 import encode_v0
from tests.fixtures.rtpjpeg import JpegRtpSender

pytestmark = pytest.mark.usefixtures("no_leaks")

LOCAL = "127.0.0.1"
LOW = get_preset("low")


def _jpeg(width: int, height: int) -> bytes:
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 2] = (0, 128, 255)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 70])
    assert ok
    return buf.tobytes()


JPEG = _jpeg(LOW.width, LOW.height)


class Rx:
    """A ReceiveStage on its own sockets and rings, plus a sender socket on 127.0.0.1
    (``name`` keeps several in one segment set apart)."""

    def __init__(
        self,
        segments: SegmentSet,
        name: str = "",
        slots: int = 3,
        capacity: int = 1 << 20,
        keyframe_request: int = -1,
    ) -> None:
        self.rx_ring = Ring.create(segments, f"jrx{name}", n_slots=slots, capacity=capacity)
        self.txinfo = Ring.create(segments, f"txi{name}", n_slots=2, capacity=SenderInfo.SIZE)
        self._pipe = multiprocessing.Pipe(duplex=False)
        ctx = StageContext(
            name="receive",
            controller_pid=0,
            watchdog_fd=-1,
            control=self._pipe[0],
            stats=StatsChannel.create(segments, f"receive{name}"),
        )
        rtp, rtcp = bind_rx_sockets(LOCAL, 0)
        self.port = rtp.getsockname()[1]
        self.stage = ReceiveStage(
            ctx,
            rtp_sock=rtp,
            rtcp_sock=rtcp,
            encoded_rx=self.rx_ring,
            txinfo=self.txinfo,
            codec=get_codec("JPEG"),
            keyframe_request=keyframe_request,
        )
        self.tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def send(self, data: bytes, rtcp: bool = False) -> None:
        self.tx.sendto(data, (LOCAL, self.port + int(rtcp)))

    def pump(self, until: Callable[[], bool], timeout: float = 10.0) -> None:
        """Run the stage's loop by hand until ``until()`` (the jitter buffer holds frames a
        few milliseconds, so a frame sent is played some turns later)."""
        deadline = time.monotonic() + timeout
        while not until():
            assert time.monotonic() < deadline, f"stage stuck: {self.stage.counters}"
            fds = self.stage.wait_fds()
            ready, _, _ = select.select(list(fds), [], [], 0.01)
            self.stage.step(ready, time.monotonic_ns())

    def frames(self) -> int:
        return self.stage.counters.get("frames", 0)

    def close(self) -> None:
        self.stage.close()
        self.tx.close()
        for conn in self._pipe:
            conn.close()
        self.rx_ring.close()
        self.txinfo.close()


@pytest.fixture
def rx() -> Iterator[Rx]:
    segments = SegmentSet()
    r = Rx(segments)
    yield r
    r.close()
    segments.close()


def _v0(seq: int) -> bytes:
    return encode_v0(seq, time.time(), LOW.width, LOW.height, 30.0, JPEG)


def _rtp(packetizer: JpegRtpSender, jpeg: bytes = JPEG) -> list[bytes]:
    return packetizer.packetize_jpeg(jpeg, to_rtp_ts(time.time()))


def test_v0_loss_is_counted_once(rx: Rx) -> None:
    rx.stage.handle(Connect(PeerEndpoint(LOCAL, 5000, MediaMode.V0)))
    for played, seq in enumerate((1, 2, 5, 6), 1):  # 3 and 4 lost
        rx.send(_v0(seq))
        rx.pump(functools.partial(lambda n: rx.frames() == n, played))
    now = time.monotonic_ns()
    snap = {**rx.stage.snapshot(now), "counters": dict(rx.stage.counters)}
    assert snap["jitter_buffer"]["lost_frames"] == 2
    info = SessionInfo("open", 0, "v0", None, True, LOW, "pattern", "JPEG", 0.0, {}, ())
    summary = summarise(info, {"receive": snap}, {})
    assert summary.loss.lost_frames == 2  # was 4: the stage and the jitter buffer both


@pytest.mark.parametrize("token", [0, 0x2222])
def test_rtp_accepts_only_the_negotiated_ssrc_even_zero(rx: Rx, token: int) -> None:
    rx.stage.handle(Connect(PeerEndpoint(LOCAL, 5000, MediaMode.RTP, 0x1111, token)))
    # First a frame from the right address but another source (a smaller picture), then the
    # peer's: with the filter off (it was, for SSRC 0) the stranger's frame is played.
    for packet in _rtp(JpegRtpSender(0x7777), _jpeg(64, 48)):
        rx.send(packet)
    for packet in _rtp(JpegRtpSender(token)):
        rx.send(packet)
    rx.pump(lambda: rx.frames() >= 1)
    snap = rx.stage.snapshot(time.monotonic_ns())
    assert snap["rtp"]["wrong_source"] > 0
    assert snap["rtp"]["frames"] == 1
    desc = rx.rx_ring.reader().latest()
    assert desc is not None
    assert (desc.width, desc.height) == (LOW.width, LOW.height)  # the negotiated source's


def _hostile(mode: str) -> list[bytes]:
    if mode == "v0":
        return [b"", b"1#2#3x4#5#", b"x" * 100, _v0(2**64 - 1)[:40], b"1#nan#3x4#5#\xff\xd8"]
    good = _rtp(JpegRtpSender(0x2222))
    return [b"", b"\x80\x1a" + b"\x00" * 10, good[0][:15], good[-1][:-3], b"\xff" * 1500]


@pytest.mark.parametrize("mode", ["v0", "rtp"])
def test_no_peer_triggered_error_ends_the_stage(
    rx: Rx, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Garbage is counted by the parsers; an unexpected exception inside them (here forced by
    breaking the jitter buffer for the next datagrams, standing in for a parser bug a peer
    finds) is counted as ``peer_errors`` and dropped, and frames flow afterwards."""
    rx.stage.handle(Connect(PeerEndpoint(LOCAL, 5000, MediaMode(mode), 0x1111, 0x2222)))
    packetizer = JpegRtpSender(0x2222)

    def send_frame(seq: int) -> None:
        for data in [_v0(seq)] if mode == "v0" else _rtp(packetizer):
            rx.send(data)

    send_frame(1)
    rx.pump(lambda: rx.frames() == 1)
    for data in _hostile(mode):
        rx.send(data)
        rx.send(data, rtcp=True)
    jitter = rx.stage._jitter  # the test breaks it on purpose
    real_push = jitter.push
    broken = {"left": 2}

    def push(*args: Any, **kwargs: Any) -> bool:
        if broken["left"]:
            broken["left"] -= 1
            raise OverflowError("a parser bug a peer found")
        return real_push(*args, **kwargs)

    monkeypatch.setattr(jitter, "push", push)
    send_frame(2)
    send_frame(3)
    rx.pump(lambda: rx.stage.counters.get("peer_errors", 0) == 2)
    send_frame(4)
    rx.pump(lambda: rx.frames() == 2)  # the stage survived and plays again
    assert rx.stage.counters["peer_errors"] == 2


def test_an_h264_frame_pushed_out_of_the_jitter_buffer_breaks_the_chain(rx: Rx) -> None:
    """A repair that lands after many frames were held behind it releases them at once; more
    than the jitter buffer holds pushes the oldest out. The frames after it lost a reference:
    none is played until a keyframe, which is asked for (RTCP PLI) at once."""
    peer_rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer_rtcp.bind((LOCAL, 0))
    peer_rtcp.settimeout(5.0)
    token = 0x4343
    endpoint = PeerEndpoint(
        LOCAL, peer_rtcp.getsockname()[1] - 1, MediaMode.RTP, 0x1111, token, codec="H264"
    )
    rx.stage.handle(Connect(endpoint))
    encoder = H264Encoder(bitrate=300_000, fps=30)
    sender = RtpSender(H264Packetizer(1200), ssrc=token, payload_type=96)
    image = np.empty((120, 160, 3), np.uint8)

    def packets(i: int) -> list[bytes]:
        render_into(image, i, i)
        return sender.packetize(encoder.encode(image, 0).data, 0, 0, 3000 * i)

    frames = [packets(i) for i in range(JITTER_MAX_FRAMES + 8)]
    late = frames[1].pop()  # frame 1's last packet comes after all the others
    try:
        for p in [p for f in frames for p in f] + [late]:
            rx.send(p)
        rx.pump(lambda: rx.stage.counters.get("waiting_keyframe", 0) > 0)
        assert rx.stage.snapshot(time.monotonic_ns())["jitter_buffer"]["overflow"] > 0
        encoder.request_keyframe()
        for p in packets(len(frames)):
            rx.send(p)
        played = rx.frames()
        rx.pump(lambda: rx.frames() > played)
        desc = rx.rx_ring.reader().latest()
        assert desc is not None and desc.keyframe  # nothing but the keyframe after the gap
        assert rx.frames() + rx.stage.counters["waiting_keyframe"] <= len(frames) + 1
        plis = []
        while not plis:
            data = peer_rtcp.recv(2048)
            plis = [p for p in parse_rtcp(data) if isinstance(p, PictureLossIndication)]
    finally:
        peer_rtcp.close()


def test_a_peer_that_sends_no_rtcp_gets_a_keyframe_every_keyframe_safety_s(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A vcall peer reports every second and asks (PLI) when it needs a keyframe: no periodic
    IDR for it. A peer whose RTCP never comes (ffplay fed from our SDP, blocked RTCP) gets one
    every KEYFRAME_SAFETY_S, so it can join late and recover from a loss."""
    import os

    monkeypatch.setattr(receive, "KEYFRAME_SAFETY_S", 0.3)
    segments = SegmentSet()
    kf = os.eventfd(0, os.EFD_NONBLOCK)
    r = Rx(segments, keyframe_request=kf)
    token = 0x5151

    def asked() -> int:
        try:
            return os.eventfd_read(kf)
        except BlockingIOError:
            return 0

    def run(seconds: float, report_every: float | None) -> None:
        end = last = time.monotonic()
        end += seconds
        while time.monotonic() < end:
            if report_every is not None and time.monotonic() - last >= report_every:
                last = time.monotonic()
                r.send(serialize_rtcp([ReceiverReport(token)]), rtcp=True)
            ready, _, _ = select.select(list(r.stage.wait_fds()), [], [], 0.02)
            r.stage.step(ready, time.monotonic_ns())

    try:
        r.stage.handle(Connect(PeerEndpoint(LOCAL, 9, MediaMode.RTP, 0x1111, token, codec="H264")))
        run(0.9, report_every=0.1)  # a peer that reports: three periods, no keyframe
        assert asked() == 0 and "safety_keyframes" not in r.stage.counters
        run(1.0, report_every=None)  # silent: one every 0.3 s, the first 0.3 s after the last RR
        n = r.stage.counters["safety_keyframes"]
        assert 2 <= n <= 4 and asked() == n
    finally:
        r.close()
        os.close(kf)
        segments.close()
