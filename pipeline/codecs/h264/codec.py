"""H.264 as a vcall codec: libx264 and FFmpeg's decoder through PyAV, RFC 6184 over RTP.

API::

    H264_INFO: CodecInfo    # "H264", video, PT 96, 90 kHz, RFC 6184 (mode 1), rtp only,
                            # inter-frame, keyframe requests, even sizes up to 4096
    class H264VideoCodec(Codec): info = H264_INFO; encoder(); decoder(); packetizer();
                                 depacketizer()
    class H264Encoder(VideoEncoder):
        encode(bgr, quality) -> EncodedFrame   # an Annex B access unit; quality is ignored
        set_bitrate(bps)                       # from the next frame; no restart up to
                                               # MAX_GAIN x the bitrate the encoder opened with
                                               # (VBV maxrate), above it a reopen (an IDR)
        gain                                   # bit_rate asked of libx264 / target
        request_keyframe()                     # the next frame is an IDR (with SPS and PPS);
                                               # a reopen when the VBV buffer is sized for a
                                               # rate far from the target (REOPEN_BELOW)
        ceiling, vbv_bps                       # the VBV maxrate it opened with, and the rate
                                               # its buffer is sized for, bit/s
    class H264Decoder(VideoDecoder):
        frame_size(access_unit) -> (w, h)      # from the newest SPS, checked before decoding
        decode_rgb_into(access_unit, dst)      # H264Error (a CodecError) on failure

Encoder settings (why): preset ultrafast and tune zerolatency (no lookahead, no frame delay: one
frame in, one access unit out, 3-5 ms at 720p here); no B-frames; a VBV buffer of two frames at
the target bitrate (``bufsize`` = 2 x target / fps), so no frame bursts far past its share and a
congestion controller's new target holds from the next frame (libx264 reconfigures on a changed
``bit_rate`` without restarting, as long as it opened in CBR: ``maxrate`` = ``bit_rate``; opened
with ``maxrate`` above ``bit_rate``, later changes of ``bit_rate`` were measured not to take hold,
and PyAV cannot change ``maxrate`` after opening).

Encoder rate adjustment (the idea of libwebrtc's EncoderBitrateAdjuster, own design): with so
small a buffer and no lookahead libx264 undershoots: asked for 2.0 Mbit/s it spent 1.55-1.62 on
the camera-like clip (noise 4, PSNR-Y 41.5-42.0 dB), but asked for 2.5 it spent 1.97 (42.6 dB),
while at 0.8 Mbit/s it spent 0.78 (measured, one window). So the encoder opens with
``maxrate`` = MAX_GAIN x the target, and every ADJUST_WINDOW_S of frames the ``bit_rate`` it is
asked for (target x gain, gain in [1, MAX_GAIN]) is corrected so that what it really spends is
TARGET_UTILIZATION of the target: down at once when it spends more, up by at most
GAIN_STEP_UP per window when it spends less (a scene that turns busy can overshoot for at most
one window, by at most the gain, which the pacer and the congestion controller absorb). A target
more than 5% lower resets the gain to 1: it usually means congestion, when an overshoot hurts
most (smaller steps keep it, and the next window's correction follows them).
Why 0.85 and not more: the congestion controller needs the headroom. At 0.95 (1.9 of 2.0
Mbit/s, 42.5 dB) the lab's 5 -> 1.5 Mbit/s step froze the picture 1.4 s and the 2 Mbit/s link
froze once; at 0.9 the step froze 1.0 s; at 0.85 (1.7 Mbit/s, 42.0 dB in steady state) the
longest gap at the step was 275 ms and the 2 Mbit/s link had no freeze (vcall bench network
--profile step_5_1_5 | rate2m_20ms, one run each). One x264 thread already spends 1.66-1.75 of
2.0 Mbit/s on its own, so the gain mostly stays near 1 at 720p.
A buffer of one frame was measured first: it starves keyframes (a 640x480 IDR at 800 kbit/s got
3.1 KB and came out too blocky to read the test pattern's stamp; with two frames, 5.9 KB,
readable); slices of at most SLICE_MAX_BYTES so
that most NAL units fit one RTP packet and a lost packet costs one slice, not a frame's worth of
fragments; SPS and PPS repeated before every IDR, so a receiver that joins or recovers needs
nothing out of band; keyframes on request only (``forced-idr``, ``keyint=infinite``): a vcall
peer asks (PLI) when it needs one, and a periodic IDR (up to the two-frame VBV buffer) is a
burst into a tight link's queue for nothing (libwebrtc sends none either; the receive stage asks
for one every ``KEYFRAME_SAFETY_S`` only while the peer sends no RTCP: ffplay and other tools
cannot ask). A keyframe asked for while the target is below REOPEN_BELOW of the rate the VBV
buffer was sized for (or above it by 1 / REOPEN_BELOW) reopens the encoder (an IDR anyway, 5-7
ms at 720p here) with the buffer sized for the target and the old maxrate ceiling kept, so that
a target climbing back reopens nothing. The VBV buffer libx264 opened with is sized for the old
rate and PyAV cannot change it: after the lab's cut from 2.0 to 1.2 Mbit/s a forced 720p IDR
came in 16 packets (~17 KB), nearly the whole 100 ms queue of a 1.5 Mbit/s link. Reopened at 1.2
Mbit/s an IDR of a noisy 720p picture is 8.2 KB, against 13.2 KB at 2.0. The cost of the kept
buffer when the target climbs back before the next keyframe: a buffer sized for 1.2 Mbit/s at a
2.0 Mbit/s target spent 1611 kbit/s at PSNR-Y 41.62 dB, against 1702 kbit/s at 41.77 dB for a
fresh encoder (the camera-like clip of ``vcall bench codec``, noise 4, 720p, 8 s; one run each,
deterministic).
One encoder thread: on this 2-core machine x264's sliced threads gave no shorter encode (720p,
wall p50 2.38 ms with the automatic count, 2.24 with one) for 18% more CPU (mean 2.64 against
2.24 ms a frame; 150 frames, one window), and a call has ten other processes on those cores.
Colour conversion: none when the source writes I420 (the test pattern; ``raw_formats``), the
frame wrapping the raw ring's slot where it lies; otherwise BGR -> I420 is OpenCV's (0.44-0.7 ms
at 720p here, cheaper than PyAV's swscale from bgr24), written into a buffer the frame wraps
without a copy. The decoder runs slice threads only (frame threads would add a frame of delay).

Guarantees: a decoder never allocates for a size its SPS did not declare within MAX_DIMENSION
(``nal.sps_size`` is read first); FFmpeg's errors become ``H264Error``.
"""

