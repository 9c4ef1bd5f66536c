"""Raw I420 frames: the pattern drawn in I420, the ring's pixel format, the capture stage's
choice, the encoders' use of it and the self view."""

from __future__ import annotations

import time
from typing import Any

import cv2
import numpy as np
import pytest

from pipeline.codecs.h264.codec import H264Encoder
from pipeline.codecs.registry import get_codec
from pipeline.control import Connect, MediaMode, PeerEndpoint
from pipeline.ipc.ring import Ring, RingError, Ts
from pipeline.ipc.shm import SegmentSet
from pipeline.pixels import PixelFormat, can_hold, raw_shape, shrink_to_rgb, to_bgr
from pipeline.presets import get_preset
from pipeline.sources.pattern import PatternRenderer, read_stamp
from pipeline.stages import capture, encode

pytestmark = pytest.mark.usefixtures("no_leaks")

LOW = get_preset("low")


def test_shapes_and_sizes() -> None:
    assert raw_shape(PixelFormat.BGR24, 5, 3) == (3, 5, 3)
    assert raw_shape(PixelFormat.I420, 6, 4) == (6, 6)
    assert can_hold(PixelFormat.BGR24, 5, 3)
    assert not can_hold(PixelFormat.I420, 5, 4)
    assert not can_hold(PixelFormat.I420, 6, 3)
    assert not can_hold(PixelFormat.BGR24, 0, 3)
    with pytest.raises(ValueError, match="I420"):
        raw_shape(PixelFormat.I420, 7, 4)


@pytest.mark.parametrize(("width", "height"), [(1280, 720), (1920, 1080), (640, 480), (320, 180)])
def test_the_pattern_in_i420_is_the_bgr_pattern_converted(width: int, height: int) -> None:
    """Luma exact (the stamp, box and background on the luma grid); chroma differs only on the
    box's edges at odd pixels; the stamp reads back after an I420 -> RGB conversion."""
    r = PatternRenderer(width, height)
    bgr = np.empty((height, width, 3), np.uint8)
    i420 = np.empty(raw_shape(PixelFormat.I420, width, height), np.uint8)
    for frame_id in (0, 1, 77, 4567):
        r.render_into(bgr, frame_id, 10**9 + frame_id)
        r.render_i420_into(i420, frame_id, 10**9 + frame_id)
        expected = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)
        np.testing.assert_array_equal(i420[:height], expected[:height])
        chroma_diff = np.abs(i420[height:].astype(int) - expected[height:].astype(int))
        assert chroma_diff.mean() < 0.5
        stamp = read_stamp(to_bgr(i420, PixelFormat.I420))
        assert stamp is not None and stamp.frame_id == frame_id
        assert stamp.capture_ns == 10**9 + frame_id


def test_the_pattern_refuses_a_wrong_i420_buffer() -> None:
    r = PatternRenderer(640, 480)
    with pytest.raises(ValueError, match="even sizes"):
        r.render_i420_into(np.empty((480, 640), np.uint8), 0, 0)
    with pytest.raises(ValueError, match="even sizes"):
        PatternRenderer(641, 480).render_i420_into(np.empty((720, 641), np.uint8), 0, 0)


@pytest.mark.parametrize(("w", "h"), [(320, 180), (161, 91), (640, 360)])
def test_the_self_view_of_i420_matches_the_one_of_bgr(w: int, h: int) -> None:
    r = PatternRenderer(1280, 720)
    bgr = np.empty((720, 1280, 3), np.uint8)
    i420 = np.empty(raw_shape(PixelFormat.I420, 1280, 720), np.uint8)
    r.render_into(bgr, 9, 9)
    r.render_i420_into(i420, 9, 9)
    a = np.empty((h, w, 3), np.uint8)
    b = np.empty((h, w, 3), np.uint8)
    shrink_to_rgb(bgr, PixelFormat.BGR24, a)
    shrink_to_rgb(i420, PixelFormat.I420, b)
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 6
    assert a[..., 0].mean() == pytest.approx(b[..., 0].mean(), abs=3)  # RGB order, both


