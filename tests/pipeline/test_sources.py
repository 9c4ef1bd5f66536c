"""Video sources: pattern, looped file, letterboxing, camera errors, screen under Xvfb, a child."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
from collections.abc import Iterator
from multiprocessing import shared_memory
from pathlib import Path

import cv2
import numpy as np
import pytest

import pipeline.sources.video as sources_mod
from pipeline.sources.pattern import Stamp, read_stamp
from pipeline.sources.video import (
    CameraUnavailableError,
    FileSource,
    PatternSource,
    ScreenCaptureError,
    SourceError,
    SourceKind,
    SourceSpec,
    SourceSpecError,
    VideoFileError,
    fit_into,
    list_cameras,
    open_source,
    parse_spec,
)


def blank(width: int = 640, height: int = 480) -> np.ndarray:
    return np.zeros((height, width, 3), np.uint8)


# --- specs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("pattern", SourceSpec(SourceKind.PATTERN)),
        ("camera:0", SourceSpec(SourceKind.CAMERA, "0")),
        ("camera:/dev/video2", SourceSpec(SourceKind.CAMERA, "/dev/video2")),
        ("file:/tmp/a:b.mp4", SourceSpec(SourceKind.FILE, "/tmp/a:b.mp4")),
        ("screen", SourceSpec(SourceKind.SCREEN)),
        ("screen:2", SourceSpec(SourceKind.SCREEN, "2")),
    ],
)
def test_parse_spec(spec: str, parsed: SourceSpec) -> None:
    assert parse_spec(spec) == parsed


@pytest.mark.parametrize(
    "spec", ["", "webcam", "camera", "camera:", "file:", "pattern:x", "screen:a"]
)
def test_bad_specs_are_local_misuse(spec: str) -> None:
    with pytest.raises(SourceSpecError) as info:
        open_source(spec, 640, 480, 30)
    assert isinstance(info.value, ValueError)


def test_bad_geometry_is_refused() -> None:
    with pytest.raises(ValueError):
        open_source("pattern", 0, 480, 30)
    with pytest.raises(ValueError):
        open_source("pattern", 640, 480, 0)


# --- pattern ---------------------------------------------------------------------------------


def test_pattern_source_counts_frames_and_stamps_capture_time() -> None:
    source = open_source("pattern", 640, 480, 30, first_id=2**32 - 2)
    assert isinstance(source, PatternSource)
    assert (source.spec, source.width, source.height) == ("pattern", 640, 480)
    dst = blank()
    ids = []
    for now in (1_000, 2_000, 3_000):
        frame_id = source.read_into(dst, now)
        assert frame_id is not None
        ids.append(frame_id)
        assert read_stamp(dst) == Stamp(frame_id, now)
    assert ids == [2**32 - 2, 2**32 - 1, 0]  # wraps at 32 bits like the stamp
    source.close()
    source.close()  # idempotent


def test_pattern_source_writes_into_a_slot_view() -> None:
    backing = np.zeros(480 * 640 * 3 + 10, np.uint8)
    slot = backing[10:].reshape(480, 640, 3)
    source = open_source("pattern", 640, 480, 30)
    assert source.read_into(slot, 5) == 0
    assert read_stamp(slot) == Stamp(0, 5)
    assert not backing[:10].any()
    with pytest.raises(ValueError):
        source.read_into(blank(320, 240), 5)


# --- file ------------------------------------------------------------------------------------

FILE_FRAMES = 5


@pytest.fixture
def video_file(tmp_path: Path) -> Path:
    """A 5-frame 320x240 MJPEG AVI whose frame i is filled with grey level 40 * (i + 1)."""
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    assert writer.isOpened()
    try:
        for i in range(FILE_FRAMES):
            writer.write(np.full((240, 320, 3), 40 * (i + 1), np.uint8))
    finally:
        writer.release()
    return path


FILE_PERIOD_NS = 100_000_000  # the fixture is a 10 fps file


def test_file_source_loops(video_file: Path) -> None:
    source = open_source(f"file:{video_file}", 320, 240, 30)
    assert isinstance(source, FileSource)
    dst = np.zeros((240, 320, 3), np.uint8)
    levels = []
    try:
        for expected_id in range(3 * FILE_FRAMES + 2):
            # Read at the file's own rate: each read is one file frame.
            assert source.read_into(dst, 5 + expected_id * FILE_PERIOD_NS) == expected_id
            levels.append(round(float(dst.mean()) / 40) - 1)
    finally:
        source.close()
    assert levels == [i % FILE_FRAMES for i in range(3 * FILE_FRAMES + 2)]
    assert source.loops == 3


def test_file_source_letterboxes_instead_of_cropping(tmp_path: Path) -> None:
    """A 4:3 file sent at 16:9 keeps its top band: pillarboxed, nothing cut off."""
    path = tmp_path / "bands.avi"
    image = np.zeros((240, 320, 3), np.uint8)
    image[:30] = (0, 0, 255)  # red band at the top, cropped away at 16:9
    image[30:210] = 255
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    writer.write(image)
    writer.release()
    source = open_source(f"file:{path}", 320, 176, 30)
    dst = np.zeros((176, 320, 3), np.uint8)
    assert source.read_into(dst, 0) == 0
    source.close()
    # Content 234x176 in the middle (4:3 at full height), black bars 43 px left and right.
    assert dst[:, :40].max() < 10 and dst[:, -40:].max() < 10
    top = dst[2:18, 50:-50].astype(int)  # the red band (top 1/8) is still there
    assert top[..., 2].min() > 200 and top[..., :2].max() < 60
    assert dst[40:150, 50:-50].min() > 200


def test_fit_into_letterboxes_a_wide_source() -> None:
    """A 16:9 screen at a 4:3 preset: all of it, bars above and below."""
    src = np.full((180, 320, 3), 255, np.uint8)
    src[:, :8] = (255, 0, 0)  # a blue column at the very left edge
    src[:, -8:] = (0, 0, 255)  # a red column at the very right edge
    dst = np.full((240, 320, 3), 77, np.uint8)  # stale content must not survive
    fit_into(src, dst)
    assert dst[:30].max() == 0 and dst[210:].max() == 0  # bars: (240 - 180) / 2 each
    assert (dst[30:210, :4] == (255, 0, 0)).all()  # both edges are there: nothing cropped
    assert (dst[30:210, -4:] == (0, 0, 255)).all()
    assert dst[30:210, 10:-10].min() == 255


def test_fit_into_pillarboxes_a_tall_source_and_scales() -> None:
    src = np.zeros((100, 200, 3), np.uint8)
    src[:, 100:] = 255  # left half black, right half white
    dst = np.full((50, 50, 3), 77, np.uint8)
    fit_into(src, dst)  # 2:1 into 1:1: 50x26 in the middle (even height), bars of 12
    assert dst[:12].max() == 0 and dst[38:].max() == 0
    assert dst[12:38, :23].max() < 30 and dst[12:38, 27:].min() > 225
    wide = np.full((50, 400, 3), 77, np.uint8)
    fit_into(src, wide)  # 2:1 into 8:1: 100x50 in the middle, bars of 150
    assert wide[:, :150].max() == 0 and wide[:, 250:].max() == 0
    assert wide[:, 150:198].max() < 30 and wide[:, 202:250].min() > 225
    same = np.zeros((100, 200, 3), np.uint8)
    fit_into(src, same)
    assert (same == src).all()


@pytest.mark.parametrize(("sw", "sh"), [(1920, 1080), (640, 480), (1080, 1920), (7, 3), (1, 1)])
@pytest.mark.parametrize(("dw", "dh"), [(320, 240), (1280, 720), (64, 64)])
def test_fit_into_never_crops_nor_leaves_stale_pixels(sw: int, sh: int, dw: int, dh: int) -> None:
    src = np.full((sh, sw, 3), 200, np.uint8)
    dst = np.full((dh, dw, 3), 77, np.uint8)
    fit_into(src, dst)
    assert not (dst == 77).any()
    lit = np.argwhere(dst[..., 0] > 0)
    (y0, x0), (y1, x1) = lit.min(axis=0), lit.max(axis=0)
    # The picture touches both sides in one direction, and keeps the aspect within a pixel.
    assert (x0, x1) == (0, dw - 1) or (y0, y1) == (0, dh - 1)
    assert abs((x1 - x0 + 1) * sh - (y1 - y0 + 1) * sw) <= max(sw, sh) * 2


def test_missing_or_broken_files_raise_video_file_error(tmp_path: Path) -> None:
    with pytest.raises(VideoFileError, match="no such video file"):
        open_source(f"file:{tmp_path / 'nope.mp4'}", 640, 480, 30)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    with pytest.raises(VideoFileError):
        open_source(f"file:{junk}", 640, 480, 30)


# --- camera ----------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["camera:0", "camera:/dev/video0", "camera:7"])
def test_missing_camera_gives_a_clear_typed_error(spec: str) -> None:
    if list_cameras():
        pytest.fail("this test expects a machine without cameras")
    with pytest.raises(CameraUnavailableError, match=r"no camera at /dev/video\d") as info:
        open_source(spec, 640, 480, 30)
    assert "cameras found: none" in str(info.value)
    assert isinstance(info.value, SourceError)


def test_a_device_that_is_not_a_camera_is_refused() -> None:
    with pytest.raises(CameraUnavailableError, match="not a video capture device"):
        open_source("camera:/dev/null", 640, 480, 30)


def test_list_cameras_probes_devices(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # This machine has no /dev/video* at all.
    assert list_cameras() == [f"camera:{p}" for p in sorted(Path("/dev").glob("video*"))] == []
    fake = tmp_path / "video3"
    fake.write_bytes(b"")
    # Present but not V4L2 capture devices: filtered out by VIDIOC_QUERYCAP.
    monkeypatch.setattr(sources_mod.glob, "glob", lambda pattern: ["/dev/null", str(fake)])
    assert list_cameras() == []


# --- screen ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def xvfb_display() -> Iterator[str]:
    """A private Xvfb (the display number chosen by Xvfb itself via -displayfd)."""
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        # -wr: a white root window, so the capture has known content.
        [
            "Xvfb",
            "-displayfd",
            str(write_fd),
            "-screen",
            "0",
            "800x600x24",
            "-wr",
            "-nolisten",
            "tcp",
        ],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as pipe:
            number = pipe.readline().strip()
        assert number, "Xvfb did not start"
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_screen_source_under_xvfb(xvfb_display: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPLAY", xvfb_display)
    source = open_source("screen", 320, 240, 10, first_id=7)
    dst = blank(320, 240)
    try:
        assert source.read_into(dst, 0) == 7
        assert source.read_into(dst, 0) == 8
    finally:
        source.close()
    assert dst.min() == 255  # the white root window, captured and resized
    with pytest.raises(ScreenCaptureError, match="no monitor 5"):
        open_source("screen:5", 320, 240, 10)


def test_screen_without_a_display_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    with pytest.raises(ScreenCaptureError):
        open_source("screen", 320, 240, 10)


# --- in a child process ----------------------------------------------------------------------


def _capture_in_child(spec: str, shm_name: str, count: int) -> None:
    shm = shared_memory.SharedMemory(name=shm_name)
    try:
        frame = np.ndarray((240, 320, 3), np.uint8, buffer=shm.buf)
        source = open_source(spec, 320, 240, 30)
        try:
            for i in range(count):
                source.read_into(frame, 424242 + i * FILE_PERIOD_NS)
        finally:
            source.close()
        del frame
    finally:
        shm.close()


@pytest.mark.usefixtures("no_leaks")
def test_sources_open_and_capture_in_a_spawned_child(video_file: Path) -> None:
    shm = shared_memory.SharedMemory(create=True, size=240 * 320 * 3, name=f"vcall_{os.getpid()}_t")
    try:
        frame = np.ndarray((240, 320, 3), np.uint8, buffer=shm.buf)
        ctx = multiprocessing.get_context("spawn")
        for spec, check in (
            ("pattern", lambda f: read_stamp(f) == Stamp(2, 424242 + 2 * FILE_PERIOD_NS)),
            (f"file:{video_file}", lambda f: abs(float(f.mean()) - 120) < 8),  # third frame
        ):
            child = ctx.Process(target=_capture_in_child, args=(spec, shm.name, 3))
            child.start()
            child.join(timeout=60)
            assert child.exitcode == 0, spec
            assert check(frame), spec
        del frame
    finally:
        shm.close()
        shm.unlink()


class _DeadCapture:
    """A VideoCapture whose device or file went away: every read fails, seeking too."""

    def read(self, image: object = None) -> tuple[bool, None]:
        return False, None

    def set(self, prop: int, value: float) -> bool:
        return False

    def release(self) -> None:
        pass


def test_a_file_that_goes_away_is_reported_lost(
    video_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = open_source(f"file:{video_file}", 320, 240, 30)
    dst = blank(320, 240)
    assert source.read_into(dst, 0) == 0
    assert source.read_into(dst, FILE_PERIOD_NS) == 1  # frame 2 is decoded ahead
    video_file.unlink()
    monkeypatch.setattr(source, "_cap", _DeadCapture())
    assert source.read_into(dst, 2 * FILE_PERIOD_NS) == 2
    misses = 0
    with pytest.raises(VideoFileError, match="no frame in 30 reads"):
        while True:
            assert source.read_into(dst, (3 + misses) * FILE_PERIOD_NS) is None
            misses += 1
    # The read that still gave frame 2 already failed to decode frame 3 ahead: one miss.
    assert misses == sources_mod.MAX_CONSECUTIVE_MISSES - 2
    source.close()
