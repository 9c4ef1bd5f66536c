"""Sound devices through PortAudio (``sounddevice``; Debian's ``libportaudio2``).

API::

    @dataclass(frozen=True, slots=True)
    class AudioDevice: index; name; hostapi; inputs; outputs; default_rate;
                       default_input; default_output          # is the host's default
    def list_devices(rescan: bool = False) -> list[AudioDevice]  # AudioError: no PortAudio
    def rescan() -> None          # re-read the devices (PortAudio lists them once, at start)
    def resolve(spec: str | None, kind: "input" | "output") -> int | None
                                  # None: the default; an index, or a unique name substring
    class DeviceSource(AudioSource):   # paced; read() -> (960,) int16 from the microphone
    class DeviceSink(AudioSink):       # paced; write(pcm) queues for the speaker
        DeviceSource(spec=None, *, stall_timeout=0.5, queue_frames=10, latency="auto")
        DeviceSink(spec=None, *, stall_timeout=0.5, queue_frames=3, latency="auto")
                                       # AudioError
        fallback: str | None; stats -> DeviceStats

Both open 48 kHz mono int16 streams; a device that refuses them is an ``AudioError`` naming
the device and what it refused. PortAudio's callbacks only move samples between the device and
a bounded queue of 20 ms frames (re-cut from whatever block size PortAudio chose); the caller's
thread blocks in ``read``/``write`` (never a Tk thread), paced by the device's clock.

**A stream that stalls** (no callback for ``stall_timeout`` s) is reopened, up to
``MAX_RESTARTS`` times in a row (counted in ``restarts``; a stream that ran ``STEADY_S``
before stalling starts a new series). **A device that disappears**
(unplugged, its server gone) cannot be reopened, or stalls again: the source falls back to
silence and the sink to discarding, both paced by a 20 ms timer so the call keeps its timing;
``fallback`` says why, a warning is logged once, and the call goes on. (Reopening another
device is the caller's choice.)

ALSA's ``pulse`` device under Debian 12's PortAudio 19.6 (measured against a PulseAudio null
sink, 1 s streams): it starts unreliably: some streams get no callback at all, or stop after
the first buffer, whatever the block size; small suggested latencies make it worse (20 ms
blocks at 0.02 s or "low": 0-3 callbacks in 4 of 4 tries; 0.2 s: 1 stall in 4 inputs, 2 in 4
outputs), while ``arecord`` through the same plugin is fine with 20 ms periods: PortAudio's
handling of the plugin, not the server. Hence ``latency="auto"``: PULSE_LATENCY (0.2 s) for the
``pulse``/``default`` devices, "low" otherwise; and the reopen above, which is what makes it
usable. No ``check_*_settings`` probe either: it left the next stream without callbacks.

Guarantees: queues are bounded (``queue_frames``); every dropped or missing frame is counted
(``overruns``: frames dropped because the reader was late; ``underruns``: device callbacks
with nothing to play; ``xruns``: PortAudio's own status flags; ``restarts``: stalled streams
reopened).
"""

from __future__ import annotations

import collections
import contextlib
import importlib
import logging
import threading
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

import numpy as np

from pipeline.audio.frames import (
    FRAME_SAMPLES,
    SAMPLE_RATE,
    AudioError,
    AudioSink,
    AudioSource,
    I16Array,
    Pacer,
)

logger = logging.getLogger(__name__)

PULSE_LATENCY = 0.2  # s, suggested to PortAudio for ALSA's pulse plugin (see above)
MAX_RESTARTS = 3  # reopens of a stalled stream in a row before falling back
STEADY_S = 5.0  # a stream that ran this long before stalling gets MAX_RESTARTS afresh


def portaudio() -> ModuleType:
    """The ``sounddevice`` module; AudioError when it or libportaudio2 is not installed."""
    try:
        # Loads libportaudio only when a device is used; sounddevice ships no type hints.
        return importlib.import_module("sounddevice")
    except (ImportError, OSError) as exc:
        raise AudioError(f"no PortAudio (pip sounddevice, apt libportaudio2): {exc}") from exc


@dataclass(frozen=True, slots=True)
class AudioDevice:
    index: int
    name: str
    hostapi: str
    inputs: int  # max input channels
    outputs: int
    default_rate: float  # Hz
    default_input: bool
    default_output: bool


def rescan() -> None:
    """Make PortAudio list the devices again (it reads them once, when initialised): the
    library must be terminated and initialised again, with no stream open. sounddevice has no
    public call for it; its ``_terminate``/``_initialize`` are what its own import runs."""
    sd = portaudio()
    sd._terminate()
    sd._initialize()


