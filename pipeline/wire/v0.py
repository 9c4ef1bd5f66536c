"""Classic V0 video datagrams: ``<seq>#<ts>#<W>x<H>#<fps>#<jpeg bytes>``, one per frame.

API::

    V0_MAX_DATAGRAM = 65507
    V0_PEER_SAFE_DATAGRAM = 32 * 1024     # what every classic receiver reads in one recvfrom
    V0_HEADER_MAX = 64                     # encode_v0's header never exceeds this
    class V0Error(RemoteProtocolError)    # a datagram that is not V0 (garbage from a peer)
    class V0TooLargeError(LocalProtocolError)  # local: the frame does not fit the size limit
    @dataclass(frozen=True, slots=True)
    class V0Frame:
        seq: int; ts: float | None; width: int; height: int; fps: float; jpeg: bytes
    def encode_v0(seq, ts, width, height, fps, jpeg, max_size=V0_MAX_DATAGRAM) -> bytes
    def decode_v0(datagram) -> V0Frame     # V0Error on garbage, nothing else

Sending is strict (what every classic receiver parses): decimal ``seq``, ``ts`` as plain
decimal text with 6 decimals (never an exponent, never a date), lowercase ``x``, and an
**integer** fps (some receivers crash on ``25.0``). Receiving is lenient: the header is split
on the first four ``#`` only (the JPEG may contain ``#``); surrounding spaces are ignored;
``seq`` may be written as a float with an integral value; ``ts`` that is not a number (some
clients send a date), or is negative or over 1e12, becomes None; ``WxH`` may use ``X``;
``fps`` may be a float. The JPEG must be non-empty and start with the JPEG SOI marker; width
and height are 1-65535 (what a JPEG can declare) and seq below 2**64.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from pipeline.errors import LocalProtocolError, RemoteProtocolError

logger = logging.getLogger(__name__)

V0_MAX_DATAGRAM = 65507  # the largest UDP payload over IPv4
# Several classic receivers read 8-32 KB per datagram: a longer one loses its JPEG's end.
V0_PEER_SAFE_DATAGRAM = 32 * 1024
# The longest header encode_v0 writes (seq below 10**15, a 2020s-2280s ts with 6 decimals,
# 65535x65535, fps below 1000 is 50 bytes): a JPEG of at most
# V0_PEER_SAFE_DATAGRAM - V0_HEADER_MAX bytes always makes a peer-safe datagram.
V0_HEADER_MAX = 64
_MAX_FIELD = 64  # longest header field we accept; real ones are under 20 bytes
_SOI = b"\xff\xd8"
# A JPEG cannot declare more than 65535 per side, and vcall's frame descriptors hold unsigned
# 64-bit fields: a header beyond either is garbage (it used to crash the receive stage).
_MAX_SIDE = 65535
_MAX_SEQ = (1 << 64) - 1
_MAX_TS = 1e12  # seconds: year 33658; anything beyond is not a sender's time.time()


class V0Error(RemoteProtocolError):
    """A datagram that is not a classic V0 video frame."""


class V0TooLargeError(LocalProtocolError):
    """A local frame whose datagram would exceed the size limit (step quality down)."""


@dataclass(frozen=True, slots=True)
class V0Frame:
    seq: int
    ts: float | None  # sender's time.time(); None when the peer sent something else
    width: int
    height: int
    fps: float
    jpeg: bytes


def encode_v0(  # noqa: PLR0917 - the positional order is the wire order
    seq: int,
    ts: float,
    width: int,
    height: int,
    fps: float,
    jpeg: bytes | bytearray | memoryview,
    max_size: int = V0_MAX_DATAGRAM,
) -> bytes:
    """One V0 datagram. V0TooLargeError when it would exceed ``max_size`` bytes."""
    if seq < 0 or width <= 0 or height <= 0 or not math.isfinite(ts):
        raise ValueError(f"bad V0 header values seq={seq} ts={ts} size={width}x{height}")
    header = f"{seq}#{ts:.6f}#{width}x{height}#{round(fps)}#".encode("ascii")
    if len(header) > V0_HEADER_MAX:
        raise ValueError(f"V0 header over {V0_HEADER_MAX} bytes: {header!r}")
    size = len(header) + len(jpeg)
    if size > max_size:
        raise V0TooLargeError(f"V0 datagram of {size} bytes exceeds {max_size}")
    return b"".join((header, jpeg))  # one copy, whatever buffer type jpeg is


def _field(raw: bytes, name: str) -> str:
    if len(raw) > _MAX_FIELD:
        raise V0Error(f"V0 {name} field too long")
    try:
        return raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise V0Error(f"V0 {name} field is not ASCII") from None


def _number(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise V0Error(f"V0 {name} is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise V0Error(f"V0 {name} is not finite: {text!r}")
    return value


def _count(text: str, name: str) -> int:
    value = _number(text, name)
    if value < 0 or value != int(value):
        raise V0Error(f"V0 {name} is not a non-negative integer: {text!r}")
    return int(value)


def decode_v0(datagram: bytes | bytearray | memoryview) -> V0Frame:
    """Parse a V0 datagram, leniently. V0Error on anything that is not one."""
    data = bytes(datagram)
    parts = data.split(b"#", 4)
    if len(parts) != 5:
        raise V0Error("V0 datagram has fewer than four '#' separators")
    seq_raw, ts_raw, size_raw, fps_raw, jpeg = parts
    seq = _count(_field(seq_raw, "seq"), "seq")
    if seq > _MAX_SEQ:
        raise V0Error(f"V0 seq {seq} out of range")
    ts_text = _field(ts_raw, "ts")
    try:
        ts: float | None = _number(ts_text, "ts")
    except V0Error:
        ts = None  # informative only; some clients send a date string here
    if ts is not None and not 0 <= ts < _MAX_TS:
        ts = None  # not a time.time(): '1e308' once overflowed to_rtp_ts in the receive stage
    size = _field(size_raw, "resolution").lower()
    w_text, sep, h_text = size.partition("x")
    if not sep:
        raise V0Error(f"V0 resolution is not WxH: {size!r}")
    width, height = _count(w_text, "width"), _count(h_text, "height")
    if not (0 < width <= _MAX_SIDE and 0 < height <= _MAX_SIDE):
        raise V0Error(f"V0 resolution {width}x{height} out of range")
    fps = _number(_field(fps_raw, "fps"), "fps")
    if fps < 0:
        raise V0Error(f"V0 fps is negative: {fps}")
    if not jpeg.startswith(_SOI):
        raise V0Error("V0 payload is not a JPEG")
    return V0Frame(seq, ts, width, height, fps, jpeg)
