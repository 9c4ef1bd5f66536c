"""RTP (RFC 3550) fixed header: parse and serialise, plus 16/32-bit wraparound arithmetic.

API::

    class RtpError(RemoteProtocolError)     # garbage from the network (never a local misuse)
    @dataclass(frozen=True, slots=True)
    class RtpPacket:
        payload_type: int; sequence_number: int; timestamp: int; ssrc: int
        marker: bool = False; payload: bytes = b""; csrc: tuple[int, ...] = ()
        extension_profile: int | None = None; extension: bytes = b""
        @classmethod parse(data: bytes | bytearray | memoryview) -> RtpPacket   # RtpError
        def serialize() -> bytes                 # ValueError on out-of-range fields (local)
    def rtp_header(payload_type, sequence_number, timestamp, ssrc, marker=False) -> bytes
    def seq_add(seq, n) -> int; seq_diff(a, b) -> int (signed, a - b); seq_newer(a, b) -> bool
    def ts_diff(a, b) -> int (signed 32-bit a - b); ts_add(ts, n) -> int
    def to_rtp_ts(seconds: float, clock_rate: int = 90000) -> int
    def rtp_header_abs_send_time(payload_type, seq, timestamp, ssrc, marker) -> bytearray
    def stamp_abs_send_time(datagram: bytearray, now: float) -> None
    def abs_send_time(datagram) -> int | None      # 24-bit 6.18 s, or None when absent
    def rtx_payload(original_seq: int, payload) -> bytes; def rtx_original_seq(payload) -> int

Guarantees: ``RtpPacket.parse`` raises nothing but ``RtpError`` on any input (padding, CSRC
count and extension length are checked against the datagram), and serialise/parse round-trip.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass

from pipeline.errors import RemoteProtocolError

logger = logging.getLogger(__name__)

RTP_VERSION = 2
RTP_HEADER_SIZE = 12
SEQ_MOD = 1 << 16
TS_MOD = 1 << 32
_HEADER = struct.Struct("!BBHII")
_HALF_SEQ = SEQ_MOD // 2
_HALF_TS = TS_MOD // 2


class RtpError(RemoteProtocolError):
    """A datagram that is not a well-formed RTP packet (garbage from a peer)."""


def seq_add(seq: int, n: int) -> int:
    """``seq + n`` modulo 2**16."""
    return (seq + n) % SEQ_MOD


def seq_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` between two 16-bit sequence numbers, in [-32768, 32767]."""
    return (a - b + _HALF_SEQ) % SEQ_MOD - _HALF_SEQ


def seq_newer(a: int, b: int) -> bool:
    """True when sequence number ``a`` comes after ``b`` (modulo wraparound)."""
    return seq_diff(a, b) > 0


