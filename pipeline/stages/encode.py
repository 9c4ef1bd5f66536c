"""Encode stage: the newest raw frame -> an encoded frame in the tx ring, only while connected
and sending.

The stage holds the call's codec (``pipeline.codecs``, the one named in ``Connect``) and never
asks which one it is. A keyframe request from the peer (RTCP PLI/FIR, read by the receive stage)
arrives on the ``keyframe_request`` eventfd and makes the next frame a keyframe. The frame
is encoded straight from the raw ring's slot (no copy); if the capture stage overwrote the slot
meanwhile (``valid`` fails) the result is thrown away and counted as torn. When the call mode
has a framing of its own (JPEG's classic V0 datagram), the framing wraps the encoder: it keeps
every frame inside one peer-safe datagram (docs/architecture.md, the codec seam).

Congestion control: the target rate arrives on the ``feedback`` ring (from the receive stage).
An encoder that ``follows_bitrate`` (H.264) gets min(target, the preset's bitrate); one steered
by quality (JPEG) follows a ``QualityLadder``: quality, then resolution (frames scaled before
encoding; the receiver scales them back to its window), then frame rate.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import cv2

from pipeline.codecs.base import Codec, EncodeError, VideoEncoder
from pipeline.codecs.ladder import QualityLadder
from pipeline.codecs.registry import get_codec
from pipeline.control import Connect, ControlMessage, SetPreset, SetSending
from pipeline.ipc.ring import Descriptor, Ring, RingError, Ts
from pipeline.pixels import to_bgr
from pipeline.presets import Preset
from pipeline.stages.base import Stage, StageContext
from pipeline.transport import feedback

logger = logging.getLogger(__name__)

# A delay-based cut of the target (REMB, reason "remb") of DRAIN_CUT or more below the rate the
# encoder was following means the bottleneck queue has filled (GCC reports overuse only then):
# the next DRAIN_S of frames are not encoded, so that queue drains at once instead of over the
# ~0.4 s the new target's 15% headroom takes, while losses pile up and repairs wait behind it.
# A skipped frame is never encoded, so no reference is missing (a 133 ms gap at 30 fps, under
# the 183 ms freeze rule). Only for an encoder that follows the bitrate (H.264).
DRAIN_CUT = 0.2
DRAIN_S = 0.1


class EncodeStage(Stage):
    def __init__(
        self,
        ctx: StageContext,
        *,
        raw: Ring,
        raw_reader: int,
        encoded_tx: Ring,
        preset: Preset,
        codec: Codec,
        backend: str = "auto",
        v0_max_bytes: int | None = None,
        keyframe_request: int = -1,
        feedback_ring: Ring | None = None,
        feedback_reader: int = 0,
    ) -> None:
        super().__init__(ctx)
        self._feedback = None if feedback_ring is None else feedback_ring.reader(feedback_reader)
        self._target_bps: int | None = None
        self._encoder_bps = preset.bitrate_bps
        self._ladder = QualityLadder(preset.quality)
        self._captured = 0
        self._reader = raw.reader(raw_reader)
        self._writer = encoded_tx.writer()
        self._codec = codec
        self._backend = backend
        self._keyframe_fd = keyframe_request
        self._plain = codec.encoder(backend)
        # None until connected: there is nothing to encode for.
        self._encoder: VideoEncoder | None = None
        self._mode: str | None = None
        self._preset = preset
        self._framing_cap = v0_max_bytes
        self._sending = True
        self._quality = preset.quality
        self._drain_frames = 0  # frames still to skip after a sharp delay-based cut

    def wait_fds(self) -> Sequence[int]:
        fds = [self._reader.fd]
        if self._keyframe_fd >= 0:
            fds.append(self._keyframe_fd)
        if self._feedback is not None:
            fds.append(self._feedback.fd)
        return fds

    def _on_feedback(self) -> None:
        reader = self._feedback
        assert reader is not None
        targets = [m for m in feedback.receive(reader) if isinstance(m, feedback.TargetRate)]
        if not targets:
            return
        newest = targets[-1]  # only the newest target matters here
        before = self._encoder_bps
        self._apply_target(newest.bps)
        if (
            self._plain.follows_bitrate
            and newest.reason == "remb"
            and self._encoder_bps <= (1 - DRAIN_CUT) * before
        ):
            self._drain_frames = max(1, round(DRAIN_S * self._preset.fps))
            self.count("drains")

    def _apply_target(self, bps: int | None) -> None:
        self._target_bps = bps
        self._ladder.set_target(bps)
        cap = self._preset.bitrate_bps
        self._encoder_bps = cap if bps is None else min(bps, cap)
        self._plain.set_bitrate(self._encoder_bps)

    def _scaled(self, bgr: Any) -> Any:
        """The frame at the ladder's resolution (JPEG-style codecs under congestion)."""
        scale = self._ladder.rung.scale
        if self._plain.follows_bitrate or scale >= 1.0:
            return bgr
        m = max(self._codec.info.size_multiple, 16)
        h, w = bgr.shape[:2]
        size = (max(m, round(w * scale / m) * m), max(m, round(h * scale / m) * m))
        return cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)

    def _picture(self, desc: Descriptor) -> Any:
        """The raw frame in a format the codec takes: in place when it does (no copy), else
        converted to BGR (``CodecInfo.raw_formats``; e.g. an I420 frame just before a switch to
        JPEG), counted as ``converted_to_bgr``."""
        image = self._reader.picture(desc)
        if desc.pixel_format in self._codec.info.raw_formats:
            return image
        self.count("converted_to_bgr")
        return to_bgr(image, desc.pixel_format)

    def step(self, ready: Sequence[int], now_ns: int) -> None:
        if self._feedback is not None and self._feedback.fd in ready:
            self._on_feedback()
        if self._keyframe_fd in ready:
            with contextlib.suppress(BlockingIOError):
                os.eventfd_read(self._keyframe_fd)
            if self._encoder is not None:
                self._encoder.request_keyframe()
                self.count("keyframe_requests")
        if self._reader.fd not in ready:
            return
        self._reader.drain()
        desc = self._reader.latest()
        if desc is None:
            return
        encoder = self._encoder
        if encoder is None or not self._sending:
            self.count("skipped_idle")
            return
        self._captured += 1
        ladder = self._ladder
        adaptive = not self._plain.follows_bitrate and self._mode == "rtp"
        if adaptive and not ladder.take(self._captured):
            self.count("skipped_rate")
            return
        if self._drain_frames > 0:
            self._drain_frames -= 1
            self.count("skipped_drain")
            return
        quality = min(self._preset.quality, ladder.rung.quality) if adaptive else None
        start = time.monotonic_ns()
        try:
            image = self._picture(desc)
            if quality is None:
                frame = encoder.encode(image, self._preset.quality)
            else:
                frame = encoder.encode(self._scaled(image), quality)
        except EncodeError:
            self.count("too_large")
            return
        if not self._reader.valid(desc):
            # The capture stage overwrote the picture while it was read: drop it. An encoder
            # that keeps references has coded it anyway, so its next frame must not refer to
            # it: ask for a keyframe (what the peer decodes next then stands on its own).
            self.count("torn")
            if not self._codec.info.intra_only:
                encoder.request_keyframe()
            return
        self._quality = frame.quality
        stamps = dict(enumerate(desc.stamps[: Ts.CAPTURED + 1]))
        stamps[Ts.ENCODE_START] = start
        done = time.monotonic_ns()
        stamps[Ts.ENCODED] = done
        try:
            self._writer.write(
                frame.data,
                frame_id=desc.frame_id,
                width=frame.width,
                height=frame.height,
                quality=frame.quality,
                keyframe=frame.keyframe,
                stamps=stamps,
            )
        except RingError:
            self.count("too_large")
            return
        self.window("encode_wait").add_ns(start - desc.stamp(Ts.CAPTURED))
        self.window("encode").add_ns(done - start)
        if adaptive:
            ladder.on_frame(len(frame.data), done / 1e9, self._preset.fps)
        self.count("frames")
        self.count("bytes", len(frame.data))

    def handle(self, msg: ControlMessage) -> None:
        match msg:
            case Connect(peer=peer):
                if peer.codec.upper() != self._codec.info.name:
                    self._codec = get_codec(peer.codec)
                    self._plain = self._codec.encoder(self._backend)
                self._plain.set_fps(self._preset.fps)
                self._ladder = QualityLadder(self._preset.quality)
                self._apply_target(None)
                framing = self._codec.framing(peer.mode, self._framing_cap)
                self._encoder = self._plain if framing is None else framing.encoder(self._plain)
                self._mode = str(peer.mode)
            case SetSending(enabled=enabled):
                if enabled and not self._sending:
                    # Frames encoded around the pause may never have left (the send stage
                    # stopped first): the peer's chain restarts from a keyframe.
                    self._plain.request_keyframe()
                self._sending = enabled
            case SetPreset(preset=preset):
                self._preset = preset
                self._quality = preset.quality
                self._plain.set_fps(preset.fps)
                self._ladder = QualityLadder(preset.quality)
                self._apply_target(self._target_bps)

    def snapshot(self, now_ns: int) -> dict[str, Any]:
        return {
            "codec": self._plain.backend,
            "codec_name": self._codec.info.name,
            "mode": self._mode,
            "sending": self._sending,
            "quality": self._quality,
            "ring_dropped": self._reader.dropped,
            "ring_torn": self._reader.torn,
            "target_bps": self._target_bps,
            "encoder_bps": self._encoder_bps if self._plain.follows_bitrate else None,
            "ladder": None
            if self._plain.follows_bitrate
            else {
                "rung": self._ladder.index,
                "quality": self._ladder.rung.quality,
                "scale": self._ladder.rung.scale,
                "fps_divisor": self._ladder.rung.fps_divisor,
                "fps": round(self._preset.fps / self._ladder.rung.fps_divisor, 1),
                "reason": self._ladder.reason,
                "measured_bps": round(self._ladder.measured_bps),
            },
        }
