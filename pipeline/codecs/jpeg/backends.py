"""JPEG codecs behind one small interface: PyTurboJPEG, with OpenCV as the fallback.

API::

    class JpegCodec(Protocol):
        name: str                                   # "turbojpeg" | "opencv"
        def encode(self, bgr: np.ndarray, quality: int) -> bytes
        def decode_rgb(self, jpeg: bytes, scale_to: tuple[int, int] | None = None) -> np.ndarray
        def decode_rgb_into(self, jpeg: bytes, dst: np.ndarray) -> None   # dst (H, W, 3) uint8
    class TurboJpegCodec:                  # TurboJpegCodec(*, fast_decode: bool = True)
    class OpenCvCodec
    def best_codec() -> JpegCodec          # TurboJPEG, else OpenCV (logged once)
    def codec_by_name(name: str) -> JpegCodec
    @dataclass(frozen=True, slots=True)
    class JpegHeader:
        width: int; height: int; components: int
        sampling: tuple[tuple[int, int], ...]; baseline: bool
    def read_header(jpeg: bytes) -> JpegHeader        # pure; walks markers up to SOF
    @dataclass(frozen=True, slots=True)
    class CappedJpeg: jpeg: bytes; quality: int; width: int; height: int
    def encode_under(codec, bgr, quality, max_bytes) -> CappedJpeg   # FrameTooLargeError
    class CappedEncoder:                   # the same for a stream: starts from the last fit
        def __init__(self, codec: JpegCodec, max_bytes: int, probe_every: int = 15) -> None
        def encode(self, bgr: np.ndarray, quality: int) -> CappedJpeg
    fit_size                               # re-exported from pipeline.codecs.base
    JpegError (markers.JpegError)          # bad data (from a peer): cannot be decoded or too big
    class FrameTooLargeError(EncodeError)  # encode_under found no setting under max_bytes

Sizes are (width, height) everywhere; arrays are (height, width, 3) uint8.

Guarantees:
- encode() gives baseline JPEG (SOF0), 4:2:0 (luma 2x2, chroma 1x1), the standard Annex K
  Huffman tables and no restart markers: what RFC 2435 type 1 needs (the tests parse the
  markers to prove it, for both backends).
- decode_rgb() and decode_rgb_into() read the declared size from the SOF header first and raise
  JpegError, before allocating anything, when it exceeds MAX_DIMENSION or MAX_PIXELS; any
  undecodable input raises JpegError. Misuse (wrong dtype or shape) raises ValueError.
- With ``scale_to`` (or a smaller dst) TurboJPEG decodes at the smallest libjpeg scaling factor
  that is still at least the target size (and OpenCV at its 1/2, 1/4, 1/8 reduced modes), then
  resizes the rest with INTER_AREA, only if needed.
"""

from __future__ import annotations

import functools
import logging
import warnings
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np
import numpy.typing as npt
import turbojpeg

from pipeline.codecs.base import EncodeError, fit_size
from pipeline.codecs.jpeg.markers import JpegError, frame_header

__all__ = ["fit_size"]  # and the public names above; fit_size lives in codecs.base

logger = logging.getLogger(__name__)

U8Array = npt.NDArray[np.uint8]

# A peer's JPEG may declare any size: refuse anything larger than a 4K frame before decoding.
MAX_DIMENSION = 4096
MAX_PIXELS = 3840 * 2160
# encode_under: quality steps and the resolution steps tried after the quality floor.
MIN_QUALITY = 20
QUALITY_STEP = 10
SCALE_STEPS = (1.0, 0.75, 0.5, 0.25)


class FrameTooLargeError(EncodeError):
    """encode_under found no quality and resolution that fits the byte limit."""


@dataclass(frozen=True, slots=True)
class JpegHeader:
    width: int
    height: int
    components: int
    sampling: tuple[tuple[int, int], ...]  # (h, v) sampling factors per component
    baseline: bool  # SOF0


@dataclass(frozen=True, slots=True)
class CappedJpeg:
    jpeg: bytes
    quality: int
    width: int
    height: int


def read_header(jpeg: bytes) -> JpegHeader:
    """Parse markers from SOI up to the first SOFn; JpegError on anything malformed."""
    try:
        marker, body = frame_header(jpeg)  # the one marker walker, shared with RFC 2435 code
    except JpegError as exc:
        raise JpegError(str(exc)) from None
    return _parse_sof(body, marker)


