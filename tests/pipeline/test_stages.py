"""Stage loops driven by hand, in this process, on real rings: pacing, failure back-off,
descriptor stamps carried along, display sizing, JPEG checks."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterator
from typing import Any

import cv2
import numpy as np
import pytest

from pipeline.codecs.jpeg.codec import V0_MAX_BYTES
from pipeline.codecs.registry import get_codec
from pipeline.control import Connect, MediaMode, PeerEndpoint, SetSending
from pipeline.ipc.ring import Ring, Ts
from pipeline.ipc.shm import SegmentSet
from pipeline.pixels import PixelFormat
from pipeline.presets import Preset, get_preset
from pipeline.sources.pattern import read_stamp, render_into
from pipeline.sources.video import SourceError
from pipeline.stages import capture, display, encode

pytestmark = pytest.mark.usefixtures("no_leaks")

LOW = get_preset("low")


class FailingCamera:
    spec = "camera:9"
    width, height = LOW.width, LOW.height
    raw_formats = (PixelFormat.BGR24,)

    def __init__(self) -> None:
        self.reads = 0

    def read_into(self, dst: np.ndarray, now_ns: int) -> int | None:
        self.reads += 1
        raise SourceError("unplugged")

    def close(self) -> None:
        pass


def test_a_failing_camera_backs_off_instead_of_spinning(
    segments: SegmentSet, make_ctx: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    cam = FailingCamera()
    monkeypatch.setattr(capture, "open_source", lambda *a, **k: cam)
    raw = Ring.create(segments, "raw", n_slots=3, capacity=LOW.frame_bytes)
    stage = capture.CaptureStage(make_ctx("capture"), raw=raw, spec="camera:9", preset=LOW)
    now = time.monotonic_ns()
    assert stage.timeout(now) == 0.0  # a working camera is read at once
    stage.step([], now)
    assert cam.reads == 1
    assert stage.timeout(now) == pytest.approx(capture.RETRY_NS / 1e9, rel=0.01)
    stage.step([], now + 1000)  # too early: no read
    assert cam.reads == 1
    stage.step([], now + capture.RETRY_NS)
    assert cam.reads == 2
    assert stage.counters["read_errors"] == 2
    assert raw.writes == 0
    assert "unplugged" in stage.snapshot(now)["error"]
    raw.close()


def test_the_pattern_is_paced_at_the_preset_rate(segments: SegmentSet, make_ctx: Any) -> None:
    raw = Ring.create(segments, "raw", n_slots=3, capacity=LOW.frame_bytes)
    stage = capture.CaptureStage(make_ctx("capture"), raw=raw, spec="pattern", preset=LOW)
    now = time.monotonic_ns()
    stage.step([], now)
    assert raw.writes == 1
    stage.step([], now + 1_000_000)  # 1 ms later: not due at 15 fps
    assert raw.writes == 1
    assert 0 < stage.timeout(now + 1_000_000) <= 1 / LOW.fps
    stage.step([], now + 10**9 // LOW.fps + 1)
    assert raw.writes == 2
    desc = raw.reader().latest()
    assert desc is not None
    assert (desc.width, desc.height) == LOW.size
    assert 0 < desc.stamp(Ts.CAPTURE) <= desc.stamp(Ts.CAPTURED)
    image = raw.reader().array(desc)
    stamp = read_stamp(image)
    assert stamp is not None
    assert stamp.capture_ns == desc.stamp(Ts.CAPTURE)
    stage.close()
    raw.close()


def test_a_capped_v0_frame_with_the_longest_header_is_a_peer_safe_datagram() -> None:
    """The cap is on the JPEG, so it must leave room for the V0 header in the same datagram
    (it was 32 KiB itself: a capped frame made a 32 KiB + ~45 byte datagram)."""
    from pipeline.session import MediaSession
    from pipeline.wire.v0 import V0_PEER_SAFE_DATAGRAM, encode_v0

    default = inspect.signature(MediaSession).parameters["v0_max_bytes"].default
    assert default is None  # the framing's own cap:
    framing = get_codec("JPEG").framing(MediaMode.V0)
    assert framing is not None and framing.max_bytes == V0_MAX_BYTES
    jpeg = b"\xff\xd8" + b"\x00" * (V0_MAX_BYTES - 2)
    datagram = encode_v0(10**15 - 1, 9_999_999_999.999999, 65535, 65535, 999.9, jpeg)
    assert len(datagram) <= V0_PEER_SAFE_DATAGRAM


def test_encode_waits_for_connect_then_carries_the_stamps(
    segments: SegmentSet, make_ctx: Any
) -> None:
    raw = Ring.create(segments, "raw", n_slots=3, capacity=LOW.frame_bytes, n_readers=2)
    jtx = Ring.create(segments, "jtx", n_slots=3, capacity=1 << 20)
    stage = encode.EncodeStage(
        make_ctx("encode"),
        raw=raw,
        raw_reader=0,
        encoded_tx=jtx,
        preset=LOW,
        codec=get_codec("JPEG"),
        v0_max_bytes=V0_MAX_BYTES,
    )
    writer = raw.writer()

    def capture_one(frame_id: int) -> None:
        dst = writer.begin_array(LOW.width, LOW.height)
        t = time.monotonic_ns()
        render_into(dst, frame_id, t)
        writer.commit(
            frame_id=frame_id,
            nbytes=dst.nbytes,
            width=LOW.width,
            height=LOW.height,
            stamps={Ts.CAPTURE: t, Ts.CAPTURED: time.monotonic_ns()},
        )

    capture_one(1)
    stage.step([stage.wait_fds()[0]], time.monotonic_ns())
    assert jtx.writes == 0  # not connected: nothing to encode for
    assert stage.counters["skipped_idle"] == 1
    stage.handle(Connect(PeerEndpoint("127.0.0.1", 5000, MediaMode.RTP)))
    capture_one(2)
    stage.step([stage.wait_fds()[0]], time.monotonic_ns())
    assert jtx.writes == 1
    desc = jtx.reader().latest()
    assert desc is not None
    assert desc.frame_id == 2
    assert desc.quality == LOW.quality and desc.keyframe
    s = desc.stamps
    assert 0 < s[Ts.CAPTURE] <= s[Ts.CAPTURED] <= s[Ts.ENCODE_START] <= s[Ts.ENCODED]
    jpeg = jtx.reader().view(desc).tobytes()
    decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None
    assert decoded.shape == (LOW.height, LOW.width, 3)
    stage.handle(SetSending(False))
    capture_one(3)
    stage.step([stage.wait_fds()[0]], time.monotonic_ns())
    assert jtx.writes == 1  # paused
    raw.close()
    jtx.close()


@pytest.mark.parametrize(
    ("target", "reason", "skipped"),
    [
        (1_000_000, "remb", 3),  # a sharp delay-based cut: 0.1 s of frames at 30 fps skipped
        (1_000_000, "loss", 0),  # loss may be random: never a drain
        (1_800_000, "remb", 0),  # a small cut: the encoder follows, nothing skipped
    ],
)
def test_a_sharp_delay_based_cut_skips_frames_to_drain_the_queue(
    segments: SegmentSet, make_ctx: Any, target: int, reason: str, skipped: int
) -> None:
    from pipeline.transport import feedback

    high: Preset = get_preset("high")  # H.264 at 2 Mbit/s, 30 fps
    size = (320, 240)
    raw = Ring.create(segments, "raw", n_slots=3, capacity=size[0] * size[1] * 3, n_readers=2)
    jtx = Ring.create(segments, "jtx", n_slots=8, capacity=1 << 20)
    fb = Ring.create(segments, "fb", n_slots=8, capacity=feedback.CAPACITY, n_readers=2)
    stage = encode.EncodeStage(
        make_ctx("encode"),
        raw=raw,
        raw_reader=0,
        encoded_tx=jtx,
        preset=high,
        codec=get_codec("H264"),
        feedback_ring=fb,
        feedback_reader=1,
    )
    stage.handle(Connect(PeerEndpoint("127.0.0.1", 5000, MediaMode.RTP, codec="H264")))
    writer = raw.writer()
    for frame_id in range(8):
        if frame_id == 2:
            fb.writer().write(feedback.pack(feedback.TargetRate(target, reason)), frame_id=0)
            stage.step([fb.reader(1).fd], time.monotonic_ns())
        dst = writer.begin_array(*size)
        render_into(dst, frame_id, time.monotonic_ns())
        writer.commit(frame_id=frame_id, nbytes=dst.nbytes, width=size[0], height=size[1])
        stage.step([stage.wait_fds()[0]], time.monotonic_ns())
    assert stage.counters.get("skipped_drain", 0) == skipped
    assert stage.counters.get("drains", 0) == (1 if skipped else 0)
    assert jtx.writes == 8 - skipped  # the frames after the drain encode on
    assert stage.snapshot(time.monotonic_ns())["encoder_bps"] == min(target, high.bitrate_bps)
    raw.close()
    jtx.close()
    fb.close()


@pytest.fixture
def make_display(
    segments: SegmentSet, make_ctx: Any
) -> Iterator[Callable[..., tuple[display.DisplayStage, Ring, Ring]]]:
    """Makes a display stage on fresh rings: (stage, rx ring, peer ring)."""
    rings: list[Ring] = []

    def make(
        preset: Preset, peer_box: tuple[int, int], codec: str = "JPEG", rx_slots: int = 4
    ) -> tuple[display.DisplayStage, Ring, Ring]:
        jrx = Ring.create(segments, "jrx", n_slots=rx_slots, capacity=1 << 20)
        raw = Ring.create(segments, "raw", n_slots=3, capacity=preset.frame_bytes, n_readers=2)
        peer = Ring.create(segments, "peer", n_slots=3, capacity=preset.frame_bytes)
        mine = Ring.create(segments, "self", n_slots=3, capacity=640 * 480 * 3)
        rings.extend((jrx, raw, peer, mine))
        stage = display.DisplayStage(
            make_ctx("display"),
            encoded_rx=jrx,
            raw=raw,
            raw_reader=1,
            rgb_peer=peer,
            rgb_self=mine,
            peer_box=peer_box,
            self_box=(160, 120),
            codec=get_codec(codec),
        )
        return stage, jrx, peer

    yield make
    for ring in rings:
        ring.close()


def test_display_decodes_at_the_view_size_and_rejects_bombs(make_display: Any) -> None:
    high: Preset = get_preset("high")
    stage, jrx, peer = make_display(high, (400, 400))
    image = np.empty((high.height, high.width, 3), np.uint8)
    t = time.monotonic_ns()
    render_into(image, 42, t)
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    jrx.writer().write(jpeg, frame_id=7, stamps={Ts.PLAYOUT: time.monotonic_ns()})
    stage.step([jrx.reader_fds[0]], time.monotonic_ns())
    desc = peer.reader().latest()
    assert desc is not None
    assert (desc.width, desc.height) == (400, 225)  # 16:9 kept inside 400x400
    assert desc.pattern_id == 42  # the pattern's id read back
    assert (desc.source_width, desc.source_height) == (high.width, high.height)
    assert desc.stamp(Ts.CAPTURE) == t
    assert desc.stamp(Ts.DISPLAYED) >= desc.stamp(Ts.DECODE_START) > 0
    assert stage.latency["capture_to_display"].count == 1
    bomb = bytearray(jpeg)
    sof = bomb.index(b"\xff\xc0")
    bomb[sof + 5 : sof + 9] = (30000).to_bytes(2, "big") * 2
    jrx.writer().write(bytes(bomb), frame_id=8)
    stage.step([jrx.reader_fds[0]], time.monotonic_ns())
    assert stage.counters["rejected_frame"] == 1
    assert peer.writes == 1


@pytest.fixture
def make_send(
    segments: SegmentSet, make_ctx: Any
) -> Iterator[Callable[..., tuple[Any, Ring, int, Any, Ring | None]]]:
    """Makes an H.264 send stage connected to a UDP socket on 127.0.0.1, on fresh rings (a
    4-slot encoded ring; with ``feedback``, a feedback ring too): (stage, encoded ring,
    keyframe eventfd, peer socket, feedback ring or None)."""
    import os
    import socket

    from pipeline.stages.send import SendStage
    from pipeline.transport import feedback as fbmsg
    from pipeline.wire.rtcp import SenderInfo

    closers: list[Callable[[], None]] = []

    def make(feedback: bool = False) -> tuple[Any, Ring, int, Any, Ring | None]:
        etx = Ring.create(segments, "etx", n_slots=4, capacity=1 << 20)
        txinfo = Ring.create(segments, "txi", n_slots=2, capacity=SenderInfo.SIZE, n_readers=0)
        fb = Ring.create(segments, "fb", n_slots=16, capacity=fbmsg.CAPACITY) if feedback else None
        kf = os.eventfd(0, os.EFD_NONBLOCK)
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(2.0)
        stage = SendStage(
            make_ctx("send"),
            encoded_tx=etx,
            txinfo=txinfo,
            fps=30,
            codec=get_codec("H264"),
            keyframe_request=kf,
            feedback_ring=fb,
        )
        closers.extend((stage.close, peer.close, lambda: os.close(kf), etx.close, txinfo.close))
        if fb is not None:
            closers.append(fb.close)
        port = peer.getsockname()[1]
        stage.handle(Connect(PeerEndpoint("127.0.0.1", port, MediaMode.RTP, codec="H264")))
        return stage, etx, kf, peer, fb

    yield make
    for close in closers:
        close()


def test_send_keeps_an_inter_frame_stream_whole_after_a_ring_drop(make_send: Any) -> None:
    """H.264: frames go out in order; when the encode->send ring overwrote frames the stage never
    read, nothing but a keyframe goes out next (the RTP sequence would hide the gap from the
    receiver) and the encoder is asked for one."""
    import select

    from pipeline.codecs.h264.codec import H264Encoder

    stage, etx, kf, _peer, _fb = make_send()
    encoder = H264Encoder(bitrate=500_000)
    writer = etx.writer()

    def encode(i: int) -> None:
        f = encoder.encode(np.full((96, 128, 3), i * 20 % 256, np.uint8), 0)
        writer.write(f.data, frame_id=i, width=128, height=96, keyframe=f.keyframe)

    encode(0)  # the IDR
    stage.step([etx.reader_fds[0]], time.monotonic_ns())
    assert stage.counters["frames"] == 1
    for i in range(1, 7):  # six P frames while the stage sleeps: the 4-slot ring drops two
        encode(i)
    stage.step([etx.reader_fds[0]], time.monotonic_ns())
    assert stage.counters["ring_drops_inter_frame"] == 1
    assert stage.counters["waiting_keyframe"] == 4  # nothing broken goes out
    assert stage.counters["frames"] == 1
    assert select.select([kf], [], [], 0)[0] == [kf]  # the encoder is asked for a keyframe
    encoder.request_keyframe()
    encode(7)
    stage.step([etx.reader_fds[0]], time.monotonic_ns())
    assert stage.counters["frames"] == 2  # the keyframe, and the stream goes on


def test_display_stops_looking_for_a_stamp_in_frames_without_one(
    make_display: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A camera's frames carry no pattern stamp: after STAMP_GIVE_UP misses in a row only one
    frame in STAMP_GIVE_UP is searched; a stamped frame found then restores every frame."""
    stage, jrx, peer = make_display(LOW, LOW.size)
    calls: list[int] = []
    real = display.read_stamp
    monkeypatch.setattr(display, "read_stamp", lambda img: calls.append(1) or real(img))
    plain = cv2.imencode(".jpg", np.full((LOW.height, LOW.width, 3), 90, np.uint8))[1].tobytes()
    stamped = np.empty((LOW.height, LOW.width, 3), np.uint8)
    render_into(stamped, 5, time.monotonic_ns())
    pattern_jpeg = cv2.imencode(".jpg", stamped)[1].tobytes()
    give_up = display.STAMP_GIVE_UP

    def show(jpeg: bytes, n: int) -> None:
        for i in range(n):
            jrx.writer().write(jpeg, frame_id=i, stamps={Ts.PLAYOUT: time.monotonic_ns()})
            stage.step([jrx.reader_fds[0]], time.monotonic_ns())

    show(plain, give_up)
    assert len(calls) == give_up  # every frame, until the misses add up
    show(plain, 3 * give_up)
    assert len(calls) == give_up + 3  # then one frame in give_up
    show(pattern_jpeg, give_up)  # the pattern comes back: found at the next search
    searched = len(calls)
    show(pattern_jpeg, 5)
    assert len(calls) == searched + 5  # every frame again
    latest = peer.reader().latest()
    assert latest is not None and latest.pattern_id == 5
    assert stage.counters["frames"] == 5 * give_up + 5


