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
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.codecs.base import CodecFrame, Depacketizer, Packetizer
from pipeline.transport.history import RetransmissionBuffer
from pipeline.transport.nack import NackTracker
from pipeline.wire.rtcp import ReceptionStats, SenderInfo
from pipeline.wire.rtp import (
    ABS_SEND_TIME_HEADER_SIZE,
    ABS_SEND_TIME_PREFIX,
    RTP_HEADER_SIZE,
    RtpError,
    RtpPacket,
    rtp_header,
    rtp_header_abs_send_time,
    rtx_original_seq,
)

logger = logging.getLogger(__name__)

_FAST_HEADER = struct.Struct("!BHII")  # the RTP header after its first byte
REPAIRED_MEMORY = 32


def rtx_ssrc_of(ssrc: int) -> int:
    """The SSRC of the RTX stream (RFC 4588) that repairs ``ssrc``: ssrc + 1 between vcall
    peers (docs/protocol.md), so call control needs no second token."""
    return (ssrc + 1) & 0xFFFFFFFF


class RtpSender:
    """Frames of one codec -> RTP datagrams of one SSRC."""

    def __init__(
        self,
        packetizer: Packetizer,
        *,
        ssrc: int,
        payload_type: int,
        initial_seq: int | None = None,
        rtx_payload_type: int | None = None,
        abs_send_time: bool = False,
        history: RetransmissionBuffer | None = None,
    ) -> None:
        if not 0 <= payload_type < 128 or not 0 <= ssrc < 1 << 32:
            raise ValueError("payload type or SSRC out of range")
        if rtx_payload_type is not None and not 0 <= rtx_payload_type < 128:
            raise ValueError("RTX payload type out of range")
        if initial_seq is not None and not 0 <= initial_seq < 1 << 16:
            raise ValueError(f"initial sequence number {initial_seq} out of range")
        self.packetizer = packetizer
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.next_seq = secrets.randbelow(1 << 16) if initial_seq is None else initial_seq
        self.packets_sent = 0
        self.payload_octets_sent = 0
        self.last_timestamp = 0
        self.abs_send_time = abs_send_time
        self.rtx_payload_type = rtx_payload_type
        self.rtx_ssrc = rtx_ssrc_of(ssrc)
        self.history = history
        self._rtx_seq = secrets.randbelow(1 << 16)
        self.retransmitted = 0

    def _header(self, pt: int, seq: int, ts: int, ssrc: int, marker: bool) -> bytes | bytearray:
        if self.abs_send_time:
            return rtp_header_abs_send_time(pt, seq, ts, ssrc, marker)
        return rtp_header(pt, seq, ts, ssrc, marker)

    def packetize(
        self, frame: bytes, width: int, height: int, timestamp: int, now: float = 0.0
    ) -> list[bytearray]:
        """The RTP datagrams carrying one frame (kept in ``history`` for repair, as of ``now``
        in seconds). EncodeError (from the packetizer) if the payload format cannot carry it.
        With ``abs_send_time`` each has the extension, to be stamped when it leaves."""
        payloads = self.packetizer.payloads(frame, width, height)
        ts = timestamp & 0xFFFFFFFF
        pt, ssrc, seq = self.payload_type, self.ssrc, self.next_seq
        last = len(payloads) - 1
        out: list[bytearray] = []
        octets = 0
        head_size = ABS_SEND_TIME_HEADER_SIZE if self.abs_send_time else RTP_HEADER_SIZE
        history = self.history
        for i, pieces in enumerate(payloads):
            datagram = bytearray(self._header(pt, seq, ts, ssrc, i == last))
            for piece in pieces:
                datagram += piece
            octets += len(datagram) - head_size
            out.append(datagram)
            if history is not None:
                history.store(seq, bytes(datagram), now)
            seq = (seq + 1) & 0xFFFF
        self.next_seq = seq
        self.packets_sent += len(out)
        self.payload_octets_sent += octets
        self.last_timestamp = ts
        return out

    def retransmit(self, seq: int, now: float, min_interval: float) -> bytearray | None:
        """The RTX packet (RFC 4588 4: RTX payload type and SSRC, its own sequence numbers, the
        original timestamp and marker, the original sequence number before the payload) that
        repairs ``seq``; None when it cannot (no RTX, not in history, resent too recently)."""
        if self.history is None or self.rtx_payload_type is None:
            return None
        original = self.history.take(seq, now, min_interval)
        if original is None:
            return None
        head = ABS_SEND_TIME_HEADER_SIZE if original[0] == 0x90 else RTP_HEADER_SIZE
        ts = int.from_bytes(original[4:8], "big")
        marker = bool(original[1] & 0x80)
        pt, rtx_seq = self.rtx_payload_type, self._rtx_seq
        out = bytearray(self._header(pt, rtx_seq, ts, self.rtx_ssrc, marker))
        out += original[2:4]  # the OSN
        out += original[head:]
        self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
        self.retransmitted += 1
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
        self.nack: NackTracker | None = None  # set by the receiver when the peer repairs
        self.rtx_payload_type: int | None = None
        self.rtx_packets = 0  # RTX packets unwrapped into this stream
        # RTP timestamps of recent frames that needed a retransmission (their timing is the
        # repair's, not the path's: the jitter buffer leaves them out of its estimate).
        self.repaired: deque[int] = deque(maxlen=REPAIRED_MEMORY)
        self.rtx_wrong_source = 0
        self.rtx_malformed = 0

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
            if self.nack is not None:
                self.nack.reset()
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
        if self.nack is not None:
            self.nack.on_packet(seq, now)
        return self.depacketizer.push(seq, ts, marker, payload, now)

    def push_rtx(
        self, ts: int, ssrc: int, marker: bool, payload: memoryview, now: float
    ) -> list[CodecFrame]:
        """One RTX packet (RFC 4588) repairing this stream: accepted only from the RTX SSRC of
        the current source (``rtx_ssrc_of``); the original packet goes to the depacketizer.
        Repaired packets do not enter the RFC 3550 statistics: those measure the network."""
        if self.ssrc is None or ssrc != rtx_ssrc_of(self.ssrc) or self._reception is None:
            self.rtx_wrong_source += 1
            return []
        try:
            seq = rtx_original_seq(payload)
        except RtpError:
            self.rtx_malformed += 1
            return []
        self.rtx_packets += 1
        if not self.repaired or self.repaired[-1] != ts:
            self.repaired.append(ts)
        self._last_packet = now
        if self.nack is not None:
            self.nack.on_packet(seq, now, retransmitted=True)
        return self.depacketizer.push(seq, ts, marker, payload[2:], now)


