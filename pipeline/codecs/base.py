"""The codec seam: what a media codec is, and the four parts every codec provides.

API::

    class MediaKind(StrEnum): VIDEO, AUDIO
    @dataclass(frozen=True, slots=True)
    class CodecInfo:                  # the description: name, kind, RTP/SDP facts, properties
        name; kind; payload_type; clock_rate; channels; fmtp; intra_only; keyframe_requests;
        modes; payload_format; max_dimension; size_multiple
        rtpmap -> str                 # "JPEG/90000" (RFC 4566 a=rtpmap encoding)
        check_size(width, height)     # LocalProtocolError if this codec cannot carry the size
    @dataclass(frozen=True, slots=True)
    class EncodedFrame: data; width; height; keyframe; quality
    @dataclass(frozen=True, slots=True)
    class CodecFrame:                 # one frame rebuilt by a depacketizer
        data; timestamp; width; height; keyframe; first_arrival; last_arrival; packets
    class VideoEncoder(ABC):  encode(bgr, quality) -> EncodedFrame; request_keyframe();
                              set_bitrate(bps); set_fps(fps); backend;
                              coded_luma(bgr) -> (h, w) uint8 | None   # for measurement
    class VideoDecoder(ABC):  frame_size(data) -> (w, h); decode_rgb_into(data, dst); backend;
                              last_luma() -> (h, w) uint8 | None        # for measurement
    class Packetizer(ABC):    payloads(frame) -> list[Payload]  (marker on the last)
    class Depacketizer(ABC):  push(seq, timestamp, marker, payload, now) -> list[CodecFrame];
                              expire(now) -> int; reset(); stats -> DepacketizerStats;
                              needs_keyframe
    class Framing(ABC):       a non-RTP wire framing of a codec (JPEG's classic V0 datagram):
                              datagram(frame, capture_time) -> bytes; parse(datagram) -> ...
    def fit_size(src, box) -> (w, h)     # the largest size of src's aspect inside box
    class CodecError(RemoteProtocolError)   # a peer's frame we cannot decode or depacketize
    class EncodeError(LocalProtocolError)   # a local frame this codec or framing cannot carry

A codec module (``pipeline/codecs/<name>/``) defines a ``Codec`` subclass that builds these
parts and registers it in ``pipeline.codecs.registry`` (the recipe is in docs/architecture.md).
Stages hold the parts and ask the ``CodecInfo`` questions (``intra_only`` decides whether the
jitter buffer may skip older frames); they never test which codec they hold.

Guarantees: ``Depacketizer.push`` never raises on any payload (garbage is counted in its
``stats``); ``VideoDecoder`` raises only ``CodecError`` on a peer's data; encoders and
packetizers raise only ``EncodeError`` (a ``LocalProtocolError``) for frames they cannot carry.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pipeline.control import MediaMode
from pipeline.errors import LocalProtocolError, RemoteProtocolError
from pipeline.pixels import PixelFormat

U8Array = npt.NDArray[np.uint8]
# One RTP payload as the pieces to join after the RTP header (one copy, in the sender).
Payload = Sequence[bytes | memoryview]


def fit_size(src: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """The largest (width, height) with src's aspect ratio that fits in box (at least 1x1)."""
    sw, sh = src
    bw, bh = box
    if sw <= 0 or sh <= 0 or bw <= 0 or bh <= 0:
        raise ValueError(f"sizes must be positive: {src} in {box}")
    scale = min(bw / sw, bh / sh)
    return (max(1, min(bw, round(sw * scale))), max(1, min(bh, round(sh * scale))))


class MediaKind(enum.StrEnum):
    VIDEO = "video"
    AUDIO = "audio"


class CodecError(RemoteProtocolError):
    """A peer's frame or payload that this codec cannot decode or rebuild."""


class EncodeError(LocalProtocolError):
    """A local frame that this codec (or its framing) cannot carry."""


