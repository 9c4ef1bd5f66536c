"""RTP payload format for JPEG (RFC 2435): packetizer and depacketizer. Pure: no I/O, no clock.

API::

    class Rfc2435Packetizer(Packetizer):
        def __init__(self, max_payload: int = 1200, q: int = 255) -> None
        def payloads(self, jpeg, width=0, height=0) -> list[Payload]   # EncodeError
        def payloads_of(self, parts: JpegParts) -> list[Payload]
    class Rfc2435Depacketizer(Depacketizer):
        def __init__(self, *, max_dim: int = 2040, timeout: float = 0.5,
                     max_frame_bytes: int = 4 << 20, max_partial: int = 4) -> None
        def push(self, seq, timestamp, marker, payload, now) -> list[CodecFrame]  # never raises
        def expire(self, now: float) -> int          # drop partial frames idle > timeout
        def reset(self) -> None                      # a new source
        stats -> DepacketizerStats

The RTP header is the stream layer's (``pipeline.wire.stream``: payload type, SSRC, sequence
numbers, RFC 3550 statistics); this module only knows the JPEG payload.

Packetizer: payloads of at most ``max_payload`` bytes; type 1 (4:2:0) or 0 (4:2:2), +64 with a
restart marker header when the JPEG has a DRI (F=L=1, count 0x3FFF: fragments need not align
with restart intervals); Q 128-255 puts both quantisation tables (128 bytes) in the first packet
of every frame; Q 1-99 is allowed only when the JPEG's tables are exactly the RFC 2435 ones
for that Q (libjpeg-turbo / OpenCV at quality Q produce them). The stream layer sets the marker
bit on the last payload and one timestamp for all of them (RFC 2435 3.1).

Depacketizer: reorders fragments within a frame, ignores duplicates, drops a partial frame when
a newer frame completes, after ``timeout`` without packets (checked by ``expire``, which push
calls when a new frame opens and the receive loop calls periodically), or when more than
``max_partial`` are open; drops packets of frames older than the last completed one. Q 1-99
uses the standard tables, Q 128-254 tables are cached per Q, Q 255 needs in-band tables. Types
0/1/64/65 only, at most ``max_dim`` pixels per side. A partial frame holds at most
``max_frame_bytes`` of fragments (overlaps counted in full) in at most
``max_frame_bytes // 256 + 16`` fragments, so memory is bounded whatever a sender does.
Everything dropped is counted in ``stats``.
"""

from __future__ import annotations

import logging
import struct

from pipeline.codecs.assembly import FrameAssembly
from pipeline.codecs.base import (
    CodecFrame,
    Depacketizer,
    DepacketizerStats,
    EncodeError,
    Packetizer,
    Payload,
)
from pipeline.codecs.jpeg.markers import (
    EOI,
    JpegError,
    JpegParts,
    ijg_quant_tables,
    jpeg_prefix,
    split_jpeg,
)

logger = logging.getLogger(__name__)

PT_JPEG = 26
PT_JPEG_RTX = 98  # RFC 4588 retransmissions of PT_JPEG (apt=26), between vcall peers
CLOCK_RATE = 90000
MAX_DIM = 2040  # width/8 and height/8 are one byte each
_OFFSET = struct.Struct("!I")
_MAIN_HDR = 8
_RESTART_HDR = 4
_QT_HDR = 4
# A timestamp this far behind the last completed frame is a new stream, not a late packet.


