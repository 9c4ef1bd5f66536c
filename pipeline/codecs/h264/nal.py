"""H.264 NAL units (ITU-T H.264 7.3, Annex B): split a byte stream, read the picture size from an
SPS before anything is decoded. Pure: no I/O.

API::

    NAL_SLICE, NAL_IDR, NAL_SEI, NAL_SPS, NAL_PPS, NAL_AUD, NAL_STAP_A, NAL_FU_A   # nal_unit_type
    START_CODE = b"\\x00\\x00\\x00\\x01"
    def split_annexb(stream: bytes) -> list[memoryview]     # NAL units without start codes
    def join_annexb(nals: Iterable[bytes | memoryview]) -> bytes
    def nal_type(nal) -> int
    def sps_size(sps_nal: bytes) -> tuple[int, int]          # H264Error on anything malformed
    class H264Error(CodecError)                             # a peer's H.264 we cannot use

``sps_size`` parses the sequence parameter set (7.3.2.1.1) far enough for the cropped picture
size: profile, the high-profile chroma/bit-depth/scaling-list fields, frame numbering, picture
order count, reference frames, the size in macroblocks, field coding and the cropping window.
It raises ``H264Error`` for truncated or absurd values (a picture over MAX_MACROBLOCKS), so a
receiver can refuse a bomb before a decoder allocates anything for it (as the JPEG SOF check
does).
"""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.codecs.base import CodecError

NAL_SLICE, NAL_IDR, NAL_SEI, NAL_SPS, NAL_PPS, NAL_AUD = 1, 5, 6, 7, 8, 9
NAL_STAP_A, NAL_FU_A = 24, 28
START_CODE = b"\x00\x00\x00\x01"
# Level 6.2 allows 139,264 macroblocks a frame (8192x4320); anything larger is refused.
MAX_MACROBLOCKS = 139_264
MAX_SPS_BYTES = 256
_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


class H264Error(CodecError):
    """H.264 data from a peer that we cannot use (malformed, unsupported or too large)."""


def split_annexb(stream: bytes) -> list[memoryview]:
    """The NAL units of an Annex B byte stream (3- or 4-byte start codes), as views."""
    view = memoryview(stream)
    out: list[memoryview] = []
    n = len(stream)
    start = stream.find(b"\x00\x00\x01")
    while start >= 0:
        begin = start + 3
        nxt = stream.find(b"\x00\x00\x01", begin)
        end = n if nxt < 0 else nxt
        # A zero before the next start code belongs to a 4-byte start code (trailing_zero).
        while end > begin and stream[end - 1] == 0 and nxt >= 0:
            end -= 1
        if end > begin:
            out.append(view[begin:end])
        start = nxt
    return out


def join_annexb(nals: Iterable[bytes | memoryview]) -> bytes:
    """An Annex B byte stream of ``nals`` (4-byte start codes)."""
    parts: list[bytes | memoryview] = []
    for nal in nals:
        parts.append(START_CODE)
        parts.append(nal)
    return b"".join(parts)


def nal_type(nal: bytes | memoryview) -> int:
    return nal[0] & 0x1F


def _rbsp(nal: bytes | memoryview) -> bytes:
    """The payload with emulation-prevention bytes (00 00 03) removed (7.4.1)."""
    return bytes(nal).replace(b"\x00\x00\x03", b"\x00\x00")


class _Bits:
    def __init__(self, data: bytes) -> None:
        self._value = int.from_bytes(data, "big")
        self._left = len(data) * 8

    def bit(self) -> int:
        if self._left <= 0:
            raise H264Error("SPS truncated")
        self._left -= 1
        return (self._value >> self._left) & 1

    def bits(self, n: int) -> int:
        v = 0
        for _ in range(n):
            v = (v << 1) | self.bit()
        return v

    def ue(self) -> int:
        """Exp-Golomb unsigned (9.1); at most 31 leading zeros."""
        zeros = 0
        while self.bit() == 0:
            zeros += 1
            if zeros > 31:
                raise H264Error("SPS Exp-Golomb code too long")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k % 2 else -(k // 2)


def _skip_scaling_list(b: _Bits, size: int) -> None:
    last, nxt = 8, 8
    for _ in range(size):
        if nxt:
            delta = b.se()
            if not -128 <= delta <= 127:
                raise H264Error("SPS scaling list delta out of range")
            nxt = (last + delta + 256) % 256
        last = nxt or last


def sps_size(sps: bytes | memoryview) -> tuple[int, int]:
    """The (width, height) an SPS NAL unit (header byte included) declares, cropping applied."""
    if len(sps) < 4 or nal_type(sps) != NAL_SPS:
        raise H264Error("not an SPS")
    if len(sps) > MAX_SPS_BYTES:
        raise H264Error("SPS too long")
    b = _Bits(_rbsp(sps[1:]))
    profile = b.bits(8)
    b.bits(16)  # constraint flags, level
    if b.ue() > 31:
        raise H264Error("SPS id out of range")
    chroma_format = 1
    separate_planes = 0
    if profile in _HIGH_PROFILES:
        chroma_format = b.ue()
        if chroma_format > 3:
            raise H264Error("bad chroma_format_idc")
        if chroma_format == 3:
            separate_planes = b.bit()
        if b.ue() > 6 or b.ue() > 6:
            raise H264Error("bad bit depth")
        b.bit()  # qpprime_y_zero_transform_bypass
        if b.bit():  # seq_scaling_matrix_present
            for i in range(8 if chroma_format != 3 else 12):
                if b.bit():
                    _skip_scaling_list(b, 16 if i < 6 else 64)
    if b.ue() > 12:
        raise H264Error("bad log2_max_frame_num")
    poc_type = b.ue()
    if poc_type == 0:
        if b.ue() > 12:
            raise H264Error("bad log2_max_pic_order_cnt_lsb")
    elif poc_type == 1:
        b.bit()
        b.se()
        b.se()
        cycle = b.ue()
        if cycle > 255:
            raise H264Error("bad num_ref_frames_in_pic_order_cnt_cycle")
        for _ in range(cycle):
            b.se()
    elif poc_type != 2:
        raise H264Error("bad pic_order_cnt_type")
    if b.ue() > 16:
        raise H264Error("bad max_num_ref_frames")
    b.bit()  # gaps_in_frame_num_value_allowed
    width_mbs = b.ue() + 1
    height_units = b.ue() + 1
    frame_mbs_only = b.bit()
    height_mbs = height_units * (2 - frame_mbs_only)
    if width_mbs * height_mbs > MAX_MACROBLOCKS:
        raise H264Error(f"SPS declares {width_mbs * 16}x{height_mbs * 16}: too large")
    if not frame_mbs_only:
        b.bit()  # mb_adaptive_frame_field
    b.bit()  # direct_8x8_inference
    width, height = width_mbs * 16, height_mbs * 16
    if b.bit():  # frame_cropping
        left, right, top, bottom = b.ue(), b.ue(), b.ue(), b.ue()
        array_type = 0 if separate_planes else chroma_format
        crop_x = 1 if array_type == 0 else (2 if chroma_format in (1, 2) else 1)
        crop_y = (1 if array_type == 0 else (2 if chroma_format == 1 else 1)) * (2 - frame_mbs_only)
        width -= crop_x * (left + right)
        height -= crop_y * (top + bottom)
    if width <= 0 or height <= 0:
        raise H264Error("SPS cropping leaves no picture")
    return width, height
