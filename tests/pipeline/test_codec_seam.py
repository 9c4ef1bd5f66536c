"""The codec seam, the stream layer and the datagram edge (issue 9): pure logic with the real
JPEG codec, and one real loopback socket for the edge."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.codecs.base import CodecFrame, Depacketizer, DepacketizerStats, EncodeError
from pipeline.codecs.jpeg.codec import JPEG_INFO, V0_MAX_BYTES, V0Framing
from pipeline.codecs.registry import (
    DEFAULT_VIDEO,
    UnknownCodecError,
    codecs,
    for_mode,
    get_codec,
    register,
)
from pipeline.control import MediaMode
from pipeline.errors import LocalProtocolError, RemoteProtocolError
from pipeline.jitter import JitterBuffer
from pipeline.sources.pattern import read_stamp, render_into
from pipeline.transport.edge import MAX_DISCARDS_PER_CALL, DatagramEdge
from pipeline.transport.stream import RtpReceiver, RtpSender
from pipeline.wire.rtcp import RtcpError, SenderInfo
from pipeline.wire.rtp import RtpError, rtp_header
from pipeline.wire.sdp import SdpError
from pipeline.wire.v0 import V0Error, V0TooLargeError

LOCAL = "127.0.0.1"


def pattern(width: int = 640, height: int = 480, frame_id: int = 7) -> np.ndarray:
    image = np.empty((height, width, 3), np.uint8)
    render_into(image, frame_id, 123_456_789)
    return image


# -- registry ------------------------------------------------------------------------------


def test_registry_names_jpeg_with_its_rtp_and_sdp_facts() -> None:
    jpeg = get_codec("jpeg")  # any case
    assert jpeg is get_codec(DEFAULT_VIDEO) and jpeg.info is JPEG_INFO
    info = jpeg.info
    assert (info.payload_type, info.clock_rate, info.rtpmap) == (26, 90000, "JPEG/90000")
    assert info.intra_only and not info.keyframe_requests
    assert set(info.modes) == {MediaMode.RTP, MediaMode.V0}
    assert for_mode(MediaMode.V0) is jpeg
    assert next(c.info.name for c in codecs()) == "JPEG"
    with pytest.raises(UnknownCodecError, match="registered: JPEG"):
        get_codec("VP9")
    with pytest.raises(ValueError, match="already registered"):
        register(jpeg)
    assert len(codecs()) == len({c.info.payload_type for c in codecs()})


def test_codec_decides_which_sizes_it_carries() -> None:
    JPEG_INFO.check_size(1280, 720)
    for w, h in ((1281, 720), (2048, 16), (0, 8)):
        with pytest.raises(LocalProtocolError):
            JPEG_INFO.check_size(w, h)


# -- the parts, end to end without processes ---------------------------------------------------


def test_jpeg_parts_carry_a_frame_through_the_stream_layer() -> None:
    codec = get_codec("JPEG")
    frame = codec.encoder().encode(pattern(), 70)
    assert frame.keyframe and (frame.width, frame.height, frame.quality) == (640, 480, 70)
    sender = RtpSender(codec.packetizer(1200), ssrc=0xABC, payload_type=26, initial_seq=65534)
    datagrams = sender.packetize(frame.data, frame.width, frame.height, 90_000)
    assert len(datagrams) > 2 and sender.packets_sent == len(datagrams)
    assert sender.sender_info(5).packets == len(datagrams)
    assert SenderInfo.unpack(sender.sender_info(5).pack()) == sender.sender_info(5)
    receiver = RtpReceiver()
    stream = receiver.add_stream(
        codec.depacketizer(), payload_type=26, clock_rate=90000, expected_ssrc=0xABC
    )
    out: list[CodecFrame] = []
    for d in reversed(datagrams):  # any order
        out += receiver.push(d, 1.0)
    (got,) = out
    assert got.timestamp == 90_000 and (got.width, got.height) == (640, 480)
    decoder = codec.decoder()
    assert decoder.frame_size(got.data) == (640, 480)
    rgb = np.empty((240, 320, 3), np.uint8)  # decoded straight to a smaller box
    decoder.decode_rgb_into(got.data, rgb)
    stamp = read_stamp(rgb)
    assert stamp is not None and stamp.frame_id == 7
    assert stream.stats.packets == len(datagrams) and stream.stats.lost_packets == 0
    assert stream.reception is not None and stream.reception.received == len(datagrams)


def test_v0_is_jpegs_second_framing() -> None:
    codec = get_codec("JPEG")
    assert codec.framing(MediaMode.RTP) is None
    framing = codec.framing(MediaMode.V0)
    assert isinstance(framing, V0Framing) and framing.max_bytes == V0_MAX_BYTES
    encoder = framing.encoder(codec.encoder())
    frame = encoder.encode(pattern(1280, 720), 95)  # scaled to fit 640x480, under the cap
    assert (frame.width, frame.height) == (640, 360) and len(frame.data) <= V0_MAX_BYTES
    first = framing.parse(framing.datagram(frame.data, frame.width, frame.height, 30, 1e9))
    second = framing.parse(framing.datagram(frame.data, frame.width, frame.height, 30, 1e9))
    assert (first.seq, second.seq) == (1, 2) and first.data == frame.data
    assert first.capture_time == 1e9
    tiny = codec.framing(MediaMode.V0, max_frame_bytes=100)
    assert tiny is not None
    with pytest.raises(EncodeError):
        tiny.encoder(codec.encoder()).encode(pattern(), 70)


def test_intra_only_decides_whether_the_jitter_buffer_skips() -> None:
    played: dict[bool, list[int]] = {}
    for skip in (True, False):
        jb: JitterBuffer[int] = JitterBuffer(max_delay=0.0, skip_older=skip)
        for i in range(3):
            jb.push(i, i * 3000, 10.0 + i * 0.001)
        got = []
        while (item := jb.pop(11.0)) is not None:
            got.append(item)
        played[skip] = got
        assert jb.stats.skipped == (2 if skip else 0)
    assert played == {True: [2], False: [0, 1, 2]}


# -- the stream layer: demultiplexing and filtering -----------------------------------------


class _Collect(Depacketizer):
    """Every payload becomes a frame (a second stream, such as audio would be)."""

    def __init__(self) -> None:
        self.resets = 0

    def push(
        self, seq: int, timestamp: int, marker: bool, payload: memoryview, now: float
    ) -> list[CodecFrame]:
        return [CodecFrame(bytes(payload), timestamp, 0, 0, True, now, now, 1)]

    def expire(self, now: float) -> int:
        return 0

    def reset(self) -> None:
        self.resets += 1

    @property
    def stats(self) -> DepacketizerStats:
        return DepacketizerStats()


def test_receiver_routes_by_payload_type_and_filters_ssrc() -> None:
    receiver = RtpReceiver()
    video = receiver.add_stream(_Collect(), payload_type=26, clock_rate=90000, expected_ssrc=0)
    audio = receiver.add_stream(_Collect(), payload_type=111, clock_rate=48000, expected_ssrc=5)
    assert receiver.push(rtp_header(26, 1, 100, 0, True) + b"v", 0.0)[0].data == b"v"
    assert receiver.push(rtp_header(111, 1, 960, 5, True) + b"a", 0.0)[0].data == b"a"
    assert receiver.push(rtp_header(111, 2, 960, 6, True) + b"x", 0.0) == []  # SSRC 6
    assert receiver.push(rtp_header(97, 1, 0, 0, True) + b"x", 0.0) == []
    assert receiver.push(b"\x00" * 20, 0.0) == []
    assert (video.stats.packets, audio.stats.packets, audio.stats.wrong_source) == (1, 1, 1)
    assert (receiver.unknown_payload_type, receiver.malformed) == (1, 1)
    with pytest.raises(ValueError):
        receiver.add_stream(_Collect(), payload_type=26, clock_rate=90000, expected_ssrc=None)


def test_unnegotiated_stream_locks_on_first_source_then_follows_after_silence() -> None:
    receiver = RtpReceiver()
    collect = _Collect()
    stream = receiver.add_stream(
        collect, payload_type=None, clock_rate=90000, expected_ssrc=None, source_timeout=0.5
    )
    assert receiver.push(rtp_header(96, 1, 0, 1, True) + b"1", 0.0)
    assert receiver.push(rtp_header(96, 9, 0, 2, True) + b"2", 0.1) == []
    assert receiver.push(rtp_header(96, 10, 0, 2, True) + b"2", 1.0)
    assert (stream.ssrc, stream.stats.source_changes, collect.resets) == (2, 1, 2)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=30))
def test_receiver_never_raises_on_any_bytes(datagrams: list[bytes]) -> None:
    receiver = RtpReceiver()
    receiver.add_stream(
        get_codec("JPEG").depacketizer(), payload_type=None, clock_rate=90000, expected_ssrc=None
    )
    for i, d in enumerate(datagrams):
        receiver.push(d, i * 0.01)
        receiver.push(b"\x80" + d, i * 0.01)  # past the version check
    receiver.expire(10.0)


# -- whose fault ----------------------------------------------------------------------------


def test_one_vocabulary_for_whose_fault() -> None:
    for peer in (RtpError, RtcpError, V0Error, SdpError, UnknownCodecError):
        assert issubclass(peer, RemoteProtocolError) != issubclass(peer, LocalProtocolError)
    for remote in (RtpError, RtcpError, V0Error, SdpError):
        assert issubclass(remote, RemoteProtocolError) and not issubclass(remote, ValueError)
    for local in (V0TooLargeError, EncodeError, UnknownCodecError):
        assert issubclass(local, LocalProtocolError) and issubclass(local, ValueError)
    from pipeline.codecs.jpeg.backends import JpegError as BackendJpegError
    from pipeline.codecs.jpeg.markers import JpegError

    assert JpegError is BackendJpegError and issubclass(JpegError, RemoteProtocolError)


# -- the edge, on a real socket ----------------------------------------------------------------


class _Xor:
    def protect(self, datagram: bytes) -> bytes:
        return bytes(b ^ 0x5A for b in datagram)

    def unprotect(self, datagram: bytes) -> bytes:
        if not datagram.startswith(b"\x5a"):
            raise RemoteProtocolError("not protected")
        return bytes(b ^ 0x5A for b in datagram)


def _pump(edge: DatagramEdge) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        item = edge.receive()
        if item is None:
            if got:
                break
            time.sleep(0.01)
            continue
        got.append(item[0])
    return got


def test_edge_filters_the_peer_and_runs_every_datagram_through_protection() -> None:
    rx_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx_sock.bind((LOCAL, 0))
    port = rx_sock.getsockname()[1]
    tx = DatagramEdge(socket.socket(socket.AF_INET, socket.SOCK_DGRAM), protection=_Xor())
    rx = DatagramEdge(rx_sock, protection=_Xor())
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.2", 0))
    try:
        tx.connect(LOCAL, port)
        tx.send(b"\x00early")  # before rx.connect: dropped and counted
        time.sleep(0.05)
        assert rx.receive() is None and rx.stats.dropped_before_connect == 1
        rx.connect(LOCAL, None)
        stranger.sendto(b"\x00from elsewhere", (LOCAL, port))
        rx_sock_plain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx_sock_plain.sendto(b"plain", (LOCAL, port))  # from the peer's IP, not protected
        rx_sock_plain.close()
        tx.send(b"\x00hello")
        assert _pump(rx) == [b"\x00hello"]
        s = rx.stats
        assert (s.received, s.dropped_wrong_address, s.unprotect_failed) == (1, 1, 1)
        with pytest.raises(RuntimeError):
            rx.send(b"no destination")
    finally:
        for e in (tx, rx):
            e.close()
        stranger.close()


def test_edge_returns_after_a_bounded_number_of_discards() -> None:
    rx_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx_sock.bind((LOCAL, 0))
    rx_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    rx = DatagramEdge(rx_sock)
    rx.connect("127.0.0.3", None)
    flood = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _ in range(MAX_DISCARDS_PER_CALL + 50):
            flood.sendto(b"x", rx_sock.getsockname())
        time.sleep(0.1)
        assert rx.receive() is None
        assert rx.stats.dropped_wrong_address == MAX_DISCARDS_PER_CALL
        rx.reset_stats()
        assert rx.stats.dropped_wrong_address == 0
    finally:
        rx.close()
        flood.close()


# -- vcall codecs --------------------------------------------------------------------------


def test_vcall_codecs_prints_the_registry() -> None:
    import json
    import subprocess
    import sys

    run = [sys.executable, "-m", "vcall", "codecs"]
    table = subprocess.run(run, capture_output=True, text=True, timeout=60, check=True).stdout
    header, *rows = table.splitlines()
    assert header.split()[:4] == ["name", "kind", "pt", "clock"]
    assert [r.split()[:4] for r in rows] == [
        ["JPEG", "video", "26", "90000"],
        ["H264", "video", "96", "90000"],
        ["opus", "audio", "111", "48000"],
    ]
    out = subprocess.run([*run, "--json"], capture_output=True, text=True, timeout=60, check=True)
    jpeg, h264, _opus = json.loads(out.stdout)
    assert h264["modes"] == ["rtp"] and h264["intra_only"] is False
    assert h264["keyframe_requests"] is True and "packetization-mode=1" in h264["fmtp"]
    assert jpeg["modes"] == ["rtp", "v0"] and jpeg["rtpmap"] == "JPEG/90000"
    assert jpeg["intra_only"] is True and jpeg["payload_format"] == "RFC 2435"
