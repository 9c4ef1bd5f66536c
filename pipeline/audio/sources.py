"""Audio sources: where the frames a call sends come from.

API::

    class AudioSource(ABC)                  # pipeline/audio/frames.py: spec; paced; fallback;
                                            # read() -> (960,) int16; close()
    def open_source(spec: str) -> AudioSource       # AudioError, WavError
        "silence"
        "tone:HZ" | "tone:HZ:ON_MS/PERIOD_MS"       # sine at -10 dBFS; bursts: ON_MS of tone
                                                    # starting every PERIOD_MS (onset tests)
        "beep:HZ:ON_MS/PERIOD_MS"                   # bursts on the monotonic clock: each
                                                    # starts at an instant k x PERIOD_MS
                                                    # (flash-and-beep A/V sync measurement)
        "file:PATH.wav"                             # PCM WAV, any rate/channels/8-32 bit,
                                                    # mixed to mono, resampled; loops
        "device" | "device:NAME_OR_INDEX"           # PortAudio (pipeline.audio.devices)
    class SilenceSource; class ToneSource(hz, burst=None); class FileSource(path)
    class ClockBeepSource(hz, on_ms, period_ms, clock=time.monotonic)
    def read_wav(path) -> I16Array                  # mono int16 48 kHz; WavError

Synthetic sources are not paced (``paced`` false): the caller's thread ticks every 20 ms
(:class:`~pipeline.audio.frames.Pacer`). The tone is phase-continuous and exact (a frame's
samples depend only on its index), so tests can find it by FFT and onsets to the sample.

``beep`` is the audio half of a flash-and-beep source (``vcall bench avsync``): its bursts are
placed on the host's monotonic clock rather than on a sample count, so another process (the
video capture) can mark the same instants. A frame's first sample stands for the instant it was
read (the audio path stamps its RTP timestamp with that instant, ``pipeline.audio.path``);
consecutive reads continue the sample clock while it stays within ``RESYNC_S`` of the monotonic
clock, so an onset lands on the sample of its instant, not on a frame boundary.

Guarantees: a WAV file is read at most MAX_WAV_SECONDS long (a bigger one is WavError, not a
memory blow-up); anything the ``wave`` module refuses becomes WavError naming the file.
"""

from __future__ import annotations

import logging
import time
import wave
from collections.abc import Callable

import numpy as np

from pipeline.audio.frames import (
    FRAME_SAMPLES,
    SAMPLE_RATE,
    AudioError,
    AudioSource,
    I16Array,
    WavError,
)

logger = logging.getLogger(__name__)

TONE_LEVEL = 0.316  # -10 dBFS
MAX_WAV_SECONDS = 600
MAX_TONE_HZ = SAMPLE_RATE // 2
RESYNC_S = 0.01  # a beep source re-anchors its sample clock when the reads drift this far


class SilenceSource(AudioSource):
    spec = "silence"

    def read(self) -> I16Array:
        return np.zeros(FRAME_SAMPLES, np.int16)