def list_devices(rescan_first: bool = False) -> list[AudioDevice]:
    """Every PortAudio device; AudioError without PortAudio."""
    sd = portaudio()
    if rescan_first:
        rescan()
    try:
        devices: Any = sd.query_devices()
        apis: Any = sd.query_hostapis()
        default_in, default_out = sd.default.device
    except sd.PortAudioError as exc:
        raise AudioError(f"PortAudio cannot list devices: {exc}") from exc
    return [
        AudioDevice(
            index=i,
            name=str(d["name"]),
            hostapi=str(apis[d["hostapi"]]["name"]),
            inputs=int(d["max_input_channels"]),
            outputs=int(d["max_output_channels"]),
            default_rate=float(d["default_samplerate"]),
            default_input=i == default_in,
            default_output=i == default_out,
        )
        for i, d in enumerate(devices)
    ]


def resolve(spec: str | None, kind: Literal["input", "output"]) -> int | None:
    """The device index ``spec`` names for ``kind``: None (the default), an index, or a name
    or unique substring of one. AudioError naming the candidates otherwise."""
    if not spec:
        return None
    devices = [d for d in list_devices() if (d.inputs if kind == "input" else d.outputs) > 0]
    if spec.isdigit():
        if any(d.index == int(spec) for d in devices):
            return int(spec)
    else:
        exact = [d for d in devices if d.name == spec]
        matches = exact or [d for d in devices if spec.lower() in d.name.lower()]
        if len(matches) == 1:
            return matches[0].index
    names = ", ".join(f"{d.index}: {d.name}" for d in devices) or "none"
    raise AudioError(f"no single {kind} device {spec!r}; {kind} devices: {names}")


@dataclass(frozen=True, slots=True)
class DeviceStats:
    frames: int = 0  # frames moved to or from the device
    overruns: int = 0  # frames dropped because the queue was full
    underruns: int = 0  # device callbacks with nothing (or too little) to play
    xruns: int = 0  # callbacks where PortAudio flagged an over/underflow
    restarts: int = 0  # stalled streams reopened


