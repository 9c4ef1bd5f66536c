"""A video file plays at its own frame rate (issue 15, fault 3), and sources are letterboxed.

Files are made by ffmpeg (lossless FFV1, frame i filled with grey level 2 * i) and read through
the real FileSource at a preset's rate on a simulated capture clock: which file frame each read
shows is exact, so the speed measured is the source's and not the machine's.
"""

from __future__ import annotations

import itertools
import math
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.presets import get_preset
from pipeline.sources.playback import FileTimeline
from pipeline.sources.video import FileSource, open_source

SECOND_NS = 1_000_000_000


def make_video(path: Path, fps: int, frames: int) -> Path:
    """An FFV1 file of ``frames`` 64x48 frames at ``fps``; frame i is grey level 2 * i."""
    raw = b"".join(np.full((48, 64), 2 * i, np.uint8).tobytes() for i in range(frames))
    subprocess.run(
        [
            *("ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "gray"),
            *("-s", "64x48", "-r", str(fps), "-i", "-", "-c:v", "ffv1", str(path)),
        ],
        input=raw,
        check=True,
        timeout=60,
    )
    return path


def play(source: FileSource, fps: float, seconds: float, start_ns: int = 123) -> list[int]:
    """The file frame index shown by each read at ``fps`` for ``seconds`` of capture time."""
    dst = np.zeros((source.height, source.width, 3), np.uint8)
    shown = []
    for k in range(round(seconds * fps)):
        frame_id = source.read_into(dst, start_ns + round(k * SECOND_NS / fps))
        assert frame_id == k  # one frame per read, ids counting up
        shown.append(round(float(dst.mean()) / 2))
    return shown


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    folder = tmp_path_factory.mktemp("clips")
    return {
        5: make_video(folder / "five.mkv", 5, 10),  # 2 s
        60: make_video(folder / "sixty.mkv", 60, 120),  # 2 s
    }


@pytest.mark.parametrize("file_fps", [5, 60])
@pytest.mark.parametrize("preset", ["low", "medium"])
def test_a_file_plays_at_its_own_rate(clips: dict[int, Path], file_fps: int, preset: str) -> None:
    p = get_preset(preset)
    source = open_source(f"file:{clips[file_fps]}", 64, 48, p.fps)
    assert isinstance(source, FileSource)
    seconds = 5.0  # two and a half loops of the 2 s file
    try:
        shown = play(source, p.fps, seconds)
    finally:
        source.close()
    frames = 2 * file_fps
    # Read k happens at k / fps s: the file frame due then is floor(k * file_fps / fps).
    expected = [(k * file_fps // p.fps) % frames for k in range(len(shown))]
    assert shown == expected
    # The measured speed: file seconds played per capture second (1.0 is the file's own).
    played = sum((b - a) % frames for a, b in itertools.pairwise(shown)) / file_fps
    speed = played / ((len(shown) - 1) / p.fps)
    print(f"{file_fps} fps file at {preset} ({p.fps} fps): {speed:.3f}x, {source.timeline_stats}")
    assert 0.95 < speed < 1.05
    stats = source.timeline_stats
    assert stats["loops"] == 2 and stats["jumps"] == 0 and stats["bad_timestamps"] == 0
    steps = [(b - a) % frames for a, b in itertools.pairwise(shown)]
    # Every read that did not advance repeated a frame; every frame stepped over was dropped.
    assert stats["repeated"] == steps.count(0)
    assert stats["skipped"] == sum(step - 1 for step in steps if step > 1)
    if file_fps < p.fps:
        assert stats["skipped"] == 0 and stats["repeated"] > 0
    else:
        assert stats["repeated"] == 0 and stats["skipped"] > 0


def test_a_stalled_caller_jumps_instead_of_bursting(clips: dict[int, Path]) -> None:
    source = open_source(f"file:{clips[60]}", 64, 48, 15)
    assert isinstance(source, FileSource)
    dst = np.zeros((48, 64, 3), np.uint8)
    try:
        assert source.read_into(dst, 0) == 0
        # Ten seconds later (a stopped process): at most one burst of decodes, then a jump.
        assert source.read_into(dst, 10 * SECOND_NS) == 1
        after_jump = round(float(dst.mean()) / 2)
        assert source.timeline_stats["jumps"] == 1
        assert source.read_into(dst, 10 * SECOND_NS + SECOND_NS // 15) == 2
        assert round(float(dst.mean()) / 2) == (after_jump + 4) % 120  # and on at 60 fps
    finally:
        source.close()


# --- the timeline alone --------------------------------------------------------------------


def test_timeline_stamps_continue_across_loops_and_repair_bad_positions() -> None:
    t = FileTimeline(10.0)
    assert [t.stamp(ms) for ms in (0.0, 100.0, 200.0)] == pytest.approx([0.0, 0.1, 0.2])
    t.rewound()
    assert t.stamp(0.0) == pytest.approx(0.3)  # one period after the last frame
    assert t.stamp(0.0) == pytest.approx(0.4)  # a position that did not advance: guessed
    assert t.stamp(math.nan) == pytest.approx(0.5)
    assert t.bad_timestamps == 2
    assert FileTimeline(0.0).period_s == pytest.approx(1 / 30)  # no rate in the container
    assert FileTimeline(math.inf).period_s == pytest.approx(1 / 30)


def test_timeline_due_anchors_on_the_first_frame() -> None:
    t = FileTimeline(5.0)
    assert t.due(0.0, 7 * SECOND_NS)  # the first frame, whenever asked
    assert not t.due(0.2, 7 * SECOND_NS + 150_000_000)
    assert t.due(0.2, 7 * SECOND_NS + 200_000_000)
    assert not t.lagging(0.2, 7 * SECOND_NS + 1_100_000_000)
    assert t.lagging(0.2, 7 * SECOND_NS + 1_300_000_000)
    t.resync(0.2, 9 * SECOND_NS)
    assert not t.due(0.4, 9 * SECOND_NS + 100_000_000)
    assert t.due(0.4, 9 * SECOND_NS + 200_000_000)


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=50), st.floats())
def test_timeline_stamps_always_increase(positions: list[float], fps: float) -> None:
    t = FileTimeline(fps)
    stamps = []
    for i, ms in enumerate(positions):
        if i % 7 == 6:
            t.rewound()
        stamps.append(t.stamp(ms))
    assert all(math.isfinite(s) for s in stamps)
    assert all(b > a for a, b in itertools.pairwise(stamps))


# --- a 16:9 screen at a 4:3 preset -----------------------------------------------------------


@pytest.fixture(scope="module")
def wide_display() -> Iterator[str]:
    """A private 1280x720 (16:9) Xvfb with a white root window."""
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [
            *("Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1280x720x24"),
            *("-wr", "-nolisten", "tcp"),
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


def test_a_wide_screen_at_a_4_3_preset_is_sent_whole(
    wide_display: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISPLAY", wide_display)
    p = get_preset("medium")  # 640x480
    source = open_source("screen", p.width, p.height, p.fps)
    dst = np.full((p.height, p.width, 3), 77, np.uint8)
    try:
        assert source.read_into(dst, 0) == 0
    finally:
        source.close()
    # 1280x720 scaled to 640x360, bars of 60 rows above and below; all of the screen inside.
    assert dst[:60].max() == 0 and dst[420:].max() == 0
    assert dst[60:420].min() == 255
