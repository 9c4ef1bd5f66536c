"""JPEG marker-level parsing and building, for RFC 2435 (RTP/JPEG) and for size checks.

No pixel is ever decoded here. API::

    class JpegError(CodecError)             # malformed JPEG bytes (garbage): RemoteProtocolError
    class JpegTooLargeError(JpegError)           # .width, .height: declared size over the limit
    class UnsupportedJpegError(JpegError)        # well-formed, but not what RFC 2435 can carry
    def frame_header(jpeg) -> tuple[int, bytes]           # (SOFn marker, SOF segment body)
    def declared_size(jpeg) -> tuple[int, int]            # (width, height) from the SOF header
    def check_size(jpeg, max_width=4096, max_height=4096) -> tuple[int, int]   # JpegTooLargeError
    @dataclass(frozen=True, slots=True)
    class JpegParts:
        width: int; height: int
        rfc_type: int               # 0 = 4:2:2 (luma 2x1), 1 = 4:2:0 (luma 2x2)
        quant_tables: tuple[bytes, ...]   # 64-byte tables in zigzag order: (luma, chroma)
        restart_interval: int       # 0 = no DRI
        scan: memoryview            # entropy-coded data between SOS and EOI (RSTn included),
                                    # a view of the input JPEG: splitting copies no scan data
    def split_jpeg(jpeg) -> JpegParts      # baseline, 8-bit, 3 components, standard Huffman
    def build_jpeg(width, height, rfc_type, quant_tables, scan, *, restart_interval=0) -> bytes
    def jpeg_prefix(width, height, rfc_type, quant_tables, *, restart_interval=0) -> bytes
    def ijg_quant_tables(q: int) -> tuple[bytes, bytes]  # RFC 2435 / IJG scaling, Q 1..99
    STANDARD_DHT: bytes             # the four Annex K tables as one DHT segment

Guarantees: every function raises nothing but JpegError (or a subclass) on any input bytes.
``declared_size`` walks only the marker segments before the frame header (at most
_MAX_SEGMENTS of them), so a 30000x30000 "bomb" is rejected in microseconds without
allocating anything. Rebuilding a split JPEG with ``build_jpeg`` keeps the scan data byte for byte.
"""

from __future__ import annotations

import functools
import logging
import struct
from dataclasses import dataclass

from pipeline.codecs.base import CodecError

logger = logging.getLogger(__name__)

DEFAULT_MAX_DIM = 4096
# Real JPEGs carry a dozen segments before the frame header; more is an attack or garbage.
_MAX_SEGMENTS = 256

SOI = b"\xff\xd8"
EOI = b"\xff\xd9"
_SOF0, _SOF1, _SOF2 = 0xC0, 0xC1, 0xC2
_DHT, _DAC, _DQT, _DRI, _SOS, _EOI_M = 0xC4, 0xCC, 0xDB, 0xDD, 0xDA, 0xD9
# SOFn markers: C0..CF except DHT (C4), JPG (C8) and DAC (CC).
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field.
_STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01}


class JpegError(CodecError):
    """Bytes that are not a well-formed JPEG, cannot be decoded, or declare a size above the
    limit: the one JPEG error of the project (a peer's data: a RemoteProtocolError)."""


class JpegTooLargeError(JpegError):
    """A JPEG whose declared dimensions exceed the caller's limit."""

    def __init__(self, width: int, height: int, max_width: int, max_height: int) -> None:
        super().__init__(f"JPEG declares {width}x{height}, limit {max_width}x{max_height}")
        self.width = width
        self.height = height


class UnsupportedJpegError(JpegError):
    """A well-formed JPEG that RFC 2435 cannot carry (progressive, odd sampling, ...)."""


# --- Annex K tables -------------------------------------------------------------------------

# Natural (row-major) index of the coefficient at each zigzag position.
ZIGZAG: tuple[int, ...] = tuple(
    i * 8 + j if s % 2 else j * 8 + i
    for s in range(15)
    for i, j in ((k, s - k) for k in range(max(0, s - 7), min(s, 7) + 1))
)

_LUMA_Q = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip
_CHROMA_Q = (
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
) + (99,) * 32  # fmt: skip

