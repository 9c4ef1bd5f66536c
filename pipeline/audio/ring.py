"""Ring tones: the incoming-call ring and the caller's ringback, played on the audio output.

API::

    @dataclass(frozen=True, slots=True)
    class Cadence: name; freqs_hz: tuple[float, ...]; pattern_s: tuple[float, ...]  # on, off, ...
        period_s -> float
    RING, RINGBACK: Cadence; CADENCES = {"ring": RING, "ringback": RINGBACK}
    tone_frames(cadence, level=RING_LEVEL) -> Iterator[I16Array]   # endless (960,) int16 frames
    play(cadence, sink, stop: threading.Event, max_s) -> int         # frames written
    class RingPlayer(sink_spec="device", *, max_s=RING_MAX_S)
        start(name: "ring" | "ringback"); stop(); close(timeout)     # never block on audio
        playing -> bool; fallback -> str | None; started -> int
    python -m pipeline.audio.ring ring|ringback [--sink device[:NAME]] [--max-seconds S]

The tones (sources of each figure):

- **Ringback** (the caller hears it while the callee rings): 425 Hz, 1 s on, 4 s off, the
  European "ringing tone" of ETSI ES 201 970 (section 8, CEPT T/CS 20-15) and ITU-T E.180
  Supplement 2.
- **Ring** (the callee's alert): a two-tone 400 + 450 Hz double ring, 0.4 s on, 0.2 s off, 0.4 s
  on, 2 s off, the cadence listed for the UK in ITU-T E.180 Supplement 2 (BT SIN 350). Two
  frequencies and a double beat make it unlike the ringback, so a user knows which it is.

Every on-segment starts and ends with a 5 ms raised-cosine ramp (no click); the phase runs on
across segments; the level is ``RING_LEVEL`` of full scale for the sum of the tones.

**Why a process.** :class:`RingPlayer` plays in a child process of its own
(``python -m pipeline.audio.ring``, a fresh interpreter), not a thread of the caller: the
client's media stages are forked from its process (pipeline/ipc/lifecycle.py), and a PortAudio
stream opening in a thread at that instant could leave its locks held in a child that opens
the call's audio device. A process also stops at once (SIGTERM closes the stream), and its
start and stop are a fork-exec and a signal: the Tk thread never waits on the audio device.
The child plays until it is told to stop (SIGTERM), its stdin closes (the parent is gone) or
``max_s`` passes, and exits :data:`EXIT_NO_DEVICE` when the sink cannot be opened: then (as
after any other failure of the child) :attr:`RingPlayer.fallback` says why, for the caller to
ring the terminal bell instead.

Guarantees: :func:`tone_frames` is pure and exact to the sample; :meth:`RingPlayer.start` and
:meth:`RingPlayer.stop` never block on audio; at most one tone plays at a time (a new start
stops the previous one); every child is reaped (:meth:`RingPlayer.close` waits, then kills).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType
from typing import IO

import numpy as np

from pipeline.audio.frames import (
    FRAME_SAMPLES,
    FRAME_SECONDS,
    SAMPLE_RATE,
    AudioError,
    AudioSink,
    I16Array,
    Pacer,
    silence,
)

logger = logging.getLogger(__name__)

RING_LEVEL = 0.25  # of full scale, for the sum of the tones (-12 dBFS peak)
RAMP_S = 0.005  # raised-cosine ramp at each edge of an on-segment
RING_MAX_S = 120.0  # a tone nobody stopped ends by itself (the call layer times out first)
EXIT_NO_DEVICE = 3  # the child's exit code when the sink cannot be opened
STOP_WAIT_S = 2.0  # close(): how long a child has to leave after SIGTERM before SIGKILL
# Silence a device gets before the tone: a PulseAudio stream through ALSA's plugin often
# stutters as it starts (pipeline/audio/devices.py), which would eat the first beat.
PREROLL_S = 0.2


@dataclass(frozen=True, slots=True)
class Cadence:
    """A tone: the sum of ``freqs_hz``, gated by ``pattern_s`` (on, off, on, off... seconds,
    an even number of entries, repeated)."""

    name: str
    freqs_hz: tuple[float, ...]
    pattern_s: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.freqs_hz or not all(0 < f < SAMPLE_RATE / 2 for f in self.freqs_hz):
            raise ValueError(f"{self.name}: frequencies must be in (0, {SAMPLE_RATE // 2}) Hz")
        pattern = self.pattern_s
        if not pattern or len(pattern) % 2 or not all(p > 0 for p in pattern):
            raise ValueError(f"{self.name}: the pattern is pairs of positive on/off durations")

    @property
    def period_s(self) -> float:
        return sum(self.pattern_s)


RINGBACK = Cadence("ringback", (425.0,), (1.0, 4.0))
RING = Cadence("ring", (400.0, 450.0), (0.4, 0.2, 0.4, 2.0))
CADENCES = {"ring": RING, "ringback": RINGBACK}


def _envelope(cadence: Cadence, n: np.ndarray) -> np.ndarray:
    """The gate (0..1) at sample indices ``n``: 1 inside an on-segment, raised-cosine ramps of
    RAMP_S at its edges, 0 in the off-segments."""
    period = round(cadence.period_s * SAMPLE_RATE)
    pos = (n % period).astype(np.float64)
    ramp = RAMP_S * SAMPLE_RATE
    gate = np.zeros(len(n))
    start = 0
    for on, off in zip(cadence.pattern_s[::2], cadence.pattern_s[1::2], strict=True):
        length = round(on * SAMPLE_RATE)
        inside = (pos >= start) & (pos < start + length)
        edge = np.minimum(pos - start + 0.5, start + length - pos - 0.5) / ramp
        gate = np.where(inside, np.clip(edge, 0.0, 1.0), gate)
        start += length + round(off * SAMPLE_RATE)
    return 0.5 - 0.5 * np.cos(np.pi * gate)


def tone_frames(cadence: Cadence, level: float = RING_LEVEL) -> Iterator[I16Array]:
    """The tone as endless 20 ms frames, (FRAME_SAMPLES,) int16 at 48 kHz."""
    scale = level * 32767 / len(cadence.freqs_hz)
    n0 = 0
    while True:
        n = np.arange(n0, n0 + FRAME_SAMPLES, dtype=np.int64)
        t = n / SAMPLE_RATE
        wave = sum(np.sin(2 * math.pi * f * t) for f in cadence.freqs_hz)
        frame = np.round(np.asarray(wave) * _envelope(cadence, n) * scale).astype(np.int16)
        yield frame
        n0 += FRAME_SAMPLES


def play(cadence: Cadence, sink: AudioSink, stop: threading.Event, max_s: float) -> int:
    """Write ``cadence`` to ``sink`` until ``stop`` is set or ``max_s`` s have passed; the
    frames written, the device's PREROLL_S of silence included. A sink that is not paced by a
    device (a file) is paced at 20 ms a frame and gets no preroll."""
    pacer = None if sink.paced else Pacer()
    deadline = time.monotonic() + max_s
    written = 0
    preroll = round(PREROLL_S / FRAME_SECONDS) if sink.paced else 0
    frames = itertools.chain(itertools.repeat(silence(), preroll), tone_frames(cadence))
    for frame in frames:
        if stop.is_set() or time.monotonic() >= deadline:
            break
        sink.write(frame)
        written += 1
        if pacer is not None:
            pacer.wait(stop)
    return written


class RingPlayer:
    """Plays one cadence at a time in a child process (see the module docstring)."""

    def __init__(self, sink_spec: str = "device", *, max_s: float = RING_MAX_S) -> None:
        self.sink_spec = sink_spec
        self.max_s = max_s
        self.started = 0  # tones started
        self._proc: subprocess.Popen[bytes] | None = None
        # The child's stderr: an unlinked file, never a pipe that a chatty PortAudio could fill.
        self._err: IO[bytes] | None = None
        self._name = ""
        self._stopped: list[subprocess.Popen[bytes]] = []  # told to stop, not reaped yet
        self._fallback: str | None = None

    def start(self, name: str) -> None:
        """Play the cadence ``name`` ("ring" or "ringback"), stopping any other first.
        ValueError for another name."""
        if name not in CADENCES:
            raise ValueError(f"no cadence {name!r}: one of {', '.join(CADENCES)}")
        self.stop()
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        cmd = [
            sys.executable, "-m", "pipeline.audio.ring", name,
            "--sink", self.sink_spec, "--max-seconds", f"{self.max_s:g}",
        ]  # fmt: skip
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=self._err,
                start_new_session=True,  # a terminal's Ctrl+C goes to the client, which stops it
            )
        except OSError as exc:
            self._fallback = f"cannot start the ring player: {exc}"
            logger.warning("%s", self._fallback)
            return
        self._name = name
        self._fallback = None
        self.started += 1

    def stop(self) -> None:
        """Stop the tone (SIGTERM; the child is reaped later). Never blocks."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
            self._stopped.append(proc)
        if self._err is not None:
            self._err.close()  # the child writes to its own copy, if it still runs
            self._err = None
        self._reap()

    @property
    def playing(self) -> bool:
        """A tone's process runs (started, not stopped, not ended by itself)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def fallback(self) -> str | None:
        """Why the last tone cannot be heard (no output device, no player), else None."""
        proc = self._proc
        code = None if proc is None else proc.poll()
        if proc is not None and code not in (None, 0):  # EXIT_NO_DEVICE, or it failed
            err = b""
            if self._err is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._err.seek(0)
                    err = self._err.read(65536)
            text = err.decode(errors="replace").strip()[-1000:]
            if code != EXIT_NO_DEVICE:  # not a missing device: a bug; its last words say what
                text = f"the ring player failed (exit {code}): {text[-300:]}"
            self._fallback = text or "no audio output"
            logger.info("ring: %s; the terminal bell instead", self._fallback)
            self._close_pipes(proc)
            self._proc = None
        return self._fallback

    def close(self, timeout: float = STOP_WAIT_S) -> None:
        """Stop and reap every child (SIGKILL after ``timeout``). For shutdown, not for Tk."""
        self.stop()
        deadline = time.monotonic() + timeout
        for proc in self._stopped:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            self._close_pipes(proc)
        self._stopped.clear()

    def _reap(self) -> None:
        still = []
        for proc in self._stopped:
            if proc.poll() is None:
                still.append(proc)
            else:
                self._close_pipes(proc)
        self._stopped = still

    @staticmethod
    def _close_pipes(proc: subprocess.Popen[bytes]) -> None:
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()


# -- the child process -----------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``python -m pipeline.audio.ring``: play until SIGTERM, stdin EOF or --max-seconds."""
    parser = argparse.ArgumentParser(prog="python -m pipeline.audio.ring", description=__doc__)
    parser.add_argument("cadence", choices=sorted(CADENCES))
    parser.add_argument("--sink", default="device", help="device, device:NAME, wav:PATH, null")
    parser.add_argument("--max-seconds", type=float, default=RING_MAX_S)
    args = parser.parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def watch_stdin() -> None:  # EOF: the parent is gone
        # os.read, not sys.stdin: a thread blocked inside the buffered reader holds its lock,
        # and the interpreter's exit would wait for it forever when closing stdin.
        with contextlib.suppress(OSError):
            while os.read(0, 64):
                pass
        stop.set()

    threading.Thread(target=watch_stdin, name="stdin", daemon=True).start()
    from pipeline.audio.sinks import open_sink  # noqa: PLC0415 - PortAudio only in the child

    try:
        sink = open_sink(args.sink)
    except AudioError as exc:
        print(f"no audio output for the {args.cadence}: {exc}", file=sys.stderr)
        return EXIT_NO_DEVICE
    try:
        play(CADENCES[args.cadence], sink, stop, args.max_seconds)
    finally:
        sink.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
