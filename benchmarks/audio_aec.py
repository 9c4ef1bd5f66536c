"""Echo cancellation on a synthetic echo path: ERLE, convergence, near-end kept, cost.

Usage::

    python -m benchmarks.audio_aec [--seconds 20] [--json artifacts/audio_aec.json]

The far end is speech-like (a 110-170 Hz glottal buzz with 29 harmonics through three formant
resonances, 4 syllables per second, pauses between words, peaks at -6 dBFS). The echo path is
what a laptop does to it: a ``--delay`` (40 ms) delay, a 3.5 kHz low-pass FIR, a 25 ms decaying
room tail, -10 dB; the microphone adds white noise at -55 dBFS. After ``--seconds`` of far end
alone (single talk), 4 s of a different near-end talker alone follow (the far end silent).

For each canceller (those installed): ERLE = 10 log10(P_mic / P_out) over the last half of the
single-talk part (ITU-T G.168's echo return loss enhancement, measured after convergence);
convergence = the start of the first 0.5 s window from which every window with echo (20 dB
over the noise) has ERLE >= 20 dB; near-end kept =
10 log10(P_out / P_mic) over the near-end part (0 dB: untouched; very negative: the canceller
mutes the talker); cost = CPU ms per 10 ms frame. Each runs with the delay hint right (40 ms)
and unknown (0 ms: AEC3 must find it). Prints a table, writes JSON::

    {"benchmark": "audio_aec", "seconds", "delay_ms", "noise_dbfs",
     "results": [{"canceller", "delay_hint_ms", "erle_db", "converged_s", "near_end_db",
                  "ms_per_10ms"}]}
"""

from __future__ import annotations

import argparse
import importlib
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks.cli import write_json
from pipeline.audio.frames import FRAME_SAMPLES, SAMPLE_RATE
from pipeline.audio.processing import AudioProcessing, PassThrough, WebrtcProcessing

F64 = npt.NDArray[np.float64]
I16 = npt.NDArray[np.int16]
CHUNK = SAMPLE_RATE // 100


