"""Echo cancellation and noise suppression for real (livekit's WebRTC APM) on the benchmark's
synthetic echo path."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.audio_aec import measure, run, scenario
from pipeline.audio.frames import FRAME_SAMPLES, AudioError
from pipeline.audio.processing import PassThrough, WebrtcProcessing, make_processing

NOISE_DBFS = -55.0


@pytest.fixture(scope="module")
def echo_scene() -> tuple[np.ndarray, np.ndarray, int]:
    return scenario(8.0, 40.0, NOISE_DBFS)


def test_webrtc_cancels_the_echo_and_keeps_the_talker(echo_scene: tuple) -> None:  # type: ignore[type-arg]
    far, mic, near_start = echo_scene
    out, _ = run(WebrtcProcessing(noise_suppression=False, delay_ms=0), far, mic)
    m = measure(out, mic, near_start, NOISE_DBFS)
    assert m["erle_db"] is not None and m["erle_db"] >= 20.0, m
    assert m["near_end_db"] is not None and abs(m["near_end_db"]) < 3.0, m


def test_without_processing_the_echo_stays(echo_scene: tuple) -> None:  # type: ignore[type-arg]
    far, mic, near_start = echo_scene
    out, _ = run(PassThrough(), far, mic)
    assert np.array_equal(out, mic)
    m = measure(out, mic, near_start, NOISE_DBFS)
    assert m["erle_db"] == pytest.approx(0.0, abs=1e-6)


def test_noise_suppression_lowers_steady_noise() -> None:
    rng = np.random.default_rng(2)
    noise = (rng.standard_normal(150 * FRAME_SAMPLES) * 300).astype(np.int16)  # -40 dBFS
    silent = np.zeros(FRAME_SAMPLES, np.int16)
    levels = {}
    for ns in (False, True):
        apm = WebrtcProcessing(echo_cancellation=False, noise_suppression=ns)
        out = []
        for i in range(0, len(noise), FRAME_SAMPLES):
            apm.process_render(silent)
            out.append(apm.process_capture(noise[i : i + FRAME_SAMPLES]))
        tail = np.concatenate(out[75:]).astype(np.float64)
        levels[ns] = 10 * np.log10(np.mean(tail**2))
    assert levels[True] < levels[False] - 10, levels


def test_frames_of_the_wrong_shape_are_our_error() -> None:
    for proc in (PassThrough(), WebrtcProcessing()):
        with pytest.raises(AudioError):
            proc.process_capture(np.zeros(480, np.int16))
        with pytest.raises(AudioError):
            proc.process_render(np.zeros(FRAME_SAMPLES, np.float32))  # type: ignore[arg-type]
    assert isinstance(make_processing(False), PassThrough)
    assert make_processing().backend == "livekit-webrtc-apm"