_DC_LUMA_BITS = bytes((0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0))
_DC_CHROMA_BITS = bytes((0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0))
_DC_VALS = bytes(range(12))
_AC_LUMA_BITS = bytes((0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D))
_AC_LUMA_VALS = bytes.fromhex(
    "01020300041105122131410613516107227114328191a1082342b1c11552d1f0"
    "2433627282090a161718191a25262728292a3435363738393a434445464748494a"
    "535455565758595a636465666768696a737475767778797a838485868788898a"
    "92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6"
    "c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9fa"
)
_AC_CHROMA_BITS = bytes((0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77))
_AC_CHROMA_VALS = bytes.fromhex(
    "0001020311040521 3106124151076171 1322328108144291 a1b1c109233352f0"
    "156272d10a162434 e125f11718191a26 2728292a35363738 393a434445464748"
    "494a535455565758 595a636465666768 696a737475767778 797a828384858687"
    "88898a9293949596 9798999aa2a3a4a5 a6a7a8a9aab2b3b4 b5b6b7b8b9bac2c3"
    "c4c5c6c7c8c9cad2 d3d4d5d6d7d8d9da e2e3e4e5e6e7e8e9 eaf2f3f4f5f6f7f8"
    "f9fa"
)

# (table class, table id) -> (code counts, symbols); class 0 = DC, 1 = AC.
STANDARD_HUFFMAN: dict[tuple[int, int], tuple[bytes, bytes]] = {
    (0, 0): (_DC_LUMA_BITS, _DC_VALS),
    (1, 0): (_AC_LUMA_BITS, _AC_LUMA_VALS),
    (0, 1): (_DC_CHROMA_BITS, _DC_VALS),
    (1, 1): (_AC_CHROMA_BITS, _AC_CHROMA_VALS),
}


def _segment(marker: int, body: bytes) -> bytes:
    return struct.pack("!BBH", 0xFF, marker, len(body) + 2) + body


STANDARD_DHT: bytes = _segment(
    _DHT,
    b"".join(
        bytes(((tc << 4) | th,)) + bits + vals
        for (tc, th), (bits, vals) in sorted(STANDARD_HUFFMAN.items(), key=lambda kv: kv[0][::-1])
    ),
)

_JFIF_APP0 = _segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")