def ts_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` between two 32-bit RTP timestamps."""
    return (a - b + _HALF_TS) % TS_MOD - _HALF_TS


def ts_add(ts: int, n: int) -> int:
    """``ts + n`` modulo 2**32."""
    return (ts + n) % TS_MOD


def to_rtp_ts(seconds: float, clock_rate: int = 90000) -> int:
    """A time in seconds (any clock) as an RTP timestamp at ``clock_rate``, modulo 2**32."""
    return int(seconds * clock_rate) % TS_MOD


def rtp_header(
    payload_type: int, sequence_number: int, timestamp: int, ssrc: int, marker: bool = False
) -> bytes:
    """The 12-byte fixed header (no CSRC, no extension): the packetizer's fast path."""
    return _HEADER.pack(
        0x80, (0x80 if marker else 0) | payload_type, sequence_number, timestamp, ssrc
    )


# The abs-send-time header extension (webrtc.org "abs-send-time", the input of a delay-based
# bandwidth estimator): the sender's clock when the packet left, 24 bits of 6.18 fixed-point
# seconds, in an RFC 8285 one-byte-header extension. Between vcall peers its id is fixed to 3
# (docs/protocol.md); receivers that do not know it skip it (RFC 3550 5.3.1).
ABS_SEND_TIME_ID = 3
ABS_SEND_TIME_PREFIX = b"\xbe\xde\x00\x01" + bytes(((ABS_SEND_TIME_ID << 4) | 2,))
ABS_SEND_TIME_HEADER_SIZE = RTP_HEADER_SIZE + 8
ABS_SEND_TIME_MOD = 1 << 24


def rtp_header_abs_send_time(
    payload_type: int, sequence_number: int, timestamp: int, ssrc: int, marker: bool = False
) -> bytearray:
    """A 20-byte header: the fixed header plus an abs-send-time extension (zero until
    ``stamp_abs_send_time`` sets it when the packet leaves)."""
    out = bytearray(
        _HEADER.pack(0x90, (0x80 if marker else 0) | payload_type, sequence_number, timestamp, ssrc)
    )
    out += ABS_SEND_TIME_PREFIX
    out += b"\x00\x00\x00"
    return out


def stamp_abs_send_time(datagram: bytearray, now: float) -> None:
    """Write ``now`` (seconds, any clock) into a packet built by rtp_header_abs_send_time."""
    value = int(now * (1 << 18)) % ABS_SEND_TIME_MOD
    datagram[17:20] = value.to_bytes(3, "big")


def abs_send_time(datagram: bytes | bytearray | memoryview) -> int | None:
    """The abs-send-time of a packet laid out as rtp_header_abs_send_time makes it, else None."""
    if (
        len(datagram) >= ABS_SEND_TIME_HEADER_SIZE
        and datagram[0] == 0x90
        and bytes(datagram[12:17]) == ABS_SEND_TIME_PREFIX
    ):
        return int.from_bytes(datagram[17:20], "big")
    return None


def rtx_payload(original_seq: int, payload: bytes | memoryview) -> bytes:
    """An RTX payload (RFC 4588 4): the original sequence number (OSN), then its payload."""
    return (original_seq & 0xFFFF).to_bytes(2, "big") + bytes(payload)


def rtx_original_seq(payload: bytes | memoryview) -> int:
    """The OSN of an RTX payload; RtpError if it has none."""
    if len(payload) < 2:
        raise RtpError("RTX payload without an original sequence number")
    return int.from_bytes(payload[:2], "big")


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet. Padding is removed on parse and never added on serialise."""

    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    marker: bool = False
    payload: bytes = b""
    csrc: tuple[int, ...] = ()
    extension_profile: int | None = None
    extension: bytes = b""  # header extension body, a multiple of 4 bytes

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> RtpPacket:
        """Parse one datagram; raise RtpError on anything that is not RTP version 2."""
        buf = bytes(data)
        size = len(buf)
        if size < RTP_HEADER_SIZE:
            raise RtpError(f"RTP packet too short: {size} bytes")
        b0, b1, seq, ts, ssrc = _HEADER.unpack_from(buf)
        if b0 >> 6 != RTP_VERSION:
            raise RtpError(f"RTP version {b0 >> 6}, expected 2")
        pos = RTP_HEADER_SIZE
        cc = b0 & 0x0F
        if size < pos + 4 * cc:
            raise RtpError("RTP CSRC list truncated")
        csrc = struct.unpack_from(f"!{cc}I", buf, pos) if cc else ()
        pos += 4 * cc
        profile: int | None = None
        extension = b""
        if b0 & 0x10:
            if size < pos + 4:
                raise RtpError("RTP header extension truncated")
            profile, words = struct.unpack_from("!HH", buf, pos)
            pos += 4
            if size < pos + 4 * words:
                raise RtpError("RTP header extension body truncated")
            extension = buf[pos : pos + 4 * words]
            pos += 4 * words
        end = size
        if b0 & 0x20:
            pad = buf[-1]
            if pad == 0 or end - pad < pos:
                raise RtpError(f"bad RTP padding length {pad}")
            end -= pad
        return cls(
            payload_type=b1 & 0x7F,
            sequence_number=seq,
            timestamp=ts,
            ssrc=ssrc,
            marker=bool(b1 & 0x80),
            payload=buf[pos:end],
            csrc=tuple(csrc),
            extension_profile=profile,
            extension=extension,
        )

    def serialize(self) -> bytes:
        """The packet as bytes. ValueError (a local misuse) on out-of-range fields."""
        if not 0 <= self.payload_type < 128:
            raise ValueError(f"payload type {self.payload_type} out of range")
        if len(self.csrc) > 15:
            raise ValueError("at most 15 CSRCs")
        if len(self.extension) % 4:
            raise ValueError("RTP header extension must be a multiple of 4 bytes")
        b0 = 0x80 | len(self.csrc) | (0x10 if self.extension_profile is not None else 0)
        b1 = (0x80 if self.marker else 0) | self.payload_type
        try:
            parts = [_HEADER.pack(b0, b1, self.sequence_number, self.timestamp, self.ssrc)]
            if self.csrc:
                parts.append(struct.pack(f"!{len(self.csrc)}I", *self.csrc))
            if self.extension_profile is not None:
                parts.append(struct.pack("!HH", self.extension_profile, len(self.extension) // 4))
                parts.append(self.extension)
        except struct.error as exc:
            raise ValueError(f"RTP field out of range: {exc}") from exc
        parts.append(self.payload)
        return b"".join(parts)