def speech(seconds: float, seed: int) -> F64:
    """A speech-like signal (see the module docstring), float samples in int16 units."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t + seed) + rng.standard_normal() * 5
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    buzz = np.zeros(len(t))
    for k in range(1, 30):
        buzz += np.sin(k * phase) / k
    n = np.arange(400)
    formants = np.zeros(len(n))
    for fc, bw in ((700 + 50 * seed, 100), (1200 + 80 * seed, 120), (2600, 200)):
        formants += np.exp(-np.pi * bw * n / SAMPLE_RATE) * np.cos(2 * np.pi * fc * n / SAMPLE_RATE)
    x = np.convolve(buzz, formants)[: len(t)]
    syllables = np.sin(2 * np.pi * t * 4) > -0.2
    words = np.sin(2 * np.pi * t * 0.35 + seed) > -0.5
    env = np.convolve((syllables & words).astype(float), np.ones(480) / 480, "same")
    x = x * env
    out: F64 = x / np.max(np.abs(x)) * 0.5 * 32767
    return out


def echo_path(far: F64, delay_ms: float, seed: int = 3) -> F64:
    """Delay, 3.5 kHz low-pass, decaying 25 ms tail, -10 dB."""
    rng = np.random.default_rng(seed)
    taps = 255
    n = np.arange(taps) - taps // 2
    lowpass = np.sinc(2 * 3500 / SAMPLE_RATE * n) * np.hamming(taps)
    lowpass /= lowpass.sum()
    tail = np.zeros(1200)
    tail[0] = 1
    tail[1:] += rng.standard_normal(1199) * np.exp(-np.arange(1, 1200) / 200) * 0.15
    h = np.convolve(lowpass, tail) * 10 ** (-10 / 20)
    d = int(delay_ms * SAMPLE_RATE / 1000)
    echo = np.convolve(far, h)[: len(far) - d]
    out: F64 = np.concatenate([np.zeros(d), echo])
    return out


def scenario(seconds: float, delay_ms: float, noise_dbfs: float) -> tuple[I16, I16, int]:
    """(far, mic, near_start): far-end alone for ``seconds``, then 4 s of near end alone."""
    far = np.concatenate([speech(seconds, 1), np.zeros(4 * SAMPLE_RATE)])
    near = np.concatenate([np.zeros(int(seconds * SAMPLE_RATE)), speech(4, 2) * 0.5])
    rng = np.random.default_rng(5)
    noise = rng.standard_normal(len(far)) * 32767 * 10 ** (noise_dbfs / 20)
    mic = echo_path(far, delay_ms) + near + noise
    usable = len(far) // FRAME_SAMPLES * FRAME_SAMPLES

    def i16(x: F64) -> I16:
        return np.clip(x[:usable], -32768, 32767).astype(np.int16)

    return i16(far), i16(mic), int(seconds * SAMPLE_RATE)


def run(proc: AudioProcessing, far: I16, mic: I16) -> tuple[I16, float]:
    """Feed 20 ms frames: render then capture, as the audio path does. (output, CPU s)."""
    out = np.empty_like(mic)
    cpu = 0.0
    for i in range(0, len(mic), FRAME_SAMPLES):
        t0 = time.process_time()
        proc.process_render(far[i : i + FRAME_SAMPLES])
        out[i : i + FRAME_SAMPLES] = proc.process_capture(mic[i : i + FRAME_SAMPLES])
        cpu += time.process_time() - t0
    return out, cpu


def _power(x: I16) -> float:
    return float(np.mean(x.astype(np.float64) ** 2)) + 1e-9


def measure(out: I16, mic: I16, near_start: int, noise_dbfs: float) -> dict[str, float | None]:
    """ERLE over the second half of single talk; convergence over the 0.5 s windows where
    the echo is at least 20 dB over the noise (a pause has no echo to cancel)."""
    half = near_start // 2
    erle = 10 * np.log10(_power(mic[half:near_start]) / _power(out[half:near_start]))
    win = SAMPLE_RATE // 2
    noise = (32767 * 10 ** (noise_dbfs / 20)) ** 2
    windows = [
        (i / SAMPLE_RATE, 10 * np.log10(_power(mic[i : i + win]) / _power(out[i : i + win])))
        for i in range(0, near_start - win + 1, win)
        if _power(mic[i : i + win]) > 100 * noise
    ]
    converged = None
    for k in range(len(windows)):
        if all(w >= 20 for _, w in windows[k:]):
            converged = windows[k][0]
            break
    near_db = 10 * np.log10(_power(out[near_start:]) / _power(mic[near_start:]))
    return {"erle_db": float(erle), "converged_s": converged, "near_end_db": float(near_db)}


class _Adapter:
    """A third-party canceller behind the AudioProcessing interface (10 ms calls)."""

    def __init__(
        self, backend: str, render: Callable[[bytes], Any], capture: Callable[[bytes], bytes]
    ):
        self.backend, self._render, self._capture = backend, render, capture

    def process_render(self, frame: I16) -> None:
        for s in range(0, FRAME_SAMPLES, CHUNK):
            self._render(frame[s : s + CHUNK].tobytes())

    def process_capture(self, frame: I16) -> I16:
        parts = [
            np.frombuffer(self._capture(frame[s : s + CHUNK].tobytes()), np.int16)
            for s in range(0, FRAME_SAMPLES, CHUNK)
        ]
        out: I16 = np.concatenate(parts)
        return out


def _aec_audio_processing(ns: bool, delay_ms: int) -> AudioProcessing:
    aap: Any = importlib.import_module("aec_audio_processing")  # optional, untyped

    p = aap.AudioProcessor(
        enable_aec=True, enable_ns=ns, ns_level=1, enable_agc=False, enable_vad=False
    )
    p.set_stream_format(SAMPLE_RATE, 1)
    p.set_reverse_stream_format(SAMPLE_RATE, 1)
    p.set_stream_delay(delay_ms)
    return _Adapter("aec-audio-processing" + ("+ns" if ns else ""), p.process_reverse_stream,
                    p.process_stream)  # fmt: skip


def _speexdsp(ns: bool, delay_ms: int) -> AudioProcessing:
    speexdsp: Any = importlib.import_module("speexdsp")  # optional, untyped

    ec = speexdsp.EchoCanceller.create(CHUNK, 4800, SAMPLE_RATE)  # 100 ms filter
    pending: list[bytes] = []
    return _Adapter("speexdsp", pending.append, lambda near: ec.process(near, pending.pop(0)))


def candidates() -> list[tuple[str, Callable[[bool, int], AudioProcessing]]]:
    return [
        ("livekit", lambda ns, d: WebrtcProcessing(noise_suppression=ns, delay_ms=d)),
        ("aec-audio-processing", _aec_audio_processing),
        ("speexdsp", _speexdsp),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.audio_aec", description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0, help="single-talk seconds")
    parser.add_argument("--delay", type=float, default=40.0, help="echo path delay, ms")
    parser.add_argument("--noise", type=float, default=-55.0, help="near-end noise, dBFS")
    parser.add_argument("--json", default="artifacts/audio_aec.json", help="output file")
    args = parser.parse_args(argv)
    far, mic, near_start = scenario(args.seconds, args.delay, args.noise)
    results: list[dict[str, Any]] = []
    out, cpu = run(PassThrough(), far, mic)
    frames10 = len(mic) / CHUNK
    baseline = measure(out, mic, near_start, args.noise)
    results.append({"canceller": "none", "delay_hint_ms": 0, **baseline,
                    "ms_per_10ms": 1000 * cpu / frames10})  # fmt: skip
    for name, make in candidates():
        for ns in (False, True):
            if name == "speexdsp" and ns:
                continue  # its preprocessor (residual echo, noise) is not in the binding
            for hint in (int(args.delay), 0):
                try:
                    proc = make(ns, hint)
                except Exception as exc:  # any missing package or library: skip it, say so
                    print(f"{name}: not available ({exc})")
                    break
                out, cpu = run(proc, far, mic)
                label = name + ("+ns" if ns else "")
                results.append({"canceller": label, "delay_hint_ms": hint,
                                **measure(out, mic, near_start, args.noise),
                                "ms_per_10ms": 1000 * cpu / frames10})  # fmt: skip
    header = (
        f"{'canceller':24} {'hint':>5} {'ERLE dB':>8} {'conv. s':>8} {'near dB':>8} {'ms/10ms':>8}"
    )
    print(header)
    for r in results:
        conv = "-" if r["converged_s"] is None else f"{r['converged_s']:.1f}"
        print(f"{r['canceller']:24} {r['delay_hint_ms']:>5} {r['erle_db']:>8.1f} {conv:>8} "
              f"{r['near_end_db']:>8.1f} {r['ms_per_10ms']:>8.3f}")  # fmt: skip
    doc = {"benchmark": "audio_aec", "seconds": args.seconds, "delay_ms": args.delay,
           "noise_dbfs": args.noise, "results": results}  # fmt: skip
    write_json(args.json, doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
