"""Encode stage: the newest raw frame -> JPEG in the tx ring, only while connected and sending.

JPEG is encoded straight from the raw ring's slot (no copy); if the capture stage overwrote the
slot meanwhile (``valid`` fails) the JPEG is thrown away and counted as torn.

In V0 mode whole datagrams must stay peer-safe (classic receivers read at most 32 KiB in one
``recvfrom``), so the JPEG is capped at ``v0_max_bytes``: 32 KiB minus the largest V0 header.
The frame is first scaled to fit 640x480 (the classic clients' own size) and then
``CappedEncoder`` steps quality (and if needed resolution) down, starting from the setting that
fitted the previous frame (about one encode per frame).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from pipeline.codecs.jpeg.backends import (
    CappedEncoder,
    FrameTooLargeError,
    JpegCodec,
    codec_by_name,
    fit_size,
)
from pipeline.ipc.ring import Ring, RingError, Ts
from pipeline.presets import Preset
from pipeline.stages.base import Message, Stage, StageContext
from pipeline.wire.v0 import V0_HEADER_MAX, V0_PEER_SAFE_DATAGRAM

logger = logging.getLogger(__name__)

# The cap is on the JPEG; the header rides in the same datagram, so leave room for it.
V0_MAX_BYTES = V0_PEER_SAFE_DATAGRAM - V0_HEADER_MAX
V0_MAX_SIZE = (640, 480)


class EncodeStage(Stage):
    def __init__(
        self,
        ctx: StageContext,
        *,
        raw: Ring,
        raw_reader: int,
        jpeg_tx: Ring,
        preset: Preset,
        codec: str = "auto",
        v0_max_bytes: int = V0_MAX_BYTES,
    ) -> None:
        super().__init__(ctx)
        self._reader = raw.reader(raw_reader)
        self._writer = jpeg_tx.writer()
        self._codec: JpegCodec = codec_by_name(codec)
        self._preset = preset
        self._mode: str | None = None  # None until connected: nothing to encode for
        self._sending = True
        self._capped = CappedEncoder(self._codec, v0_max_bytes)
        self._v0_quality = preset.quality

    def wait_fds(self) -> Sequence[int]:
        return (self._reader.fd,)

    def step(self, ready: Sequence[int], now_ns: int) -> None:
        if not ready:
            return
        self._reader.drain()
        desc = self._reader.latest()
        if desc is None:
            return
        if self._mode is None or not self._sending:
            self.count("skipped_idle")
            return
        start = time.monotonic_ns()
        image = self._reader.array(desc)
        quality = self._preset.quality
        try:
            if self._mode == "v0":
                jpeg, width, height, quality = self._encode_v0(image)
            else:
                jpeg, width, height = self._codec.encode(image, quality), desc.width, desc.height
        except FrameTooLargeError:
            self.count("too_large")
            return
        if not self._reader.valid(desc):
            self.count("torn")
            return
        stamps = dict(enumerate(desc.stamps[: Ts.CAPTURED + 1]))
        stamps[Ts.ENCODE_START] = start
        done = time.monotonic_ns()
        stamps[Ts.ENCODED] = done
        try:
            self._writer.write(
                jpeg, frame_id=desc.frame_id, width=width, height=height, aux=quality, stamps=stamps
            )
        except RingError:
            self.count("too_large")
            return
        self.window("encode_wait").add_ns(start - desc.stamp(Ts.CAPTURED))
        self.window("encode").add_ns(done - start)
        self.count("frames")
        self.count("bytes", len(jpeg))

    def _encode_v0(self, image: np.ndarray) -> tuple[bytes, int, int, int]:
        h, w = image.shape[:2]
        if w > V0_MAX_SIZE[0] or h > V0_MAX_SIZE[1]:
            tw, th = fit_size((w, h), V0_MAX_SIZE)
            tw, th = max(8, tw // 8 * 8), max(8, th // 8 * 8)
            small = np.empty((th, tw, 3), dtype=np.uint8)
            cv2.resize(image, (tw, th), dst=small, interpolation=cv2.INTER_AREA)
            image = small
        frame = self._capped.encode(image, self._preset.quality)
        self._v0_quality = frame.quality
        return frame.jpeg, frame.width, frame.height, frame.quality

    def handle(self, msg: Message) -> None:
        verb = msg[0]
        if verb == "connect":
            self._mode = msg[1]
        elif verb == "sending":
            self._sending = bool(msg[1])
        elif verb == "preset":
            self._preset = msg[1]
            self._v0_quality = self._preset.quality
        else:
            super().handle(msg)

    def snapshot(self, now_ns: int) -> dict[str, Any]:
        return {
            "codec": self._codec.name,
            "mode": self._mode,
            "sending": self._sending,
            "quality": self._v0_quality if self._mode == "v0" else self._preset.quality,
            "ring_dropped": self._reader.dropped,
            "ring_torn": self._reader.torn,
        }
