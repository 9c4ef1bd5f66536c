"""Video sources: the test pattern, a camera, a looped video file, the screen.

API::

    class Source(Protocol):
        spec: str; width: int; height: int
        raw_formats: tuple[PixelFormat, ...]        # what read_into can write (BGR24 always)
        def read_into(self, dst: np.ndarray, now_ns: int) -> int | None
            # writes one frame into dst (e.g. a shared-memory slot view): (height, width, 3)
            # uint8 BGR, or (height * 3 // 2, width) I420 where raw_formats has it (the test
            # pattern: pipeline.pixels); returns its frame id, or None when no frame could be
            # had this time
        def close(self) -> None                      # idempotent
    def open_source(spec: str, width: int, height: int, fps: float, *,
                    first_id: int = 0) -> Source
    def parse_spec(spec: str) -> SourceSpec          # SourceSpec(kind, target)
    def list_cameras() -> list[str]                  # ["camera:/dev/video0", ...]; cheap
    def fit_into(src: np.ndarray, dst: np.ndarray) -> None   # scale whole into dst, letterboxed
    MAX_CONSECUTIVE_MISSES = 30
    class SourceError(Exception)                     # base
    class SourceSpecError(SourceError, ValueError)   # malformed spec (local misuse)
    class CameraUnavailableError(SourceError)        # no such camera / cannot be opened
    class VideoFileError(SourceError)                # missing or unreadable video file
    class ScreenCaptureError(SourceError)            # no display / mss missing

Specs: "pattern"; "camera:0" or "camera:/dev/video0"; "file:/path/video.mp4"; "screen" or
"screen:N" (monitor N of mss, 1 = the first; needs a display).

Guarantees:
- Frames always have the requested size: camera, file and screen frames are scaled whole
  into it, aspect kept, with black bars filling the rest (letterboxed at the sender: never
  stretched, never cropped, so nothing shared is cut off; see ``fit_into``). Why at the
  sender: every receiver, classic V0 peers included, already shows a frame of the preset's
  size correctly, so no negotiation of another size is needed.
- Frame ids count up by one per frame returned, from ``first_id``, modulo 2**32.
- The pattern source renders the stamped test pattern (pipeline.sources.pattern) with the
  frame id and ``now_ns`` as capture time, so latency can be measured at the display.
- read_into never paces: pattern, file and screen return at once (the capture loop keeps the
  frame rate); a camera blocks until the device delivers its next frame. ``fps`` is passed to
  the camera; the others ignore it.
- A file plays at its own frame rate, whatever the caller's: read_into shows the file frame
  due at ``now_ns`` (pipeline.sources.playback), dropping or repeating frames; its counters
  are ``FileSource.timeline_stats``.
- A camera or file that yields no frame MAX_CONSECUTIVE_MISSES times in a row raises
  CameraUnavailableError / VideoFileError from read_into (unplugged camera, file gone).
- Sources hold OS handles and are not picklable: call open_source inside the process that
  reads (e.g. the capture stage), passing it the spec string.
"""

from __future__ import annotations

import enum
import errno
import fcntl
import glob
import logging
import os
import re
import struct
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np
import numpy.typing as npt

from pipeline.pixels import PixelFormat
from pipeline.sources.pattern import PatternRenderer
from pipeline.sources.playback import FileTimeline

logger = logging.getLogger(__name__)

U8Array = npt.NDArray[np.uint8]

_ID_MASK = 0xFFFFFFFF
# A camera or file that gives no frame this many times in a row is reported lost (an exception),
# so the capture stage can say so and switch to the pattern instead of showing a frozen frame.
MAX_CONSECUTIVE_MISSES = 30
# A file far faster than the caller (e.g. 240 fps read at 5 fps) is decoded at most this many
# frames per read; beyond that the timeline jumps (FileSource.jumps).
_MAX_DECODES_PER_READ = 64
# VIDIOC_QUERYCAP = _IOR('V', 0, struct v4l2_capability) (104 bytes).
_VIDIOC_QUERYCAP = 0x80685600
_V4L2_CAP_VIDEO_CAPTURE = 0x00000001
_V4L2_CAP_DEVICE_CAPS = 0x80000000