def test_the_ring_carries_the_pixel_format(segments: SegmentSet) -> None:
    ring = Ring.create(segments, "raw", n_slots=2, capacity=640 * 480 * 3)
    writer, reader = ring.writer(), ring.reader()
    dst = writer.begin_picture(PixelFormat.I420, 640, 480)
    assert dst.shape == (720, 640)
    dst[:] = 7
    writer.commit(
        frame_id=1, nbytes=dst.nbytes, width=640, height=480, pixel_format=PixelFormat.I420
    )
    desc = reader.latest()
    assert desc is not None and desc.pixel_format is PixelFormat.I420
    picture = reader.picture(desc)
    assert picture.shape == (720, 640) and int(picture[719, 639]) == 7
    with pytest.raises(RingError):
        writer.begin_picture(PixelFormat.I420, 641, 480)
    with pytest.raises(RingError):
        writer.begin_picture(PixelFormat.BGR24, 1280, 720)
    dst = writer.begin_picture(PixelFormat.BGR24, 64, 48)
    writer.commit(frame_id=2, nbytes=dst.nbytes, width=64, height=48)
    desc = reader.latest()
    assert desc is not None and desc.pixel_format is PixelFormat.BGR24
    assert reader.picture(desc).shape == (48, 64, 3)
    ring.close()


@pytest.mark.parametrize(
    ("codec", "expected"),
    [(None, PixelFormat.BGR24), ("H264", PixelFormat.I420), ("JPEG", PixelFormat.BGR24)],
)
def test_capture_writes_what_the_call_codec_takes(
    segments: SegmentSet, make_ctx: Any, codec: str | None, expected: PixelFormat
) -> None:
    raw = Ring.create(segments, "raw", n_slots=3, capacity=LOW.frame_bytes)
    stage = capture.CaptureStage(make_ctx("capture"), raw=raw, spec="pattern", preset=LOW)
    if codec is not None:
        stage.handle(Connect(PeerEndpoint("127.0.0.1", 5000, MediaMode.RTP, codec=codec)))
    stage.step([], time.monotonic_ns())
    desc = raw.reader().latest()
    assert desc is not None and desc.pixel_format is expected
    assert stage.snapshot(0)["pixel_format"] == expected.name
    stamp = read_stamp(to_bgr(raw.reader().picture(desc), desc.pixel_format))
    assert stamp is not None and stamp.capture_ns == desc.stamp(Ts.CAPTURE)
    stage.close()
    raw.close()


def test_h264_codes_an_i420_frame_as_it_codes_the_same_picture_in_bgr() -> None:
    r = PatternRenderer(640, 480)
    bgr = np.empty((480, 640, 3), np.uint8)
    a, b = H264Encoder(bitrate=800_000, fps=30), H264Encoder(bitrate=800_000, fps=30)
    for frame_id in range(5):
        r.render_into(bgr, frame_id, frame_id)
        i420 = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420))
        fa, fb = a.encode(bgr, 0), b.encode(i420, 0)
        assert (fb.width, fb.height) == (640, 480)
        assert fa.data == fb.data and fa.keyframe == fb.keyframe == (frame_id == 0)


def _encode_stage(segments: SegmentSet, codec: str, make_ctx: Any) -> tuple[Any, Ring, Ring]:
    raw = Ring.create(segments, "raw", n_slots=3, capacity=LOW.frame_bytes, n_readers=2)
    etx = Ring.create(segments, "etx", n_slots=3, capacity=1 << 20)
    stage = encode.EncodeStage(
        make_ctx("encode"),
        raw=raw,
        raw_reader=0,
        encoded_tx=etx,
        preset=LOW,
        codec=get_codec(codec),
    )
    stage.handle(Connect(PeerEndpoint("127.0.0.1", 5000, MediaMode.RTP, codec=codec)))
    return stage, raw, etx


