"""The RTP stream layer: codec-agnostic send and receive sides of RTP (RFC 3550). Pure: no I/O.

API::

    class RtpSender:
        def __init__(self, packetizer: Packetizer, *, ssrc: int, payload_type: int,
                     initial_seq: int | None = None) -> None
        def packetize(self, frame: bytes, width: int, height: int, timestamp: int) -> list[bytes]
        packets_sent; payload_octets_sent; last_timestamp
        def sender_info(self, sent_ns: int) -> SenderInfo          # for RTCP SR (rtcp module)

    @dataclass(frozen=True, slots=True)
    class StreamStats:  packets; frames; wrong_source; lost_packets; source_changes;
                        malformed; duplicates; late; incomplete; unsupported
    class RtpStream:                                 # one remote source of one payload type
        payload_type; clock_rate; expected_ssrc; depacketizer; ssrc (locked source or None)
        reception -> ReceptionStats | None           # RFC 3550 A.1/A.8, for RTCP RR blocks
        stats -> StreamStats
    class RtpReceiver:                               # the demultiplexer of one RTP socket
        def __init__(self) -> None
        def add_stream(self, depacketizer, *, payload_type: int | None, clock_rate: int,
                       expected_ssrc: int | None, source_timeout: float = 0.5) -> RtpStream
        def push(self, datagram, now) -> list[CodecFrame]           # never raises
        def push_packet(self, packet: RtpPacket, now) -> list[CodecFrame]
        def expire(self, now) -> None
        malformed (not RTP); unknown_payload_type (no stream for it)

Receive: each datagram's header is parsed once (a fast path for the plain 12-byte header:
fragments stay zero-copy views of the datagram), routed by payload type to its stream (None:
the stream takes every payload type, for a lone stream from a tool), filtered by SSRC, counted
in the stream's RFC 3550 reception statistics, and only then handed to the codec's
depacketizer. A second stream (audio) is one more ``add_stream``.

SSRC rule: a stream with ``expected_ssrc`` (the per-call token from call control, 0 included)
accepts only that source. With None it locks on the first source and follows a new one only
after the current one has been silent for ``source_timeout`` seconds (a restarted ffmpeg); a
change of source resets the depacketizer and the statistics. Everything dropped is counted.

Send: the codec's packetizer gives payloads; the sender adds the RTP header (sequence number +1
per packet from a random start, RFC 3550 5.1; one timestamp per frame; marker on the last
packet of a frame) in one join per packet, and keeps the packet and octet counts an RTCP sender
report needs.
"""

from __future__ import annotations

import logging
import secrets
import struct
from dataclasses import dataclass

from pipeline.codecs.base import CodecFrame, Depacketizer, Packetizer
from pipeline.wire.rtcp import ReceptionStats, SenderInfo
from pipeline.wire.rtp import RTP_HEADER_SIZE, RtpError, RtpPacket, rtp_header

logger = logging.getLogger(__name__)

_FAST_HEADER = struct.Struct("!BHII")  # the RTP header after its first byte


class RtpSender:
    """Frames of one codec -> RTP datagrams of one SSRC."""

    def __init__(
        self,
        packetizer: Packetizer,
        *,
        ssrc: int,
        payload_type: int,
        initial_seq: int | None = None,
    ) -> None:
        if not 0 <= payload_type < 128 or not 0 <= ssrc < 1 << 32:
            raise ValueError("payload type or SSRC out of range")
        if initial_seq is not None and not 0 <= initial_seq < 1 << 16:
            raise ValueError(f"initial sequence number {initial_seq} out of range")
        self.packetizer = packetizer
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.next_seq = secrets.randbelow(1 << 16) if initial_seq is None else initial_seq
        self.packets_sent = 0
        self.payload_octets_sent = 0
        self.last_timestamp = 0

    def packetize(self, frame: bytes, width: int, height: int, timestamp: int) -> list[bytes]:
        """The RTP datagrams carrying one frame. EncodeError (from the packetizer) if the
        payload format cannot carry it."""
        payloads = self.packetizer.payloads(frame, width, height)
        ts = timestamp & 0xFFFFFFFF
        pt, ssrc, seq = self.payload_type, self.ssrc, self.next_seq
        last = len(payloads) - 1
        out: list[bytes] = []
        octets = 0
        for i, pieces in enumerate(payloads):
            datagram = b"".join((rtp_header(pt, seq, ts, ssrc, i == last), *pieces))
            octets += len(datagram) - RTP_HEADER_SIZE
            out.append(datagram)
            seq = (seq + 1) & 0xFFFF
        self.next_seq = seq
        self.packets_sent += len(out)
        self.payload_octets_sent += octets
        self.last_timestamp = ts
        return out

    def sender_info(self, sent_ns: int) -> SenderInfo:
        """The counts an RTCP sender report needs (RFC 3550 6.4.1)."""
        return SenderInfo(
            packets=self.packets_sent,
            octets=self.payload_octets_sent,
            rtp_timestamp=self.last_timestamp,
            sent_ns=sent_ns,
        )


@dataclass(frozen=True, slots=True)
class StreamStats:
    """One stream's receive counters: the stream layer's and its depacketizer's."""

    packets: int = 0  # from the accepted source (RFC 3550 "received")
    frames: int = 0  # complete frames returned
    wrong_source: int = 0  # another SSRC
    lost_packets: int = 0  # RFC 3550 cumulative loss of the current source
    source_changes: int = 0
    malformed: int = 0  # the depacketizer's payload errors
    duplicates: int = 0
    late: int = 0
    incomplete: int = 0
    unsupported: int = 0