class SourceError(Exception):
    """A source could not be opened or read."""


class SourceSpecError(SourceError, ValueError):
    """A malformed source spec (a local misuse)."""


class CameraUnavailableError(SourceError):
    """The camera does not exist or cannot be opened."""


class VideoFileError(SourceError):
    """The video file does not exist or has no decodable frame."""


class ScreenCaptureError(SourceError):
    """Screen capture is not possible here (no display, or mss not installed)."""


class SourceKind(enum.Enum):
    PATTERN = "pattern"
    CAMERA = "camera"
    FILE = "file"
    SCREEN = "screen"


@dataclass(frozen=True, slots=True)
class SourceSpec:
    kind: SourceKind
    target: str = ""  # camera: index or device path; file: path; screen: monitor number


def parse_spec(spec: str) -> SourceSpec:
    """Parse a source spec; SourceSpecError names the accepted forms."""
    kind_text, sep, target = spec.partition(":")
    try:
        kind = SourceKind(kind_text)
    except ValueError:
        raise SourceSpecError(
            f"unknown source {spec!r}: use pattern, camera:N, camera:/dev/videoN, "
            "file:/path, screen or screen:N"
        ) from None
    if kind is SourceKind.PATTERN and sep:
        raise SourceSpecError(f"pattern takes no argument: {spec!r}")
    if kind in (SourceKind.CAMERA, SourceKind.FILE) and not target:
        raise SourceSpecError(f"{kind.value} needs a target, e.g. {kind.value}:0 or :/path")
    if kind is SourceKind.SCREEN and sep and not target.isdigit():
        raise SourceSpecError(f"screen takes a monitor number: {spec!r}")
    return SourceSpec(kind, target)


class Source(Protocol):
    spec: str
    width: int
    height: int
    raw_formats: tuple[PixelFormat, ...]

    def read_into(self, dst: U8Array, now_ns: int) -> int | None: ...

    def close(self) -> None: ...


def _check_dst(dst: U8Array, width: int, height: int) -> None:
    if dst.shape != (height, width, 3) or dst.dtype != np.uint8:
        raise ValueError(f"dst must be ({height}, {width}, 3) uint8, got {dst.shape} {dst.dtype}")


def _even(size: float) -> int:
    """``size`` rounded to the nearest even integer, halves up (25.0 -> 26)."""
    return 2 * int(size / 2 + 0.5)


def fit_into(src: U8Array, dst: U8Array) -> None:
    """Scale ``src`` whole into ``dst``, aspect kept, and fill the rest black (letterbox).

    Shapes: (h, w, 3) uint8 both. Nothing of the source is cut off: a 16:9 screen at a 4:3
    preset gets black bars above and below, a 4:3 camera at 16:9 bars left and right. The
    picture is centred; its size is rounded to even pixels so that the bars' edges fall on
    chroma sample boundaries of 4:2:0 codecs (ITU-T T.81 A.1.1 sampling, H.264 6.2).
    INTER_AREA when shrinking, INTER_LINEAR when enlarging.
    """
    sh, sw = src.shape[:2]
    dh, dw = dst.shape[:2]
    if sw * dh > dw * sh:  # wider than the target: full width, bars top and bottom
        fw, fh = dw, min(dh, max(1, _even(sh * dw / sw)))
    else:  # taller (or equal): full height, bars left and right
        fw, fh = min(dw, max(1, _even(sw * dh / sh))), dh
    x0, y0 = (dw - fw) // 2, (dh - fh) // 2
    dst[:y0] = 0
    dst[y0 + fh :] = 0
    dst[y0 : y0 + fh, :x0] = 0
    dst[y0 : y0 + fh, x0 + fw :] = 0
    region = dst[y0 : y0 + fh, x0 : x0 + fw]
    if (sh, sw) == (fh, fw):
        np.copyto(region, src)
        return
    interpolation = cv2.INTER_AREA if sw >= fw and sh >= fh else cv2.INTER_LINEAR
    if region.flags.c_contiguous:
        # OpenCV writes into a given dst only when it is one contiguous block.
        cv2.resize(src, (fw, fh), dst=region, interpolation=interpolation)
    else:
        np.copyto(region, cv2.resize(src, (fw, fh), interpolation=interpolation))


