"""Opus packet structure (RFC 6716 3.1-3.4): the TOC byte and the frame lengths, checked.

API::

    MAX_PACKET = 1500            # bytes; a datagram-sized cap (RFC 6716 3.4 R2: 1275 per frame)
    MAX_DURATION = 5760          # samples at 48 kHz: 120 ms (RFC 6716 3.4 R5)
    @dataclass(frozen=True, slots=True)
    class OpusToc: config; stereo; code; frames; frame_samples   # samples at 48 kHz
        samples -> int           # frames * frame_samples
    def parse_packet(packet: bytes | memoryview) -> OpusToc      # OpusPacketError
    class OpusPacketError(CodecError)

``parse_packet`` checks the requirements R1-R7 of RFC 6716 3.4 that a receiver can check without
decoding: at least one byte; code 1 with an odd payload; code 2 and 3 frame lengths that fit
the packet; at most 1275 bytes per frame; code 3 with 1..48 frames and at most 120 ms in all;
padding that fits. It raises nothing but ``OpusPacketError`` on any bytes, so a depacketizer can
count and drop what libopus would refuse before it reaches the decoder.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.codecs.base import CodecError

MAX_PACKET = 1500
MAX_FRAME_BYTES = 1275
MAX_DURATION = 5760  # 120 ms at 48 kHz
# Frame durations by configuration number (RFC 6716 3.1, table 2), in samples at 48 kHz.
_SILK = (480, 960, 1920, 2880)  # 10, 20, 40, 60 ms
_HYBRID = (480, 960)  # 10, 20 ms
_CELT = (120, 240, 480, 960)  # 2.5, 5, 10, 20 ms


class OpusPacketError(CodecError):
    """An Opus packet that breaks RFC 6716 3.4 (a peer's garbage)."""


@dataclass(frozen=True, slots=True)
class OpusToc:
    """What an Opus packet's TOC byte and framing say (RFC 6716 3.1)."""

    config: int  # 0-31: mode, bandwidth and frame size
    stereo: bool
    code: int  # 0: one frame, 1: two equal, 2: two different, 3: a counted number
    frames: int
    frame_samples: int  # per frame, at 48 kHz

    @property
    def samples(self) -> int:
        """The packet's duration in samples at 48 kHz."""
        return self.frames * self.frame_samples


def frame_samples(config: int) -> int:
    """Samples per frame (48 kHz) of a TOC configuration number (RFC 6716 table 2)."""
    if config < 12:
        return _SILK[config % 4]
    if config < 16:
        return _HYBRID[config % 2]
    return _CELT[config % 4]


def _frame_length(data: memoryview, pos: int) -> tuple[int, int]:
    """One frame length (RFC 6716 3.2.1: one byte, or two when the first is 252-255)."""
    if pos >= len(data):
        raise OpusPacketError("frame length missing")
    first = data[pos]
    if first < 252:
        return first, pos + 1
    if pos + 1 >= len(data):
        raise OpusPacketError("two-byte frame length cut short")
    return first + 4 * data[pos + 1], pos + 2


def _check_frame(size: int) -> None:
    if size > MAX_FRAME_BYTES:
        raise OpusPacketError(f"frame of {size} bytes (at most {MAX_FRAME_BYTES})")


def parse_packet(packet: bytes | memoryview) -> OpusToc:
    """The TOC of ``packet`` after checking its framing; OpusPacketError otherwise."""
    data = memoryview(packet)
    if not 1 <= len(data) <= MAX_PACKET:
        raise OpusPacketError(f"Opus packet of {len(data)} bytes (1..{MAX_PACKET})")
    toc = data[0]
    config, stereo, code = toc >> 3, bool(toc & 0x04), toc & 0x03
    per_frame = frame_samples(config)
    body = len(data) - 1
    if code == 0:
        _check_frame(body)
        frames = 1
    elif code == 1:
        if body % 2:
            raise OpusPacketError("code 1 packet with an odd payload (R3)")
        _check_frame(body // 2)
        frames = 2
    elif code == 2:
        first, pos = _frame_length(data, 1)
        if first > len(data) - pos:
            raise OpusPacketError("code 2 first frame longer than the packet (R4)")
        _check_frame(first)
        _check_frame(len(data) - pos - first)
        frames = 2
    else:
        frames = _check_code3(data, per_frame)
    return OpusToc(config, stereo, code, frames, per_frame)


def _check_code3(data: memoryview, per_frame: int) -> int:
    """RFC 6716 3.2.5: frame count byte, padding, then CBR or VBR frames (R5-R7)."""
    if len(data) < 2:
        raise OpusPacketError("code 3 packet without a frame count byte (R6)")
    count_byte = data[1]
    vbr, padded, frames = bool(count_byte & 0x80), bool(count_byte & 0x40), count_byte & 0x3F
    if frames == 0 or frames * per_frame > MAX_DURATION:
        raise OpusPacketError(f"code 3 packet of {frames} frames (1..120 ms, R5)")
    pos, padding = 2, 0
    if padded:
        while True:
            if pos >= len(data):
                raise OpusPacketError("padding length cut short (R7)")
            byte = data[pos]
            pos += 1
            padding += 254 if byte == 255 else byte
            if byte != 255:
                break
    remaining = len(data) - pos - padding
    if remaining < 0:
        raise OpusPacketError("padding longer than the packet (R7)")
    if vbr:
        total = 0
        for _ in range(frames - 1):
            size, pos = _frame_length(data, pos)
            _check_frame(size)
            total += size
        remaining = len(data) - pos - padding
        if total > remaining:
            raise OpusPacketError("VBR frame lengths longer than the packet (R6)")
        _check_frame(remaining - total)
    else:
        if remaining % frames:
            raise OpusPacketError("CBR payload not a multiple of the frame count (R6)")
        _check_frame(remaining // frames)
    return frames
