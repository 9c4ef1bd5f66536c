"""Input level, the flash-and-beep source, the timed WAV sink, and the path's RTCP input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.audio.frames import FRAME_SAMPLES, SAMPLE_RATE, AudioError
from pipeline.audio.path import MIN_DBFS, AudioPath, rms_dbfs
from pipeline.audio.sinks import NullSink, open_sink, read_write_times
from pipeline.audio.sources import ClockBeepSource, SilenceSource, open_source, read_wav


def test_rms_level_in_dbfs() -> None:
    t = np.arange(FRAME_SAMPLES) / SAMPLE_RATE
    sine = (np.sin(2 * np.pi * 1000 * t) * 0.316 * 32767).astype(np.int16)
    assert rms_dbfs(sine) == pytest.approx(-13.0, abs=0.1)  # -10 dBFS peak, RMS 3 dB lower
    assert rms_dbfs(np.full(FRAME_SAMPLES, -32768, np.int16)) == pytest.approx(0.0)
    assert rms_dbfs(np.zeros(FRAME_SAMPLES, np.int16)) == MIN_DBFS
    assert rms_dbfs(np.zeros(0, np.int16)) == MIN_DBFS
    assert rms_dbfs(np.ones(FRAME_SAMPLES, np.int16)) == pytest.approx(-90.3, abs=0.1)


class FakeClock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def test_a_beep_starts_on_the_sample_of_its_instant() -> None:
    clock = FakeClock(1234.990)  # 10 ms before the instant 1235.000
    beep = ClockBeepSource(1000, 100, 1000, clock=clock)
    frames = []
    for _ in range(10):
        frames.append(beep.read())
        clock.now += 0.0201  # reads a little late: the sample clock carries on regardless
    pcm = np.concatenate(frames)
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > 1000)
    onset = int(loud[0])
    assert abs(onset - 0.010 * SAMPLE_RATE) <= 30  # the first crest of the 1 kHz sine
    assert abs((loud[-1] - onset) - 0.100 * SAMPLE_RATE) <= 48  # 100 ms long
    assert np.abs(pcm[: onset - 1]).max() == 0  # silence before it


def test_a_beep_source_resyncs_after_a_stall_and_refuses_bad_specs() -> None:
    clock = FakeClock(50.5)
    beep = ClockBeepSource(700, 100, 1000, clock=clock)
    beep.read()
    clock.now = 51.0  # a 480 ms stall: the next frame starts at the clock, on the instant
    frame = beep.read()
    assert np.abs(frame[:48].astype(np.int32)).max() > 1000
    assert open_source("beep:700:100/1000").spec == "beep:700:100/1000"
    for spec in ("beep:700", "beep:700:200/100", "beep:0:10/100", "beep:x:1/2"):
        with pytest.raises(AudioError):
            open_source(spec)


def test_a_wavlog_sink_writes_when_each_frame_was_played(tmp_path: Path) -> None:
    path = tmp_path / "heard.wav"
    sink = open_sink(f"wavlog:{path}")
    for i in range(3):
        sink.write(np.full(FRAME_SAMPLES, i, np.int16))
    sink.close()
    times = read_write_times(str(path))
    assert len(times) == 3 and np.all(np.diff(times) >= 0)
    assert len(read_wav(str(path))) == 3 * FRAME_SAMPLES
    with pytest.raises(AudioError):
        read_write_times(str(tmp_path / "nothing.wav"))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_the_path_takes_any_rtcp_and_video_timing_bytes(data: bytes) -> None:
    path = AudioPath(
        source=SilenceSource(), sink=NullSink(), send=lambda _d: None, ssrc=24, peer_ssrc=13
    )
    path.on_rtcp(data)
    path.on_rtcp(b"\x80\xc8" + data)  # looks like an SR
    path.set_volume(float("inf"))
    assert path.stats.volume == 1.5
    assert path.stats.sync.extra_ms == 0.0