class _CountingSource:
    """Frame-id bookkeeping shared by the sources."""

    # Cameras, files and the screen come through OpenCV or mss as BGR.
    raw_formats: tuple[PixelFormat, ...] = (PixelFormat.BGR24,)

    def __init__(self, spec: str, width: int, height: int, first_id: int) -> None:
        self.spec = spec
        self.width = width
        self.height = height
        self._next_id = first_id & _ID_MASK
        self.closed = False

    def _take_id(self) -> int:
        frame_id = self._next_id
        self._next_id = (frame_id + 1) & _ID_MASK
        return frame_id


class PatternSource(_CountingSource):
    """The stamped test pattern, drawn in BGR or straight in I420 (no conversion later)."""

    raw_formats: tuple[PixelFormat, ...] = (PixelFormat.I420, PixelFormat.BGR24)

    def __init__(self, width: int, height: int, first_id: int = 0) -> None:
        super().__init__("pattern", width, height, first_id)
        self._renderer = PatternRenderer(width, height)
        # The I420 planes are converted here, not in the first frame's timed capture (12 ms at
        # 1080p, once).
        self._renderer.prepare_i420()

    def read_into(self, dst: U8Array, now_ns: int) -> int | None:
        frame_id = self._take_id()
        if dst.ndim == 2:
            self._renderer.render_i420_into(dst, frame_id, now_ns)
        else:
            self._renderer.render_into(dst, frame_id, now_ns)
        return frame_id

    def close(self) -> None:
        self.closed = True


class _CaptureSource(_CountingSource):
    """An OpenCV VideoCapture (camera or file), resized to the requested size."""

    def __init__(self, spec: str, width: int, height: int, first_id: int, cap: Any) -> None:
        super().__init__(spec, width, height, first_id)
        self._cap = cap
        self._buf: Any = None  # reused by VideoCapture.read(image=...) when shapes match
        self.misses = 0  # consecutive reads without a frame

    def _read(self) -> U8Array | None:
        ok, image = self._cap.read(self._buf)
        if not ok or image is None or image.ndim != 3 or image.shape[2] != 3:
            return None
        self._buf = image
        frame: U8Array = image
        return frame

    def read_into(self, dst: U8Array, now_ns: int) -> int | None:
        _check_dst(dst, self.width, self.height)
        image = self._read()
        if image is None:
            self.misses += 1
            if self.misses >= MAX_CONSECUTIVE_MISSES:
                raise self._lost(f"{self.spec}: no frame in {self.misses} reads")
            return None
        self.misses = 0
        fit_into(image, dst)
        return self._take_id()

    def _lost(self, message: str) -> SourceError:
        return SourceError(message)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._cap.release()


class CameraSource(_CaptureSource):
    """A V4L2 camera through OpenCV; read_into blocks until the next frame."""

    def _lost(self, message: str) -> SourceError:
        return CameraUnavailableError(f"{message} (unplugged?)")


