"""RTP header: golden bytes, round trips, wraparound arithmetic, and garbage."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.wire.rtp import (
    RtpError,
    RtpPacket,
    rtp_header,
    seq_add,
    seq_diff,
    seq_newer,
    to_rtp_ts,
    ts_add,
    ts_diff,
)

GOLDEN = bytes.fromhex("80 9a 12 34 00 01 e2 40 de ad be ef") + b"JPEG"


def test_golden_parse() -> None:
    p = RtpPacket.parse(GOLDEN)
    assert p == RtpPacket(26, 0x1234, 123456, 0xDEADBEEF, marker=True, payload=b"JPEG")
    assert p.serialize() == GOLDEN
    assert rtp_header(26, 0x1234, 123456, 0xDEADBEEF, True) + b"JPEG" == GOLDEN


def test_csrc_extension_padding() -> None:
    p = RtpPacket(96, 1, 2, 3, csrc=(7, 8), extension_profile=0xBEDE, extension=b"abcd")
    data = p.serialize()
    assert RtpPacket.parse(data) == p
    # Padding: 3 bytes, the last one says how many.
    padded = bytearray(data + b"xy\x00\x00\x03")
    padded[0] |= 0x20
    assert RtpPacket.parse(bytes(padded)).payload == b"xy"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80" * 11,
        bytes.fromhex("40 1a 00 01 00 00 00 01 00 00 00 01"),  # version 1
        bytes.fromhex("8f 1a 00 01 00 00 00 01 00 00 00 01"),  # 15 CSRCs, none present
        bytes.fromhex("90 1a 00 01 00 00 00 01 00 00 00 01 be de 00 05"),  # ext truncated
        bytes.fromhex("a0 1a 00 01 00 00 00 01 00 00 00 01 00"),  # padding 0
        bytes.fromhex("a0 1a 00 01 00 00 00 01 00 00 00 01 09"),  # padding too long
    ],
)
def test_garbage_rejected(data: bytes) -> None:
    with pytest.raises(RtpError):
        RtpPacket.parse(data)


def test_serialize_rejects_local_misuse() -> None:
    with pytest.raises(ValueError, match="payload type"):
        RtpPacket(200, 0, 0, 0).serialize()
    with pytest.raises(ValueError, match="out of range"):
        RtpPacket(26, 70000, 0, 0).serialize()
    with pytest.raises(ValueError, match="multiple of 4"):
        RtpPacket(26, 0, 0, 0, extension_profile=1, extension=b"abc").serialize()


def test_sequence_arithmetic_wraps() -> None:
    assert seq_add(65535, 1) == 0
    assert seq_add(0, -1) == 65535
    assert seq_diff(0, 65535) == 1
    assert seq_diff(65535, 0) == -1
    assert seq_diff(100, 100) == 0
    assert seq_newer(2, 65530)
    assert not seq_newer(65530, 2)
    assert ts_diff(5, 0xFFFFFFFF) == 6
    assert ts_add(0xFFFFFFFF, 2) == 1
    assert to_rtp_ts(1.0) == 90000
    assert to_rtp_ts(2**32 / 90000 + 1.0) == 90000


@settings(deadline=None)  # a loaded 2-core box: no per-example deadline
@given(st.binary(max_size=200))
def test_any_bytes_parse_or_rtp_error(data: bytes) -> None:
    try:
        p = RtpPacket.parse(data)
    except RtpError:
        return
    assert p.serialize()[:12] == data[:12] or data[0] & 0x20  # padding is not re-added


_packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence_number=st.integers(0, 65535),
    timestamp=st.integers(0, 2**32 - 1),
    ssrc=st.integers(0, 2**32 - 1),
    marker=st.booleans(),
    payload=st.binary(max_size=100),
    csrc=st.lists(st.integers(0, 2**32 - 1), max_size=15).map(tuple),
)


@settings(deadline=None)  # a loaded 2-core box: no per-example deadline
@given(_packets)
def test_round_trip(p: RtpPacket) -> None:
    assert RtpPacket.parse(p.serialize()) == p


@settings(deadline=None)  # a loaded 2-core box: no per-example deadline
@given(st.integers(0, 65535), st.integers(-32768, 32767))
def test_seq_diff_inverts_add(a: int, n: int) -> None:
    assert seq_diff(seq_add(a, n), a) == n
