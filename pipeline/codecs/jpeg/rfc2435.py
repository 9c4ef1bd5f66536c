"""RTP payload format for JPEG (RFC 2435): packetizer and reassembler. Pure: no I/O, no clock.

API::

    class PacketizeError(ValueError)     # local misuse: a JPEG RFC 2435 cannot carry
    class RtpJpegPacketizer:
        def __init__(self, ssrc: int, payload_type: int = 26, max_payload: int = 1200,
                     q: int = 255, initial_seq: int | None = None) -> None
        def packetize(self, jpeg: bytes, timestamp90k: int) -> list[bytes]   # RTP datagrams
        next_seq: int; packets_sent: int; payload_octets_sent: int   # for RTCP SRs

    @dataclass(frozen=True, slots=True)
    class JpegFrame:
        jpeg: bytes; rtp_ts: int; width: int; height: int
        first_arrival: float; last_arrival: float; packets: int; ssrc: int; q: int
    class RtpJpegReassembler:
        def __init__(self, expected_ssrc: int | None = None, *, max_dim: int = 2040,
                     payload_type: int | None = 26, timeout: float = 0.5,
                     max_frame_bytes: int = 4 << 20, max_partial: int = 4) -> None
        def push(self, datagram: bytes, now: float) -> list[JpegFrame]       # never raises
        def push_packet(self, packet: RtpPacket, now: float) -> list[JpegFrame]
        def expire(self, now: float) -> int          # drop partial frames idle > timeout
        stats -> ReassemblerStats; reception -> ReceptionStats | None (for RTCP RRs)

Packetizer: payloads of at most ``max_payload`` bytes; type 1 (4:2:0) or 0 (4:2:2), +64 with a
restart marker header when the JPEG has a DRI (F=L=1, count 0x3FFF: fragments need not align
with restart intervals); Q 128-255 puts both quantisation tables (128 bytes) in the first packet
of every frame; Q 1-99 is allowed only when the JPEG's tables are exactly the RFC 2435 ones
for that Q (libjpeg-turbo / OpenCV at quality Q produce them). Marker bit on the last
fragment, one timestamp for all fragments, sequence numbers +1 per packet.

Reassembler: accepts only ``expected_ssrc`` (or, when None, locks onto the first source and
follows a new one only after the current one has been silent for ``timeout``); reorders
fragments within a frame, ignores duplicates, drops a partial frame when a newer frame
completes, after ``timeout`` without packets (checked by ``expire``, which push calls when a
new frame opens and the receive loop calls periodically), or when more than ``max_partial``
are open;
drops packets of frames older than the last completed one. Q 1-99 uses the standard tables,
Q 128-254 tables are cached per Q, Q 255 needs in-band tables. Types 0/1/64/65 only, at most
``max_dim`` pixels per side. A partial frame holds at most ``max_frame_bytes`` of fragments
(overlaps counted in full) in at most ``max_frame_bytes // 256 + 16`` fragments, so memory is
bounded whatever a sender does. Everything dropped is counted in ``stats``.
"""

from __future__ import annotations

import logging
import secrets
import struct
from dataclasses import dataclass

from pipeline.codecs.jpeg.markers import (
    EOI,
    JpegError,
    JpegParts,
    ijg_quant_tables,
    jpeg_prefix,
    split_jpeg,
)
from pipeline.wire.rtcp import ReceptionStats
from pipeline.wire.rtp import RTP_HEADER_SIZE, RtpError, RtpPacket, rtp_header, ts_diff

logger = logging.getLogger(__name__)

PT_JPEG = 26
CLOCK_RATE = 90000
MAX_DIM = 2040  # width/8 and height/8 are one byte each
_FAST_HEADER = struct.Struct("!BHII")  # RTP header after its first byte
_OFFSET = struct.Struct("!I")
_MAIN_HDR = 8
_RESTART_HDR = 4
_QT_HDR = 4
# A timestamp this far behind the last completed frame is a new stream, not a late packet.
_RESET_TICKS = 10 * CLOCK_RATE