class FileSource(_CaptureSource):
    """A video file played in a loop at its own frame rate (see pipeline.sources.playback).

    Each read_into shows the newest file frame whose media time has been reached at ``now_ns``:
    frames in between are decoded and dropped (``skipped``) when the file is faster than the
    caller's rate, and the last frame is given again (``repeated``) when it is slower. More than
    ``max_lag_s`` behind (a stalled caller), the timeline jumps instead of decoding a burst.
    """

    def __init__(self, spec: str, path: str, width: int, height: int, first_id: int) -> None:
        super().__init__(spec, width, height, first_id, _open_file(path))
        self._path = path
        self.loops = 0
        self.skipped = 0  # decoded, never shown: the file is faster than the caller
        self.repeated = 0  # the same file frame returned again: the file is slower
        self.jumps = 0  # the timeline was resynchronised after the caller stalled
        self.timeline = FileTimeline(self._cap.get(cv2.CAP_PROP_FPS))
        self._pending: tuple[U8Array, float] | None = None  # decoded ahead, not yet due
        self._spare: Any = None  # decode buffer not holding the current or pending frame
        self._shown: U8Array | None = None  # the current frame at the target size
        self._shown_fresh = False  # _shown holds a frame not returned yet
        self._shown_s = 0.0  # media time of _shown

    def _lost(self, message: str) -> SourceError:
        return VideoFileError(f"{message} ({self._path} unreadable)")

    @property
    def timeline_stats(self) -> dict[str, int]:
        """The named counters of this file's playback (frames, not bytes)."""
        return {
            "loops": self.loops,
            "skipped": self.skipped,
            "repeated": self.repeated,
            "jumps": self.jumps,
            "bad_timestamps": self.timeline.bad_timestamps,
        }

    def _decode(self) -> tuple[U8Array, float] | None:
        """The next file frame and its media time, rewinding at the end of the file."""
        image = self._read_raw()
        if image is None:
            # End of file: rewind; some containers cannot seek, so reopen if rewinding fails.
            self.loops += 1
            self.timeline.rewound()
            if not self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0) or (image := self._read_raw()) is None:
                self._cap.release()
                try:
                    self._cap = _open_file(self._path)
                except VideoFileError:
                    logger.warning("video file %s cannot be reopened", self._path)
                    return None
                image = self._read_raw()
                if image is None:
                    return None
        return image, self.timeline.stamp(float(self._cap.get(cv2.CAP_PROP_POS_MSEC)))

    def _read_raw(self) -> U8Array | None:
        ok, image = self._cap.read(self._spare)
        if not ok or image is None or image.ndim != 3 or image.shape[2] != 3:
            return None
        self._spare = None  # now owned by the pending frame
        frame: U8Array = image
        return frame

    def read_into(self, dst: U8Array, now_ns: int) -> int | None:
        _check_dst(dst, self.width, self.height)
        decode_failed = False
        for _ in range(_MAX_DECODES_PER_READ):
            if self._pending is None:
                self._pending = self._decode()
                if self._pending is None:
                    decode_failed = True
                    break
            image, media_s = self._pending
            if not self.timeline.due(media_s, now_ns):
                break
            if self._shown_fresh:
                self.skipped += 1
            self._show(image, media_s)
            self._pending = None
            self._spare = image  # its pixels are in _shown now
        else:
            # Still due after a burst of decodes: the caller stalled; jump to now.
            self.jumps += 1
            self.timeline.resync(self._shown_s, now_ns)
        if decode_failed:
            self.misses += 1
            if self.misses >= MAX_CONSECUTIVE_MISSES:
                raise self._lost(f"{self.spec}: no frame in {self.misses} reads")
        else:
            self.misses = 0
        if self._shown is None or (decode_failed and not self._shown_fresh):
            return None  # nothing decoded yet, or the file stopped giving frames
        if not self._shown_fresh:
            self.repeated += 1
        self._shown_fresh = False
        np.copyto(dst, self._shown)
        return self._take_id()

    def _show(self, image: U8Array, media_s: float) -> None:
        if self._shown is None:
            self._shown = np.empty((self.height, self.width, 3), np.uint8)
        fit_into(image, self._shown)
        self._shown_s = media_s
        self._shown_fresh = True


def _open_file(path: str) -> Any:
    if not os.path.isfile(path):
        raise VideoFileError(f"no such video file: {path}")
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        cap.release()
        raise VideoFileError(f"cannot open video file {path} (unknown format?)")
    return cap


class ScreenSource(_CountingSource):
    """A monitor captured with mss (XShmGetImage on X11), letterboxed into the size."""

    def __init__(self, spec: str, monitor: int, width: int, height: int, first_id: int) -> None:
        super().__init__(spec, width, height, first_id)
        try:
            # Imported here: only screen capture needs mss, and it is the one optional source.
            import mss  # noqa: PLC0415
        except ImportError as exc:
            raise ScreenCaptureError("screen capture needs the mss package") from exc
        try:
            self._mss: Any = mss.MSS()
            monitors = self._mss.monitors
        except mss.ScreenShotError as exc:
            raise ScreenCaptureError(f"{spec}: no display to capture ({exc})") from exc
        if not 1 <= monitor < len(monitors):
            self._mss.close()
            raise ScreenCaptureError(f"{spec}: no monitor {monitor} ({len(monitors) - 1} found)")
        self._monitor = monitors[monitor]
        self._error_type: type[Exception] = mss.ScreenShotError

    def read_into(self, dst: U8Array, now_ns: int) -> int | None:
        _check_dst(dst, self.width, self.height)
        try:
            shot = self._mss.grab(self._monitor)
        except self._error_type:
            logger.warning("screen grab failed", exc_info=True)
            return None
        bgra: U8Array = np.asarray(shot)
        # mss gives BGRA; drop alpha, then crop and resize into dst.
        bgr: U8Array = np.empty((bgra.shape[0], bgra.shape[1], 3), dtype=np.uint8)
        cv2.cvtColor(bgra, cv2.COLOR_BGRA2BGR, dst=bgr)
        fit_into(bgr, dst)
        return self._take_id()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._mss.close()