def _capture_i420(raw: Ring, frame_id: int) -> None:
    writer = raw.writer()
    dst = writer.begin_picture(PixelFormat.I420, LOW.width, LOW.height)
    t = time.monotonic_ns()
    PatternRenderer(LOW.width, LOW.height).render_i420_into(dst, frame_id, t)
    writer.commit(
        frame_id=frame_id,
        nbytes=dst.nbytes,
        width=LOW.width,
        height=LOW.height,
        stamps={Ts.CAPTURE: t, Ts.CAPTURED: t},
        pixel_format=PixelFormat.I420,
    )


def test_a_jpeg_call_converts_a_leftover_i420_frame(segments: SegmentSet, make_ctx: Any) -> None:
    stage, raw, etx = _encode_stage(segments, "JPEG", make_ctx)
    _capture_i420(raw, 3)
    stage.step([stage.wait_fds()[0]], time.monotonic_ns())
    assert stage.counters["converted_to_bgr"] == 1
    desc = etx.reader().latest()
    assert desc is not None
    decoded = cv2.imdecode(np.frombuffer(etx.reader().view(desc).tobytes(), np.uint8), 1)
    stamp = read_stamp(decoded)
    assert stamp is not None and stamp.frame_id == 3
    raw.close()
    etx.close()


def test_a_torn_h264_frame_is_dropped_and_the_next_one_is_a_keyframe(
    segments: SegmentSet, make_ctx: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """libx264 coded the torn picture and may refer to it: the peer never gets it, so the next
    frame must not need it."""
    stage, raw, etx = _encode_stage(segments, "H264", make_ctx)
    reader = stage._reader
    for frame_id in range(3):
        _capture_i420(raw, frame_id)
        stage.step([stage.wait_fds()[0]], time.monotonic_ns())
    assert etx.writes == 3 and stage.counters.get("converted_to_bgr", 0) == 0
    monkeypatch.setattr(reader, "valid", lambda desc: False)
    _capture_i420(raw, 3)
    stage.step([stage.wait_fds()[0]], time.monotonic_ns())
    assert stage.counters["torn"] == 1 and etx.writes == 3
    monkeypatch.undo()
    _capture_i420(raw, 4)
    stage.step([stage.wait_fds()[0]], time.monotonic_ns())
    desc = etx.reader().latest()
    assert desc is not None and desc.frame_id == 4 and desc.keyframe
    raw.close()
    etx.close()


@pytest.mark.parametrize(("width", "height"), [(480, 270), (480, 272), (642, 362)])
@pytest.mark.parametrize("fmt", [PixelFormat.BGR24, PixelFormat.I420])
def test_h264_keeps_the_colour_at_heights_that_are_not_a_multiple_of_4(
    width: int, height: int, fmt: PixelFormat
) -> None:
    """PyAV's from_numpy_buffer reads a 270-row I420 buffer as 268 rows (rows // 6 * 4), which
    shifted the chroma planes: a red picture came out green-blue at the top."""
    from pipeline.codecs.h264.codec import H264Decoder

    bgr = np.zeros((height, width, 3), np.uint8)
    bgr[:] = (0, 0, 255)
    image = bgr if fmt is PixelFormat.BGR24 else cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)
    frame = H264Encoder(bitrate=500_000, fps=30).encode(np.ascontiguousarray(image), 0)
    decoder = H264Decoder()
    assert decoder.frame_size(frame.data) == (width, height)
    rgb = np.empty((height, width, 3), np.uint8)
    decoder.decode_rgb_into(frame.data, rgb)
    for y, x in ((0, 0), (height // 2, width // 2), (height - 1, width - 1)):
        r, g, b = (int(c) for c in rgb[y, x])
        assert r > 230 and g < 25 and b < 25, (y, x, rgb[y, x])