class _DeviceStream:
    """What a source and a sink share: the stream, a bounded queue and the fallback."""

    def __init__(
        self,
        kind: Literal["input", "output"],
        spec: str | None,
        queue_frames: int,
        latency: float | str,
    ):
        self.sd = portaudio()
        self.kind = kind
        self.device = resolve(spec, kind)
        self.label = spec or f"default {kind}"
        if latency == "auto":
            try:
                name = str(self.sd.query_devices(self.device, kind)["name"]).lower()
            except (self.sd.PortAudioError, ValueError) as exc:  # e.g. no default device at all
                raise AudioError(f"no {kind} device {self.label}: {exc}") from exc
            latency = PULSE_LATENCY if name in ("pulse", "default") else "low"
        self.latency = latency
        self.queue: collections.deque[I16Array] = collections.deque()
        self.queue_frames = queue_frames
        self.cond = threading.Condition()
        self.counts = {"frames": 0, "overruns": 0, "underruns": 0, "xruns": 0, "restarts": 0}
        self.restarts_in_row = 0
        self.max_request = 0  # the most samples one output callback asked for
        self.fallback: str | None = None
        self.pacer = Pacer()
        self.stream: Any = None
        self.started_at = 0.0

    def start(self, stream_class: Any, callback: Any) -> None:
        """Open and start the stream; AudioError if the device refuses."""
        self._open = (stream_class, callback)
        try:
            self.stream = stream_class(
                device=self.device,
                samplerate=SAMPLE_RATE,
                channels=1,
                dtype="int16",
                latency=self.latency,
                callback=callback,
            )
            self.stream.start()
            self.started_at = time.monotonic()
        except (self.sd.PortAudioError, ValueError) as exc:
            self.close()
            raise AudioError(
                f"{self.kind} device {self.label} refuses {SAMPLE_RATE} Hz mono int16: {exc}"
            ) from exc

    def stalled(self, why: str, instead: str) -> bool:
        """Nothing moved for the stall timeout: reopen the stream (True) or, after
        MAX_RESTARTS in a row or when it cannot be reopened, fall back (False)."""
        if time.monotonic() - self.started_at > STEADY_S:
            self.restarts_in_row = 0  # it had been running: a new stall, not the same one
        if self.restarts_in_row < MAX_RESTARTS:
            self.restarts_in_row += 1
            self.counts["restarts"] += 1
            logger.info("%s device %s stalled: reopening it", self.kind, self.label)
            self.close()
            try:
                self.start(*self._open)
                return True
            except AudioError as exc:
                why = f"{why} and cannot be reopened ({exc})"
        self.fall_back(why, instead)
        return False

    def fall_back(self, why: str, instead: str) -> None:
        self.fallback = f"{self.kind} device {self.label} {why}; {instead}"
        logger.warning("%s", self.fallback)
        # Closing a stream whose device is gone can block inside PortAudio: not on our thread.
        threading.Thread(target=self.close, name="audio-device-close", daemon=True).start()

    def close(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            with contextlib.suppress(Exception):  # a vanished device may refuse to stop
                stream.abort()
            with contextlib.suppress(Exception):
                stream.close()

    def stats(self) -> DeviceStats:
        return DeviceStats(**self.counts)


class DeviceSource(AudioSource):
    """A microphone: 20 ms frames as the device delivers them; silence after it vanishes."""

    paced = True

    def __init__(
        self,
        spec: str | None = None,
        *,
        stall_timeout: float = 0.5,
        queue_frames: int = 10,
        latency: float | str = "auto",
    ) -> None:
        self.spec = f"device:{spec}" if spec else "device"
        self.stall_timeout = stall_timeout
        self._pending = np.zeros(0, np.int16)  # samples short of a whole frame
        self._d = _DeviceStream("input", spec, queue_frames, latency)
        self._d.start(self._d.sd.InputStream, self._callback)

    def _callback(self, indata: Any, frames: int, time: Any, status: Any) -> None:
        d = self._d
        pcm = np.concatenate([self._pending, np.asarray(indata[:, 0], np.int16)])
        whole = len(pcm) // FRAME_SAMPLES * FRAME_SAMPLES
        self._pending = pcm[whole:]
        with d.cond:
            if status:
                d.counts["xruns"] += 1
            for start in range(0, whole, FRAME_SAMPLES):
                if len(d.queue) >= d.queue_frames:
                    d.queue.popleft()
                    d.counts["overruns"] += 1
                d.queue.append(pcm[start : start + FRAME_SAMPLES])
            d.cond.notify()

    def read(self) -> I16Array:
        d = self._d
        while d.fallback is None:
            with d.cond:
                if d.cond.wait_for(lambda: bool(d.queue), self.stall_timeout):
                    d.counts["frames"] += 1
                    return d.queue.popleft()
            why = f"delivered nothing for {self.stall_timeout} s"
            if not d.stalled(why, "sending silence"):
                break
        d.pacer.wait()
        return np.zeros(FRAME_SAMPLES, np.int16)

    @property
    def fallback(self) -> str | None:  # type: ignore[override]
        return self._d.fallback

    @property
    def stats(self) -> DeviceStats:
        return self._d.stats()

    def close(self) -> None:
        self._d.close()


class DeviceSink(AudioSink):
    """A speaker: frames queue for the device's callback; discarding after it vanishes."""

    paced = True

    def __init__(
        self,
        spec: str | None = None,
        *,
        stall_timeout: float = 0.5,
        queue_frames: int = 3,
        latency: float | str = "auto",
    ) -> None:
        self.spec = f"device:{spec}" if spec else "device"
        self.stall_timeout = stall_timeout
        self._d = _DeviceStream("output", spec, queue_frames, latency)
        self._pending = np.zeros(0, np.int16)  # the callback's partly played frame
        self._d.start(self._d.sd.OutputStream, self._callback)

    def _callback(self, outdata: Any, frames: int, time: Any, status: Any) -> None:
        d = self._d
        with d.cond:
            if status:
                d.counts["xruns"] += 1
            d.max_request = max(d.max_request, frames)
            parts, have = [self._pending], len(self._pending)
            while have < frames and d.queue:
                parts.append(d.queue.popleft())
                have += len(parts[-1])
            d.cond.notify()
        pcm = np.concatenate(parts) if len(parts) > 1 else parts[0]
        if have < frames:
            d.counts["underruns"] += 1
            pcm = np.concatenate([pcm, np.zeros(frames - have, np.int16)])
        outdata[:, 0] = pcm[:frames]
        self._pending = pcm[frames:]

    def _depth(self) -> int:
        """Frames the queue may hold: ``queue_frames``, or more when the device asks for bigger
        blocks (PortAudio picks the block size): one callback must find a whole block."""
        d = self._d
        return max(d.queue_frames, -(-d.max_request // FRAME_SAMPLES) + 1)

    def write(self, pcm: I16Array) -> None:
        d = self._d
        while d.fallback is None:
            with d.cond:
                if d.cond.wait_for(lambda: len(d.queue) < self._depth(), self.stall_timeout):
                    d.queue.append(np.asarray(pcm, np.int16).copy())
                    d.counts["frames"] += 1
                    return
            why = f"took nothing for {self.stall_timeout} s"
            if not d.stalled(why, "discarding the sound"):
                break
        d.pacer.wait()

    @property
    def fallback(self) -> str | None:  # type: ignore[override]
        return self._d.fallback

    @property
    def stats(self) -> DeviceStats:
        return self._d.stats()

    def close(self) -> None:
        self._d.close()
