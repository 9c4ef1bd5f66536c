"""RTCP (RFC 3550): SR/RR/SDES/BYE packets, reception statistics, and a pure report session.

API::

    class RtcpError(RemoteProtocolError)                     # garbage from the network
    ReportBlock(ssrc, fraction_lost, cumulative_lost, highest_seq, jitter, lsr, dlsr)
    SenderReport(ssrc, ntp_timestamp, rtp_timestamp, packet_count, octet_count, reports=())
    ReceiverReport(ssrc, reports=())
    SourceDescription(chunks: tuple[SdesChunk, ...]); SdesChunk(ssrc, items: ((type, bytes),))
    Bye(sources: tuple[int, ...], reason: str = "")
    PictureLossIndication(sender_ssrc, media_ssrc)     # RFC 4585 6.3.1: PSFB (206), FMT 1
    FullIntraRequest(sender_ssrc, entries: ((ssrc, seq_nr),))   # RFC 5104 4.3.1: PSFB, FMT 4
    UnknownRtcp(packet_type, count, body)
    def parse_rtcp(data) -> list[RtcpPacket]          # a compound packet; RtcpError on garbage
    def serialize_rtcp(packets) -> bytes             # one compound datagram

    class ReceptionStats:                             # one remote source, RFC 3550 A.1/A.3/A.8
        def __init__(self, ssrc: int, clock_rate: int = 90000) -> None
        def update(self, seq: int, rtp_ts: int, arrival: float) -> None
        def report_block(self, lsr: int = 0, dlsr: int = 0) -> ReportBlock  # fraction since last
        received, cumulative_lost, jitter_s, highest_seq, fraction_lost (last report)

    class RtcpSession:                                # no I/O, no clock: ``now`` is passed in
        def __init__(self, ssrc, cname="vcall", *, clock_rate=90000, interval=1.0,
                     wallclock_offset=0.0,            # now + offset = Unix time, for NTP fields
                     peer_ssrc=None)                  # if given, other senders' reports dropped
        def on_rtp_sent(self, rtp_ts, payload_bytes, now, packets=1) -> None
        def due(self, now) -> bool                    # a report is due (every ``interval`` s)
        def build_report(self, now, reception=None) -> bytes   # SR (if sending) or RR, + CNAME
        def build_bye(self, reason="") -> bytes
        def receive(self, datagram, now) -> list[RtcpPacket]    # never raises; counts garbage
        def build_keyframe_request(self, media_ssrc, now, min_interval=0.2) -> bytes | None
                                                      # RR + PLI + FIR, rate-limited (None)
        def keyframe_answered() -> None               # a keyframe came: only the 200 ms floor
        keyframe_requested(packets) -> bool           # a PLI/FIR about our SSRC from the peer
        stats -> RtcpStats(rtt_s, remote_fraction_lost, remote_cumulative_lost, remote_jitter_s,
                           reports_sent, reports_received, malformed, peer_ssrc,
                           wrong_source, plis_sent, plis_received)

Guarantees: ``parse_rtcp`` raises nothing but RtcpError on any input; serialise and parse
round-trip. RTT is A - LSR - DLSR (RFC 3550 6.4.1) in seconds, computed only from a report
that echoes one of our sender reports; all arithmetic is modulo 2**32 where the wire is.
The report interval is fixed (1 s by default, not RFC 3550's 5 s minimum): a 1:1 call wants
loss and RTT figures quickly, and the report costs a few hundred bytes per second.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pipeline.errors import RemoteProtocolError
from pipeline.wire.rtp import SEQ_MOD, ts_diff

logger = logging.getLogger(__name__)

PT_SR, PT_RR, PT_SDES, PT_BYE, PT_RTPFB, PT_PSFB = 200, 201, 202, 203, 205, 206
FMT_NACK = 1  # RTPFB: generic NACK (RFC 4585 6.2.1)
FMT_PLI, FMT_FIR, FMT_AFB = 1, 4, 15  # PSFB; AFB carries REMB (draft-alvestrand-rmcat-remb)
REMB_ID = b"REMB"
# A NACK of more FCI entries than this (each names up to 17 packets) is malformed: a peer
# cannot have lost more than a retransmission buffer holds (see transport/history.py).
MAX_NACK_FCI = 1024
# At most one keyframe request per this many seconds (RFC 4585 leaves the rate to the
# application; the sender's next keyframe takes a frame interval plus an RTT to arrive).
KEYFRAME_REQUEST_INTERVAL = 0.2
SDES_CNAME = 1
NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01
_HDR = struct.Struct("!BBH")
_BLOCK = struct.Struct("!IIIIII")  # ssrc, fraction<<24|lost, highest, jitter, lsr, dlsr
_SR_INFO = struct.Struct("!IQIII")
# RFC 3550 A.1: a jump of more than MAX_DROPOUT is a restart candidate. MAX_MISORDER is how far
# behind the highest sequence number a packet may arrive and still count as reordered (A.1
# suggests 100). A 720p JPEG frame is about 34 packets and paths reorder by tens of
# milliseconds, so late packets 100-1000 behind are real: with 100, two of them in a row were
# taken for a restart and reset the loss count (measured: 5-10x undercount at 25 % reordering).
MAX_DROPOUT = 3000
MAX_MISORDER = 3000


class RtcpError(RemoteProtocolError):
    """A datagram that is not a well-formed RTCP compound packet (garbage from a peer)."""


@dataclass(frozen=True, slots=True)
class ReportBlock:
    ssrc: int
    fraction_lost: int  # 0..255, fraction of 256
    cumulative_lost: int  # signed 24-bit
    highest_seq: int  # extended highest sequence number
    jitter: int  # RTP timestamp units
    lsr: int  # middle 32 bits of the last SR's NTP timestamp, 0 if none
    dlsr: int  # delay since that SR, 1/65536 s


@dataclass(frozen=True, slots=True)
class SenderReport:
    ssrc: int
    ntp_timestamp: int  # 64-bit NTP (32.32 fixed point, seconds since 1900)
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    ssrc: int
    reports: tuple[ReportBlock, ...] = ()


@dataclass(frozen=True, slots=True)
class SdesChunk:
    ssrc: int
    items: tuple[tuple[int, bytes], ...]


@dataclass(frozen=True, slots=True)
class SourceDescription:
    chunks: tuple[SdesChunk, ...]


@dataclass(frozen=True, slots=True)
class Bye:
    sources: tuple[int, ...]
    reason: str = ""


@dataclass(frozen=True, slots=True)
class PictureLossIndication:
    """RFC 4585 6.3.1: the receiver lost (part of) a picture; the sender should send a keyframe."""

    sender_ssrc: int
    media_ssrc: int


@dataclass(frozen=True, slots=True)
class FullIntraRequest:
    """RFC 5104 4.3.1: a keyframe, please; one (ssrc, command sequence number) per source."""

    sender_ssrc: int
    entries: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class GenericNack:
    """RFC 4585 6.2.1: packets of ``media_ssrc`` the receiver is missing. Each FCI entry is a
    (PID, BLP) pair: packet PID, and PID+i+1 for every bit i set in the 16-bit mask BLP."""

    sender_ssrc: int
    media_ssrc: int
    entries: tuple[tuple[int, int], ...]

    @classmethod
    def of(cls, sender_ssrc: int, media_ssrc: int, lost: Iterable[int]) -> GenericNack:
        """The shortest NACK naming every sequence number in ``lost`` (in the order given)."""
        entries: list[list[int]] = []
        for n in lost:
            seq = n & 0xFFFF
            if entries:
                pid, _ = entries[-1]
                d = (seq - pid) & 0xFFFF
                if 1 <= d <= 16:
                    entries[-1][1] |= 1 << (d - 1)
                    continue
            entries.append([seq, 0])
        return cls(sender_ssrc, media_ssrc, tuple((p, b) for p, b in entries))

    def lost(self) -> list[int]:
        """Every sequence number the NACK names (duplicates possible, as sent)."""
        out: list[int] = []
        for pid, blp in self.entries:
            out.append(pid)
            out.extend((pid + i + 1) & 0xFFFF for i in range(16) if blp >> i & 1)
        return out


@dataclass(frozen=True, slots=True)
class Remb:
    """Receiver Estimated Maximum Bitrate (draft-alvestrand-rmcat-remb-03 2.2): the rate in
    bit/s the receiver estimates the path carries, for the media of ``ssrcs``. On the wire it is
    an 18-bit mantissa and a 6-bit exponent, so ``bitrate_bps`` is rounded down to that."""

    sender_ssrc: int
    bitrate_bps: int
    ssrcs: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class UnknownRtcp:
    packet_type: int
    count: int
    body: bytes


RtcpPacket = (
    SenderReport
    | ReceiverReport
    | SourceDescription
    | Bye
    | PictureLossIndication
    | FullIntraRequest
    | GenericNack
    | Remb
    | UnknownRtcp
)


# --- wire format ----------------------------------------------------------------------------


def _parse_blocks(body: bytes, pos: int, count: int) -> tuple[ReportBlock, ...]:
    if len(body) < pos + 24 * count:
        raise RtcpError("RTCP report blocks truncated")
    blocks = []
    for i in range(count):
        ssrc, word, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(body, pos + 24 * i)
        lost = word & 0xFFFFFF
        if lost & 0x800000:
            lost -= 1 << 24
        blocks.append(ReportBlock(ssrc, word >> 24, lost, highest, jitter, lsr, dlsr))
    return tuple(blocks)


def _parse_sdes(body: bytes, count: int) -> SourceDescription:
    chunks = []
    pos = 0
    for _ in range(count):
        if len(body) < pos + 4:
            raise RtcpError("SDES chunk truncated")
        (ssrc,) = struct.unpack_from("!I", body, pos)
        pos += 4
        items = []
        while True:
            if pos >= len(body):
                raise RtcpError("SDES items not terminated")
            kind = body[pos]
            if kind == 0:
                pos = (pos + 4) & ~3  # the null item, then padding to a 32-bit boundary
                break
            if pos + 2 > len(body) or pos + 2 + body[pos + 1] > len(body):
                raise RtcpError("SDES item truncated")
            length = body[pos + 1]
            items.append((kind, body[pos + 2 : pos + 2 + length]))
            pos += 2 + length
        chunks.append(SdesChunk(ssrc, tuple(items)))
    return SourceDescription(tuple(chunks))


def _parse_one(pt: int, count: int, body: bytes) -> RtcpPacket:
    if pt == PT_SR:
        if len(body) < 24:
            raise RtcpError("SR too short")
        ssrc, ntp, rtp_ts, packets, octets = _SR_INFO.unpack_from(body, 0)
        return SenderReport(ssrc, ntp, rtp_ts, packets, octets, _parse_blocks(body, 24, count))
    if pt == PT_RR:
        if len(body) < 4:
            raise RtcpError("RR too short")
        (ssrc,) = struct.unpack_from("!I", body, 0)
        return ReceiverReport(ssrc, _parse_blocks(body, 4, count))
    if pt == PT_SDES:
        return _parse_sdes(body, count)
    if pt == PT_BYE:
        if len(body) < 4 * count:
            raise RtcpError("BYE truncated")
        sources = struct.unpack_from(f"!{count}I", body, 0)
        reason = ""
        pos = 4 * count
        if pos < len(body):
            length = body[pos]
            if pos + 1 + length > len(body):
                raise RtcpError("BYE reason truncated")
            reason = _fit_reason(body[pos + 1 : pos + 1 + length].decode("utf-8", "replace"))
        return Bye(tuple(sources), reason)
    if pt == PT_RTPFB and count == FMT_NACK:
        if len(body) < 8 or len(body) % 4:
            raise RtcpError("NACK truncated")
        if (len(body) - 8) // 4 > MAX_NACK_FCI:
            raise RtcpError("NACK longer than any retransmission buffer")
        sender, media = struct.unpack_from("!II", body, 0)
        return GenericNack(sender, media, tuple(struct.iter_unpack("!HH", body[8:])))
    if pt == PT_PSFB and count == FMT_AFB and body[8:12] == REMB_ID:
        if len(body) < 16:
            raise RtcpError("REMB truncated")
        (sender,) = struct.unpack_from("!I", body, 0)
        n = body[12]
        exp_mantissa = int.from_bytes(body[13:16], "big")
        if len(body) < 16 + 4 * n:
            raise RtcpError("REMB SSRC list truncated")
        ssrcs = struct.unpack_from(f"!{n}I", body, 16)
        bitrate = (exp_mantissa & 0x3FFFF) << (exp_mantissa >> 18)
        return Remb(sender, bitrate, tuple(ssrcs))
    if pt == PT_PSFB and count in (FMT_PLI, FMT_FIR):
        if len(body) < 8:
            raise RtcpError("PSFB too short")
        sender, media = struct.unpack_from("!II", body, 0)
        if count == FMT_PLI:
            return PictureLossIndication(sender, media)
        fci = body[8:]
        if len(fci) % 8:
            raise RtcpError("FIR entries truncated")
        entries = tuple((ssrc, word >> 24) for ssrc, word in struct.iter_unpack("!II", fci))
        return FullIntraRequest(sender, entries)
    return UnknownRtcp(pt, count, body)


def _fit_reason(reason: str) -> str:
    """A BYE reason whose UTF-8 fits the 255-byte field (invalid bytes read as U+FFFD take 3
    bytes each: cut at a character so parse -> serialise -> parse is stable)."""
    encoded = reason.encode()
    if len(encoded) <= 255:
        return reason
    return encoded[:255].decode("utf-8", "ignore")


def parse_rtcp(data: bytes | bytearray | memoryview) -> list[RtcpPacket]:
    """Parse a compound RTCP datagram. RtcpError on anything malformed."""
    buf = bytes(data)
    if len(buf) < 4:
        raise RtcpError("RTCP packet too short")
    packets: list[RtcpPacket] = []
    pos = 0
    while pos < len(buf):
        if len(buf) < pos + 4:
            raise RtcpError("RTCP header truncated")
        b0, pt, words = _HDR.unpack_from(buf, pos)
        if b0 >> 6 != 2:
            raise RtcpError(f"RTCP version {b0 >> 6}, expected 2")
        end = pos + 4 + 4 * words
        if end > len(buf):
            raise RtcpError("RTCP length exceeds the datagram")
        body = buf[pos + 4 : end]
        if b0 & 0x20:
            if not body or body[-1] == 0 or body[-1] > len(body):
                raise RtcpError("bad RTCP padding")
            body = body[: -body[-1]]
        packets.append(_parse_one(pt, b0 & 0x1F, body))
        pos = end
    return packets


def _blocks_bytes(blocks: Sequence[ReportBlock]) -> bytes:
    return b"".join(
        _BLOCK.pack(
            b.ssrc,
            (b.fraction_lost << 24) | (b.cumulative_lost & 0xFFFFFF),
            b.highest_seq,
            b.jitter,
            b.lsr,
            b.dlsr,
        )
        for b in blocks
    )


def _packet(pt: int, count: int, body: bytes) -> bytes:
    if len(body) % 4:
        body += b"\x00" * (4 - len(body) % 4)
    if count > 31:
        raise ValueError("at most 31 items per RTCP packet")
    return _HDR.pack(0x80 | count, pt, len(body) // 4) + body


def serialize_rtcp(packets: Iterable[RtcpPacket]) -> bytes:
    """One compound datagram. ValueError (local misuse) on out-of-range fields."""
    out = []
    try:
        for p in packets:
            if isinstance(p, SenderReport):
                info = _SR_INFO.pack(
                    p.ssrc, p.ntp_timestamp, p.rtp_timestamp, p.packet_count, p.octet_count
                )
                out.append(_packet(PT_SR, len(p.reports), info + _blocks_bytes(p.reports)))
            elif isinstance(p, ReceiverReport):
                body = struct.pack("!I", p.ssrc) + _blocks_bytes(p.reports)
                out.append(_packet(PT_RR, len(p.reports), body))
            elif isinstance(p, SourceDescription):
                body = b""
                for chunk in p.chunks:
                    c = struct.pack("!I", chunk.ssrc)
                    c += b"".join(bytes((k, len(v))) + v for k, v in chunk.items)
                    c += b"\x00" * (4 - len(c) % 4)  # null item + padding (at least one byte)
                    body += c
                out.append(_packet(PT_SDES, len(p.chunks), body))
            elif isinstance(p, PictureLossIndication):
                body = struct.pack("!II", p.sender_ssrc, p.media_ssrc)
                out.append(_packet(PT_PSFB, FMT_PLI, body))
            elif isinstance(p, FullIntraRequest):
                body = struct.pack("!II", p.sender_ssrc, 0) + b"".join(
                    struct.pack("!II", ssrc, (seq & 0xFF) << 24) for ssrc, seq in p.entries
                )
                out.append(_packet(PT_PSFB, FMT_FIR, body))
            elif isinstance(p, GenericNack):
                if len(p.entries) > MAX_NACK_FCI:
                    raise ValueError(f"a NACK of more than {MAX_NACK_FCI} entries")
                body = struct.pack("!II", p.sender_ssrc, p.media_ssrc) + b"".join(
                    struct.pack("!HH", pid, blp) for pid, blp in p.entries
                )
                out.append(_packet(PT_RTPFB, FMT_NACK, body))
            elif isinstance(p, Remb):
                mantissa, exp = p.bitrate_bps, 0
                while mantissa >= 1 << 18:
                    mantissa >>= 1
                    exp += 1
                if exp > 63 or len(p.ssrcs) > 255 or mantissa < 0:
                    raise ValueError("REMB bitrate or SSRC count out of range")
                body = struct.pack("!II4sB", p.sender_ssrc, 0, REMB_ID, len(p.ssrcs))
                body += ((exp << 18) | mantissa).to_bytes(3, "big")
                body += struct.pack(f"!{len(p.ssrcs)}I", *p.ssrcs)
                out.append(_packet(PT_PSFB, FMT_AFB, body))
            elif isinstance(p, Bye):
                body = struct.pack(f"!{len(p.sources)}I", *p.sources)
                if p.reason:
                    reason = _fit_reason(p.reason).encode()
                    body += bytes((len(reason),)) + reason
                out.append(_packet(PT_BYE, len(p.sources), body))
            elif len(p.body) % 4:
                # RFC 3550 6.4.1: pad with the P bit, the last octet counting the padding, so
                # the body reads back exactly as it was (parse strips the padding).
                pad = 4 - len(p.body) % 4
                body = p.body + b"\x00" * (pad - 1) + bytes((pad,))
                out.append(bytes((0xA0 | p.count,)) + _packet(p.packet_type, p.count, body)[1:])
            else:
                out.append(_packet(p.packet_type, p.count, p.body))
    except struct.error as exc:
        raise ValueError(f"RTCP field out of range: {exc}") from exc
    return b"".join(out)


# --- reception statistics -------------------------------------------------------------------


class ReceptionStats:
    """Receive statistics of one RTP source (RFC 3550 A.1 sequence tracking, A.3 loss, A.8
    interarrival jitter). ``arrival`` is in seconds on any one clock."""

    def __init__(self, ssrc: int, clock_rate: int = 90000) -> None:
        self.ssrc = ssrc
        self.clock_rate = clock_rate
        self.received = 0
        self.fraction_lost = 0  # of the last report_block(), 0..255
        self._base_seq = 0
        self._max_seq = 0
        self._cycles = 0
        self._bad_seq: int | None = None
        self._expected_prior = 0
        self._received_prior = 0
        self._jitter = 0.0  # timestamp units
        self._last_arrival: float | None = None
        self._last_ts = 0
        self._started = False

    def _init_seq(self, seq: int) -> None:
        self._base_seq = seq
        self._max_seq = seq
        self._cycles = 0
        self._bad_seq = None
        self.received = 0
        self._expected_prior = 0
        self._received_prior = 0

    def update(self, seq: int, rtp_ts: int, arrival: float) -> None:
        """Account for one received packet of this source."""
        if not self._started:
            self._started = True
            self._init_seq(seq)
        else:
            udelta = (seq - self._max_seq) % SEQ_MOD
            if udelta < MAX_DROPOUT:
                if seq < self._max_seq:
                    self._cycles += SEQ_MOD
                self._max_seq = seq
                self._bad_seq = None
            elif udelta <= SEQ_MOD - MAX_MISORDER:
                # A big jump: believe it only when the next packet follows it (a restart).
                if seq != self._bad_seq:
                    self._bad_seq = (seq + 1) % SEQ_MOD
                    return
                self._init_seq(seq)
            # else: a duplicate or a packet reordered by up to MAX_MISORDER, counted below
        self.received += 1
        if self._last_arrival is not None:
            d = (arrival - self._last_arrival) * self.clock_rate - ts_diff(rtp_ts, self._last_ts)
            self._jitter += (abs(d) - self._jitter) / 16
        self._last_arrival = arrival
        self._last_ts = rtp_ts

    @property
    def highest_seq(self) -> int:
        """Extended highest sequence number received (cycles << 16 | seq)."""
        return self._cycles + self._max_seq

    @property
    def expected(self) -> int:
        return self.highest_seq - self._base_seq + 1 if self._started else 0

    @property
    def cumulative_lost(self) -> int:
        """Packets expected minus received (negative with duplicates), clamped to 24 bits."""
        return max(-(1 << 23), min(self.expected - self.received, (1 << 23) - 1))

    @property
    def jitter_s(self) -> float:
        return self._jitter / self.clock_rate

    def interval_loss(self) -> tuple[int, int]:
        """(expected, lost) packets since the last report block, without starting a new
        interval: lets a receiver send an early report when loss is high (RFC 4585 3.5)."""
        expected = self.expected - self._expected_prior
        return expected, expected - (self.received - self._received_prior)

    def report_block(self, lsr: int = 0, dlsr: int = 0) -> ReportBlock:
        """A report block; resets the interval used for the fraction lost."""
        expected = self.expected
        expected_interval = expected - self._expected_prior
        received_interval = self.received - self._received_prior
        self._expected_prior = expected
        self._received_prior = self.received
        lost_interval = expected_interval - received_interval
        self.fraction_lost = (
            min((lost_interval << 8) // expected_interval, 255)
            if expected_interval > 0 and lost_interval > 0
            else 0
        )
        return ReportBlock(
            self.ssrc,
            self.fraction_lost,
            self.cumulative_lost,
            self.highest_seq & 0xFFFFFFFF,
            int(self._jitter) & 0xFFFFFFFF,
            lsr,
            dlsr,
        )


# --- session --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SenderInfo:
    """What the sending side tells the side that owns the RTCP socket, for sender reports
    (RFC 3550 6.4.1): running totals since the stream began, and when the last packet left.

    ``pack``/``unpack`` give its fixed 28-byte form (the send stage publishes it in shared
    memory; the receive stage reads it). ``unpack`` raises ValueError on a wrong length.
    """

    packets: int
    octets: int  # payload octets
    rtp_timestamp: int  # of the last frame sent
    sent_ns: int  # monotonic_ns when the last packet was handed to the kernel

    _FORMAT = struct.Struct("!QQIQ")
    SIZE = _FORMAT.size

    def pack(self) -> bytes:
        return self._FORMAT.pack(self.packets, self.octets, self.rtp_timestamp, self.sent_ns)

    @classmethod
    def unpack(cls, data: bytes) -> SenderInfo:
        packets, octets, rtp_ts, sent_ns = cls._FORMAT.unpack(data)
        return cls(packets, octets, rtp_ts, sent_ns)


@dataclass(frozen=True, slots=True)
class RtcpStats:
    rtt_s: float | None
    remote_fraction_lost: float | None  # 0..1, as the peer reported about our stream
    remote_cumulative_lost: int | None
    remote_jitter_s: float | None
    reports_sent: int
    reports_received: int
    malformed: int
    peer_ssrc: int | None
    wrong_source: int = 0  # reports from an SSRC other than the expected peer's
    plis_sent: int = 0  # keyframe requests we sent (PLI + FIR in one compound packet)
    plis_received: int = 0  # keyframe requests from the peer about our stream
    nacks_sent: int = 0  # generic NACK packets we sent
    nacks_received: int = 0  # generic NACK packets from the peer about our stream
    nacked_packets: int = 0  # sequence numbers those named
    rembs_received: int = 0
    feedback_ignored: int = 0  # NACK/REMB from another sender or about another stream


def _ntp(seconds_since_1970: float) -> int:
    return int((seconds_since_1970 + NTP_EPOCH_OFFSET) * (1 << 32)) & 0xFFFFFFFFFFFFFFFF


class RtcpSession:
    """RTCP for one RTP stream we send (SR) and, optionally, one we receive (RR blocks)."""

    def __init__(
        self,
        ssrc: int,
        cname: str = "vcall",
        *,
        clock_rate: int = 90000,
        interval: float = 1.0,
        wallclock_offset: float = 0.0,
        peer_ssrc: int | None = None,
    ) -> None:
        self.ssrc = ssrc
        self.expected_peer = peer_ssrc
        self.cname = cname.encode()[:255]
        self.clock_rate = clock_rate
        self.interval = interval
        self.wallclock_offset = wallclock_offset
        self._packets_sent = 0
        self._octets_sent = 0
        self._last_rtp_ts = 0
        self._last_rtp_time: float | None = None
        self._last_report: float | None = None
        self._peer_lsr = 0  # middle 32 bits of the peer's last SR
        self._peer_sr_arrival = 0.0
        self._peer_ssrc: int | None = None
        self._rtt: float | None = None
        self._remote: ReportBlock | None = None
        self._reports_sent = 0
        self._reports_received = 0
        self._malformed = 0
        self._wrong_source = 0
        self._fir_seq = 0
        self._last_keyframe_request: float | None = None
        self._keyframe_answered = False
        self._plis_sent = 0
        self._plis_received = 0
        self._fb = dict.fromkeys(
            (
                "nacks_sent",
                "nacks_received",
                "nacked_packets",
                "rembs_received",
                "feedback_ignored",
            ),
            0,
        )

    def _ntp_now(self, now: float) -> int:
        return _ntp(now + self.wallclock_offset)

    def on_rtp_sent(self, rtp_ts: int, payload_bytes: int, now: float, packets: int = 1) -> None:
        """Account for RTP packets we sent (for the SR's counts and timestamp mapping)."""
        self._packets_sent = (self._packets_sent + packets) & 0xFFFFFFFF
        self._octets_sent = (self._octets_sent + payload_bytes) & 0xFFFFFFFF
        self._last_rtp_ts = rtp_ts
        self._last_rtp_time = now

    def on_sender_info(self, info: SenderInfo, previous: SenderInfo | None) -> None:
        """Account for what the sender sent since ``previous`` (None: since the start)."""
        packets = info.packets - (previous.packets if previous else 0)
        if packets > 0:
            octets = info.octets - (previous.octets if previous else 0)
            self.on_rtp_sent(info.rtp_timestamp, octets, info.sent_ns / 1e9, packets)

    def due(self, now: float) -> bool:
        return self._last_report is None or now - self._last_report >= self.interval

    def since_report(self, now: float) -> float:
        """Seconds since our last report (infinity before the first)."""
        return float("inf") if self._last_report is None else now - self._last_report

    def build_report(self, now: float, reception: ReceptionStats | None = None) -> bytes:
        """An SR (when we sent RTP in the last two intervals) or an RR, then SDES CNAME."""
        blocks: tuple[ReportBlock, ...] = ()
        if reception is not None and reception.received:
            lsr = dlsr = 0
            if self._peer_lsr and reception.ssrc == self._peer_ssrc:
                lsr = self._peer_lsr
                dlsr = int(max(now - self._peer_sr_arrival, 0.0) * 65536) & 0xFFFFFFFF
            blocks = (reception.report_block(lsr, dlsr),)
        report: SenderReport | ReceiverReport
        sending = self._last_rtp_time is not None and now - self._last_rtp_time < 2 * self.interval
        if sending and self._last_rtp_time is not None:
            elapsed_ts = int((now - self._last_rtp_time) * self.clock_rate)
            report = SenderReport(
                self.ssrc,
                self._ntp_now(now),
                (self._last_rtp_ts + elapsed_ts) & 0xFFFFFFFF,
                self._packets_sent,
                self._octets_sent,
                blocks,
            )
        else:
            report = ReceiverReport(self.ssrc, blocks)
        sdes = SourceDescription((SdesChunk(self.ssrc, ((SDES_CNAME, self.cname),)),))
        self._last_report = now
        self._reports_sent += 1
        return serialize_rtcp([report, sdes])

    def build_keyframe_request(
        self, media_ssrc: int, now: float, min_interval: float = KEYFRAME_REQUEST_INTERVAL
    ) -> bytes | None:
        """An RR with a PLI (RFC 4585) and a FIR (RFC 5104) about ``media_ssrc``, or None when
        one was built less than ``min_interval`` seconds ago (the rate limit; never less than
        KEYFRAME_REQUEST_INTERVAL, and only that since ``keyframe_answered``)."""
        last = self._last_keyframe_request
        interval = KEYFRAME_REQUEST_INTERVAL
        if not self._keyframe_answered:
            interval = max(min_interval, KEYFRAME_REQUEST_INTERVAL)
        if last is not None and now - last < interval:
            return None
        self._last_keyframe_request = now
        self._keyframe_answered = False
        self._fir_seq = (self._fir_seq + 1) & 0xFF
        self._plis_sent += 1
        return serialize_rtcp(
            [
                ReceiverReport(self.ssrc),
                PictureLossIndication(self.ssrc, media_ssrc),
                FullIntraRequest(self.ssrc, ((media_ssrc, self._fir_seq),)),
            ]
        )

    def keyframe_answered(self) -> None:
        """A keyframe arrived: the next ``build_keyframe_request`` waits only the 200 ms floor
        since the last request, not the caller's longer interval (a new break is a new request,
        not a repeat; the floor still keeps a congested path from a storm of keyframes)."""
        self._keyframe_answered = True

    def keyframe_requested(self, packets: Sequence[RtcpPacket]) -> bool:
        """Whether ``packets`` (from ``receive``) ask us for a keyframe: a PLI or FIR about our
        SSRC from the expected peer (when one is expected). Counts them."""
        asked = False
        for p in packets:
            if isinstance(p, PictureLossIndication | FullIntraRequest):
                if self.expected_peer is not None and p.sender_ssrc != self.expected_peer:
                    continue
                if isinstance(p, PictureLossIndication):
                    ours = p.media_ssrc == self.ssrc
                else:
                    ours = any(ssrc == self.ssrc for ssrc, _ in p.entries)
                if ours:
                    asked = True
        if asked:
            self._plis_received += 1
        return asked

    def _from_peer(self, sender_ssrc: int) -> bool:
        return self.expected_peer is None or sender_ssrc == self.expected_peer

    def nacked(self, packets: Sequence[RtcpPacket]) -> list[int]:
        """The sequence numbers of our stream the peer asks us to resend (RFC 4585 6.2.1).
        A NACK from another sender or about another SSRC is counted and ignored."""
        out: list[int] = []
        for p in packets:
            if isinstance(p, GenericNack):
                if not self._from_peer(p.sender_ssrc) or p.media_ssrc != self.ssrc:
                    self._fb["feedback_ignored"] += 1
                    continue
                lost = p.lost()
                self._fb["nacks_received"] += 1
                self._fb["nacked_packets"] += len(lost)
                out.extend(lost)
        return out

    def remb(self, packets: Sequence[RtcpPacket]) -> int | None:
        """The last bitrate the peer estimates for our stream (REMB), or None. A REMB from
        another sender or not naming our SSRC is counted and ignored."""
        value: int | None = None
        for p in packets:
            if isinstance(p, Remb):
                if not self._from_peer(p.sender_ssrc) or self.ssrc not in p.ssrcs:
                    self._fb["feedback_ignored"] += 1
                    continue
                self._fb["rembs_received"] += 1
                value = p.bitrate_bps
        return value

    def build_feedback(
        self, media_ssrc: int, *, nack: Sequence[int] = (), remb: int | None = None
    ) -> bytes:
        """An RR followed by a generic NACK for ``nack`` and/or a REMB of ``remb`` bit/s about
        ``media_ssrc`` (the RFC 4585 compound rule: feedback follows a report)."""
        packets: list[RtcpPacket] = [ReceiverReport(self.ssrc)]
        if nack:
            packets.append(GenericNack.of(self.ssrc, media_ssrc, nack))
            self._fb["nacks_sent"] += 1
        if remb is not None:
            packets.append(Remb(self.ssrc, max(remb, 0), (media_ssrc,)))
        return serialize_rtcp(packets)

    def build_bye(self, reason: str = "") -> bytes:
        return serialize_rtcp([ReceiverReport(self.ssrc), Bye((self.ssrc,), reason)])

    def receive(self, datagram: bytes | bytearray | memoryview, now: float) -> list[RtcpPacket]:
        """Take in a compound packet from the peer. Garbage is counted and dropped."""
        try:
            packets = parse_rtcp(datagram)
        except RtcpError as exc:
            self._malformed += 1
            logger.debug("dropped malformed RTCP: %s", exc)
            return []
        for p in packets:
            if isinstance(p, SenderReport | ReceiverReport):
                self._reports_received += 1
                if p.ssrc == self.ssrc:
                    continue  # our own report looped back
                if self.expected_peer is not None and p.ssrc != self.expected_peer:
                    self._wrong_source += 1  # the per-call SSRC is the token: not our peer
                    continue
                if isinstance(p, SenderReport):
                    self._peer_ssrc = p.ssrc
                    self._peer_lsr = (p.ntp_timestamp >> 16) & 0xFFFFFFFF
                    self._peer_sr_arrival = now
                for block in p.reports:
                    if block.ssrc == self.ssrc:
                        self._on_block(block, now)
        return packets

    def _on_block(self, block: ReportBlock, now: float) -> None:
        self._remote = block
        if block.lsr:
            a = (self._ntp_now(now) >> 16) & 0xFFFFFFFF
            rtt = ((a - block.lsr - block.dlsr) & 0xFFFFFFFF) / 65536
            # A "negative" RTT (clock step, forged report) wraps to a huge value: ignore it.
            if rtt < 60.0:
                self._rtt = rtt

    @property
    def rtt_s(self) -> float | None:
        """The newest round-trip time (RFC 3550 6.4.1, from LSR/DLSR), seconds; None before one."""
        return self._rtt

    @property
    def stats(self) -> RtcpStats:
        r = self._remote
        return RtcpStats(
            rtt_s=self._rtt,
            remote_fraction_lost=None if r is None else r.fraction_lost / 256,
            remote_cumulative_lost=None if r is None else r.cumulative_lost,
            remote_jitter_s=None if r is None else r.jitter / self.clock_rate,
            reports_sent=self._reports_sent,
            reports_received=self._reports_received,
            malformed=self._malformed,
            peer_ssrc=self._peer_ssrc,
            wrong_source=self._wrong_source,
            plis_sent=self._plis_sent,
            plis_received=self._plis_received,
            **self._fb,
        )


__all__ = [
    "Bye",
    "FullIntraRequest",
    "GenericNack",
    "PictureLossIndication",
    "ReceiverReport",
    "ReceptionStats",
    "Remb",
    "ReportBlock",
    "RtcpError",
    "RtcpPacket",
    "RtcpSession",
    "RtcpStats",
    "SdesChunk",
    "SenderReport",
    "SourceDescription",
    "UnknownRtcp",
    "parse_rtcp",
    "serialize_rtcp",
]