def _parse_sof(seg: bytes, marker: int) -> JpegHeader:
    if len(seg) < 6:
        raise JpegError("truncated SOF")
    height = (seg[1] << 8) | seg[2]
    width = (seg[3] << 8) | seg[4]
    components = seg[5]
    if len(seg) < 6 + 3 * components or components == 0:
        raise JpegError("truncated SOF component list")
    sampling = tuple((seg[7 + 3 * i] >> 4, seg[7 + 3 * i] & 0x0F) for i in range(components))
    if width == 0 or height == 0:
        raise JpegError(f"SOF declares an empty image {width}x{height}")
    return JpegHeader(width, height, components, sampling, marker == 0xC0)


def _check_size(jpeg: bytes) -> JpegHeader:
    header = read_header(jpeg)
    w, h = header.width, header.height
    if w > MAX_DIMENSION or h > MAX_DIMENSION or w * h > MAX_PIXELS:
        raise JpegError(f"JPEG declares {w}x{h}, above the {MAX_DIMENSION} / {MAX_PIXELS} limit")
    return header


def _check_bgr(bgr: npt.NDArray[Any]) -> None:
    if bgr.dtype != np.uint8 or bgr.ndim != 3 or bgr.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {bgr.shape} {bgr.dtype}")
    if not 1 <= bgr.shape[0] <= 65535 or not 1 <= bgr.shape[1] <= 65535:
        raise ValueError(f"image size {bgr.shape[1]}x{bgr.shape[0]} cannot be a JPEG")


def _check_quality(quality: int) -> None:
    if not 1 <= quality <= 100:
        raise ValueError(f"quality {quality} not in 1..100")


def _check_dst(dst: npt.NDArray[Any]) -> None:
    if dst.dtype != np.uint8 or dst.ndim != 3 or dst.shape[2] != 3 or 0 in dst.shape:
        raise ValueError(f"dst must be (H, W, 3) uint8, got {dst.shape} {dst.dtype}")
    if not dst.flags.c_contiguous:
        raise ValueError("dst must be C-contiguous (e.g. a whole shared-memory slot)")


def _resize_into(src: U8Array, dst: U8Array) -> None:
    h, w = dst.shape[:2]
    if src.shape[:2] == (h, w):
        np.copyto(dst, src)
        return
    shrinking = src.shape[0] >= h and src.shape[1] >= w
    cv2.resize(
        src, (w, h), dst=dst, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    )


class JpegCodec(Protocol):
    name: str

    def encode(self, bgr: U8Array, quality: int) -> bytes: ...

    def decode_rgb(self, jpeg: bytes, scale_to: tuple[int, int] | None = None) -> U8Array: ...

    def decode_rgb_into(self, jpeg: bytes, dst: U8Array) -> None: ...


def _load_turbojpeg() -> Any:
    """Load libturbojpeg (the only place that does; tests replace it to simulate its absence)."""
    return turbojpeg.TurboJPEG()


class TurboJpegCodec:
    """libjpeg-turbo through PyTurboJPEG 1.x. Raises OSError/RuntimeError if it is missing."""

    name = "turbojpeg"

    def __init__(self, *, fast_decode: bool = True) -> None:
        self._tj: Any = _load_turbojpeg()
        self._bgr = turbojpeg.TJPF_BGR
        self._rgb = turbojpeg.TJPF_RGB
        self._s420 = turbojpeg.TJSAMP_420
        # Stop on libjpeg warnings (corrupt data): a damaged frame is dropped, not half shown.
        # Limit progressive scans: a small progressive JPEG with thousands of scans is a CPU bomb.
        self._decode_flags = turbojpeg.TJFLAG_STOPONWARNING | turbojpeg.TJFLAG_LIMITSCANS
        if fast_decode:
            # The fast integer IDCT and nearest-neighbour chroma upsampling: decode to RGB is
            # 15-20% faster (720p q70: 1.43 -> 1.12 ms) on the display's critical path, for a
            # loss invisible at the qualities a call uses.
            self._decode_flags |= turbojpeg.TJFLAG_FASTDCT | turbojpeg.TJFLAG_FASTUPSAMPLE
        # Only downscaling factors, smallest first.
        self._factors = sorted(
            (f for f in self._tj.scaling_factors if f[0] <= f[1]), key=lambda f: f[0] / f[1]
        )

    def encode(self, bgr: U8Array, quality: int) -> bytes:
        _check_bgr(bgr)
        _check_quality(quality)
        # TurboJPEG's defaults are baseline with standard Huffman tables (no optimisation).
        result: bytes = self._tj.encode(bgr, quality, self._bgr, self._s420)
        return result

    def _scaling_for(self, header: JpegHeader, w: int, h: int) -> tuple[int, int] | None:
        for num, den in self._factors:
            sw = (header.width * num + den - 1) // den
            sh = (header.height * num + den - 1) // den
            if sw >= w and sh >= h:
                return None if num == den else (num, den)
        return None

    def _decode(self, jpeg: bytes, factor: tuple[int, int] | None, dst: U8Array | None) -> U8Array:
        try:
            # PyTurboJPEG reports libjpeg warnings with warnings.warn: make them errors.
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                image: U8Array = self._tj.decode(jpeg, self._rgb, factor, self._decode_flags, dst)
        except (OSError, UserWarning, ValueError) as exc:
            raise JpegError(f"undecodable JPEG: {exc}") from exc
        return image

    def decode_rgb(self, jpeg: bytes, scale_to: tuple[int, int] | None = None) -> U8Array:
        header = _check_size(jpeg)
        if scale_to is None:
            return self._decode(jpeg, None, None)
        w, h = scale_to
        image = self._decode(jpeg, self._scaling_for(header, w, h), None)
        if image.shape[:2] == (h, w):
            return image
        out: U8Array = np.empty((h, w, 3), dtype=np.uint8)
        _resize_into(image, out)
        return out

    def decode_rgb_into(self, jpeg: bytes, dst: U8Array) -> None:
        _check_dst(dst)
        header = _check_size(jpeg)
        h, w = dst.shape[:2]
        factor = self._scaling_for(header, w, h)
        # PyTurboJPEG decodes straight into dst when the scaled size matches it exactly.
        image = self._decode(jpeg, factor, dst)
        if image is not dst:
            _resize_into(image, dst)