@dataclass(frozen=True, slots=True)
class CodecInfo:
    """What a codec is, for the registry, the SDP and the stages.

    ``payload_type`` and ``clock_rate`` are the RTP facts (RFC 3550 5.1; a static payload type
    of RFC 3551 or a dynamic one, 96-127); ``fmtp`` the SDP format parameters (RFC 4566
    ``a=fmtp``), None when there are none. ``intra_only``: every frame decodes on its own, so a
    receiver may skip older frames to show the newest (JPEG); an inter-frame codec must keep
    order. ``keyframe_requests``: the encoder can be asked for a keyframe (RTCP PLI/FIR).
    ``modes``: the call modes that carry it. ``max_dimension`` and ``size_multiple``: the
    picture sizes the payload format can describe (RFC 2435: multiples of 8, at most 2040).
    ``rtx_payload_type``: the dynamic payload type of its retransmission stream (RFC 4588,
    ``a=rtpmap:N rtx/clock`` with ``apt``), None when it is never repaired.
    ``raw_formats``: the raw picture formats its encoder takes (``pipeline.pixels``), best first;
    a source writes the first one it can, and the encode stage converts anything else to BGR24
    (which every encoder takes).
    """

    name: str
    kind: MediaKind
    payload_type: int
    clock_rate: int
    payload_format: str  # the RFC of its RTP payload format, e.g. "RFC 2435"
    modes: tuple[MediaMode, ...]
    intra_only: bool
    keyframe_requests: bool
    channels: int = 1
    fmtp: str | None = None
    max_dimension: int = 4096
    size_multiple: int = 1
    rtx_payload_type: int | None = None
    raw_formats: tuple[PixelFormat, ...] = (PixelFormat.BGR24,)

    @property
    def rtpmap(self) -> str:
        """The SDP ``a=rtpmap`` encoding: ``NAME/clock[/channels]`` (RFC 4566 6)."""
        tail = f"/{self.channels}" if self.kind is MediaKind.AUDIO and self.channels > 1 else ""
        return f"{self.name}/{self.clock_rate}{tail}"

    def check_size(self, width: int, height: int) -> None:
        """LocalProtocolError if the payload format cannot describe a width x height picture."""
        for dim in (width, height):
            if dim <= 0 or dim % self.size_multiple or dim > self.max_dimension:
                raise LocalProtocolError(
                    f"{self.name}: {dim} is not a multiple of {self.size_multiple} "
                    f"in {self.size_multiple}..{self.max_dimension}"
                )


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One encoded frame. ``quality`` is the codec's own knob that produced it (JPEG: 1-100)."""

    data: bytes
    width: int
    height: int
    keyframe: bool
    quality: int


@dataclass(frozen=True, slots=True)
class CodecFrame:
    """One frame rebuilt from RTP packets; times in seconds on the receiver's clock."""

    data: bytes
    timestamp: int  # RTP timestamp (clock_rate units, 32-bit)
    width: int  # 0 when the payload format does not say (the decoder will)
    height: int
    keyframe: bool
    first_arrival: float
    last_arrival: float
    packets: int


@dataclass(frozen=True, slots=True)
class DepacketizerStats:
    """What a depacketizer dropped, by name (every discard is counted)."""

    frames: int = 0  # complete frames returned
    malformed: int = 0  # payload header unusable
    duplicates: int = 0
    late: int = 0  # packets of frames already completed or dropped
    incomplete: int = 0  # partial frames dropped (superseded, timed out, evicted)
    unsupported: int = 0  # frames with parameters this depacketizer does not handle


class VideoEncoder(ABC):
    """Raw BGR frames in, encoded frames out. ``follows_bitrate``: its rate control meets
    ``set_bitrate`` (H.264); False: it is steered by ``quality`` (JPEG), and the encode stage
    meets a target along a ``ladder.QualityLadder`` instead."""

    backend: str = ""
    follows_bitrate: bool = False

    @abstractmethod
    def encode(self, bgr: U8Array, quality: int) -> EncodedFrame:
        """Encode one (height, width, 3) BGR frame, or one (height * 3 // 2, width) I420 frame
        where ``CodecInfo.raw_formats`` lists I420 (``pipeline.pixels``). EncodeError if it
        cannot be carried."""

    def request_keyframe(self) -> None:  # noqa: B027 - a no-op for intra-only codecs
        """Make the next frame a keyframe (intra-only codecs: every frame already is)."""

    def set_bitrate(self, bps: int) -> None:  # noqa: B027 - codecs with a quality knob ignore it
        """The target bitrate in bit/s from the next frame on (a preset's, or a congestion
        controller's); codecs steered by ``quality`` (JPEG) ignore it."""

    def set_fps(self, fps: int) -> None:  # noqa: B027 - most codecs do not need it
        """The frame rate the encoder's rate control should assume."""

    def coded_luma(self, bgr: U8Array) -> U8Array | None:
        """The luma plane this encoder codes for ``bgr`` ((h, w) uint8, in the codec's own
        range), or None where the codec does not expose it. For quality measurement (PSNR-Y in
        the codec's domain, as x264's and FFmpeg's ``psnr`` report it), never on the call path."""
        return None


