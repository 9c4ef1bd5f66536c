"""JPEG marker parsing: sizes before decoding, RFC 2435 split/build, and garbage."""

from __future__ import annotations

import contextlib
import struct
import time

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from turbojpeg import TJSAMP_420, TJSAMP_422, TJSAMP_444, TurboJPEG

from pipeline.codecs.jpeg import markers as jm
from pipeline.codecs.jpeg.markers import (
    JpegError,
    JpegTooLargeError,
    UnsupportedJpegError,
    build_jpeg,
    check_size,
    declared_size,
    ijg_quant_tables,
    split_jpeg,
)

TJ = TurboJPEG()
# A decoder warning ("Corrupt JPEG data") means a rebuilt JPEG is wrong: make it fail.
pytestmark = pytest.mark.filterwarnings("error")


def image(width: int = 64, height: int = 48, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    img[: height // 2, : width // 2] = (0, 0, 255)  # a red quadrant: structure, not just noise
    return img


SMALL_JPEG = bytes(TJ.encode(image(16, 16), quality=50))


def bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A ~600-byte file whose frame header declares width x height."""
    real = TJ.encode(np.zeros((8, 8, 3), np.uint8), quality=50)
    sof = real.index(b"\xff\xc0")
    out = bytearray(real)
    struct.pack_into("!HH", out, sof + 5, height, width)
    return bytes(out)


def test_declared_size_of_real_jpegs() -> None:
    assert declared_size(TJ.encode(image(64, 48))) == (64, 48)
    ok, buf = cv2.imencode(".jpg", image(40, 24))
    assert ok
    assert declared_size(buf.tobytes()) == (40, 24)
    assert check_size(TJ.encode(image(64, 48)), 64, 48) == (64, 48)


def test_bomb_rejected_before_decoding() -> None:
    data = bomb()
    assert len(data) < 800
    with pytest.raises(JpegTooLargeError) as err:
        check_size(data)
    assert (err.value.width, err.value.height) == (30000, 30000)
    # Not a timed assertion (the machine is shared); the figure is printed for the record.
    n = 2000
    t0 = time.perf_counter()
    for _ in range(n):
        with contextlib.suppress(JpegTooLargeError):
            check_size(data)
    print(f"\nbomb rejection: {(time.perf_counter() - t0) / n * 1e6:.1f} us per call")


def test_split_and_build_round_trip_turbojpeg() -> None:
    for q in (10, 50, 70, 95):
        src = TJ.encode(image(), quality=q, jpeg_subsample=TJSAMP_420)
        parts = split_jpeg(src)
        assert (parts.width, parts.height, parts.rfc_type) == (64, 48, 1)
        assert parts.quant_tables == ijg_quant_tables(q)  # IJG scaling == RFC 2435 Q
        assert parts.restart_interval == 0
        rebuilt = build_jpeg(64, 48, 1, parts.quant_tables, parts.scan)
        assert split_jpeg(rebuilt).scan == parts.scan
        assert np.array_equal(TJ.decode(rebuilt), TJ.decode(src))


def test_split_422_and_restart_intervals_opencv() -> None:
    parts = split_jpeg(TJ.encode(image(), quality=80, jpeg_subsample=TJSAMP_422))
    assert parts.rfc_type == 0
    ok, buf = cv2.imencode(".jpg", image(), [cv2.IMWRITE_JPEG_RST_INTERVAL, 2])
    assert ok
    parts = split_jpeg(buf.tobytes())
    assert parts.restart_interval == 2
    assert b"\xff\xd0" in bytes(parts.scan)  # RST markers stay in the scan data
    rebuilt = build_jpeg(64, 48, 65, parts.quant_tables, parts.scan, restart_interval=2)
    decoded = cv2.imdecode(np.frombuffer(rebuilt, np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(decoded, cv2.imdecode(buf, cv2.IMREAD_COLOR))


def test_standard_tables_match_libjpeg() -> None:
    """Our Annex K tables are byte for byte the ones libjpeg-turbo writes."""
    src = TJ.encode(image(), quality=50)
    assert jm.STANDARD_DHT[4:] in src or all(
        bits + vals in src for bits, vals in jm.STANDARD_HUFFMAN.values()
    )
    assert split_jpeg(src).quant_tables == ijg_quant_tables(50)


def test_one_and_three_tables_build() -> None:
    parts = split_jpeg(TJ.encode(image(), quality=60, jpeg_subsample=TJSAMP_420))
    one = build_jpeg(64, 48, 1, parts.quant_tables[:1], parts.scan)
    two = build_jpeg(64, 48, 1, parts.quant_tables, parts.scan)
    three = build_jpeg(64, 48, 1, (*parts.quant_tables, parts.quant_tables[1]), parts.scan)
    assert TJ.decode(one).shape == (48, 64, 3)
    assert np.array_equal(TJ.decode(three), TJ.decode(two))
    with pytest.raises(ValueError):
        build_jpeg(64, 48, 2, parts.quant_tables, parts.scan)
    with pytest.raises(ValueError):
        build_jpeg(0, 48, 1, parts.quant_tables, parts.scan)
    with pytest.raises(ValueError):
        build_jpeg(64, 48, 1, parts.quant_tables, parts.scan, restart_interval=70000)


def test_unsupported_jpegs() -> None:
    with pytest.raises(UnsupportedJpegError, match="4:2:0 and 4:2:2"):
        split_jpeg(TJ.encode(image(), jpeg_subsample=TJSAMP_444))
    _ok, prog = cv2.imencode(".jpg", image(), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    with pytest.raises(UnsupportedJpegError, match="progressive"):
        split_jpeg(prog.tobytes())
    _ok, opt = cv2.imencode(".jpg", image(), [cv2.IMWRITE_JPEG_OPTIMIZE, 1])
    with pytest.raises(UnsupportedJpegError, match="Huffman"):
        split_jpeg(opt.tobytes())
    _ok, grey = cv2.imencode(".jpg", image()[:, :, 0])
    with pytest.raises(UnsupportedJpegError, match="components"):
        split_jpeg(grey.tobytes())


def test_no_dht_means_standard_tables() -> None:
    """Motion-JPEG frames from cameras omit the DHT: the standard tables are implied."""
    src = TJ.encode(image(), quality=70)
    start = src.index(b"\xff\xc4")
    end = src.index(b"\xff\xda")
    stripped = src[:start] + src[end:]
    assert b"\xff\xc4" not in stripped[: stripped.index(b"\xff\xda")]
    assert split_jpeg(stripped).scan == split_jpeg(src).scan


@pytest.mark.parametrize(
    "data",
    [b"", b"\xff", b"\xff\xd8", b"\xff\xd8\xff", b"\xff\xd8\x00\x00", b"GIF89a", bomb()[:30]],
)
def test_truncated_and_foreign(data: bytes) -> None:
    with pytest.raises(JpegError):
        declared_size(data)
    with pytest.raises(JpegError):
        split_jpeg(data)


def test_many_segments_bounded() -> None:
    data = b"\xff\xd8" + b"\xff\xfe\x00\x02" * 10000 + bomb()[2:]
    with pytest.raises(JpegError, match="too many"):
        declared_size(data)


def test_truncated_real_jpeg_at_every_cut() -> None:
    src = TJ.encode(image(16, 16), quality=50)
    for cut in range(len(src) - 2):
        with pytest.raises(JpegError):
            split_jpeg(src[:cut])


def test_ijg_tables() -> None:
    luma, chroma = ijg_quant_tables(50)
    assert luma[:4] == bytes((16, 11, 12, 14))  # zigzag order of Annex K table
    assert chroma[:3] == bytes((17, 18, 18))
    assert ijg_quant_tables(100) == ijg_quant_tables(99)
    assert all(1 <= v <= 255 for v in ijg_quant_tables(1)[0] + ijg_quant_tables(99)[1])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_only_jpeg_error(data: bytes) -> None:
    for fn in (declared_size, split_jpeg, check_size):
        with contextlib.suppress(JpegError):
            fn(b"\xff\xd8" + data)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_real_jpeg_only_jpeg_error(data: st.DataObject) -> None:
    src = bytearray(SMALL_JPEG)
    for _ in range(data.draw(st.integers(1, 5))):
        pos = data.draw(st.integers(0, len(src) - 1))
        src[pos] = data.draw(st.integers(0, 255))
    for fn in (declared_size, split_jpeg):
        with contextlib.suppress(JpegError):
            fn(bytes(src))
