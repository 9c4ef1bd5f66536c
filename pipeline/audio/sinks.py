"""Audio sinks: where the frames a call receives go.

API::

    class AudioSink(ABC)                    # pipeline/audio/frames.py: spec; paced; fallback;
                                            # write(pcm int16); close()
    def open_sink(spec: str) -> AudioSink   # AudioError
        "null" | "wav:PATH" | "device" | "device:NAME_OR_INDEX"
    class NullSink: samples; class WavSink(path): samples, path

``wav:PATH`` writes a 16-bit mono 48 kHz WAV (the header is completed on ``close``) and counts
the samples it wrote; it is how tests and benchmarks measure what a call played.
"""

from __future__ import annotations

import logging
import wave

import numpy as np

from pipeline.audio.frames import SAMPLE_RATE, AudioError, AudioSink, I16Array

logger = logging.getLogger(__name__)


class NullSink(AudioSink):
    spec = "null"

    def __init__(self) -> None:
        self.samples = 0

    def write(self, pcm: I16Array) -> None:
        self.samples += len(pcm)


class WavSink(AudioSink):
    """A 16-bit mono 48 kHz WAV file."""

    def __init__(self, path: str) -> None:
        self.spec, self.path = f"wav:{path}", path
        try:
            # Open for the sink's life, closed by close(): no with-block can span it.
            self._wav: wave.Wave_write | None = wave.open(path, "wb")  # noqa: SIM115
        except OSError as exc:
            raise AudioError(f"cannot write {path}: {exc}") from exc
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(SAMPLE_RATE)
        self.samples = 0

    def write(self, pcm: I16Array) -> None:
        if self._wav is None:
            raise AudioError(f"{self.spec} is closed")
        self._wav.writeframes(np.asarray(pcm, "<i2").tobytes())
        self.samples += len(pcm)

    def close(self) -> None:
        if self._wav is not None:
            self._wav.close()
            self._wav = None


def open_sink(spec: str) -> AudioSink:
    """The sink ``spec`` names. AudioError."""
    kind, _, arg = spec.partition(":")
    if kind == "null" and not arg:
        return NullSink()
    if kind == "wav" and arg:
        return WavSink(arg)
    if kind == "device":
        from pipeline.audio.devices import DeviceSink  # noqa: PLC0415 - loads PortAudio

        return DeviceSink(arg or None)
    raise AudioError(f"unknown audio sink {spec!r}: null, wav:PATH, device[:NAME]")
