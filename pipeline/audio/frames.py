"""The audio frame every part of the audio pipeline passes: 20 ms of mono int16 at 48 kHz.

API::

    SAMPLE_RATE = 48000; FRAME_SAMPLES = 960; FRAME_SECONDS = 0.02
    I16Array = NDArray[int16]           # shape (FRAME_SAMPLES,) for a frame
    def silence() -> I16Array           # a new frame of zeros
    class Pacer:                        # a 20 ms tick on the monotonic clock
        wait(stop: threading.Event | None) -> None; reset()
    class AudioSource(ABC): spec; paced; fallback; read() -> I16Array; close()
    class AudioSink(ABC):   spec; paced; fallback; write(pcm); close()
    class AudioError(LocalProtocolError)     # a source or sink we cannot open as asked
    class WavError(RemoteProtocolError)      # a file that is not a WAV we can read

48 kHz because Opus runs at it (RFC 7587 4.1: the RTP clock is 48 kHz) and PortAudio devices
resample if they must; mono because a call carries one voice; int16 because it is what Opus,
WAV files and sound cards share without conversion.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod

import numpy as np
import numpy.typing as npt

from pipeline.errors import LocalProtocolError, RemoteProtocolError

SAMPLE_RATE = 48_000
FRAME_SAMPLES = 960
FRAME_SECONDS = FRAME_SAMPLES / SAMPLE_RATE

I16Array = npt.NDArray[np.int16]


class AudioError(LocalProtocolError):
    """A source, sink or device that cannot be opened as asked (a bad spec, a missing device,
    a sample rate it refuses)."""


class WavError(RemoteProtocolError):
    """A file that is not a WAV file vcall can read (the file's fault)."""


def silence() -> I16Array:
    return np.zeros(FRAME_SAMPLES, np.int16)


class Pacer:
    """Sleeps until the next 20 ms tick (absolute deadlines: no drift from late wake-ups; after
    a stall of more than 5 ticks it starts over from now rather than rushing to catch up)."""

    def __init__(self, period: float = FRAME_SECONDS) -> None:
        self.period = period
        self._next: float | None = None

    def reset(self) -> None:
        self._next = None

    def wait(self, stop: threading.Event | None = None) -> None:
        now = time.monotonic()
        if self._next is None or now - self._next > 5 * self.period:
            self._next = now
        delay = self._next - now
        if delay > 0:
            if stop is not None:
                stop.wait(delay)
            else:
                time.sleep(delay)
        self._next += self.period


class AudioSource(ABC):
    """Where the frames a call sends come from (pipeline/audio/sources.py, devices.py)."""

    spec: str = ""
    paced: bool = False  # read() waits for the hardware (a device): no other clock needed
    fallback: str | None = None  # why a device source fell back to silence, if it did

    @abstractmethod
    def read(self) -> I16Array:
        """The next frame, (FRAME_SAMPLES,) int16."""

    def close(self) -> None:  # noqa: B027 - nothing to release for most sources
        """Release the device (idempotent)."""


class AudioSink(ABC):
    """Where the frames a call receives go (pipeline/audio/sinks.py, devices.py)."""

    spec: str = ""
    paced: bool = False  # write() waits for the hardware (a device)
    fallback: str | None = None  # why a device sink fell back to discarding, if it did

    @abstractmethod
    def write(self, pcm: I16Array) -> None:
        """Play (or store) one frame of mono int16 samples."""

    def close(self) -> None:  # noqa: B027 - nothing to release for the null sink
        """Flush and release (idempotent)."""