class RtpReceiver:
    """Routes the datagrams of one RTP socket to their streams."""

    def __init__(self) -> None:
        self._by_pt: dict[int, RtpStream] = {}
        self._any: RtpStream | None = None
        self.streams: list[RtpStream] = []
        self._rtx: dict[int, RtpStream] = {}
        self.malformed = 0  # not an RTP packet
        self.unknown_payload_type = 0  # no stream takes this payload type
        # Called with (abs-send-time, arrival s, datagram bytes) for each media packet that
        # carries the extension (the delay-based bandwidth estimator).
        self.on_send_time: Callable[[int, float, int], None] | None = None
        # Payload types handed on whole (datagram, arrival s) instead of depacketized here:
        # another process's stream on this socket (the call's audio).
        self._forward: dict[int, Callable[[bytes, float], None]] = {}

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

    def add_rtx(self, stream: RtpStream, payload_type: int) -> None:
        """Route RTX packets of ``payload_type`` (RFC 4588) into ``stream``, and keep a NACK
        list for it (``stream.nack``); its depacketizer holds a frame while the list still asks
        for a packet before it, up to the list's age limit (``Depacketizer.repair_pending``)."""
        if payload_type in self._by_pt or payload_type in self._rtx or not 0 <= payload_type < 128:
            raise ValueError(f"payload type {payload_type} taken or out of range")
        self._rtx[payload_type] = stream
        stream.rtx_payload_type = payload_type
        if stream.nack is None:
            nack = stream.nack = NackTracker()
            stream.depacketizer.repair_pending = nack.pending_before
            stream.depacketizer.repair_moot = nack.forget_before
            stream.depacketizer.repair_hold = nack.max_age

    def add_forward(self, payload_type: int, forward: Callable[[bytes, float], None]) -> None:
        """Hand every datagram of ``payload_type`` whole to ``forward(datagram, now)``."""
        if payload_type in self._by_pt or payload_type in self._rtx or not 0 <= payload_type < 128:
            raise ValueError(f"payload type {payload_type} taken or out of range")
        self._forward[payload_type] = forward

    def push(self, datagram: bytes | bytearray | memoryview, now: float) -> list[CodecFrame]:
        """Take one datagram; return the frames it completed (usually none or one)."""
        data = datagram if isinstance(datagram, bytes) else bytes(datagram)
        size = len(data)
        if self._forward and size > RTP_HEADER_SIZE and data[0] >> 6 == 2:
            forward = self._forward.get(data[1] & 0x7F)
            if forward is not None:
                forward(data, now)
                return []
        if size > RTP_HEADER_SIZE and data[0] == 0x80:
            # The common case (version 2, no padding, extension or CSRC): no RtpPacket object,
            # and the payload stays a zero-copy view of the datagram.
            b1, seq, ts, ssrc = _FAST_HEADER.unpack_from(data, 1)
            payload = memoryview(data)[RTP_HEADER_SIZE:]
            return self._route(b1 & 0x7F, seq, ts, ssrc, b1 >= 0x80, payload, now)
        if (
            size > ABS_SEND_TIME_HEADER_SIZE
            and data[0] == 0x90
            and data[12:17] == ABS_SEND_TIME_PREFIX
        ):
            # vcall's own layout: the fixed header and one abs-send-time extension.
            b1, seq, ts, ssrc = _FAST_HEADER.unpack_from(data, 1)
            pt = b1 & 0x7F
            if self.on_send_time is not None and pt not in self._rtx:
                self.on_send_time(int.from_bytes(data[17:20], "big"), now, size)
            payload = memoryview(data)[ABS_SEND_TIME_HEADER_SIZE:]
            return self._route(pt, seq, ts, ssrc, b1 >= 0x80, payload, now)
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
        stream = self._by_pt.get(payload_type)
        if stream is None:
            repaired = self._rtx.get(payload_type)
            if repaired is not None:
                return repaired.push_rtx(ts, ssrc, marker, payload, now)
            stream = self._any
        if stream is None:
            self.unknown_payload_type += 1
            return []
        return stream.push(seq, ts, ssrc, marker, payload, now)

    def expire(self, now: float) -> None:
        """Let every stream's depacketizer drop partial frames that went stale."""
        for stream in self.streams:
            stream.depacketizer.expire(now)