class ToneSource(AudioSource):
    """A sine of ``hz``; with ``burst`` = (on_ms, period_ms), only the first on_ms of each
    period (the rest is silence), each burst starting at phase 0 on a period boundary."""

    def __init__(self, hz: float, burst: tuple[int, int] | None = None) -> None:
        if not 0 < hz < MAX_TONE_HZ:
            raise AudioError(f"tone frequency {hz} Hz outside 0..{MAX_TONE_HZ}")
        if burst is not None and not 0 < burst[0] <= burst[1]:
            raise AudioError(f"tone burst {burst[0]}/{burst[1]} ms: need 0 < on <= period")
        self.hz, self.burst = hz, burst
        self.spec = f"tone:{hz:g}" + (f":{burst[0]}/{burst[1]}" if burst else "")
        self._index = 0  # samples produced

    def read(self) -> I16Array:
        n = self._index + np.arange(FRAME_SAMPLES)
        self._index += FRAME_SAMPLES
        if self.burst is None:
            phase = n
        else:
            period = self.burst[1] * SAMPLE_RATE // 1000
            phase = n % period
        pcm = np.sin(2 * np.pi * self.hz * phase / SAMPLE_RATE) * TONE_LEVEL * 32767
        if self.burst is not None:
            pcm[phase >= self.burst[0] * SAMPLE_RATE // 1000] = 0
        return pcm.astype(np.int16)


class ClockBeepSource(AudioSource):
    """Bursts of ``hz`` of ``on_ms`` starting at every monotonic instant k x ``period_ms``
    (seconds of ``clock``, the host's CLOCK_MONOTONIC by default, shared by all processes)."""

    def __init__(
        self,
        hz: float,
        on_ms: int,
        period_ms: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < hz < MAX_TONE_HZ:
            raise AudioError(f"beep frequency {hz} Hz outside 0..{MAX_TONE_HZ}")
        if not 0 < on_ms <= period_ms:
            raise AudioError(f"beep {on_ms}/{period_ms} ms: need 0 < on <= period")
        self.hz, self.on_s, self.period_s = hz, on_ms / 1000, period_ms / 1000
        self.spec = f"beep:{hz:g}:{on_ms}/{period_ms}"
        self._clock = clock
        self._next: float | None = None  # the instant of the next frame's first sample

    def read(self) -> I16Array:
        now = self._clock()
        start = self._next
        if start is None or abs(now - start) > RESYNC_S:
            start = now
        self._next = start + FRAME_SAMPLES / SAMPLE_RATE
        # Phase within the period, from whole periods and samples apart so that float
        # precision holds at any uptime.
        base = start % self.period_s
        phase = base + np.arange(FRAME_SAMPLES) / SAMPLE_RATE
        phase = np.where(phase >= self.period_s, phase - self.period_s, phase)
        pcm = np.sin(2 * np.pi * self.hz * phase) * TONE_LEVEL * 32767
        pcm[phase >= self.on_s] = 0
        return pcm.astype(np.int16)


def read_wav(path: str) -> I16Array:
    """The whole file as mono int16 at 48 kHz. WavError if it is not a PCM WAV (8-32 bit), is
    empty, or is longer than MAX_WAV_SECONDS."""
    try:
        with wave.open(path, "rb") as wav:
            rate, channels, width = wav.getframerate(), wav.getnchannels(), wav.getsampwidth()
            frames = wav.getnframes()
            if not 1 <= rate <= 384_000 or not 1 <= channels <= 32:
                raise WavError(f"{path}: {rate} Hz, {channels} channels is not usable")
            if frames > MAX_WAV_SECONDS * rate:
                raise WavError(f"{path}: longer than {MAX_WAV_SECONDS} s")
            raw = wav.readframes(frames)
    except (wave.Error, EOFError, ValueError) as exc:
        raise WavError(f"{path} is not a WAV file vcall can read: {exc}") from exc
    except OSError as exc:
        raise AudioError(f"cannot open {path}: {exc}") from exc
    if width == 1:
        data = (np.frombuffer(raw, np.uint8).astype(np.float64) - 128) * 256
    elif width == 2:
        data = np.frombuffer(raw, "<i2").astype(np.float64)
    elif width == 3:
        b = np.frombuffer(raw[: len(raw) // 3 * 3], np.uint8).reshape(-1, 3).astype(np.int32)
        data = ((b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8 >> 8).astype(np.float64) / 256
    elif width == 4:
        data = np.frombuffer(raw, "<i4").astype(np.float64) / 65536
    else:
        raise WavError(f"{path}: {8 * width}-bit samples are not supported")
    usable = len(data) // channels * channels
    if usable == 0:
        raise WavError(f"{path} holds no audio")
    mono = data[:usable].reshape(-1, channels).mean(axis=1)
    if rate != SAMPLE_RATE:  # linear interpolation: test and prompt audio, not hi-fi
        out_len = max(1, round(len(mono) * SAMPLE_RATE / rate))
        mono = np.interp(np.arange(out_len) * rate / SAMPLE_RATE, np.arange(len(mono)), mono)
    out: I16Array = np.clip(np.round(mono), -32768, 32767).astype(np.int16)
    return out


class FileSource(AudioSource):
    """A WAV file, looped."""

    def __init__(self, path: str) -> None:
        self.spec = f"file:{path}"
        pcm = read_wav(path)
        reps = -(-FRAME_SAMPLES // len(pcm))
        self._pcm = np.tile(pcm, reps) if reps > 1 else pcm
        self._pos = 0

    def read(self) -> I16Array:
        end = self._pos + FRAME_SAMPLES
        if end <= len(self._pcm):
            out = self._pcm[self._pos : end].copy()
            self._pos = end % len(self._pcm)
            return out
        head = self._pcm[self._pos :]
        self._pos = FRAME_SAMPLES - len(head)
        return np.concatenate([head, self._pcm[: self._pos]])


def _parse_tone(arg: str) -> ToneSource:
    hz_text, _, burst_text = arg.partition(":")
    try:
        hz = float(hz_text)
        burst = None
        if burst_text:
            on, _, period = burst_text.partition("/")
            burst = (int(on), int(period))
    except ValueError:
        raise AudioError(
            f"tone spec is tone:HZ or tone:HZ:ON_MS/PERIOD_MS, not tone:{arg}"
        ) from None
    return ToneSource(hz, burst)


def _parse_beep(arg: str) -> ClockBeepSource:
    hz_text, _, burst_text = arg.partition(":")
    on, _, period = burst_text.partition("/")
    try:
        return ClockBeepSource(float(hz_text), int(on), int(period))
    except ValueError:
        raise AudioError(f"beep spec is beep:HZ:ON_MS/PERIOD_MS, not beep:{arg}") from None


def open_source(spec: str) -> AudioSource:
    """The source ``spec`` names (see the module docstring). AudioError, WavError."""
    kind, _, arg = spec.partition(":")
    if kind == "silence" and not arg:
        return SilenceSource()
    if kind == "tone" and arg:
        return _parse_tone(arg)
    if kind == "beep" and arg:
        return _parse_beep(arg)
    if kind == "file" and arg:
        return FileSource(arg)
    if kind == "device":
        from pipeline.audio.devices import DeviceSource  # noqa: PLC0415 - loads PortAudio

        return DeviceSource(arg or None)
    raise AudioError(
        f"unknown audio source {spec!r}: silence, tone:HZ[:ON_MS/PERIOD_MS], "
        "beep:HZ:ON_MS/PERIOD_MS, file:PATH.wav, device[:NAME]"
    )