@functools.lru_cache(maxsize=128)
def ijg_quant_tables(q: int) -> tuple[bytes, bytes]:
    """The (luma, chroma) tables for RFC 2435 Q 1..99, zigzag order (the IJG quality scale).

    Values outside 1..99 are clamped, as RFC 2435's MakeTables does.
    """
    factor = min(max(q, 1), 99)
    scale = 5000 // factor if factor < 50 else 200 - factor * 2

    def scaled(base: tuple[int, ...]) -> bytes:
        return bytes(min(max((base[z] * scale + 50) // 100, 1), 255) for z in ZIGZAG)

    return scaled(_LUMA_Q), scaled(_CHROMA_Q)


# --- parsing --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JpegParts:
    """What RFC 2435 carries of a baseline JPEG."""

    width: int
    height: int
    rfc_type: int
    quant_tables: tuple[bytes, ...]
    restart_interval: int
    scan: memoryview  # a view of the split JPEG, not a copy (the packetizer's hot path)


class _Walker:
    """Walks marker segments from SOI; bounded by _MAX_SEGMENTS."""

    __slots__ = ("count", "data", "pos")

    def __init__(self, data: bytes) -> None:
        if data[:2] != SOI:
            raise JpegError("not a JPEG: no SOI marker")
        self.data = data
        self.pos = 2
        self.count = 0

    def next(self) -> tuple[int, int, int]:
        """The next (marker, body start, body end); raises JpegError at the end or on junk."""
        data, pos, size = self.data, self.pos, len(self.data)
        while True:
            self.count += 1
            if self.count > _MAX_SEGMENTS:
                raise JpegError("too many JPEG segments before the scan")
            if pos + 1 >= size:
                raise JpegError("JPEG truncated before the scan")
            if data[pos] != 0xFF:
                raise JpegError(f"expected a JPEG marker at offset {pos}")
            # Any number of 0xFF fill bytes may precede a marker.
            while pos + 1 < size and data[pos + 1] == 0xFF:
                pos += 1
            if pos + 1 >= size:
                raise JpegError("JPEG truncated in fill bytes")
            marker = data[pos + 1]
            pos += 2
            if marker in _STANDALONE:
                continue
            if marker in (0xD8, _EOI_M, 0x00):
                raise JpegError(f"unexpected marker 0x{marker:02X} before the scan")
            if pos + 2 > size:
                raise JpegError("JPEG segment length truncated")
            length = (data[pos] << 8) | data[pos + 1]
            if length < 2 or pos + length > size:
                raise JpegError(f"bad JPEG segment length {length}")
            self.pos = pos + length
            return marker, pos + 2, pos + length


def _as_bytes(jpeg: bytes | bytearray | memoryview) -> bytes:
    return jpeg if isinstance(jpeg, bytes) else bytes(jpeg)


def _sof_size(data: bytes, start: int, end: int) -> tuple[int, int]:
    if end - start < 6:
        raise JpegError("frame header too short")
    height = (data[start + 1] << 8) | data[start + 2]
    width = (data[start + 3] << 8) | data[start + 4]
    if width == 0 or height == 0:
        raise JpegError(f"JPEG declares {width}x{height}")
    return width, height


def frame_header(jpeg: bytes | bytearray | memoryview) -> tuple[int, bytes]:
    """(SOFn marker, frame header body) of the first frame header, without decoding anything."""
    data = _as_bytes(jpeg)
    walker = _Walker(data)
    while True:
        marker, start, end = walker.next()
        if marker in _SOF_MARKERS:
            return marker, data[start:end]
        if marker == _SOS:
            raise JpegError("scan before frame header")


def declared_size(jpeg: bytes | bytearray | memoryview) -> tuple[int, int]:
    """(width, height) from the frame (SOFn) header, without decoding anything."""
    _, body = frame_header(jpeg)
    return _sof_size(body, 0, len(body))


def check_size(
    jpeg: bytes | bytearray | memoryview,
    max_width: int = DEFAULT_MAX_DIM,
    max_height: int = DEFAULT_MAX_DIM,
) -> tuple[int, int]:
    """declared_size(), raising JpegTooLargeError when it exceeds max_width x max_height."""
    width, height = declared_size(jpeg)
    if width > max_width or height > max_height:
        raise JpegTooLargeError(width, height, max_width, max_height)
    return width, height


def _parse_dqt(data: bytes, start: int, end: int, tables: dict[int, bytes]) -> None:
    pos = start
    while pos < end:
        pq_tq = data[pos]
        if pq_tq >> 4:
            raise UnsupportedJpegError("16-bit quantisation tables")
        if pos + 65 > end:
            raise JpegError("DQT segment truncated")
        tables[pq_tq & 0x0F] = data[pos + 1 : pos + 65]
        pos += 65


def _check_dht(data: bytes, start: int, end: int) -> None:
    pos = start
    while pos < end:
        if pos + 17 > end:
            raise JpegError("DHT segment truncated")
        tc, th = data[pos] >> 4, data[pos] & 0x0F
        bits = data[pos + 1 : pos + 17]
        count = sum(bits)
        vals = data[pos + 17 : pos + 17 + count]
        if len(vals) != count:
            raise JpegError("DHT segment truncated")
        if STANDARD_HUFFMAN.get((tc, th)) != (bits, vals):
            raise UnsupportedJpegError(
                f"non-standard Huffman table (class {tc}, id {th}); RFC 2435 needs Annex K tables"
            )
        pos += 17 + count


def split_jpeg(jpeg: bytes | bytearray | memoryview) -> JpegParts:
    """Split a baseline JPEG into what RFC 2435 sends. JpegError / UnsupportedJpegError otherwise.

    A JPEG with no DHT segment (the Motion-JPEG convention) is taken to use the standard tables.
    """
    data = _as_bytes(jpeg)
    walker = _Walker(data)
    qtables: dict[int, bytes] = {}
    restart = 0
    components: list[tuple[int, int, int]] = []  # (id, h<<4|v, tq)
    width = height = 0
    while True:
        marker, start, end = walker.next()
        if marker in _SOF_MARKERS:
            if marker != _SOF0:
                kind = "progressive" if marker == _SOF2 else f"SOF 0x{marker:02X}"
                raise UnsupportedJpegError(f"{kind} JPEG; RFC 2435 carries baseline only")
            width, height = _sof_size(data, start, end)
            if data[start] != 8:
                raise UnsupportedJpegError(f"{data[start]}-bit samples")
            nf = data[start + 5]
            if end - start != 6 + 3 * nf:
                raise JpegError("frame header length does not match its components")
            components = [(data[p], data[p + 1], data[p + 2]) for p in range(start + 6, end, 3)]
        elif marker == _DQT:
            _parse_dqt(data, start, end, qtables)
        elif marker == _DHT:
            _check_dht(data, start, end)
        elif marker == _DAC:
            raise UnsupportedJpegError("arithmetic coding")
        elif marker == _DRI:
            if end - start != 2:
                raise JpegError("bad DRI segment")
            restart = (data[start] << 8) | data[start + 1]
        elif marker == _SOS:
            break
    if not components:
        raise JpegError("scan before frame header")
    rfc_type = _check_components(components)
    # Scan header: Ns, Ns x (Cs, Td<<4|Ta), Ss, Se, Ah<<4|Al.
    ns = data[start]
    if end - start != 4 + 2 * ns:
        raise JpegError("scan header length does not match its components")
    if ns != 3 or [data[start + 1 + 2 * i] for i in range(3)] != [c[0] for c in components]:
        raise UnsupportedJpegError("RFC 2435 needs one interleaved scan of the three components")
    if [data[start + 2 + 2 * i] for i in range(3)] != [0x00, 0x11, 0x11]:
        raise UnsupportedJpegError("scan must use Huffman tables 0 (luma) and 1 (chroma)")
    if data[end - 3 : end] != b"\x00\x3f\x00":
        raise UnsupportedJpegError("not a sequential (baseline) scan")
    eoi = data.find(EOI, end)
    if eoi < 0:
        raise JpegError("JPEG has no EOI marker (truncated?)")
    # 0xFF fill bytes may precede EOI; the entropy-coded data never ends in a bare 0xFF.
    while eoi > end and data[eoi - 1] == 0xFF:
        eoi -= 1
    scan = memoryview(data)[end:eoi]
    luma_q, chroma_q = components[0][2], components[1][2]
    if components[2][2] != chroma_q:
        raise UnsupportedJpegError("Cb and Cr use different quantisation tables")
    try:
        tables = (qtables[luma_q], qtables[chroma_q])
    except KeyError as exc:
        raise JpegError(f"quantisation table {exc} is not defined") from None
    return JpegParts(width, height, rfc_type, tables, restart, scan)


def _check_components(components: list[tuple[int, int, int]]) -> int:
    if len(components) != 3:
        raise UnsupportedJpegError(f"{len(components)} components; RFC 2435 carries YCbCr")
    luma, cb, cr = (c[1] for c in components)
    if cb != 0x11 or cr != 0x11:
        raise UnsupportedJpegError("chroma must not be subsampled differently from 1x1")
    if luma == 0x22:
        return 1
    if luma == 0x21:
        return 0
    raise UnsupportedJpegError(f"luma sampling {luma >> 4}x{luma & 15}: only 4:2:0 and 4:2:2")


# --- building -------------------------------------------------------------------------------


def build_jpeg(
    width: int,
    height: int,
    rfc_type: int,
    quant_tables: tuple[bytes, ...],
    scan: bytes | bytearray | memoryview,
    *,
    restart_interval: int = 0,
) -> bytes:
    """A complete JPEG from RFC 2435 parameters (as RFC 2435 appendix B, ffmpeg, GStreamer).

    ``rfc_type`` 0 or 1 (the restart bit 64 is ignored); one table (used by all components),
    two (luma, chroma) or three (Y, Cb, Cr). ValueError on out-of-range arguments: this is a
    local misuse.
    """
    prefix = jpeg_prefix(width, height, rfc_type, quant_tables, restart_interval=restart_interval)
    return b"".join((prefix, scan, EOI))


def jpeg_prefix(
    width: int,
    height: int,
    rfc_type: int,
    quant_tables: tuple[bytes, ...],
    *,
    restart_interval: int = 0,
) -> bytes:
    """Everything build_jpeg() puts before the scan data (the scan and EOI follow it).

    For callers that hold the scan as fragments: ``b"".join((prefix, *fragments, EOI))``
    copies the scan once.
    """
    if not (0 < width < 65536 and 0 < height < 65536):
        raise ValueError(f"bad JPEG size {width}x{height}")
    if not 0 <= restart_interval < 65536:
        raise ValueError(f"bad restart interval {restart_interval}")
    if len(quant_tables) not in (1, 2, 3) or any(len(t) != 64 for t in quant_tables):
        raise ValueError("need one to three 64-byte quantisation tables")
    base_type = rfc_type & 0x3F
    if base_type not in (0, 1):
        raise ValueError(f"RTP/JPEG type {rfc_type} has no defined sampling")
    dqt = _segment(_DQT, b"".join(bytes((i,)) + t for i, t in enumerate(quant_tables)))
    # One table: all components use it; two: Cb and Cr share the second; three: one each.
    cb_tq = min(1, len(quant_tables) - 1)
    cr_tq = min(2, len(quant_tables) - 1)
    luma_hv = 0x22 if base_type == 1 else 0x21
    sof = _segment(
        _SOF0,
        struct.pack("!BHHB", 8, height, width, 3)
        + bytes((1, luma_hv, 0, 2, 0x11, cb_tq, 3, 0x11, cr_tq)),
    )
    parts = [SOI, _JFIF_APP0, dqt]
    if restart_interval:
        parts.append(_segment(_DRI, struct.pack("!H", restart_interval)))
    parts += [sof, STANDARD_DHT, _SOS_SEGMENT]
    return b"".join(parts)


_SOS_SEGMENT = _segment(_SOS, bytes((3, 1, 0x00, 2, 0x11, 3, 0x11, 0, 63, 0)))