def _camera_device(target: str) -> str:
    return f"/dev/video{target}" if target.isdigit() else target


def _open_camera(
    spec: str, target: str, size: tuple[int, int], fps: float, first_id: int
) -> CameraSource:
    device = _camera_device(target)
    if not os.path.exists(device):
        found = ", ".join(list_cameras()) or "none"
        raise CameraUnavailableError(f"{spec}: no camera at {device} (cameras found: {found})")
    # Probe first: opening a missing or busy device makes OpenCV print to stderr.
    if not _is_capture_device(device):
        raise CameraUnavailableError(f"{spec}: {device} is not a video capture device")
    cap = cv2.VideoCapture(int(target) if target.isdigit() else device, cv2.CAP_V4L2)
    if not cap.isOpened():
        cap.release()
        raise CameraUnavailableError(f"{spec}: cannot open {device}")
    width, height = size
    if width * height > 640 * 480:
        # UVC cameras give 720p and more at 30 fps only as MJPEG (raw YUYV saturates USB 2);
        # OpenCV decodes it. Set before the size (V4L2 negotiates both together); a camera
        # without MJPEG keeps its own format.
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*"MJPG"))
    cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
    cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
    cap.set(cv2.CAP_PROP_FPS, fps)
    # One buffered frame: a queue of old frames inside the driver is latency.
    cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
    return CameraSource(spec, width, height, first_id, cap)


def _is_capture_device(device: str) -> bool:
    """Whether ``device`` answers VIDIOC_QUERYCAP with video capture (cheap, no streaming)."""
    try:
        fd = os.open(device, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        # Permission problems are reported by the real open with a clearer message later.
        return exc.errno in (errno.EACCES, errno.EPERM, errno.EBUSY)
    try:
        buf = bytearray(104)
        fcntl.ioctl(fd, _VIDIOC_QUERYCAP, buf)
    except OSError:
        return False
    finally:
        os.close(fd)
    capabilities, device_caps = struct.unpack_from("<II", buf, 84)
    caps = device_caps if capabilities & _V4L2_CAP_DEVICE_CAPS else capabilities
    return bool(caps & _V4L2_CAP_VIDEO_CAPTURE)


def list_cameras() -> list[str]:
    """Specs of the video capture devices, e.g. ["camera:/dev/video0"]; [] when none."""

    def number(path: str) -> int:
        match = re.search(r"(\d+)$", path)
        return int(match.group(1)) if match else -1

    devices = sorted(glob.glob("/dev/video*"), key=number)
    return [f"camera:{d}" for d in devices if _is_capture_device(d)]


def open_source(spec: str, width: int, height: int, fps: float, *, first_id: int = 0) -> Source:
    """Open the source named by ``spec`` producing (height, width, 3) BGR frames."""
    if width <= 0 or height <= 0 or fps <= 0:
        raise ValueError(f"bad source geometry {width}x{height} at {fps} fps")
    parsed = parse_spec(spec)
    if parsed.kind is SourceKind.PATTERN:
        return PatternSource(width, height, first_id)
    if parsed.kind is SourceKind.CAMERA:
        return _open_camera(spec, parsed.target, (width, height), fps, first_id)
    if parsed.kind is SourceKind.FILE:
        return FileSource(spec, parsed.target, width, height, first_id)
    return ScreenSource(spec, int(parsed.target or 1), width, height, first_id)
