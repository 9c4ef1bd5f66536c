"""Display stage: encoded frames of the rx ring -> RGB at the display size in the peer ring;
raw frames (BGR or I420) -> a small RGB self-view in the self ring. Both rings wake the
controller through one eventfd.

The stage holds the call codec's decoder and never asks which codec it is. A frame's declared
size is checked first (``VideoDecoder.frame_size``: for JPEG the SOF header, microseconds, no
allocation); then it is decoded straight to RGB, straight into the peer ring's slot, at the size
that fits the display box (for JPEG, TurboJPEG's DCT scaling does most of the shrinking). When
the frame is the test pattern, its embedded capture time gives capture-to-display latency (same
host).

An inter-frame codec (``CodecInfo.intra_only`` false) needs every frame, in order: the stage
reads the rx ring in order (``RingReader.next``) and decodes each frame. When the chain of
references breaks (a frame the ring overwrote before it was read, or one that did not decode),
it shows nothing until a keyframe arrives (the last good picture stays: never a broken one),
counts the skipped frames as ``waiting_keyframe``, and signals the receive stage on the
``keyframe_needed`` eventfd, which asks the peer for a keyframe.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

from pipeline.codecs.base import Codec, CodecError, VideoDecoder, fit_size
from pipeline.codecs.registry import get_codec
from pipeline.control import Connect, ControlMessage, SetDisplaySize
from pipeline.ipc.ring import Descriptor, Ring, Ts
from pipeline.pixels import shrink_to_rgb
from pipeline.sources.pattern import Stamp, read_stamp
from pipeline.stages.base import Stage, StageContext
from pipeline.stats import FreezeDetector, RateMeter

logger = logging.getLogger(__name__)

# A capture-to-display figure outside this range is not from this host's clock.
MAX_PLAUSIBLE_NS = 10_000_000_000
# The test pattern's stamp (capture time, frame id) is looked for in every frame until
# STAMP_GIVE_UP frames in a row had none (a camera, a file, another tool's stream), then in one
# frame of every STAMP_GIVE_UP: reading a 720p frame that has no stamp costs 0.36 ms of CPU
# (1% of a core at 30 fps) for nothing.
STAMP_GIVE_UP = 30


class DisplayStage(Stage):
    def __init__(
        self,
        ctx: StageContext,
        *,
        encoded_rx: Ring,
        raw: Ring,
        raw_reader: int,
        rgb_peer: Ring,
        rgb_self: Ring,
        peer_box: tuple[int, int],
        self_box: tuple[int, int],
        codec: Codec,
        backend: str = "auto",
        keyframe_needed: int = -1,
    ) -> None:
        super().__init__(ctx)
        self._keyframe_needed = keyframe_needed
        self._codec = codec
        self._backend = backend
        self._in_order = not codec.info.intra_only
        self._broken = self._in_order  # an inter-frame decoder starts at a keyframe
        self._rx = encoded_rx.reader(0)
        self._raw = raw.reader(raw_reader)
        self._peer = rgb_peer.writer()
        self._self = rgb_self.writer()
        self._peer_cap = rgb_peer.capacity
        self._self_cap = rgb_self.capacity
        self._decoder: VideoDecoder = codec.decoder(backend)
        self._peer_box = peer_box
        self._self_box = self_box
        self._shown = RateMeter()
        self._freezes = FreezeDetector()
        self._self_shown = RateMeter()
        self._stamp_misses = 0  # frames in a row without the pattern's stamp
        self._stamp_tries = 0

    def wait_fds(self) -> Sequence[int]:
        return (self._rx.fd, self._raw.fd)

    def step(self, ready: Sequence[int], now_ns: int) -> None:
        if self._rx.fd in ready:
            self._rx.drain()
            self._show_peer()
        if self._raw.fd in ready:
            self._raw.drain()
            self._show_self()

    def _fit(self, src: tuple[int, int], box: tuple[int, int], capacity: int) -> tuple[int, int]:
        w, h = fit_size(src, box)
        while w * h * 3 > capacity:  # never more than the ring was sized for
            w, h = max(1, w * 3 // 4), max(1, h * 3 // 4)
        return w, h

    def _show_peer(self) -> None:
        if not self._in_order:
            desc = self._rx.latest()
            if desc is not None:
                self._show(desc)
            return
        for _ in range(self._rx.ring.n_slots):
            dropped = self._rx.dropped
            desc = self._rx.next()
            if desc is None:
                return
            if self._rx.dropped != dropped:  # frames lost between receive and us
                self._lose_chain()
            self._show(desc)

    def _lose_chain(self) -> None:
        if self._in_order:
            self._broken = True
            self._ask_keyframe()

    def _ask_keyframe(self) -> None:
        if self._keyframe_needed >= 0:
            with contextlib.suppress(BlockingIOError):
                os.eventfd_write(self._keyframe_needed, 1)

    def _show(self, desc: Descriptor) -> None:
        if self._broken and not desc.keyframe:
            self.count("waiting_keyframe")
            self._ask_keyframe()
            return
        start = time.monotonic_ns()
        data = self._rx.copy_bytes(desc)
        if data is None:  # overwritten while copied: for an in-order codec a lost reference
            self.count("torn")
            self._lose_chain()
            return
        try:
            width, height = self._decoder.frame_size(data)
        except CodecError as exc:
            self.count("rejected_frame")
            logger.debug("display: frame rejected before decoding: %s", exc)
            self._lose_chain()
            return
        w, h = self._fit((width, height), self._peer_box, self._peer_cap)
        dst = self._peer.begin_array(w, h)
        try:
            self._decoder.decode_rgb_into(data, dst)
        except CodecError as exc:
            self._peer.abort()
            self.count("undecodable")
            logger.debug("display: undecodable frame: %s", exc)
            self._lose_chain()
            return
        if desc.keyframe:
            self._broken = False
        stamp = self._read_stamp(dst)
        done = time.monotonic_ns()
        capture_ns = 0
        if stamp is not None and 0 < done - stamp.capture_ns < MAX_PLAUSIBLE_NS:
            capture_ns = stamp.capture_ns
        stamps = dict(enumerate(desc.stamps))
        stamps[Ts.CAPTURE] = capture_ns
        stamps[Ts.DECODE_START] = start
        stamps[Ts.DISPLAYED] = done
        self._peer.commit(
            frame_id=desc.frame_id,
            nbytes=dst.nbytes,
            width=w,
            height=h,
            pattern_id=stamp.frame_id if stamp is not None else 0,
            source_width=width,
            source_height=height,
            stamps=stamps,
        )
        self._shown.add(done)
        self._freezes.shown(done / 1e9)
        self.count("frames")
        self.window("display_wait").add_ns(start - desc.stamp(Ts.PLAYOUT))
        self.window("decode").add_ns(done - start)
        if capture_ns:
            self.window("capture_to_display").add_ns(done - capture_ns)
            self.window("capture_to_receive").add_ns(desc.stamp(Ts.RECV_FIRST) - capture_ns)

    def _read_stamp(self, rgb: Any) -> Stamp | None:
        """The pattern's stamp in a shown frame, looked for less often once frames stop
        carrying one (STAMP_GIVE_UP); None when not looked for or not found."""
        self._stamp_tries += 1
        if self._stamp_misses >= STAMP_GIVE_UP and self._stamp_tries % STAMP_GIVE_UP:
            return None
        stamp = read_stamp(rgb)
        self._stamp_misses = 0 if stamp is not None else self._stamp_misses + 1
        return stamp

    def _show_self(self) -> None:
        desc = self._raw.latest()
        if desc is None or desc.width == 0:
            return
        w, h = self._fit((desc.width, desc.height), self._self_box, self._self_cap)
        src = self._raw.picture(desc)
        dst = self._self.begin_array(w, h)
        shrink_to_rgb(src, desc.pixel_format, dst)
        if not self._raw.valid(desc):
            self._self.abort()
            self.count("self_torn")
            return
        done = time.monotonic_ns()
        self._self.commit(
            frame_id=desc.frame_id,
            nbytes=dst.nbytes,
            width=w,
            height=h,
            source_width=desc.width,
            source_height=desc.height,
            stamps={Ts.CAPTURE: desc.stamp(Ts.CAPTURE), Ts.DISPLAYED: done},
        )
        self._self_shown.add(done)
        self.window("self_view").add_ns(done - desc.stamp(Ts.CAPTURE))

    def reset_stats(self) -> None:
        self._freezes = FreezeDetector()

    def handle(self, msg: ControlMessage) -> None:
        match msg:
            case Connect(peer=peer):
                if peer.codec.upper() != self._codec.info.name:
                    self._codec = get_codec(peer.codec)
                    self._decoder = self._codec.decoder(self._backend)
                    self._in_order = not self._codec.info.intra_only
                    self._broken = self._in_order
            case SetDisplaySize(peer_box=peer_box, self_box=self_box):
                self._peer_box, self._self_box = peer_box, self_box

    def snapshot(self, now_ns: int) -> dict[str, Any]:
        return {
            "codec": self._decoder.backend,
            "fps_shown": round(self._shown.rate(now_ns), 2),
            "freezes": dataclasses.asdict(self._freezes.stats(now_ns / 1e9)),
            "fps_self_view": round(self._self_shown.rate(now_ns), 2),
            "peer_box": list(self._peer_box),
            "self_box": list(self._self_box),
            "ring_dropped": self._rx.dropped,
            "self_ring_dropped": self._raw.dropped,
        }
