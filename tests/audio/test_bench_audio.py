"""The analysis behind `vcall bench audio --profile` and `vcall bench avsync`, on synthetic
recordings: gaps, delay drift, flashes and beeps paired into an A/V offset."""

from __future__ import annotations

import numpy as np

from benchmarks.audio_call import delay_drift_ms, longest_gap_ms
from benchmarks.avsync import Shown, beeps, flashes, pair_up

RATE = 48_000


def tone(seconds: float) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return (np.sin(2 * np.pi * 440 * t) * 10_000).astype(np.int16)


def test_the_longest_gap_in_a_steady_tone() -> None:
    pcm = tone(2.0)
    assert longest_gap_ms(pcm) == 0.0
    holed = pcm.copy()
    holed[RATE // 2 : RATE // 2 + RATE * 80 // 1000] = 0  # 80 ms of silence
    holed[RATE : RATE + RATE * 20 // 1000] //= 100  # 20 ms 40 dB down: a gap too
    assert 75 <= longest_gap_ms(holed) <= 85
    faded = pcm.copy()
    faded[RATE : RATE + RATE * 30 // 1000] //= 4  # 12 dB down: concealment, not a gap
    assert longest_gap_ms(faded) == 0.0
    # Silence before the first and after the last sound is not a gap (start, hang-up).
    assert (
        longest_gap_ms(np.concatenate([np.zeros(RATE, np.int16), pcm, np.zeros(RATE, np.int16)]))
        == 0.0
    )
    assert longest_gap_ms(np.zeros(10, np.int16)) == 0.0


def test_delay_drift() -> None:
    steady = [0.05 + 0.001 * (i % 3) for i in range(60)]
    assert delay_drift_ms(steady) is not None and abs(delay_drift_ms(steady) or 0) <= 1
    growing = [0.05 + 0.002 * i for i in range(60)]  # 2 ms more each second
    assert delay_drift_ms(growing) == 100.0
    assert delay_drift_ms(growing[:19]) is None


def test_flashes_and_beeps_pair_into_an_offset() -> None:
    # Frames every 33 ms from 0.95 s to 1.92 s; the flash of instant 1 s: captured at 1.017 s.
    frames = {}
    for i in range(30):
        capture = round((0.95 + i * 0.0333) * 1e9)
        frames[i + 1] = Shown(i + 1, capture, capture + 30_000_000)  # shown 30 ms later
    found = flashes(frames, 1.0)
    assert set(found) == {1} and found[1].capture_ns >= 1_000_000_000
    del frames[3]  # the poller missed the frame before the flash of 1 s... and the flash
    del frames[2]
    assert 1 not in flashes(frames, 1.0)
    # A beep heard 50 ms after 1 s: frame 0 written at 0.95 s, its onset 100 ms into the WAV.
    pcm = np.zeros(RATE, np.int16)
    pcm[RATE // 10 : RATE // 10 + 4800] = tone(0.1)
    write_times = 0.95 + np.arange(50) * 0.02
    heard = beeps(write_times, pcm, 1.0)
    assert set(heard) == {1} and abs(heard[1] - 0.05) < 0.002
    figures = pair_up(found, heard)
    assert figures["pairs"] == 1
    assert abs(figures["offset_p50_ms"] - (30.0 - 50.0)) < 2.5  # video 30 ms, audio 50 ms
