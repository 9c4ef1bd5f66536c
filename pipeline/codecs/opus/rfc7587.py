"""RTP payload format for Opus (RFC 7587): one whole Opus packet per RTP payload.

API::

    class OpusPacketizer(Packetizer):     payloads(packet, 0, 0) -> [packet]   # EncodeError
    class OpusDepacketizer(Depacketizer): push(seq, timestamp, marker, payload, now)
                                              -> [CodecFrame] (one per valid packet, else [])
                                          expire(now) -> 0; reset(); stats

RFC 7587 4.2: the payload is exactly one Opus packet (no payload header); the RTP timestamp
counts 48 kHz samples whatever the audio bandwidth (4.1); the marker bit may be set on the
first packet after DTX silence (4.1) and carries nothing we need. A receiver treats every
payload as untrusted: ``push`` checks the TOC and framing (RFC 6716 3.4 through
:func:`parse_packet`, with the MAX_PACKET size cap) and counts what it drops: ``malformed``
(bad TOC/framing, empty or oversized) and ``duplicates`` (a sequence number seen among the
last 64). Ordering, lateness and loss are the audio jitter buffer's business, not this one's.

Guarantees: ``push`` never raises on any payload; it copies a valid payload once (the frame
outlives the datagram buffer).
"""

from __future__ import annotations

from collections import deque

from pipeline.codecs.base import (
    CodecFrame,
    Depacketizer,
    DepacketizerStats,
    EncodeError,
    Packetizer,
    Payload,
)
from pipeline.codecs.opus.toc import MAX_PACKET, OpusPacketError, parse_packet

DUPLICATE_WINDOW = 64  # sequence numbers remembered for duplicate detection


class OpusPacketizer(Packetizer):
    """One Opus packet -> one RTP payload (RFC 7587 4.2)."""

    def __init__(self, max_payload: int = MAX_PACKET) -> None:
        if max_payload < 1:
            raise ValueError(f"max_payload must be positive, not {max_payload}")
        self.max_payload = min(max_payload, MAX_PACKET)

    def payloads(self, frame: bytes, width: int = 0, height: int = 0) -> list[Payload]:
        """``[[frame]]``; EncodeError if it is not a valid Opus packet or does not fit."""
        if len(frame) > self.max_payload:
            raise EncodeError(f"Opus packet of {len(frame)} bytes over {self.max_payload}")
        try:
            parse_packet(frame)
        except OpusPacketError as exc:
            raise EncodeError(f"not an Opus packet: {exc}") from exc
        return [[frame]]


class OpusDepacketizer(Depacketizer):
    """RTP payloads of one Opus source -> Opus packets as CodecFrames (width/height 0)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._seen: deque[int] = deque(maxlen=DUPLICATE_WINDOW)
        self._seen_set: set[int] = set()
        self._frames = self._malformed = self._duplicates = 0

    def push(
        self, seq: int, timestamp: int, marker: bool, payload: memoryview, now: float
    ) -> list[CodecFrame]:
        try:
            parse_packet(payload)
        except OpusPacketError:
            self._malformed += 1
            return []
        seq &= 0xFFFF
        if seq in self._seen_set:
            self._duplicates += 1
            return []
        if len(self._seen) == DUPLICATE_WINDOW:
            self._seen_set.discard(self._seen[0])
        self._seen.append(seq)
        self._seen_set.add(seq)
        self._frames += 1
        return [CodecFrame(bytes(payload), timestamp & 0xFFFFFFFF, 0, 0, True, now, now, 1)]

    def expire(self, now: float) -> int:
        return 0  # nothing is ever partial: one packet is one frame

    @property
    def stats(self) -> DepacketizerStats:
        return DepacketizerStats(
            frames=self._frames, malformed=self._malformed, duplicates=self._duplicates
        )
