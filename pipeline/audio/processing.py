"""Echo cancellation and noise suppression: WebRTC's audio processing module (AEC3).

API::

    class AudioProcessing(Protocol):           # what the audio path holds
        backend: str
        process_render(frame: I16Array) -> None        # far end: what the speaker plays
        process_capture(frame: I16Array) -> I16Array   # near end: the microphone, cleaned
    class WebrtcProcessing:                     # livekit's rtc.AudioProcessingModule
        def __init__(self, *, echo_cancellation=True, noise_suppression=True,
                     high_pass_filter=True, auto_gain_control=False, delay_ms=0) -> None
                                                # AudioError if livekit is not installed
        set_delay_ms(ms)                        # the render-to-capture delay hint
    class PassThrough:                          # no processing (disabled, or no livekit)
    def make_processing(enabled: bool = True, **options) -> AudioProcessing

Frames are the pipeline's 20 ms of mono int16 at 48 kHz; the module takes 10 ms at a time,
so each frame is two calls (the WebRTC API's rule). ``process_render`` must see every frame
handed to the speaker, ``process_capture`` every microphone frame, in real time: AEC3 learns
the echo path between the two and estimates the delay itself; ``delay_ms`` is only its starting
hint (``set_stream_delay_ms`` is required on every capture frame when AEC is on: we do it).

Why this one (measured by ``python -m benchmarks.audio_aec``, a speech-like far end through a
40 ms delayed, low-passed, -10 dB echo path with -55 dBFS near-end noise, ERLE over the last
10 s of 20): livekit's APM (WebRTC AEC3) 30.3 dB (42.1 dB with noise suppression), at or
above 20 dB from the first second, the near-end talker kept within 0.6 dB, the delay hint right
or 0; the ``aec-audio-processing`` binding 28.3 dB (40.0 dB); speexdsp's MDF canceller 23.2 dB;
``webrtc-noise-gain`` has no echo canceller. Figures: artifacts/audio_aec.json. All cost
about 0.1 ms per 10 ms. livekit is a maintained WebRTC build with wheels for the usual
platforms and type hints; its cost is size (30 MB).

Guarantees: ``process_capture`` returns a new (960,) int16 frame and never raises on a frame of
the right shape; a wrong shape is ``AudioError`` (our bug, not a peer's).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import numpy as np

from pipeline.audio.frames import FRAME_SAMPLES, SAMPLE_RATE, AudioError, I16Array

logger = logging.getLogger(__name__)

CHUNK = SAMPLE_RATE // 100  # the APM's 10 ms


class AudioProcessing(Protocol):
    backend: str

    def process_render(self, frame: I16Array) -> None: ...

    def process_capture(self, frame: I16Array) -> I16Array: ...


def _check(frame: I16Array) -> None:
    if frame.shape != (FRAME_SAMPLES,) or frame.dtype != np.int16:
        raise AudioError(f"audio frames are ({FRAME_SAMPLES},) int16, not {frame.shape}")


class PassThrough:
    """No processing: what the path uses when processing is off or unavailable."""

    backend = "none"

    def process_render(self, frame: I16Array) -> None:
        _check(frame)

    def process_capture(self, frame: I16Array) -> I16Array:
        _check(frame)
        return frame.copy()


class WebrtcProcessing:
    """WebRTC's APM through livekit: AEC3, noise suppression, high-pass filter, optional AGC."""

    backend = "livekit-webrtc-apm"

    def __init__(
        self,
        *,
        echo_cancellation: bool = True,
        noise_suppression: bool = True,
        high_pass_filter: bool = True,
        auto_gain_control: bool = False,
        delay_ms: int = 0,
    ) -> None:
        try:
            from livekit import rtc  # noqa: PLC0415 - 30 MB of native code, only when used
        except ImportError as exc:
            raise AudioError(
                f"echo cancellation needs livekit (pip install livekit): {exc}"
            ) from exc
        self._rtc: Any = rtc
        self._apm = rtc.AudioProcessingModule(
            echo_cancellation=echo_cancellation,
            noise_suppression=noise_suppression,
            high_pass_filter=high_pass_filter,
            auto_gain_control=auto_gain_control,
        )
        self._aec = echo_cancellation
        self.delay_ms = delay_ms

    def set_delay_ms(self, delay_ms: int) -> None:
        """The render-to-capture delay hint in ms (0-500; AEC3 refines it itself)."""
        self.delay_ms = max(0, min(500, int(delay_ms)))

    def _frame(self, pcm: I16Array) -> Any:
        return self._rtc.AudioFrame(pcm.tobytes(), SAMPLE_RATE, 1, CHUNK)

    def process_render(self, frame: I16Array) -> None:
        _check(frame)
        for start in range(0, FRAME_SAMPLES, CHUNK):
            self._apm.process_reverse_stream(self._frame(frame[start : start + CHUNK]))

    def process_capture(self, frame: I16Array) -> I16Array:
        _check(frame)
        out = np.empty(FRAME_SAMPLES, np.int16)
        for start in range(0, FRAME_SAMPLES, CHUNK):
            chunk = self._frame(frame[start : start + CHUNK])
            if self._aec:
                self._apm.set_stream_delay_ms(self.delay_ms)
            self._apm.process_stream(chunk)
            out[start : start + CHUNK] = np.frombuffer(chunk.data, np.int16)
        return out


def make_processing(enabled: bool = True, **options: Any) -> AudioProcessing:
    """WebrtcProcessing, or PassThrough when disabled or livekit is missing (logged)."""
    if not enabled:
        return PassThrough()
    try:
        return WebrtcProcessing(**options)
    except AudioError as exc:
        logger.warning("no echo cancellation: %s", exc)
        return PassThrough()