class RtpStream:
    """The receive side of one remote source of one payload type."""

    def __init__(
        self,
        depacketizer: Depacketizer,
        *,
        payload_type: int | None,
        clock_rate: int,
        expected_ssrc: int | None,
        source_timeout: float,
    ) -> None:
        self.depacketizer = depacketizer
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        self.expected_ssrc = expected_ssrc
        self.source_timeout = source_timeout
        self.ssrc: int | None = expected_ssrc
        self._reception: ReceptionStats | None = None
        self._last_packet: float | None = None
        self._packets = 0
        self._wrong_source = 0
        self._source_changes = 0

    @property
    def reception(self) -> ReceptionStats | None:
        """RFC 3550 statistics of the current source (feed RtcpSession.build_report)."""
        return self._reception

    @property
    def stats(self) -> StreamStats:
        d = self.depacketizer.stats
        lost = max(self._reception.cumulative_lost, 0) if self._reception else 0
        return StreamStats(
            packets=self._packets,
            frames=d.frames,
            wrong_source=self._wrong_source,
            lost_packets=lost,
            source_changes=self._source_changes,
            malformed=d.malformed,
            duplicates=d.duplicates,
            late=d.late,
            incomplete=d.incomplete,
            unsupported=d.unsupported,
        )

    def accept(self, ssrc: int, now: float) -> bool:
        """Whether a packet of ``ssrc`` belongs to this stream (counts it if not)."""
        if self.expected_ssrc is not None:
            if ssrc != self.expected_ssrc:
                self._wrong_source += 1
                return False
        elif ssrc != self.ssrc:
            last = self._last_packet
            idle = last is None or now - last > self.source_timeout
            if self.ssrc is not None and not idle:
                self._wrong_source += 1
                return False
            if self.ssrc is not None:
                self._source_changes += 1
                logger.info("RTP source changed to SSRC %08x", ssrc)
            self.ssrc = ssrc
            self._reception = None
        if self._reception is None:
            self.depacketizer.reset()
            self._reception = ReceptionStats(ssrc, self.clock_rate)
        return True

    def push(  # noqa: PLR0917 - the hot path; a header object per packet is what it avoids
        self, seq: int, ts: int, ssrc: int, marker: bool, payload: memoryview, now: float
    ) -> list[CodecFrame]:
        """One packet of this stream (``RtpReceiver`` routed it here)."""
        if not self.accept(ssrc, now):
            return []
        self._last_packet = now
        self._packets += 1
        assert self._reception is not None
        self._reception.update(seq, ts, now)
        return self.depacketizer.push(seq, ts, marker, payload, now)


class RtpReceiver:
    """Routes the datagrams of one RTP socket to their streams."""

    def __init__(self) -> None:
        self._by_pt: dict[int, RtpStream] = {}
        self._any: RtpStream | None = None
        self.streams: list[RtpStream] = []
        self.malformed = 0  # not an RTP packet
        self.unknown_payload_type = 0  # no stream takes this payload type

    def add_stream(
        self,
        depacketizer: Depacketizer,
        *,
        payload_type: int | None,
        clock_rate: int,
        expected_ssrc: int | None,
        source_timeout: float = 0.5,
    ) -> RtpStream:
        """A new stream; ``payload_type`` None takes every payload type (at most one such)."""
        if payload_type is None and self._any is not None:
            raise ValueError("only one stream may take every payload type")
        if payload_type is not None and (
            payload_type in self._by_pt or not 0 <= payload_type < 128
        ):
            raise ValueError(f"payload type {payload_type} taken or out of range")
        stream = RtpStream(
            depacketizer,
            payload_type=payload_type,
            clock_rate=clock_rate,
            expected_ssrc=expected_ssrc,
            source_timeout=source_timeout,
        )
        if payload_type is None:
            self._any = stream
        else:
            self._by_pt[payload_type] = stream
        self.streams.append(stream)
        return stream

    def push(self, datagram: bytes | bytearray | memoryview, now: float) -> list[CodecFrame]:
        """Take one datagram; return the frames it completed (usually none or one)."""
        data = datagram if isinstance(datagram, bytes) else bytes(datagram)
        if len(data) > RTP_HEADER_SIZE and data[0] == 0x80:
            # The common case (version 2, no padding, extension or CSRC): no RtpPacket object,
            # and the payload stays a zero-copy view of the datagram.
            b1, seq, ts, ssrc = _FAST_HEADER.unpack_from(data, 1)
            payload = memoryview(data)[RTP_HEADER_SIZE:]
            return self._route(b1 & 0x7F, seq, ts, ssrc, b1 >= 0x80, payload, now)
        try:
            packet = RtpPacket.parse(data)
        except RtpError:
            self.malformed += 1
            return []
        return self.push_packet(packet, now)

    def push_packet(self, packet: RtpPacket, now: float) -> list[CodecFrame]:
        """As push(), for an already parsed packet."""
        return self._route(
            packet.payload_type,
            packet.sequence_number,
            packet.timestamp,
            packet.ssrc,
            packet.marker,
            memoryview(packet.payload),
            now,
        )

    def _route(  # noqa: PLR0917 - the hot path; a header object per packet is what it avoids
        self,
        payload_type: int,
        seq: int,
        ts: int,
        ssrc: int,
        marker: bool,
        payload: memoryview,
        now: float,
    ) -> list[CodecFrame]:
        stream = self._by_pt.get(payload_type, self._any)
        if stream is None:
            self.unknown_payload_type += 1
            return []
        return stream.push(seq, ts, ssrc, marker, payload, now)

    def expire(self, now: float) -> None:
        """Let every stream's depacketizer drop partial frames that went stale."""
        for stream in self.streams:
            stream.depacketizer.expire(now)
