"""Capture stage: read the source straight into the raw ring's next slot, at the preset's rate.

Control: ``("preset", Preset)`` changes size and rate (the source is reopened at the new size);
``("source", spec)`` switches source (on failure the old one stays and the error is counted and
shown in the stats). Frame ids keep counting across switches. ``Connect`` tells which codec the
call uses: frames are written in the first of its ``CodecInfo.raw_formats`` that the source can
write (the test pattern draws I420 straight for H.264, which then needs no BGR -> YUV
conversion), else BGR; the descriptor says which (``Descriptor.pixel_format``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from pipeline.codecs.registry import get_codec
from pipeline.control import Connect, ControlMessage, SetPreset, SetSource
from pipeline.ipc.ring import Ring, Ts
from pipeline.pixels import PixelFormat, can_hold
from pipeline.presets import Preset
from pipeline.sources.video import Source, SourceError, open_source
from pipeline.stages.base import Stage, StageContext

logger = logging.getLogger(__name__)

RETRY_NS = 100_000_000  # wait before reading again from a camera whose read failed
LOG_EVERY = 50


class CaptureStage(Stage):
    def __init__(
        self,
        ctx: StageContext,
        *,
        raw: Ring,
        spec: str,
        preset: Preset,
        raw_formats: tuple[PixelFormat, ...] = (PixelFormat.BGR24,),
    ) -> None:
        super().__init__(ctx)
        self._writer = raw.writer()
        self._capacity = raw.capacity
        self._preset = preset
        self._spec = spec
        self._next_id = 0
        self._source: Source | None = None
        self._last_error = ""
        self._wanted = raw_formats  # the call codec's, best first (Connect may change it)
        self._source = self._open(spec, preset)
        if self._source is None and spec != "pattern":
            self._spec = "pattern"
            self._source = self._open("pattern", preset)
        self._period_ns = int(1e9 / preset.fps)
        self._deadline = time.monotonic_ns()

    def _open(self, spec: str, preset: Preset) -> Source | None:
        if preset.frame_bytes > self._capacity:
            self._last_error = f"{preset.width}x{preset.height} exceeds the raw ring's slots"
            logger.error("capture: %s", self._last_error)
            return None
        try:
            return open_source(
                spec, preset.width, preset.height, preset.fps, first_id=self._next_id
            )
        except (SourceError, ValueError, OSError) as exc:
            self._last_error = f"{spec}: {exc}"
            self.count("source_errors")
            logger.warning("capture: cannot open source %s", self._last_error)
            return None

    def _paced(self) -> bool:
        # A camera blocks in read until its next frame: it is its own clock.
        return not self._spec.startswith("camera")

    def timeout(self, now_ns: int) -> float:
        # A camera's deadline stays in the past (its read is the clock) unless a read failed.
        return max(0.0, (self._deadline - now_ns) / 1e9)

    def step(self, ready: Sequence[int], now_ns: int) -> None:
        if self._source is None or now_ns < self._deadline:
            return
        if self._paced():
            # Keep the timeline: a late wake-up (busy machine) is made up by capturing the next
            # frame at once; frames more than one period late are skipped, never burst out.
            self._deadline = max(self._deadline + self._period_ns, now_ns - self._period_ns)
        p = self._preset
        fmt = self._format(self._source)
        dst = self._writer.begin_picture(fmt, p.width, p.height)
        capture_ns = time.monotonic_ns()
        try:
            frame_id = self._source.read_into(dst, capture_ns)
        except (SourceError, OSError, ValueError) as exc:
            self._writer.abort()
            self._failed(now_ns, "read_errors", str(exc))
            return
        if frame_id is None:
            self._writer.abort()
            self._failed(now_ns, "no_frame", "")
            return
        self._next_id = (frame_id + 1) & 0xFFFFFFFF
        done = time.monotonic_ns()
        if not self._paced():  # the camera returned when its frame was ready
            capture_ns = done
        self._writer.commit(
            frame_id=frame_id,
            nbytes=dst.nbytes,
            width=p.width,
            height=p.height,
            stamps={Ts.CAPTURE: capture_ns, Ts.CAPTURED: done},
            pixel_format=fmt,
        )
        self.window("capture").add_ns(done - capture_ns)
        self.count("frames")

    def _format(self, source: Source) -> PixelFormat:
        """The first format the codec takes that the source writes at this size, else BGR."""
        p = self._preset
        for fmt in self._wanted:
            if fmt in source.raw_formats and can_hold(fmt, p.width, p.height):
                return fmt
        return PixelFormat.BGR24

    def _failed(self, now_ns: int, counter: str, error: str) -> None:
        self.count(counter)
        if error:
            self._last_error = error
        if self.counters[counter] % LOG_EVERY == 1:
            logger.warning("capture: %s (%d so far) %s", counter, self.counters[counter], error)
        if not self._paced():  # a camera that fails at once must not spin the loop
            self._deadline = now_ns + RETRY_NS

    def handle(self, msg: ControlMessage) -> None:
        match msg:
            case Connect(peer=peer):
                self._wanted = get_codec(peer.codec).info.raw_formats
            case SetPreset(preset=preset):
                source = self._open(self._spec, preset)
                if source is not None:
                    self._replace(source, self._spec, preset)
            case SetSource(spec=spec):
                source = self._open(spec, self._preset)
                if source is not None:
                    self._replace(source, spec, self._preset)

    def _replace(self, source: Source, spec: str, preset: Preset) -> None:
        if self._source is not None:
            self._source.close()
        self._source, self._spec, self._preset = source, spec, preset
        self._period_ns = int(1e9 / preset.fps)
        self._deadline = time.monotonic_ns()
        self._last_error = ""
        logger.info("capture: %s at %dx%d %d fps", spec, preset.width, preset.height, preset.fps)

    def snapshot(self, now_ns: int) -> dict[str, Any]:
        p = self._preset
        return {
            "source": self._spec,
            "size": [p.width, p.height],
            "fps_target": p.fps,
            "pixel_format": None if self._source is None else self._format(self._source).name,
            "error": self._last_error,
        }

    def close(self) -> None:
        if self._source is not None:
            self._source.close()
            self._source = None