class PacketizeError(ValueError):
    """A local JPEG that RFC 2435 cannot carry (a misuse, never garbage from a peer)."""


class RtpJpegPacketizer:
    """Splits baseline JPEGs into RFC 2435 RTP datagrams."""

    def __init__(
        self,
        ssrc: int,
        payload_type: int = PT_JPEG,
        max_payload: int = 1200,
        q: int = 255,
        initial_seq: int | None = None,
    ) -> None:
        if not (1 <= q <= 99 or 128 <= q <= 255):
            raise ValueError(f"RTP/JPEG Q must be 1-99 or 128-255, not {q}")
        if max_payload < _MAIN_HDR + _RESTART_HDR + _QT_HDR + 128 + 1:
            raise ValueError(f"max_payload {max_payload} too small")
        if not 0 <= payload_type < 128 or not 0 <= ssrc < 1 << 32:
            raise ValueError("payload type or SSRC out of range")
        if initial_seq is not None and not 0 <= initial_seq < 1 << 16:
            raise ValueError(f"initial sequence number {initial_seq} out of range")
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.max_payload = max_payload
        self.q = q
        self.next_seq = secrets.randbelow(1 << 16) if initial_seq is None else initial_seq
        self.packets_sent = 0
        self.payload_octets_sent = 0

    def packetize(self, jpeg: bytes | bytearray | memoryview, timestamp90k: int) -> list[bytes]:
        """The RTP datagrams carrying one frame. PacketizeError if RFC 2435 cannot carry it."""
        try:
            parts = split_jpeg(jpeg)
        except JpegError as exc:
            raise PacketizeError(str(exc)) from exc
        return self.packetize_parts(parts, timestamp90k)

    def packetize_parts(self, parts: JpegParts, timestamp90k: int) -> list[bytes]:
        """As packetize(), from an already split JPEG."""
        w, h = parts.width, parts.height
        if w % 8 or h % 8 or w > MAX_DIM or h > MAX_DIM:
            raise PacketizeError(f"{w}x{h}: RFC 2435 needs multiples of 8, at most {MAX_DIM}")
        if self.q < 128 and parts.quant_tables != ijg_quant_tables(self.q):
            raise PacketizeError(f"JPEG tables are not the RFC 2435 tables for Q={self.q}")
        rtype = parts.rfc_type | (64 if parts.restart_interval else 0)
        restart_hdr = (
            struct.pack("!HH", parts.restart_interval, 0xFFFF) if parts.restart_interval else b""
        )
        qt_hdr = b""
        if self.q >= 128:
            tables = b"".join(parts.quant_tables)
            qt_hdr = struct.pack("!BBH", 0, 0, len(tables)) + tables
        scan = parts.scan
        total = len(scan)
        if total >= 1 << 24:
            raise PacketizeError("scan data over 16 MiB cannot be addressed by RFC 2435")
        tail = bytes((rtype, self.q, w // 8, h // 8))
        ts = timestamp90k & 0xFFFFFFFF
        pt, ssrc = self.payload_type, self.ssrc
        out: list[bytes] = []
        offset = 0
        seq = self.next_seq
        extra = restart_hdr + qt_hdr  # the first packet's; the others carry restart_hdr only
        while True:
            room = self.max_payload - _MAIN_HDR - len(extra)
            chunk = scan[offset : offset + room]
            last = offset + len(chunk) >= total
            # One join per packet: the RTP header, the main header (type-specific byte 0, then
            # the 24-bit offset), the extra headers and a view of the scan: one copy of the data.
            header = rtp_header(pt, seq, ts, ssrc, last)
            out.append(b"".join((header, _OFFSET.pack(offset), tail, extra, chunk)))
            seq = (seq + 1) & 0xFFFF
            offset += len(chunk)
            if last:
                break
            extra = restart_hdr
        self.next_seq = seq
        self.packets_sent += len(out)
        self.payload_octets_sent += sum(map(len, out)) - RTP_HEADER_SIZE * len(out)
        return out


# --- reassembly -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JpegFrame:
    """One complete frame, rebuilt as a JPEG file."""

    jpeg: bytes
    rtp_ts: int
    width: int
    height: int
    first_arrival: float
    last_arrival: float
    packets: int
    ssrc: int
    q: int


@dataclass(frozen=True, slots=True)
class ReassemblerStats:
    packets: int = 0  # accepted into reassembly
    frames: int = 0  # complete frames returned
    malformed: int = 0  # not RTP, or a bad RTP/JPEG header
    wrong_source: int = 0  # other SSRC or payload type
    duplicates: int = 0
    late: int = 0  # packets of frames already completed or dropped
    incomplete: int = 0  # partial frames dropped (superseded, timed out, evicted)
    unsupported: int = 0  # frames with a type/Q/size we do not handle, or missing tables
    lost_packets: int = 0  # RFC 3550 cumulative loss of the current source
    source_changes: int = 0


class _Partial:
    """Fragments of one frame (one RTP timestamp)."""

    __slots__ = (
        "first_arrival",
        "fragments",
        "header",
        "last_arrival",
        "nbytes",
        "packets",
        "restart",
        "tables",
        "total",
    )

    def __init__(self, now: float) -> None:
        self.fragments: dict[int, memoryview] = {}  # views of the datagrams
        self.nbytes = 0
        self.total: int | None = None  # known once the marker packet arrived
        self.header: tuple[int, int, int, int] | None = None  # type, q, w, h of offset 0
        self.tables: tuple[bytes, ...] | None = None
        self.restart = 0
        self.first_arrival = now
        self.last_arrival = now
        self.packets = 0


class _BadFrameError(Exception):
    """This frame cannot be rebuilt (unsupported type, Q, size or missing tables)."""


class RtpJpegReassembler:
    """Rebuilds JPEG frames from RFC 2435 packets of one source."""

    def __init__(
        self,
        expected_ssrc: int | None = None,
        *,
        max_dim: int = MAX_DIM,
        payload_type: int | None = PT_JPEG,
        timeout: float = 0.5,
        max_frame_bytes: int = 4 << 20,
        max_partial: int = 4,
    ) -> None:
        self.expected_ssrc = expected_ssrc
        self.max_dim = max_dim
        self.payload_type = payload_type
        self.timeout = timeout
        self.max_frame_bytes = max_frame_bytes
        self.max_partial = max_partial
        # Real senders fill packets (ffmpeg, GStreamer and vcall send ~1 KB or more each).
        self._max_fragments = max_frame_bytes // 256 + 16
        self._ssrc: int | None = expected_ssrc
        self._last_packet_time: float | None = None
        self._partials: dict[int, _Partial] = {}
        self._last_done: int | None = None  # RTP ts of the last completed (or dropped) frame
        self._table_cache: dict[int, tuple[bytes, ...]] = {}
        self._reception: ReceptionStats | None = None
        self._c = dict.fromkeys(ReassemblerStats.__dataclass_fields__, 0)

    @property
    def stats(self) -> ReassemblerStats:
        counts = dict(self._c)
        counts["lost_packets"] = max(self._reception.cumulative_lost, 0) if self._reception else 0
        return ReassemblerStats(**counts)

    @property
    def reception(self) -> ReceptionStats | None:
        """RFC 3550 receive statistics of the current source (feed RtcpSession.build_report)."""
        return self._reception

    def push(self, datagram: bytes | bytearray | memoryview, now: float) -> list[JpegFrame]:
        """Take one datagram; return the frames it completed (usually none or one)."""
        data = bytes(datagram) if not isinstance(datagram, bytes) else datagram
        if len(data) > RTP_HEADER_SIZE and data[0] == 0x80:
            # The common case (version 2, no padding, extension or CSRC): no RtpPacket object,
            # and fragments stay zero-copy views of the datagram until the frame is joined.
            b1, seq, ts, ssrc = _FAST_HEADER.unpack_from(data, 1)
            payload = memoryview(data)[RTP_HEADER_SIZE:]
            return self._push(b1 & 0x7F, seq, ts, ssrc, b1 >= 0x80, payload, now)
        try:
            packet = RtpPacket.parse(data)
        except RtpError:
            self._c["malformed"] += 1
            return []
        return self.push_packet(packet, now)

    def push_packet(self, packet: RtpPacket, now: float) -> list[JpegFrame]:
        """As push(), for an already parsed packet."""
        return self._push(
            packet.payload_type,
            packet.sequence_number,
            packet.timestamp,
            packet.ssrc,
            packet.marker,
            memoryview(packet.payload),
            now,
        )

    def _push(  # noqa: PLR0917 - the hot path; a header object per packet is what it avoids
        self,
        payload_type: int,
        seq: int,
        ts: int,
        ssrc: int,
        marker: bool,
        payload: memoryview,
        now: float,
    ) -> list[JpegFrame]:
        if self.payload_type is not None and payload_type != self.payload_type:
            self._c["wrong_source"] += 1
            return []
        if not self._accept_source(ssrc, now):
            self._c["wrong_source"] += 1
            return []
        self._last_packet_time = now
        assert self._reception is not None
        self._reception.update(seq, ts, now)
        if len(payload) < _MAIN_HDR:
            self._c["malformed"] += 1
            return []
        offset = int.from_bytes(payload[1:4], "big")
        rtype, q, w8, h8 = payload[4], payload[5], payload[6], payload[7]
        pos = _MAIN_HDR
        restart = 0
        if 64 <= rtype < 128:
            if len(payload) < pos + _RESTART_HDR:
                self._c["malformed"] += 1
                return []
            restart = int.from_bytes(payload[pos : pos + 2], "big")
            pos += _RESTART_HDR
        if self._last_done is not None:
            behind = ts_diff(ts, self._last_done)
            if -_RESET_TICKS < behind <= 0:
                self._c["duplicates" if behind == 0 else "late"] += 1
                return []
        part = self._partials.get(ts)
        if part is None:
            # Stale partial frames go before a new one opens (not per packet: the hot path).
            self.expire(now)
            part = self._open(ts, now)
        tables: tuple[bytes, ...] | None = None
        if offset == 0 and q >= 128:
            if len(payload) < pos + _QT_HDR:
                self._c["malformed"] += 1
                return []
            precision = payload[pos + 1]
            length = int.from_bytes(payload[pos + 2 : pos + 4], "big")
            pos += _QT_HDR
            if length:
                body = payload[pos : pos + length]
                if len(body) != length or length % 64 or length > 192 or precision:
                    # 16-bit tables (precision bits) are legal but nobody sends them.
                    self._drop(ts, "unsupported")
                    return []
                tables = tuple(bytes(body[i : i + 64]) for i in range(0, length, 64))
                pos += length
        data = payload[pos:]
        if offset in part.fragments:
            self._c["duplicates"] += 1
            return []
        # Bounds memory per frame whatever a sender does: overlapping fragments at many offsets
        # (nbytes) or many tiny ones (the fragment count).
        if (
            offset + len(data) > self.max_frame_bytes
            or part.nbytes + len(data) > self.max_frame_bytes
            or len(part.fragments) >= self._max_fragments
        ):
            self._drop(ts, "unsupported")
            return []
        part.fragments[offset] = data
        part.nbytes += len(data)
        part.packets += 1
        part.last_arrival = now
        self._c["packets"] += 1
        if offset == 0:
            part.header = (rtype, q, w8 * 8, h8 * 8)
            part.restart = restart
            part.tables = tables
        if marker:
            part.total = offset + len(data)
        if part.total is None or part.header is None or part.nbytes < part.total:
            return []
        scan = self._scan_chunks(part)
        if scan is None:
            return []
        try:
            frame = self._build(ts, part, scan, ssrc)
        except _BadFrameError as exc:
            logger.debug("dropped RTP/JPEG frame ts=%d: %s", ts, exc)
            self._drop(ts, "unsupported")
            return []
        self._complete(ts)
        self._c["frames"] += 1
        return [frame]

    def expire(self, now: float) -> int:
        """Drop partial frames that got no packet for ``timeout`` seconds; -> how many."""
        stale = [ts for ts, p in self._partials.items() if now - p.last_arrival > self.timeout]
        for ts in stale:
            self._drop(ts, "incomplete")
        return len(stale)

    # -- internals --

    def _accept_source(self, ssrc: int, now: float) -> bool:
        if self.expected_ssrc is not None:
            if ssrc != self.expected_ssrc:
                return False
        elif ssrc != self._ssrc:
            idle = self._last_packet_time is None or now - self._last_packet_time > self.timeout
            if self._ssrc is not None and not idle:
                return False
            if self._ssrc is not None:
                self._c["source_changes"] += 1
                logger.info("RTP/JPEG source changed to SSRC %08x", ssrc)
            self._ssrc = ssrc
            self._reception = None
        if self._reception is None:
            self._partials.clear()
            self._last_done = None
            self._table_cache.clear()
            self._reception = ReceptionStats(ssrc, CLOCK_RATE)
        return True

    def _open(self, ts: int, now: float) -> _Partial:
        if len(self._partials) >= self.max_partial:
            oldest = min(self._partials, key=lambda t: ts_diff(t, ts))
            self._drop(oldest, "incomplete")
        part = _Partial(now)
        self._partials[ts] = part
        return part

    def _drop(self, ts: int, reason: str) -> None:
        if self._partials.pop(ts, None) is not None:
            self._c[reason] += 1
        self._mark_done(ts)

    def _mark_done(self, ts: int) -> None:
        if self._last_done is None or ts_diff(ts, self._last_done) > 0:
            self._last_done = ts

    def _complete(self, ts: int) -> None:
        del self._partials[ts]
        for other in [t for t in self._partials if ts_diff(t, ts) < 0]:
            self._drop(other, "incomplete")
        self._mark_done(ts)

    def _scan_chunks(self, part: _Partial) -> list[memoryview] | None:
        """Views covering the scan data [0, total) in order, or None if there is a gap.

        Views, not a joined copy: _build joins them once, straight into the JPEG.
        """
        total = part.total or 0
        expected = 0
        chunks = []
        for off in sorted(part.fragments):
            if expected >= total:
                break
            data = part.fragments[off]
            if off > expected:
                return None
            end = min(off + len(data), total)
            if end > expected:
                chunks.append(data[expected - off : end - off])  # trims overlaps and excess
                expected = end
        if expected < total:
            return None
        return chunks

    def _build(self, ts: int, part: _Partial, scan: list[memoryview], ssrc: int) -> JpegFrame:
        assert part.header is not None
        rtype, q, width, height = part.header
        if rtype & 0x3F not in (0, 1) or rtype >= 128:
            raise _BadFrameError(f"type {rtype}")
        if not (0 < width <= self.max_dim and 0 < height <= self.max_dim):
            raise _BadFrameError(f"size {width}x{height}")
        if 1 <= q <= 99:
            tables: tuple[bytes, ...] = ijg_quant_tables(q)
        elif q >= 128:
            if part.tables is not None:
                tables = part.tables
                if q < 255:
                    self._table_cache[q] = tables
            elif q < 255 and q in self._table_cache:
                tables = self._table_cache[q]
            else:
                raise _BadFrameError(f"Q={q} without quantisation tables")
        else:
            raise _BadFrameError(f"reserved Q={q}")
        restart = part.restart if rtype >= 64 else 0
        prefix = jpeg_prefix(width, height, rtype, tables, restart_interval=restart)
        jpeg = b"".join((prefix, *scan, EOI))  # the only copy of the scan data on receive
        return JpegFrame(
            jpeg=jpeg,
            rtp_ts=ts,
            width=width,
            height=height,
            first_arrival=part.first_arrival,
            last_arrival=part.last_arrival,
            packets=part.packets,
            ssrc=ssrc,
            q=q,
        )