class OpenCvCodec:
    """OpenCV's bundled libjpeg(-turbo): imencode / imdecode + cvtColor."""

    name = "opencv"
    # Decode-time reductions (libjpeg's DCT scaling), largest first.
    _REDUCED: tuple[tuple[int, int], ...] = (
        (8, cv2.IMREAD_REDUCED_COLOR_8),
        (4, cv2.IMREAD_REDUCED_COLOR_4),
        (2, cv2.IMREAD_REDUCED_COLOR_2),
    )

    def encode(self, bgr: U8Array, quality: int) -> bytes:
        _check_bgr(bgr)
        _check_quality(quality)
        params = [
            cv2.IMWRITE_JPEG_QUALITY,
            quality,
            cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
            cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
            cv2.IMWRITE_JPEG_OPTIMIZE,  # optimised Huffman tables would break RFC 2435
            0,
            cv2.IMWRITE_JPEG_PROGRESSIVE,
            0,
            cv2.IMWRITE_JPEG_RST_INTERVAL,
            0,
        ]
        ok, buf = cv2.imencode(".jpg", bgr, params)
        if not ok:
            raise ValueError("OpenCV could not encode the image")
        return bytes(buf)

    def _decode_bgr(self, jpeg: bytes, header: JpegHeader, w: int, h: int) -> U8Array:
        flag = cv2.IMREAD_COLOR
        for den, reduced in self._REDUCED:
            if -(-header.width // den) >= w and -(-header.height // den) >= h:
                flag = reduced
                break
        try:
            image: Any = cv2.imdecode(np.frombuffer(jpeg, dtype=np.uint8), flag)
        except cv2.error as exc:
            raise JpegError(f"undecodable JPEG: {exc}") from exc
        if image is None or image.ndim != 3:
            raise JpegError("undecodable JPEG")
        decoded: U8Array = image
        return decoded

    def decode_rgb(self, jpeg: bytes, scale_to: tuple[int, int] | None = None) -> U8Array:
        header = _check_size(jpeg)
        w, h = scale_to if scale_to is not None else (header.width, header.height)
        bgr = self._decode_bgr(jpeg, header, w, h)
        if bgr.shape[:2] != (h, w):
            resized: U8Array = np.empty((h, w, 3), dtype=np.uint8)
            _resize_into(bgr, resized)
            bgr = resized
        rgb: U8Array = np.empty_like(bgr)
        cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=rgb)
        return rgb

    def decode_rgb_into(self, jpeg: bytes, dst: U8Array) -> None:
        _check_dst(dst)
        header = _check_size(jpeg)
        h, w = dst.shape[:2]
        bgr = self._decode_bgr(jpeg, header, w, h)
        if bgr.shape[:2] == (h, w):
            cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=dst)
        else:
            _resize_into(bgr, dst)
            cv2.cvtColor(dst, cv2.COLOR_BGR2RGB, dst=dst)