class Rfc2435Packetizer(Packetizer):
    """Splits baseline JPEGs into RFC 2435 payloads."""

    def __init__(self, max_payload: int = 1200, q: int = 255) -> None:
        if not (1 <= q <= 99 or 128 <= q <= 255):
            raise ValueError(f"RTP/JPEG Q must be 1-99 or 128-255, not {q}")
        if max_payload < _MAIN_HDR + _RESTART_HDR + _QT_HDR + 128 + 1:
            raise ValueError(f"max_payload {max_payload} too small")
        self.max_payload = max_payload
        self.q = q

    def payloads(self, frame: bytes, width: int = 0, height: int = 0) -> list[Payload]:
        """The payloads carrying one JPEG (its own SOF gives the size). EncodeError if RFC 2435
        cannot carry it."""
        try:
            parts = split_jpeg(frame)
        except JpegError as exc:
            raise EncodeError(str(exc)) from exc
        return self.payloads_of(parts)

    def payloads_of(self, parts: JpegParts) -> list[Payload]:
        """As payloads(), from an already split JPEG."""
        w, h = parts.width, parts.height
        if w % 8 or h % 8 or w > MAX_DIM or h > MAX_DIM:
            raise EncodeError(f"{w}x{h}: RFC 2435 needs multiples of 8, at most {MAX_DIM}")
        if self.q < 128 and parts.quant_tables != ijg_quant_tables(self.q):
            raise EncodeError(f"JPEG tables are not the RFC 2435 tables for Q={self.q}")
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
            raise EncodeError("scan data over 16 MiB cannot be addressed by RFC 2435")
        tail = bytes((rtype, self.q, w // 8, h // 8))
        out: list[Payload] = []
        offset = 0
        extra = restart_hdr + qt_hdr  # the first packet's; the others carry restart_hdr only
        while True:
            room = self.max_payload - _MAIN_HDR - len(extra)
            chunk = scan[offset : offset + room]
            # The main header (type-specific byte 0, then the 24-bit offset), the extra headers
            # and a view of the scan: the sender joins them after the RTP header, one copy.
            out.append((_OFFSET.pack(offset), tail, extra, chunk))
            offset += len(chunk)
            if offset >= total:
                break
            extra = restart_hdr
        return out


# --- reassembly -----------------------------------------------------------------------------


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


class Rfc2435Depacketizer(Depacketizer):
    """Rebuilds JPEG frames from the RFC 2435 payloads of one source."""

    def __init__(
        self,
        *,
        max_dim: int = MAX_DIM,
        timeout: float = 0.5,
        max_frame_bytes: int = 4 << 20,
        max_partial: int = 4,
    ) -> None:
        self.max_dim = max_dim
        self.timeout = timeout
        self.max_frame_bytes = max_frame_bytes
        self.max_partial = max_partial
        # Real senders fill packets (ffmpeg, GStreamer and vcall send ~1 KB or more each).
        self._max_fragments = max_frame_bytes // 256 + 16
        self._table_cache: dict[int, tuple[bytes, ...]] = {}
        self._c = dict.fromkeys(DepacketizerStats.__dataclass_fields__, 0)
        self._frames: FrameAssembly[_Partial] = FrameAssembly(
            self._c, timeout=timeout, max_partial=max_partial
        )

    @property
    def stats(self) -> DepacketizerStats:
        return DepacketizerStats(**self._c)

    def reset(self) -> None:
        self._frames.reset()
        self._table_cache.clear()

    def push(
        self, seq: int, timestamp: int, marker: bool, payload: memoryview, now: float
    ) -> list[CodecFrame]:
        ts = timestamp
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
        if self._frames.finished(ts):
            return []
        part = self._frames.open(ts, now, _Partial)
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
                    self._frames.drop(ts, "unsupported")
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
            self._frames.drop(ts, "unsupported")
            return []
        part.fragments[offset] = data
        part.nbytes += len(data)
        part.packets += 1
        part.last_arrival = now
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
            frame = self._build(ts, part, scan)
        except _BadFrameError as exc:
            logger.debug("dropped RTP/JPEG frame ts=%d: %s", ts, exc)
            self._frames.drop(ts, "unsupported")
            return []
        self._complete(ts)
        self._c["frames"] += 1
        return [frame]

    def expire(self, now: float) -> int:
        """Drop partial frames that got no packet for ``timeout`` seconds; -> how many."""
        return self._frames.expire(now)

    # -- internals --

    def _complete(self, ts: int) -> None:
        self._frames.complete(ts)
        for other in self._frames.older(ts):
            self._frames.drop(other, "incomplete")

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

    def _build(self, ts: int, part: _Partial, scan: list[memoryview]) -> CodecFrame:
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
        return CodecFrame(
            data=jpeg,
            timestamp=ts,
            width=width,
            height=height,
            keyframe=True,
            first_arrival=part.first_arrival,
            last_arrival=part.last_arrival,
            packets=part.packets,
        )