from __future__ import annotations

import base64
import logging
from fractions import Fraction
from typing import Any

import av
import cv2
import numpy as np

from pipeline.codecs.base import (
    Codec,
    CodecInfo,
    EncodedFrame,
    EncodeError,
    MediaKind,
    U8Array,
    VideoDecoder,
    VideoEncoder,
)
from pipeline.codecs.h264.nal import (
    NAL_PPS,
    NAL_SPS,
    H264Error,
    nal_type,
    split_annexb,
    sps_size,
)
from pipeline.codecs.h264.rfc6184 import H264Depacketizer, H264Packetizer
from pipeline.control import MediaMode
from pipeline.pixels import PixelFormat, picture_size

logger = logging.getLogger(__name__)

MAX_GAIN = 1.35  # the most the encoder is asked for above the target (see the module docstring)
TARGET_UTILIZATION = 0.85  # what the encoder should really spend, as a share of the target
REOPEN_BELOW = 0.8  # a keyframe asked for this far from the VBV buffer's rate reopens
GAIN_STEP_UP = 1.1  # the most the gain grows in one window
ADJUST_WINDOW_S = 1.0  # seconds of frames (at the set frame rate) per gain correction
PT_H264_RTX = 97  # RFC 4588 retransmissions of PT_H264 (apt=96)
PT_H264 = 96
MAX_DIMENSION = 4096
SLICE_MAX_BYTES = 1100
DEFAULT_BITRATE = 2_000_000
DEFAULT_FPS = 30

