"""Classic V0 datagrams: strict sending, lenient receiving, garbage."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.wire.rtp import to_rtp_ts
from pipeline.wire.v0 import (
    V0_HEADER_MAX,
    V0_PEER_SAFE_DATAGRAM,
    V0Error,
    V0Frame,
    V0TooLargeError,
    decode_v0,
    encode_v0,
)

JPEG = b"\xff\xd8 a # jpeg ## with hashes \xff\xd9"


def test_golden_encode() -> None:
    data = encode_v0(7, 1700000000.25, 640, 480, 30.0, JPEG)
    assert data == b"7#1700000000.250000#640x480#30#" + JPEG
    assert decode_v0(data) == V0Frame(7, 1700000000.25, 640, 480, 30.0, JPEG)


def test_integer_fps_on_send() -> None:
    assert encode_v0(1, 0.0, 8, 8, 24.6, JPEG).split(b"#")[3] == b"25"


def test_size_limit_is_local_error() -> None:
    with pytest.raises(V0TooLargeError):
        encode_v0(1, 0.0, 8, 8, 30, b"\xff\xd8" + b"x" * 65507)
    with pytest.raises(V0TooLargeError):
        encode_v0(1, 0.0, 8, 8, 30, JPEG, max_size=20)
    with pytest.raises(ValueError):
        encode_v0(-1, 0.0, 8, 8, 30, JPEG)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"3#1.5#320x240#25#", (3, 1.5, 320, 240, 25.0)),
        (b"3.0# 1.5 #320X240#25.0#", (3, 1.5, 320, 240, 25.0)),
        (b"3#Tue Nov 24 12:00:00 2026#320x240#25#", (3, None, 320, 240, 25.0)),
        (b"12 #1700000000#1280x720# 30 #", (12, 1700000000.0, 1280, 720, 30.0)),
        (b"3#1e308#320x240#25#", (3, None, 320, 240, 25.0)),  # overflowed to_rtp_ts
        (b"3#-5#320x240#25#", (3, None, 320, 240, 25.0)),
    ],
)
def test_lenient_decode(header: bytes, expected: tuple[object, ...]) -> None:
    f = decode_v0(header + JPEG)
    assert (f.seq, f.ts, f.width, f.height, f.fps) == expected
    assert f.jpeg == JPEG


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"1#2#3",
        b"x#1#320x240#25#" + JPEG,
        b"-1#1#320x240#25#" + JPEG,
        b"1.5#1#320x240#25#" + JPEG,
        b"1#1#320*240#25#" + JPEG,
        b"1#1#0x240#25#" + JPEG,
        b"1#1#99999999999999999999x240#25#" + JPEG,  # once crashed the receive stage's ring
        b"1#1#320x1e300#25#" + JPEG,
        b"1#1#65536x240#25#" + JPEG,
        b"18446744073709551616#1#320x240#25#" + JPEG,  # 2**64
        b"1#1#320x240#nan#" + JPEG,
        b"1#1#320x240#-5#" + JPEG,
        b"1#1#320x240#25#GIF89a",
        b"1#1#320x240#25#",
        b"\xff\xfe#1#320x240#25#" + JPEG,
        b"1" * 100 + b"#1#320x240#25#" + JPEG,
    ],
)
def test_garbage(data: bytes) -> None:
    with pytest.raises(V0Error):
        decode_v0(data)


@settings(deadline=None)  # a loaded 2-core box: no per-example deadline
@given(st.binary(max_size=120))
def test_any_bytes_only_v0_error(data: bytes) -> None:
    for candidate in (data, b"1#2#3x4#5#" + data, data + b"#" + JPEG):
        with contextlib.suppress(V0Error):
            decode_v0(candidate)


@settings(deadline=None)  # a loaded 2-core box: no per-example deadline
@given(
    st.builds(
        V0Frame,
        seq=st.integers(0, 2**40),
        ts=st.floats(0, 2e9, allow_nan=False),
        width=st.integers(1, 4096),
        height=st.integers(1, 4096),
        fps=st.integers(1, 120).map(float),
        jpeg=st.binary(max_size=50).map(lambda b: b"\xff\xd8" + b),
    )
)
def test_round_trip(frame: V0Frame) -> None:
    assert frame.ts is not None
    data = encode_v0(frame.seq, frame.ts, frame.width, frame.height, frame.fps, frame.jpeg)
    f = decode_v0(data)
    assert (f.seq, f.width, f.height, f.fps, f.jpeg) == (
        frame.seq,
        frame.width,
        frame.height,
        frame.fps,
        frame.jpeg,
    )
    assert f.ts == pytest.approx(frame.ts, abs=1e-6)


def test_header_bound_makes_a_capped_jpeg_peer_safe() -> None:
    """The largest realistic header fits V0_HEADER_MAX, so a JPEG capped at
    V0_PEER_SAFE_DATAGRAM - V0_HEADER_MAX always gives a datagram classic peers read whole."""
    jpeg = b"\xff\xd8" + bytes(V0_PEER_SAFE_DATAGRAM - V0_HEADER_MAX - 2)
    data = encode_v0(10**15 - 1, 9_999_999_999.999999, 65535, 65535, 999.4, jpeg)
    assert len(data) <= V0_PEER_SAFE_DATAGRAM
    assert decode_v0(data).jpeg == jpeg
    with pytest.raises(ValueError, match="header"):
        encode_v0(10**60, 0.0, 8, 8, 30, jpeg)
    with pytest.raises(ValueError, match="header"):
        encode_v0(1, 1e60, 8, 8, 30, jpeg)  # fixed-point: 68 characters


_FIELD = st.text(alphabet="0123456789.eE+-xX naif#", max_size=24).map(str.encode)


@settings(deadline=None)
@given(_FIELD, _FIELD, _FIELD, _FIELD)
def test_any_header_fields_give_v0_error_or_a_frame_in_range(
    seq: bytes, ts: bytes, size: bytes, fps: bytes
) -> None:
    """Number-shaped junk in every field: V0Error, or values a frame descriptor can hold."""
    try:
        f = decode_v0(b"#".join((seq, ts, size, fps, JPEG)))
    except V0Error:
        return
    assert 0 <= f.seq < 2**64
    assert 0 < f.width <= 65535 and 0 < f.height <= 65535
    assert f.fps >= 0 and f.jpeg.startswith(b"\xff\xd8")
    if f.ts is not None:
        to_rtp_ts(f.ts)  # what the receive stage does with it: must not overflow