@functools.cache
def best_codec() -> JpegCodec:
    """TurboJPEG when libturbojpeg loads, else OpenCV; the fallback is logged once."""
    try:
        return TurboJpegCodec()
    except (ImportError, OSError, RuntimeError) as exc:
        logger.warning("libturbojpeg unavailable (%s): using OpenCV's JPEG codec", exc)
        return OpenCvCodec()


def codec_by_name(name: str) -> JpegCodec:
    """ "turbojpeg", "opencv" or "auto" (best_codec); ValueError for anything else."""
    if name == "auto":
        return best_codec()
    if name == "turbojpeg":
        return TurboJpegCodec()
    if name == "opencv":
        return OpenCvCodec()
    raise ValueError(f"unknown JPEG codec {name!r}; choose turbojpeg, opencv or auto")


def _scaled(bgr: U8Array, scale: float) -> U8Array:
    if scale == 1.0:
        return bgr
    h, w = bgr.shape[:2]
    # Multiples of 8: RFC 2435 sends width/8 and height/8.
    sw, sh = max(8, int(w * scale) // 8 * 8), max(8, int(h * scale) // 8 * 8)
    out: U8Array = np.empty((sh, sw, 3), dtype=np.uint8)
    cv2.resize(bgr, (sw, sh), dst=out, interpolation=cv2.INTER_AREA)
    return out


def _ladder(quality: int) -> list[tuple[float, int]]:
    """(scale, quality) settings from best to smallest: quality first, then resolution."""
    qualities = [quality, *range(quality - QUALITY_STEP, MIN_QUALITY - 1, -QUALITY_STEP)]
    if qualities[-1] > MIN_QUALITY:
        qualities.append(MIN_QUALITY)
    return [(scale, q) for scale in SCALE_STEPS for q in qualities]


def _check_limit(max_bytes: int) -> None:
    if max_bytes <= 0:
        raise ValueError(f"max_bytes must be positive, got {max_bytes}")


def _encode_from(
    codec: JpegCodec, bgr: U8Array, ladder: list[tuple[float, int]], start: int, max_bytes: int
) -> tuple[int, CappedJpeg]:
    """The first ladder step from ``start`` on whose JPEG fits, and that JPEG."""
    scaled: dict[float, U8Array] = {}
    smallest = 0
    for index in range(start, len(ladder)):
        scale, q = ladder[index]
        image = scaled.get(scale)
        if image is None:
            image = scaled[scale] = _scaled(bgr, scale)
        jpeg = codec.encode(image, q)
        smallest = len(jpeg)
        if smallest <= max_bytes:
            return index, CappedJpeg(jpeg, q, image.shape[1], image.shape[0])
    raise FrameTooLargeError(f"no setting fits {max_bytes} bytes (smallest {smallest})")


def encode_under(codec: JpegCodec, bgr: U8Array, quality: int, max_bytes: int) -> CappedJpeg:
    """Encode at ``quality``; if the JPEG exceeds max_bytes, step quality down by QUALITY_STEP
    to MIN_QUALITY, then the resolution through SCALE_STEPS (restarting from ``quality``).
    FrameTooLargeError when nothing fits (the caller drops the frame). Stateless: a stream
    should use CappedEncoder, which starts from the last setting that fitted."""
    _check_quality(quality)
    _check_limit(max_bytes)
    return _encode_from(codec, bgr, _ladder(quality), 0, max_bytes)[1]


class CappedEncoder:
    """encode_under for a stream of frames: usually one encode per frame.

    Each frame starts at the setting that fitted last time; every ``probe_every`` frames it
    first tries one step better, so the quality comes back when the picture gets simpler.
    Changing the requested quality (a new preset) starts again from the top.
    """

    def __init__(self, codec: JpegCodec, max_bytes: int, probe_every: int = 15) -> None:
        _check_limit(max_bytes)
        if probe_every < 1:
            raise ValueError(f"probe_every must be >= 1, got {probe_every}")
        self.codec = codec
        self.max_bytes = max_bytes
        self._probe_every = probe_every
        self._quality = -1
        self._ladder: list[tuple[float, int]] = []
        self._index = 0
        self._frames = 0

    def encode(self, bgr: U8Array, quality: int) -> CappedJpeg:
        _check_quality(quality)
        if quality != self._quality:
            self._quality, self._ladder, self._index = quality, _ladder(quality), 0
        self._frames += 1
        start = self._index
        if start > 0 and self._frames % self._probe_every == 0:
            start -= 1
        try:
            self._index, frame = _encode_from(self.codec, bgr, self._ladder, start, self.max_bytes)
        except FrameTooLargeError:
            self._index = len(self._ladder) - 1
            raise
        return frame