H264_INFO = CodecInfo(
    name="H264",
    kind=MediaKind.VIDEO,
    payload_type=PT_H264,
    rtx_payload_type=PT_H264_RTX,
    clock_rate=90000,
    payload_format="RFC 6184",
    modes=(MediaMode.RTP,),
    intra_only=False,
    keyframe_requests=True,
    # Constrained Baseline (what ultrafast produces), level 4.0 (1080p30), mode 1.
    fmtp="packetization-mode=1;profile-level-id=42e028;level-asymmetry-allowed=1",
    max_dimension=MAX_DIMENSION,
    size_multiple=2,
    # libx264 codes I420: a source that can write it (the test pattern) saves the conversion.
    raw_formats=(PixelFormat.I420, PixelFormat.BGR24),
)


class H264Encoder(VideoEncoder):
    """BGR or I420 frames (``pipeline.pixels``) -> H.264 access units (Annex B), libx264."""

    backend = "libx264"
    follows_bitrate = True

    def __init__(
        self, bitrate: int = DEFAULT_BITRATE, fps: int = DEFAULT_FPS, vbv_frames: float = 2.0
    ) -> None:
        self._bitrate = bitrate  # the target: what the encoder should spend, bit/s
        self._fps = fps
        self._vbv_frames = vbv_frames
        self._ceiling = bitrate  # the VBV maxrate the open encoder was given
        self._vbv_bps = bitrate  # the rate its VBV buffer (bufsize) was sized for
        self._keep_ceiling = False  # the next open keeps _ceiling (a reopen for a keyframe)
        self._ctx: Any = None
        self._size: tuple[int, int] | None = None
        self._i420: U8Array = np.empty((0, 0), dtype=np.uint8)  # the frame libx264 reads
        self._pts = 0
        self._force_keyframe = False
        self.gain = 1.0
        self._asked = 0  # the bit_rate libx264 has now
        self._window_bits = 0
        self._window_frames = 0

    def set_bitrate(self, bps: int) -> None:
        if bps <= 0:
            raise ValueError(f"bitrate must be positive, got {bps}")
        if abs(bps - self._bitrate) > self._bitrate // 20:
            self._window_bits = self._window_frames = 0  # measure the new target afresh
            if bps < self._bitrate:
                self.gain = 1.0  # a lower target (congestion) is obeyed at once, no overshoot
        self._bitrate = bps
        if self._ctx is not None and bps > self._ceiling:
            # VBV's maxrate is fixed when the encoder opens (PyAV cannot change it after):
            # above it, reopen at the next frame (which then is an IDR).
            self._size = None

    @property
    def ceiling(self) -> int:
        """The VBV maxrate (bit/s) the open encoder was given: MAX_GAIN x its opening rate."""
        return self._ceiling

    @property
    def vbv_bps(self) -> int:
        """The rate (bit/s) the open encoder's VBV buffer is sized for (two frames of it)."""
        return self._vbv_bps

    def set_fps(self, fps: int) -> None:
        """The frame rate the VBV buffer is sized for (takes effect at the next size change)."""
        self._fps = max(1, fps)

    def request_keyframe(self) -> None:
        self._force_keyframe = True
        vbv = self._vbv_bps
        if self._ctx is not None and not REOPEN_BELOW * vbv <= self._bitrate <= vbv / REOPEN_BELOW:
            # Reopen for the IDR (it comes anyway) with the VBV buffer sized for the target; the
            # maxrate ceiling stays, so a target climbing back needs no reopen (and no IDR).
            self._size, self._keep_ceiling = None, True

    def coded_luma(self, bgr: U8Array) -> U8Array | None:
        """The Y plane libx264 gets for ``bgr`` (BT.601, video range: OpenCV's I420)."""
        if bgr.ndim == 2:
            return bgr[: picture_size(bgr)[1]]
        yuv: U8Array = np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420), dtype=np.uint8)
        return yuv[: bgr.shape[0]]

    def _open(self, width: int, height: int) -> None:
        ceiling = int(self._bitrate * MAX_GAIN)
        self._ceiling = max(ceiling, self._ceiling) if self._keep_ceiling else ceiling
        self._keep_ceiling = False
        self._vbv_bps = self._bitrate
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height = width, height
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = Fraction(1, 90000)
        ctx.framerate = Fraction(self._fps, 1)
        ctx.bit_rate = self._ceiling  # CBR at open, so that bit_rate changes take hold
        ctx.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "forced-idr": "1",
            "threads": "1",
            "maxrate": str(self._ceiling),
            "bufsize": str(max(int(self._bitrate * self._vbv_frames / self._fps), 8000)),
            "x264-params": (
                f"keyint=infinite:min-keyint=1:scenecut=0:bframes=0:"
                f"repeat-headers=1:slice-max-size={SLICE_MAX_BYTES}"
            ),
        }
        ctx.open()
        self._ctx, self._size, self._pts = ctx, (width, height), 0
        self._i420 = np.empty((height * 3 // 2, width), dtype=np.uint8)
        self._asked = self._ceiling
        logger.info("H.264 encoder %dx%d at %d bit/s", width, height, self._bitrate)

    def _ask(self) -> None:
        """Give libx264 the target times the gain (within the VBV maxrate it opened with)."""
        asked = min(int(self._bitrate * self.gain), self._ceiling)
        if asked != self._asked:
            self._ctx.bit_rate = asked  # libx264 reconfigures from this frame
            self._asked = asked

    def _adjust(self, nbytes: int) -> None:
        """Correct the gain from what the last window of frames really cost."""
        self._window_bits += nbytes * 8
        self._window_frames += 1
        if self._window_frames < self._fps * ADJUST_WINDOW_S:
            return
        spent = self._window_bits * self._fps / self._window_frames
        self._window_bits = self._window_frames = 0
        if spent <= 0:
            return
        ratio = self._bitrate * TARGET_UTILIZATION / spent
        self.gain = min(max(self.gain * min(ratio, GAIN_STEP_UP), 1.0), MAX_GAIN)

    def encode(self, bgr: U8Array, quality: int) -> EncodedFrame:
        w, h = picture_size(bgr)
        if w % 2 or h % 2:
            raise EncodeError(f"H.264 4:2:0 needs even sizes, not {w}x{h}")
        if (w, h) != self._size:
            self._open(w, h)  # a new size starts with an IDR anyway
        # The frame wraps an I420 buffer without a copy: libx264 copies the picture into its
        # own padded planes inside x264_encoder_encode (no lookahead or frame threads here), so
        # the buffer is free again when encode returns. from_ndarray's copy cost 0.5 ms of CPU
        # a 720p frame in the encode stage (1.5% of a core at 30 fps; vcall bench e2e). An I420
        # frame (the test pattern's) is wrapped where it lies; BGR is converted by OpenCV into
        # the encoder's own buffer (0.44 ms a 720p frame).
        if bgr.ndim == 2:
            yuv = np.ascontiguousarray(bgr)
        else:
            yuv = self._i420
            cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420, dst=yuv)
        if h % 4:
            # from_numpy_buffer derives the height as rows // 6 * 4 (270 -> 268) and would read
            # the chroma planes from the wrong rows; from_ndarray knows the layout (and copies).
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        else:
            frame = av.VideoFrame.from_numpy_buffer(yuv, format="yuv420p")
        frame.pts = self._pts
        self._pts += 90000 // self._fps
        self._ask()
        if self._force_keyframe:
            frame.pict_type = av.video.frame.PictureType.I
        try:
            packets = self._ctx.encode(frame)
        except av.error.FFmpegError as exc:
            raise EncodeError(f"libx264: {exc}") from exc
        if not packets:
            raise EncodeError("libx264 gave no access unit (it should, with zerolatency)")
        self._force_keyframe = False  # only now: a request outlives a frame that failed
        data = b"".join(bytes(p) for p in packets)
        keyframe = any(p.is_keyframe for p in packets)
        self._adjust(len(data))
        return EncodedFrame(data, w, h, keyframe, 0)


class H264Decoder(VideoDecoder):
    """H.264 access units from a peer -> RGB at the display size."""

    backend = "ffmpeg-h264"

    def __init__(self) -> None:
        ctx = av.CodecContext.create("h264", "r")
        ctx.thread_type = "SLICE"  # frame threads would hold frames back
        # One thread: 720p decodes in 0.6 ms p50 and 1.3 ms of CPU a frame, against 0.9 ms and
        # 1.7 ms with FFmpeg's automatic count (90 frames, one window): on 2 cores shared by
        # five stages and a peer, extra threads cost more than they save.
        ctx.thread_count = 1
        ctx.options = {"flags": "low_delay"}
        self._ctx: Any = ctx
        self._size: tuple[int, int] | None = None
        self._last: U8Array | None = None  # the last picture's I420 planes

    def last_luma(self) -> U8Array | None:
        return None if self._last is None else self._last[: self._last.shape[0] * 2 // 3]

    def frame_size(self, data: bytes) -> tuple[int, int]:
        for nal in split_annexb(data):
            if nal_type(nal) == NAL_SPS:
                w, h = sps_size(nal)
                if w > MAX_DIMENSION or h > MAX_DIMENSION:
                    raise H264Error(f"SPS declares {w}x{h}, above {MAX_DIMENSION}")
                self._size = (w, h)
        if self._size is None:
            raise H264Error("no SPS yet: a keyframe is needed first")
        return self._size

    def decode_rgb_into(self, data: bytes, dst: U8Array) -> None:
        try:
            frames = self._ctx.decode(av.Packet(data))
        except (av.error.FFmpegError, ValueError) as exc:
            raise H264Error(f"undecodable access unit: {exc}") from exc
        if not frames:
            raise H264Error("the decoder gave no picture for this access unit")
        frame = frames[-1]
        if (frame.width, frame.height) != self._size:
            raise H264Error(f"picture {frame.width}x{frame.height} is not the SPS's {self._size}")
        if frame.format.name != "yuv420p":
            raise H264Error(f"unsupported picture format {frame.format.name}")
        # OpenCV's I420 -> RGB straight into the slot: 1.5 ms at 720p here, against 4.1 ms for
        # PyAV's reformat (swscale) plus a copy (medians of 60 frames, one window).
        yuv = self._last = frame.to_ndarray()
        h, w = dst.shape[:2]
        if (w, h) == (frame.width, frame.height):
            cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB_I420, dst=dst)
            return
        rgb = cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB_I420)
        shrinking = w <= frame.width and h <= frame.height
        cv2.resize(
            rgb, (w, h), dst=dst, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        )


