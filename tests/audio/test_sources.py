"""Sources and sinks without devices: tone, bursts, WAV files in any PCM shape, bad files."""

from __future__ import annotations

import itertools
import os
import tempfile
import wave
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.audio.frames import FRAME_SAMPLES, SAMPLE_RATE, AudioError, Pacer, WavError
from pipeline.audio.sinks import NullSink, WavSink, open_sink
from pipeline.audio.sources import TONE_LEVEL, FileSource, ToneSource, open_source, read_wav


def frames(source: object, n: int) -> np.ndarray:
    return np.concatenate([source.read() for _ in range(n)])  # type: ignore[attr-defined]


def test_tone_is_the_frequency_and_level_asked() -> None:
    src = open_source("tone:997")
    pcm = frames(src, 50).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
    assert abs(np.argmax(spectrum) * SAMPLE_RATE / len(pcm) - 997) < 1.5
    assert np.sqrt(np.mean(pcm**2)) == pytest.approx(TONE_LEVEL * 32767 / np.sqrt(2), rel=0.01)
    assert not src.paced and src.spec == "tone:997"


def test_tone_bursts_start_on_the_period() -> None:
    src = open_source("tone:1000:100/500")
    pcm = frames(src, 100)  # 2 s: four bursts
    loud = np.flatnonzero(np.abs(pcm) > 0)
    # An onset: the first loud sample after 10 ms of silence (a 1 kHz sine also crosses 0).
    onsets = [int(loud[0])] + [int(b) for a, b in itertools.pairwise(loud) if b - a > 480]
    # Phase 0 at each period start is sample 0 of the burst (sin(0) = 0): the next is loud.
    assert onsets == [1, 24001, 48001, 72001]
    assert int((loud < SAMPLE_RATE // 2).sum()) <= SAMPLE_RATE // 10  # 100 ms of 500
    with pytest.raises(AudioError):
        open_source("tone:1000:600/500")


@pytest.mark.parametrize(
    ("width", "channels", "rate"), [(2, 1, 48000), (1, 2, 8000), (3, 1, 44100), (4, 2, 16000)]
)
def test_wav_files_of_any_pcm_shape_play_at_48k_mono(width: int, channels: int, rate: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "t.wav")
        t = np.arange(rate) / rate  # 1 s of 440 Hz at half scale
        x = np.sin(2 * np.pi * 440 * t) * 0.5
        full = {1: 127, 2: 32767, 3: 8388607, 4: 2147483647}[width]
        ints = np.round(x * full).astype(np.int64)
        if width == 1:
            raw = (ints + 128).astype(np.uint8).tobytes()
        else:
            raw = b"".join(int(v).to_bytes(width, "little", signed=True) for v in ints)
        raw = b"".join(raw[i : i + width] * channels for i in range(0, len(raw), width))
        with wave.open(path, "wb") as w:
            w.setnchannels(channels)
            w.setsampwidth(width)
            w.setframerate(rate)
            w.writeframes(raw)
        pcm = read_wav(path)
        assert abs(len(pcm) - SAMPLE_RATE) <= 1
        spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
        assert abs(np.argmax(spectrum) * SAMPLE_RATE / len(pcm) - 440) < 2
        rms = np.sqrt(np.mean(pcm.astype(np.float64) ** 2))
        assert rms == pytest.approx(0.5 * 32767 / np.sqrt(2), rel=0.03)
        src = FileSource(path)
        looped = frames(src, 60)  # 1.2 s: it loops
        assert np.array_equal(looped[: len(pcm)], pcm)
        assert np.array_equal(looped[len(pcm) : len(pcm) + 100], pcm[:100])


def test_a_wav_sink_writes_what_a_file_source_reads(tmp_path: Path) -> None:
    sink = open_sink(f"wav:{tmp_path / 'out.wav'}")
    assert isinstance(sink, WavSink)
    tone = ToneSource(300)
    sent = [tone.read() for _ in range(10)]
    for f in sent:
        sink.write(f)
    sink.close()
    sink.close()  # idempotent
    assert np.array_equal(read_wav(str(tmp_path / "out.wav")), np.concatenate(sent))
    null = open_sink("null")
    assert isinstance(null, NullSink)
    null.write(sent[0])
    assert null.samples == FRAME_SAMPLES


def test_bad_specs_and_files_are_clear_errors(tmp_path: Path) -> None:
    for spec in ("", "tone", "tone:abc", "tone:0", "tone:30000", "mic", "file:"):
        with pytest.raises(AudioError):
            open_source(spec)
    for spec in ("", "wav:", "speaker"):
        with pytest.raises(AudioError):
            open_sink(spec)
    with pytest.raises(AudioError, match="cannot open"):
        open_source(f"file:{tmp_path / 'missing.wav'}")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    with pytest.raises(WavError, match="not a WAV file"):
        open_source(f"file:{bad}")
    empty = tmp_path / "empty.wav"
    with wave.open(str(empty), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
    with pytest.raises(WavError, match="no audio"):
        read_wav(str(empty))


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=400), st.booleans())
def test_read_wav_raises_only_wav_error_on_any_bytes(
    tmp_path: Path, data: bytes, header: bool
) -> None:
    path = tmp_path / "fuzz.wav"
    # Half the examples start with a plausible header so that the parser gets further in.
    path.write_bytes((b"RIFF\x24\x00\x00\x00WAVEfmt " if header else b"") + data)
    try:
        pcm = read_wav(str(path))
    except WavError:
        return
    assert pcm.dtype == np.int16 and len(pcm) > 0


def test_pacer_ticks_every_20_ms() -> None:
    import time

    pacer = Pacer()
    t0 = time.monotonic()
    for _ in range(25):
        pacer.wait()
    elapsed = time.monotonic() - t0
    assert 0.46 <= elapsed < 1.0  # 24 full periods after the first tick
