"""Audio sinks: where the frames a call receives go.

API::

    class AudioSink(ABC)                    # pipeline/audio/frames.py: spec; paced; fallback;
                                            # write(pcm int16); close()
    def open_sink(spec: str) -> AudioSink   # AudioError
        "null" | "wav:PATH" | "wavlog:PATH" | "device" | "device:NAME_OR_INDEX"
    class NullSink: samples; class WavSink(path, log_times=False): samples, path
    def read_write_times(path) -> F64Array     # the times of a "wavlog:" sink's frames

``wav:PATH`` writes a 16-bit mono 48 kHz WAV (the header is completed on ``close``) and counts
the samples it wrote; it is how tests and benchmarks measure what a call played. ``wavlog:PATH``
also writes ``PATH.times``: the monotonic time (s, float64 little-endian) at which each frame
was handed to the sink, one per ``write``, so that a benchmark finds when any sample was played
even across a playout stall (at most ``MAX_LOGGED_WRITES``; later ones are not logged).
"""

from __future__ import annotations

import logging
import time
import wave

import numpy as np
import numpy.typing as npt

from pipeline.audio.frames import SAMPLE_RATE, AudioError, AudioSink, I16Array

F64Array = npt.NDArray[np.float64]
MAX_LOGGED_WRITES = 30_000  # 10 minutes of 20 ms frames
TIMES_SUFFIX = ".times"

logger = logging.getLogger(__name__)


class NullSink(AudioSink):
    spec = "null"

    def __init__(self) -> None:
        self.samples = 0

    def write(self, pcm: I16Array) -> None:
        self.samples += len(pcm)


class WavSink(AudioSink):
    """A 16-bit mono 48 kHz WAV file."""

    def __init__(self, path: str, log_times: bool = False) -> None:
        self.spec, self.path = f"{'wavlog' if log_times else 'wav'}:{path}", path
        self._times: list[float] | None = [] if log_times else None
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
        if self._times is not None and len(self._times) < MAX_LOGGED_WRITES:
            self._times.append(time.monotonic())
        self._wav.writeframes(np.asarray(pcm, "<i2").tobytes())
        self.samples += len(pcm)

    def close(self) -> None:
        if self._wav is not None:
            self._wav.close()
            self._wav = None
            if self._times is not None:
                try:
                    np.asarray(self._times, "<f8").tofile(self.path + TIMES_SUFFIX)
                except OSError as exc:
                    logger.warning("audio: cannot write %s%s: %s", self.path, TIMES_SUFFIX, exc)


def read_write_times(path: str) -> F64Array:
    """The write times a ``wavlog:PATH`` sink left beside ``path`` (monotonic s, one per frame).
    AudioError if there are none."""
    try:
        raw = np.fromfile(path + TIMES_SUFFIX, "<f8")
    except OSError as exc:
        raise AudioError(f"no write times for {path}: {exc}") from exc
    out: F64Array = raw.astype(np.float64)
    return out


def open_sink(spec: str) -> AudioSink:
    """The sink ``spec`` names. AudioError."""
    kind, _, arg = spec.partition(":")
    if kind == "null" and not arg:
        return NullSink()
    if kind == "wav" and arg:
        return WavSink(arg)
    if kind == "wavlog" and arg:
        return WavSink(arg, log_times=True)
    if kind == "device":
        from pipeline.audio.devices import DeviceSink  # noqa: PLC0415 - loads PortAudio

        return DeviceSink(arg or None)
    raise AudioError(f"unknown audio sink {spec!r}: null, wav:PATH, wavlog:PATH, device[:NAME]")
