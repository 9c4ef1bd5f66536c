"""JPEG as a vcall codec: RFC 2435 over RTP, and the classic V0 datagram as its second framing.

API::

    JPEG_INFO: CodecInfo        # "JPEG", video, PT 26, 90 kHz, RFC 2435, modes rtp and v0,
                                # intra-only, no keyframe requests, multiples of 8 up to 2040
    class JpegVideoCodec(Codec):
        info = JPEG_INFO
        def encoder(self, backend="auto") -> JpegEncoder     # "turbojpeg" | "opencv" | "auto"
        def decoder(self, backend="auto") -> JpegDecoder
        def packetizer(self, max_payload=1200) -> Rfc2435Packetizer
        def depacketizer(self) -> Rfc2435Depacketizer
        def framing(self, mode) -> V0Framing | None          # MediaMode.V0 -> V0Framing
    class JpegEncoder(VideoEncoder): jpeg: JpegCodec (the backend); encode(bgr, quality)
    class JpegDecoder(VideoDecoder): frame_size(jpeg); decode_rgb_into(jpeg, dst)
    class V0Framing(Framing):   encoder(enc) (scaled to fit V0_MAX_SIZE 640x480, capped
                                under the peer-safe datagram); datagram(...); parse(datagram)

Guarantees: the encoder gives baseline 4:2:0 JPEGs with the Annex K tables (RFC 2435 type 1);
the decoder reads the declared size from the SOF before allocating and refuses more than
MAX_DECLARED per side (``JpegError``, a ``CodecError``). A V0 frame is at most
``V0_MAX_BYTES`` (32 KiB minus the largest V0 header: classic receivers read 32 KiB), scaled to
fit 640x480 (the classic clients' own size) and then stepped down in quality (and if needed in
resolution) by ``CappedEncoder``; the frame counter starts at 1 and the timestamp is the
sender's wall clock (docs/protocol.md 3).
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.codecs.base import (
    Codec,
    CodecInfo,
    EncodedFrame,
    EncodeError,
    FramedFrame,
    Framing,
    MediaKind,
    U8Array,
    VideoDecoder,
    VideoEncoder,
    fit_size,
)
from pipeline.codecs.jpeg.backends import CappedEncoder, JpegCodec, codec_by_name
from pipeline.codecs.jpeg.markers import JpegError, check_size
from pipeline.codecs.jpeg.rfc2435 import (
    MAX_DIM,
    PT_JPEG,
    PT_JPEG_RTX,
    Rfc2435Depacketizer,
    Rfc2435Packetizer,
)
from pipeline.control import MediaMode
from pipeline.wire.v0 import (
    V0_HEADER_MAX,
    V0_PEER_SAFE_DATAGRAM,
    V0TooLargeError,
    decode_v0,
    encode_v0,
)

# A peer's JPEG may declare any size: refuse more than this per side before decoding.
MAX_DECLARED = 4096
# The V0 cap is on the JPEG; the header rides in the same datagram, so leave room for it.
V0_MAX_BYTES = V0_PEER_SAFE_DATAGRAM - V0_HEADER_MAX
V0_MAX_SIZE = (640, 480)

JPEG_INFO = CodecInfo(
    name="JPEG",
    kind=MediaKind.VIDEO,
    payload_type=PT_JPEG,
    rtx_payload_type=PT_JPEG_RTX,
    clock_rate=90000,
    payload_format="RFC 2435",
    modes=(MediaMode.RTP, MediaMode.V0),
    intra_only=True,
    keyframe_requests=False,
    max_dimension=MAX_DIM,
    size_multiple=8,
)


class JpegEncoder(VideoEncoder):
    """BGR -> baseline JPEG through PyTurboJPEG (or OpenCV)."""

    def __init__(self, backend: str = "auto") -> None:
        self.jpeg: JpegCodec = codec_by_name(backend)
        self.backend = self.jpeg.name

    def encode(self, bgr: U8Array, quality: int) -> EncodedFrame:
        h, w = bgr.shape[:2]
        return EncodedFrame(self.jpeg.encode(bgr, quality), w, h, True, quality)


class JpegDecoder(VideoDecoder):
    """A peer's JPEG -> RGB at the display size (DCT scaling does most of the shrinking)."""

    def __init__(self, backend: str = "auto") -> None:
        self.jpeg: JpegCodec = codec_by_name(backend)
        self.backend = self.jpeg.name

    def frame_size(self, data: bytes) -> tuple[int, int]:
        return check_size(data, MAX_DECLARED, MAX_DECLARED)

    def decode_rgb_into(self, data: bytes, dst: U8Array) -> None:
        try:
            self.jpeg.decode_rgb_into(data, dst)
        except ValueError as exc:  # a backend's complaint about the data, not about dst
            raise JpegError(f"undecodable JPEG: {exc}") from exc


class _V0Encoder(VideoEncoder):
    """The codec's encoder, kept under the peer-safe V0 datagram."""

    def __init__(self, inner: JpegEncoder, max_bytes: int) -> None:
        self._capped = CappedEncoder(inner.jpeg, max_bytes)
        self.backend = inner.backend

    def encode(self, bgr: U8Array, quality: int) -> EncodedFrame:
        h, w = bgr.shape[:2]
        if w > V0_MAX_SIZE[0] or h > V0_MAX_SIZE[1]:
            tw, th = fit_size((w, h), V0_MAX_SIZE)
            tw, th = max(8, tw // 8 * 8), max(8, th // 8 * 8)
            small = np.empty((th, tw, 3), dtype=np.uint8)
            cv2.resize(bgr, (tw, th), dst=small, interpolation=cv2.INTER_AREA)
            bgr = small
        frame = self._capped.encode(bgr, quality)  # FrameTooLargeError is an EncodeError
        return EncodedFrame(frame.jpeg, frame.width, frame.height, True, frame.quality)


class V0Framing(Framing):
    """The classic datagram ``seq#ts#WxH#fps#jpeg`` (docs/protocol.md 3)."""

    def __init__(self, max_bytes: int = V0_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._seq = 0

    def encoder(self, encoder: VideoEncoder) -> VideoEncoder:
        if not isinstance(encoder, JpegEncoder):
            raise TypeError("V0 carries JPEG only")
        return _V0Encoder(encoder, self.max_bytes)

    def datagram(self, frame: bytes, width: int, height: int, fps: int, now: float) -> bytes:
        self._seq += 1
        try:
            return encode_v0(self._seq, now, width, height, fps, frame)
        except V0TooLargeError as exc:
            raise EncodeError(str(exc)) from exc

    def parse(self, datagram: bytes) -> FramedFrame:
        frame = decode_v0(datagram)
        return FramedFrame(frame.jpeg, frame.width, frame.height, frame.seq, frame.ts)


class JpegVideoCodec(Codec):
    info = JPEG_INFO

    def encoder(self, backend: str = "auto") -> JpegEncoder:
        return JpegEncoder(backend)

    def decoder(self, backend: str = "auto") -> JpegDecoder:
        return JpegDecoder(backend)

    def packetizer(self, max_payload: int = 1200) -> Rfc2435Packetizer:
        return Rfc2435Packetizer(max_payload)

    def depacketizer(self) -> Rfc2435Depacketizer:
        return Rfc2435Depacketizer()

    def framing(self, mode: MediaMode, max_frame_bytes: int | None = None) -> V0Framing | None:
        if mode is not MediaMode.V0:
            return None
        return V0Framing(V0_MAX_BYTES if max_frame_bytes is None else max_frame_bytes)
