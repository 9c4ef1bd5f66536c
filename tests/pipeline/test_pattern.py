"""Test pattern: motion, in-place rendering, and the stamp through JPEG and downscaling."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pipeline.codecs.jpeg.backends import OpenCvCodec, TurboJpegCodec
from pipeline.sources.pattern import (
    STAMP_COLS,
    STAMP_MIN_HEIGHT,
    STAMP_MIN_WIDTH,
    STAMP_ROW_DIV,
    STAMP_ROWS,
    PatternRenderer,
    Stamp,
    read_stamp,
    render_into,
)

U32 = 2**32 - 1
U64 = 2**64 - 1
CODECS = [TurboJpegCodec(), OpenCvCodec()]


def frame(width: int, height: int, frame_id: int, capture_ns: int) -> np.ndarray:
    dst = np.zeros((height, width, 3), dtype=np.uint8)
    render_into(dst, frame_id, capture_ns)
    return dst


@given(frame_id=st.integers(0, U32), capture_ns=st.integers(0, U64))
@settings(max_examples=60, deadline=None)
def test_stamp_round_trip_raw(frame_id: int, capture_ns: int) -> None:
    assert read_stamp(frame(640, 480, frame_id, capture_ns)) == Stamp(frame_id, capture_ns)


@given(frame_id=st.integers(0, U32), capture_ns=st.integers(0, U64), quality=st.integers(30, 100))
@settings(max_examples=40, deadline=None)
def test_stamp_round_trip_through_jpeg_and_quarter_display(
    frame_id: int, capture_ns: int, quality: int
) -> None:
    jpeg = CODECS[0].encode(frame(1280, 720, frame_id, capture_ns), quality)
    assert read_stamp(CODECS[0].decode_rgb(jpeg, (320, 180))) == Stamp(frame_id, capture_ns)


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
@pytest.mark.parametrize("quality", [30, 50, 70, 85, 95])
@pytest.mark.parametrize("size", [(320, 240), (640, 480), (1280, 720)])
def test_stamp_survives_jpeg(codec: object, quality: int, size: tuple[int, int]) -> None:
    stamp = Stamp(0xDEADBEEF, 1_234_567_890_123_456_789)
    image = frame(*size, stamp.frame_id, stamp.capture_ns)
    jpeg = codec.encode(image, quality)  # type: ignore[attr-defined]
    assert read_stamp(codec.decode_rgb(jpeg)) == stamp  # type: ignore[attr-defined]


@pytest.mark.parametrize("interpolation", [cv2.INTER_AREA, cv2.INTER_LINEAR, cv2.INTER_NEAREST])
@pytest.mark.parametrize("size", [(640, 480), (1280, 720), (1920, 1080)])
def test_stamp_survives_quarter_width_downscale(interpolation: int, size: tuple[int, int]) -> None:
    stamp = Stamp(7, 99)
    image = frame(*size, stamp.frame_id, stamp.capture_ns)
    small = cv2.resize(image, (size[0] // 4, size[1] // 4), interpolation=interpolation)
    assert read_stamp(small) == stamp


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
@pytest.mark.parametrize("quality", [30, 70])
@pytest.mark.parametrize("size", [(640, 480), (1280, 720)])
def test_stamp_survives_jpeg_then_display_scaling(
    codec: object, quality: int, size: tuple[int, int]
) -> None:
    """What the display stage does: decode straight to a quarter-width display size."""
    stamp = Stamp(123_456, 42)
    jpeg = codec.encode(frame(*size, 123_456, 42), quality)  # type: ignore[attr-defined]
    shown = codec.decode_rgb(jpeg, (size[0] // 4, size[1] // 4))  # type: ignore[attr-defined]
    assert read_stamp(shown) == stamp
    # And a frame scaled down before encoding (encode_under's resolution step).
    small = cv2.resize(frame(*size, 5, 6), (size[0] // 4, size[1] // 4), interpolation=3)
    decoded = codec.decode_rgb(codec.encode(small, quality))  # type: ignore[attr-defined]
    assert read_stamp(decoded) == Stamp(5, 6)


def test_stamp_survives_a_non_uniform_resize() -> None:
    image = frame(1280, 720, 1, 2)
    assert read_stamp(cv2.resize(image, (400, 400), interpolation=cv2.INTER_AREA)) == Stamp(1, 2)


def test_read_stamp_accepts_rgb_bgr_bgra_and_grey() -> None:
    image = frame(640, 480, 10, 20)
    assert read_stamp(image[:, :, ::-1]) == Stamp(10, 20)
    assert read_stamp(cv2.cvtColor(image, cv2.COLOR_BGR2BGRA)) == Stamp(10, 20)
    assert read_stamp(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)) == Stamp(10, 20)


def test_pattern_moves() -> None:
    renderer = PatternRenderer(640, 480)
    a = np.zeros((480, 640, 3), np.uint8)
    b = np.zeros_like(a)
    strip = 480 * STAMP_ROWS // STAMP_ROW_DIV
    renderer.render_into(a, 100, 0)
    renderer.render_into(b, 101, 0)
    # The picture below the stamp strip changes from frame to frame, not just the stamp.
    changed = np.any(a[strip:] != b[strip:], axis=2)
    assert changed.mean() > 0.05
    # Rendering is deterministic: same id and time give the same frame.
    c = np.zeros_like(a)
    renderer.render_into(c, 100, 0)
    assert np.array_equal(a, c)


def test_render_writes_into_the_given_view_without_a_new_frame() -> None:
    # A view into a bigger buffer, like a slot in a shared-memory ring.
    backing = np.zeros(2 * 720 * 1280 * 3 + 64, dtype=np.uint8)
    view = backing[64 : 64 + 720 * 1280 * 3].reshape(720, 1280, 3)
    render_into(view, 3, 4)
    assert read_stamp(view) == Stamp(3, 4)
    assert not backing[64 + 720 * 1280 * 3 :].any()  # nothing written past the slot
    assert not backing[:64].any()
    # Non-contiguous destinations work too (e.g. a sub-window).
    window = np.zeros((720, 1400, 3), np.uint8)[:, 60:1340]
    render_into(window, 5, 6)
    assert read_stamp(window) == Stamp(5, 6)


def test_render_allocates_no_frame_sized_buffer() -> None:
    import tracemalloc

    dst = np.zeros((720, 1280, 3), np.uint8)
    render_into(dst, 0, 0)  # warm the renderer cache
    tracemalloc.start()
    try:
        for i in range(5):
            render_into(dst, i, i)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < dst.nbytes // 10


def test_render_rejects_wrong_destinations() -> None:
    with pytest.raises(ValueError):
        PatternRenderer(640, 480).render_into(np.zeros((480, 641, 3), np.uint8), 0, 0)
    with pytest.raises(ValueError):
        PatternRenderer(640, 480).render_into(np.zeros((480, 640, 3), np.float32), 0, 0)
    with pytest.raises(ValueError):
        render_into(np.zeros((480, 640), np.uint8), 0, 0)


def test_too_small_images_give_none() -> None:
    image = frame(1280, 720, 1, 1)
    tiny = cv2.resize(image, (STAMP_MIN_WIDTH - 1, STAMP_MIN_HEIGHT + 10))
    assert read_stamp(tiny) is None


@given(
    hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.int16, np.float32, np.bool_]),
        shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=200),
    )
)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_read_stamp_never_raises_on_arbitrary_arrays(image: np.ndarray) -> None:
    assert read_stamp(image) is None


@given(st.integers(0, 2**32 - 1), st.sampled_from([(640, 480), (1280, 720), (200, 150)]))
@settings(max_examples=60, deadline=None)
def test_random_noise_gives_no_stamp(seed: int, size: tuple[int, int]) -> None:
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    assert read_stamp(noise) is None
    # Binary noise is decisive everywhere: only the sync cells and the CRC can reject it.
    binary = (rng.integers(0, 2, (size[1], size[0], 1), dtype=np.uint8) * 255).repeat(3, axis=2)
    assert read_stamp(binary) is None


@given(st.integers(0, 2**32 - 1))
@settings(max_examples=200, deadline=None)
def test_random_cells_on_the_stamp_grid_fail_the_crc(seed: int) -> None:
    """The hardest forgery: random black/white cells exactly on the grid, sync cells right."""
    rng = np.random.default_rng(seed)
    image = frame(640, 480, 1, 1)
    cells = rng.integers(0, 2, (STAMP_ROWS, STAMP_COLS), dtype=np.uint8) * 255
    cells[:, 0] = [255, 0, 255, 0]
    cells[:, -1] = [0, 255, 0, 255]
    strip_h = 480 * STAMP_ROWS // STAMP_ROW_DIV
    image[:strip_h] = cv2.resize(cells, (640, strip_h), interpolation=cv2.INTER_NEAREST)[:, :, None]
    assert read_stamp(image) is None


def test_a_corrupted_stamp_is_rejected() -> None:
    image = frame(640, 480, 77, 88)
    # Flip one whole data cell (row 0, column 5): the CRC no longer matches.
    x0, x1 = round(5 * 640 / STAMP_COLS), round(6 * 640 / STAMP_COLS)
    image[: round(480 / STAMP_ROW_DIV), x0:x1] ^= 255
    assert read_stamp(image) is None
    # Half-flipped: the cell is undecided.
    image = frame(640, 480, 77, 88)
    image[: round(480 / STAMP_ROW_DIV), x0:x1:2] ^= 255
    assert read_stamp(image) is None