def test_a_burst_released_after_a_repair_hold_reaches_the_display_whole(
    make_display: Any,
) -> None:
    """After a long repair hold the receive stage releases everything the jitter buffer held
    within a few loop turns, faster than the display decodes. Every frame must still be in the
    ring when the display reads it in order: a lapped frame breaks an H.264 chain, and the
    picture then waits for a keyframe (a freeze though every packet was repaired)."""
    from pipeline.codecs.h264.codec import H264Encoder
    from pipeline.session import ENCODED_RX_SLOTS
    from pipeline.stages.receive import JITTER_MAX_FRAMES, MAX_FRAMES_PER_TURN

    burst = JITTER_MAX_FRAMES + MAX_FRAMES_PER_TURN
    stage, erx, _peer = make_display(LOW, LOW.size, "H264", ENCODED_RX_SLOTS)
    encoder = H264Encoder(bitrate=LOW.bitrate_bps, fps=LOW.fps)
    image = np.empty((LOW.height, LOW.width, 3), np.uint8)
    writer = erx.writer()
    for frame_id in range(burst):  # written back to back, as the receive stage does
        render_into(image, frame_id, time.monotonic_ns())
        frame = encoder.encode(image, 0)
        writer.write(
            frame.data,
            frame_id=frame_id,
            width=frame.width,
            height=frame.height,
            keyframe=frame.keyframe,
        )
    stage.step([stage.wait_fds()[0]], time.monotonic_ns())
    assert stage.counters["frames"] == burst
    assert stage.counters.get("waiting_keyframe", 0) == 0
    assert stage.snapshot(time.monotonic_ns())["ring_dropped"] == 0


