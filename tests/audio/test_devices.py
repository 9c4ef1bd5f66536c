"""PortAudio for real: a tone played into a PulseAudio null sink and recorded back from its
monitor, device listing, a device that vanishes mid-stream, and ``vcall devices``."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from pipeline.audio.devices import DeviceSink, DeviceSource, list_devices, resolve
from pipeline.audio.frames import FRAME_SAMPLES, SAMPLE_RATE, AudioError
from pipeline.audio.sinks import open_sink
from pipeline.audio.sources import TONE_LEVEL, ToneSource, open_source
from tests.audio.conftest import PulseServer


def test_portaudio_lists_the_pulse_devices(pulse: PulseServer) -> None:
    devices = list_devices()
    pulse_dev = next(d for d in devices if d.name == "pulse")
    assert pulse_dev.inputs > 0 and pulse_dev.outputs > 0 and pulse_dev.hostapi == "ALSA"
    assert resolve("pulse", "output") == pulse_dev.index
    assert resolve(str(pulse_dev.index), "input") == pulse_dev.index
    assert resolve(None, "input") is None
    with pytest.raises(AudioError, match="no single output device 'no-such-card'"):
        resolve("no-such-card", "output")


def test_a_tone_goes_through_the_null_sink_and_comes_back(pulse: PulseServer) -> None:
    source = open_source("device:pulse")  # the default source: the null sink's monitor
    sink = open_sink("device:pulse")
    assert source.paced and sink.paced
    recorded: list[np.ndarray] = []
    stop = threading.Event()

    def record() -> None:
        while not stop.is_set():
            recorded.append(source.read())

    reader = threading.Thread(target=record)
    reader.start()
    try:
        time.sleep(0.3)  # silence first, so the onset is measurable
        tone = ToneSource(1000)
        t0 = time.monotonic()
        for _ in range(75):  # 1.5 s, paced by the device
            sink.write(tone.read())
        elapsed = time.monotonic() - t0
        time.sleep(0.4)
    finally:
        stop.set()
        reader.join(5)
        source.close()
        sink.close()
    # The device's clock paced the writes: 1.5 s of sound cannot be written much faster. The
    # upper bound only catches a stall: a loaded 2-core CI machine measured 2.016 s once.
    assert 1.2 < elapsed < 3.0
    pcm = np.concatenate(recorded).astype(np.float64)
    loud = np.flatnonzero(np.abs(pcm) > 1000)
    assert len(loud) > 0.9 * SAMPLE_RATE, "the tone did not come back"
    body = pcm[loud[0] + 4800 : loud[0] + 4800 + SAMPLE_RATE // 2]  # 0.5 s inside the tone
    spectrum = np.abs(np.fft.rfft(body * np.hanning(len(body))))
    assert abs(np.argmax(spectrum) * SAMPLE_RATE / len(body) - 1000) <= 2
    # The level: the median of 10 ms RMS values over the whole tone (robust to the short gap a
    # reopened stream leaves, see pipeline/audio/devices.py).
    tone_part = pcm[loud[0] : loud[-1]]
    windows = tone_part[: len(tone_part) // 480 * 480].reshape(-1, 480)
    level = float(np.median(np.sqrt(np.mean(windows**2, axis=1))))
    expected = TONE_LEVEL * 32767 / np.sqrt(2)
    assert abs(20 * np.log10(level / expected)) < 1.0  # within 1 dB: no gain on the way
    assert source.fallback is None and sink.fallback is None
    print(
        f"\nnull-sink loop: tone at 1000 Hz, level {20 * np.log10(level / 32767):.1f} dBFS; "
        f"source {source.stats}, sink {sink.stats}"
    )  # type: ignore[attr-defined]


def test_a_device_that_vanishes_falls_back_and_keeps_time(
    pulse_private: PulseServer, caplog: pytest.LogCaptureFixture
) -> None:
    sink = DeviceSink("pulse", stall_timeout=0.3)
    source = DeviceSource("pulse", stall_timeout=0.3)
    try:
        tone = ToneSource(440)
        for _ in range(10):
            sink.write(tone.read())
            assert source.read().shape == (FRAME_SAMPLES,)
        pulse_private.process.kill()  # the sound server dies mid-stream
        pulse_private.process.wait(5)
        t0 = time.monotonic()
        for _ in range(40):
            sink.write(tone.read())
            frame = source.read()
        elapsed = time.monotonic() - t0
    finally:
        source.close()
        sink.close()
    assert sink.fallback is not None and "discarding" in sink.fallback
    assert source.fallback is not None and "sending silence" in source.fallback
    assert not frame.any()
    # Both kept a 20 ms pace after falling back (two stall timeouts, then 40 paced ticks).
    assert 0.6 < elapsed < 0.6 + 40 * 0.02 * 2 + 1.0
    assert any("falls back" in r.message or "device" in r.message for r in caplog.records)


def test_vcall_devices_lists_them(pulse: PulseServer) -> None:
    env_run = [sys.executable, "-m", "vcall", "devices"]
    import os

    env = {**os.environ, "PULSE_SERVER": pulse.server}
    text = subprocess.run(env_run, capture_output=True, text=True, timeout=60, env=env, check=True)
    assert "pulse" in text.stdout and "in" in text.stdout.splitlines()[0]
    out = subprocess.run(
        [*env_run, "--json"], capture_output=True, text=True, timeout=60, env=env, check=True
    )
    devices = json.loads(out.stdout)
    assert any(d["name"] == "pulse" and d["inputs"] > 0 and d["outputs"] > 0 for d in devices)