class VideoDecoder(ABC):
    """Encoded frames from a peer in, RGB pictures out."""

    backend: str = ""

    @abstractmethod
    def frame_size(self, data: bytes) -> tuple[int, int]:
        """The (width, height) the frame declares, checked against the decoder's limits before
        anything is allocated. CodecError if it is unusable or too large."""

    @abstractmethod
    def decode_rgb_into(self, data: bytes, dst: U8Array) -> None:
        """Decode into ``dst`` ((h, w, 3) uint8 RGB), scaled to its size. CodecError."""

    def last_luma(self) -> U8Array | None:
        """The luma plane of the last decoded picture before colour conversion ((h, w) uint8,
        the pair of ``VideoEncoder.coded_luma``), or None where not exposed. For measurement."""
        return None


class Packetizer(ABC):
    """One encoded frame -> RTP payloads (the stream layer adds the RTP headers)."""

    @abstractmethod
    def payloads(self, frame: bytes, width: int, height: int) -> list[Payload]:
        """The payloads of one frame, in order; the marker bit goes on the last one.
        EncodeError if this payload format cannot carry the frame."""


class Depacketizer(ABC):
    """RTP payloads of one source -> complete frames. Never raises on a peer's data.

    ``needs_keyframe`` is true while a lost frame has broken the chain of references (inter-
    frame codecs): the receiver asks the sender for a keyframe (RTCP PLI/FIR) until it is false.
    """

    needs_keyframe: bool = False
    # How long (s) a complete frame may wait for an older one whose packets are being repaired
    # (NACK/RTX): the receiver sets it from the round-trip time. Only in-order codecs use it.
    repair_wait: float = 0.0
    # Longer, up to repair_hold (s), while repair_pending(first_seq) says a packet before the
    # frame's first one is still being asked for (the receiver's NACK list).
    repair_hold: float = 0.0
    repair_pending: Callable[[int], bool] | None = None
    # Called with a sequence number when nothing before it is needed any more (a keyframe
    # superseded the older frames still under repair): the receiver stops asking for them.
    repair_moot: Callable[[int], None] | None = None

    @abstractmethod
    def push(
        self, seq: int, timestamp: int, marker: bool, payload: memoryview, now: float
    ) -> list[CodecFrame]:
        """Take one packet's payload; return the frames it completed (usually none or one)."""

    @abstractmethod
    def expire(self, now: float) -> int:
        """Drop partial frames that got no packet for a while; return how many."""

    @abstractmethod
    def reset(self) -> None:
        """Forget everything (a new source)."""

    @property
    @abstractmethod
    def stats(self) -> DepacketizerStats: ...


class Codec(ABC):
    """A codec: its description and factories for its parts (one module per codec)."""

    info: CodecInfo

    @abstractmethod
    def encoder(self, backend: str = "auto") -> VideoEncoder: ...

    @abstractmethod
    def decoder(self, backend: str = "auto") -> VideoDecoder: ...

    @abstractmethod
    def packetizer(self, max_payload: int) -> Packetizer: ...

    @abstractmethod
    def depacketizer(self) -> Depacketizer: ...

    def sdp_fmtp(self, width: int, height: int, fps: int, bitrate: int) -> str | None:
        """The SDP ``a=fmtp`` parameters for a stream of this size and rate (RFC 4566 6);
        by default ``info.fmtp``."""
        return self.info.fmtp

    def framing(self, mode: MediaMode, max_frame_bytes: int | None = None) -> Framing | None:
        """The codec's framing for a non-RTP call mode (JPEG: classic V0), its frames capped at
        ``max_frame_bytes`` (None: the framing's own peer-safe cap); None for RTP."""
        return None


@dataclass(frozen=True, slots=True)
class FramedFrame:
    """One frame read from a non-RTP framing (V0): the data and what the datagram said."""

    data: bytes
    width: int
    height: int
    seq: int  # the sender's frame counter
    capture_time: float | None  # the sender's clock, a hint only (None: absent or absurd)


class Framing(ABC):
    """A whole frame per datagram, outside RTP (JPEG's classic V0 is the one there is)."""

    max_bytes: int  # no frame larger than this is sent (the datagram must stay peer-safe)

    @abstractmethod
    def encoder(self, encoder: VideoEncoder) -> VideoEncoder:
        """Wrap the codec's encoder so that every frame fits one datagram."""

    @abstractmethod
    def datagram(self, frame: bytes, width: int, height: int, fps: int, now: float) -> bytes:
        """One datagram carrying ``frame``; EncodeError if it cannot."""

    @abstractmethod
    def parse(self, datagram: bytes) -> FramedFrame:
        """The frame a datagram carries; CodecError (a RemoteProtocolError) on garbage."""