def test_a_frame_torn_while_copied_breaks_an_inter_frame_chain(
    make_display: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The display never decodes past a frame it could not copy: the next frames would refer to
    it, so nothing is shown until a keyframe."""
    from pipeline.codecs.h264.codec import H264Encoder

    stage, erx, _peer = make_display(LOW, LOW.size, "H264", 8)
    encoder = H264Encoder(bitrate=LOW.bitrate_bps, fps=LOW.fps)
    image = np.empty((LOW.height, LOW.width, 3), np.uint8)
    writer = erx.writer()

    def send(frame_id: int) -> None:
        render_into(image, frame_id, time.monotonic_ns())
        frame = encoder.encode(image, 0)
        writer.write(frame.data, frame_id=frame_id, width=frame.width, height=frame.height,
                     keyframe=frame.keyframe)  # fmt: skip

    send(0)
    stage.step([stage.wait_fds()[0]], time.monotonic_ns())
    assert stage.counters["frames"] == 1
    reader = stage._rx
    copy = reader.copy_bytes
    monkeypatch.setattr(reader, "copy_bytes", lambda desc: None)
    send(1)
    stage.step([stage.wait_fds()[0]], time.monotonic_ns())
    assert stage.counters["torn"] == 1
    monkeypatch.setattr(reader, "copy_bytes", copy)
    send(2)  # refers to frame 1, which the decoder never got
    stage.step([stage.wait_fds()[0]], time.monotonic_ns())
    assert stage.counters["frames"] == 1 and stage.counters["waiting_keyframe"] == 1
    encoder.request_keyframe()
    send(3)
    stage.step([stage.wait_fds()[0]], time.monotonic_ns())
    assert stage.counters["frames"] == 2


def test_a_sharp_delay_based_cut_with_losses_asks_for_one_keyframe_and_thriftier_repair(
    make_send: Any,
) -> None:
    """Congestion (pipeline.stages.send CONGESTION_CUT): after a delay-based target more than
    10% below what was sent, the peer's NACKs are answered without the second copy a long RTT
    otherwise gets, and a loss the peer NACKed around the cut asks the encoder for one keyframe,
    not one per NACK. A cut for loss (random loss is not a full queue) or a small delay-based
    trim changes nothing."""
    import os
    import select

    from pipeline.codecs.h264.codec import H264Encoder
    from pipeline.stages import send
    from pipeline.transport import feedback

    stage, etx, kf, peer, fb = make_send(feedback=True)
    assert fb is not None
    fbw = fb.writer()

    def tell(msg: feedback.NackRequest | feedback.TargetRate) -> None:
        fbw.write(feedback.pack(msg), frame_id=fb.writes + 1)
        stage.step([fb.reader_fds[0]], time.monotonic_ns())

    def keyframe_asked() -> bool:
        if select.select([kf], [], [], 0)[0]:
            os.eventfd_read(kf)
            return True
        return False

        encoder = H264Encoder(bitrate=500_000)
        rng = np.random.default_rng(3)
        for i in range(3):
            f = encoder.encode(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8), 0)
            etx.writer().write(f.data, frame_id=i, width=128, height=96, keyframe=f.keyframe)
            stage.step([etx.reader_fds[0]], time.monotonic_ns())
        seqs = []
        for _ in range(stage.counters["datagrams"]):
            data = peer.recv(2048)
            seqs.append(int.from_bytes(data[2:4], "big"))
        assert len(seqs) >= 6
        rtt_ms = 250  # the lab's bandwidth step: a full queue each way

        tell(feedback.TargetRate(30_000_000, "loss"))
        tell(feedback.NackRequest((seqs[0],), rtt_ms))  # uncongested: answered, and copied
        time.sleep(send.RTX_REPEAT_AFTER_S * 2)
        stage.step([], time.monotonic_ns())
        assert (stage.counters["rtx_packets"], stage.counters.get("rtx_repeats", 0)) == (2, 1)
        assert not keyframe_asked()

        tell(feedback.TargetRate(20_000_000, "loss"))  # a loss-based cut: not congestion
        tell(feedback.NackRequest((seqs[1],), rtt_ms))
        time.sleep(send.RTX_REPEAT_AFTER_S * 2)
        stage.step([], time.monotonic_ns())
        assert (stage.counters["rtx_packets"], stage.counters["rtx_repeats"]) == (4, 2)
        assert not keyframe_asked() and "congestion_keyframes" not in stage.counters

        sent = stage.snapshot(time.monotonic_ns())["bitrate_bps"]  # what went out lately
        assert sent > 0
        tell(feedback.TargetRate(int(sent * 0.95), "remb"))  # a delay-based trim: not a full queue
        assert not keyframe_asked() and "congestion_keyframes" not in stage.counters
        tell(feedback.TargetRate(int(sent * 0.6), "remb"))  # sharp and delay-based, NACKs came
        assert keyframe_asked() and stage.counters["congestion_keyframes"] == 1
        repeats = stage.counters["rtx_repeats"]
        tell(feedback.NackRequest((seqs[2],), rtt_ms))  # answered once, no copy
        tell(feedback.NackRequest((seqs[3],), rtt_ms))
        time.sleep(send.RTX_REPEAT_AFTER_S * 2)
        stage.step([], time.monotonic_ns())
        assert stage.counters["rtx_repeats"] == repeats == 2
        assert stage.counters["rtx_packets"] == 4 + 2
        tell(feedback.TargetRate(int(sent * 0.4), "remb"))  # a second cut soon after: no keyframe
        assert not keyframe_asked() and stage.counters["congestion_keyframes"] == 1