class H264VideoCodec(Codec):
    info = H264_INFO

    def encoder(self, backend: str = "auto") -> H264Encoder:
        return H264Encoder()

    def decoder(self, backend: str = "auto") -> H264Decoder:
        return H264Decoder()

    def packetizer(self, max_payload: int = 1200) -> H264Packetizer:
        return H264Packetizer(max_payload)

    def depacketizer(self) -> H264Depacketizer:
        return H264Depacketizer()

    def sdp_fmtp(self, width: int, height: int, fps: int, bitrate: int) -> str | None:
        """``info.fmtp`` with the ``profile-level-id`` of the SPS an encoder with these settings
        writes (libx264's are deterministic for the same settings) and ``sprop-parameter-sets``
        (RFC 6184 8.1: that SPS and PPS, base64), so a receiver can set up its decoder before
        the first IDR arrives."""
        encoder = H264Encoder(bitrate=bitrate, fps=fps)
        first = encoder.encode(np.zeros((height, width, 3), np.uint8), 0)
        params = [n for n in split_annexb(first.data) if nal_type(n) in (NAL_SPS, NAL_PPS)]
        if not params or nal_type(params[0]) != NAL_SPS:
            return self.info.fmtp
        sprop = ",".join(base64.b64encode(bytes(n)).decode() for n in params)
        level_id = bytes(params[0][1:4]).hex()  # profile_idc, constraint flags, level_idc
        return (
            f"packetization-mode=1;profile-level-id={level_id};level-asymmetry-allowed=1;"
            f"sprop-parameter-sets={sprop}"
        )
