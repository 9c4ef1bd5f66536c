"""Ring and ringback (pipeline/audio/ring.py): the tones to the sample, then for real: the
player's child process plays into the PulseAudio null sink, the test records the sink's monitor
and checks the tone's frequencies, its cadence and that it stops when told; without a device
the player says so (the client then rings the terminal bell)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from pipeline.audio.devices import DeviceSource
from pipeline.audio.frames import FRAME_SAMPLES, SAMPLE_RATE
from pipeline.audio.ring import (
    RING,
    RING_LEVEL,
    RINGBACK,
    Cadence,
    RingPlayer,
    tone_frames,
)
from tests.audio.conftest import PulseServer


def samples(cadence: Cadence, seconds: float) -> np.ndarray:
    frames = tone_frames(cadence)
    count = round(seconds * SAMPLE_RATE / FRAME_SAMPLES)
    return np.concatenate([next(frames) for _ in range(count)]).astype(np.float64)


def peaks(pcm: np.ndarray, count: int) -> list[float]:
    """The ``count`` strongest frequencies (Hz, 1 Hz resolution with a 1 s window)."""
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
    found: list[float] = []
    for index in np.argsort(spectrum)[::-1]:
        hz = index * SAMPLE_RATE / len(pcm)
        if all(abs(hz - other) > 10 for other in found):
            found.append(hz)
        if len(found) == count:
            return sorted(found)
    return sorted(found)


def on_segments(pcm: np.ndarray, threshold: float = 200.0) -> list[tuple[float, float]]:
    """(start, end) in s of the stretches where 5 ms RMS is above ``threshold``."""
    window = 240
    rms = np.sqrt(np.mean(pcm[: len(pcm) // window * window].reshape(-1, window) ** 2, axis=1))
    loud = np.concatenate([[False], rms > threshold, [False]])
    edges = np.flatnonzero(np.diff(loud.astype(int)))
    return [(a * window / SAMPLE_RATE, b * window / SAMPLE_RATE) for a, b in edges.reshape(-1, 2)]


def test_ringback_is_425_hz_one_second_in_five() -> None:
    pcm = samples(RINGBACK, 10.0)
    segments = on_segments(pcm)
    assert [(round(a, 2), round(b, 2)) for a, b in segments] == [(0.0, 1.0), (5.0, 6.0)]
    assert peaks(pcm[:SAMPLE_RATE], 1) == pytest.approx([425.0], abs=1.0)
    assert np.abs(pcm).max() <= RING_LEVEL * 32767 + 1
    assert not pcm[SAMPLE_RATE + 480 : 5 * SAMPLE_RATE].any()  # silent in the off time


def test_ring_is_a_two_tone_double_beat_unlike_the_ringback() -> None:
    pcm = samples(RING, 6.0)
    segments = [(round(a, 2), round(b, 2)) for a, b in on_segments(pcm)]
    assert segments == [(0.0, 0.4), (0.6, 1.0), (3.0, 3.4), (3.6, 4.0)]
    assert peaks(pcm[:SAMPLE_RATE], 2) == pytest.approx([400.0, 450.0], abs=3.0)


def test_edges_are_ramped_and_the_phase_runs_on() -> None:
    pcm = samples(RINGBACK, 1.2)
    # The first 1 ms is far below full level: a ramp, not a click.
    assert np.abs(pcm[:48]).max() < 0.1 * RING_LEVEL * 32767
    # Frame boundaries are seamless: the step across one is as small as any inside a frame.
    steps = np.abs(np.diff(pcm[4800:40000]))
    boundary = [steps[i - 4800 - 1] for i in range(4800 + FRAME_SAMPLES, 40000, FRAME_SAMPLES)]
    assert max(boundary) <= steps.max() + 1


def test_cadences_are_checked() -> None:
    with pytest.raises(ValueError):
        Cadence("x", (), (1.0, 1.0))
    with pytest.raises(ValueError):
        Cadence("x", (425.0,), (1.0,))
    with pytest.raises(ValueError):
        RingPlayer().start("siren")


def test_without_an_output_device_the_player_says_so() -> None:
    player = RingPlayer("device:no-such-card")
    try:
        player.start("ring")
        deadline = time.monotonic() + 20
        while player.fallback is None:
            assert time.monotonic() < deadline, "the player never gave up"
            time.sleep(0.05)
        assert "no-such-card" in player.fallback and not player.playing
    finally:
        player.close()


def record(source: DeviceSource, out: list[np.ndarray], stop: threading.Event) -> None:
    while not stop.is_set():
        out.append(source.read())


def test_the_player_rings_into_the_device_and_stops_when_told(pulse: PulseServer) -> None:
    """The ring (the ringback through the device: tests/gui/test_ring_gui.py). Its cadence is
    checked to the sample above: through PulseAudio a stream's start may stutter."""
    freqs, stop_after_s = [400.0, 450.0], 0.8  # stopped inside the second beat
    source = DeviceSource("pulse")  # the null sink's monitor
    recorded: list[np.ndarray] = []
    stop = threading.Event()
    reader = threading.Thread(target=record, args=(source, recorded, stop))
    reader.start()
    player = RingPlayer("device:pulse")
    try:
        time.sleep(0.3)
        player.start("ring")
        # Until the tone is heard (the child starts, opens PortAudio and the stream).
        deadline = time.monotonic() + 15
        while not any(np.abs(frame).max() > 1000 for frame in recorded[-3:]):
            assert player.fallback is None, player.fallback
            assert time.monotonic() < deadline, "no ring heard"
            time.sleep(0.02)
        heard_at = len(recorded)
        time.sleep(stop_after_s)
        assert player.playing
        player.stop()  # inside an on-segment: the tone must end here
        stopped_at = len(recorded)
        time.sleep(1.2)
        assert not player.playing
    finally:
        player.close()
        stop.set()
        reader.join(5)
        source.close()
    pcm = np.concatenate(recorded).astype(np.float64)
    start = max(0, heard_at - 5) * FRAME_SAMPLES
    segments = on_segments(pcm[start:])
    assert segments, "no tone in the recording"
    longest = max(segments, key=lambda seg: seg[1] - seg[0])
    a, b = (start + round(t * SAMPLE_RATE) for t in longest)
    first = pcm[a:b]
    assert peaks(first, len(freqs)) == pytest.approx(freqs, abs=8.0)  # a beat: 2.5 Hz bins or finer
    # The tone ends within 0.5 s of stop() (the device's and the monitor's buffers), and
    # nothing is heard after that.
    loud = np.flatnonzero(np.abs(pcm) > 300)
    stop_latency = (loud[-1] - stopped_at * FRAME_SAMPLES) / SAMPLE_RATE
    assert stop_latency < 0.5, f"the tone went on {stop_latency:.2f} s after stop()"
    assert len(pcm) - stopped_at * FRAME_SAMPLES > SAMPLE_RATE  # we did listen afterwards
    found = [round(float(hz), 1) for hz in peaks(first, len(freqs))]
    beats = [(round(float(a), 3), round(float(b), 3)) for a, b in segments[:2]]
    print(f"\nring: peaks {found} Hz, first beats {beats} s, "
          f"heard until {stop_latency * 1000:.0f} ms after stop()")  # fmt: skip
