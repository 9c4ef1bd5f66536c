"""`vcall bench audio`: the voice of a loopback call between two media sessions (issue 12).

Each side sends 100 ms tone bursts once a second (1 kHz and 700 Hz) beside 720p H.264 video, and
records what it hears to a WAV file. Mouth-to-ear per burst: the receiver's playout time of the
burst's onset (its audio stage's playout start + the onset's sample / 48 kHz) minus the sender's
capture time of it (its capture start + k s); both on the one monotonic clock of this host, both
from the audio stages' own statistics, so the figure spans capture, Opus, RTP, the receive
stage's routing, the audio ring, the jitter buffer and decoding (devices excluded: no sound card
here). Also: the audio stage's CPU per side, and the jitter buffer's counts. Prints a table and
writes JSON (``--json``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.audio.sources import read_wav
from pipeline.control import AudioSpec, MediaMode, PeerEndpoint
from pipeline.session import MediaSession

LOCAL = "127.0.0.1"
RATE = 48000
BURST_MS, PERIOD_MS = 100, 1000


def dominant_hz(pcm: np.ndarray, rate: int = RATE) -> float:
    """The strongest frequency of ``pcm`` (Hann-windowed FFT), Hz."""
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    return float(np.argmax(spectrum) * rate / len(pcm))


def onsets(pcm: np.ndarray, threshold: float = 3000, quiet: int = RATE // 10) -> list[int]:
    """First samples over ``threshold`` after at least ``quiet`` samples under it."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > threshold)
    if len(loud) == 0:
        return []
    return [int(loud[0])] + [int(b) for a, b in itertools.pairwise(loud) if b - a > quiet]


def mouth_to_ear(sent_start: float, heard_start: float, pcm: np.ndarray) -> list[float]:
    """Seconds from each burst's capture to its playout (see the module docstring)."""
    delays = []
    period = PERIOD_MS / 1000
    for h in onsets(pcm):
        t_heard = heard_start + h / RATE
        k = int((t_heard - sent_start) // period)  # the latest burst sent before it was heard
        if k >= 0:
            delays.append(t_heard - (sent_start + k * period))
    return delays


def _path_stats(session: MediaSession) -> dict[str, Any]:
    audio = dict(session.stats().stages.get("audio", {}))
    path = audio.get("path")
    return dict(path) if isinstance(path, dict) else {}


def run_call(seconds: float, workdir: Path, codec: str) -> dict[str, Any]:
    wavs = {"a": workdir / "a_hears.wav", "b": workdir / "b_hears.wav"}
    tones = {"a": "tone:1000", "b": "tone:700"}
    sessions = {
        side: MediaSession(
            bind_ip=LOCAL,
            preset="high",
            audio=AudioSpec(
                source=f"{tones[side]}:{BURST_MS}/{PERIOD_MS}",
                sink=f"wav:{wavs[side]}",
                processing=True,
            ),
        )
        for side in ("a", "b")
    }
    a, b = sessions["a"], sessions["b"]
    try:
        port_a, port_b = a.open(), b.open()
        a.connect(PeerEndpoint(LOCAL, port_b, MediaMode.RTP, 11, 22, codec=codec))
        b.connect(PeerEndpoint(LOCAL, port_a, MediaMode.RTP, 22, 11, codec=codec))
        time.sleep(1.0)
        a.reset_stats()
        b.reset_stats()
        time.sleep(seconds)
        stats = {side: _path_stats(s) for side, s in sessions.items()}
        cpu = {side: s.stats().cpu_percent.get("audio") for side, s in sessions.items()}
    finally:
        a.close()
        b.close()
    result: dict[str, Any] = {"seconds": seconds, "codec": codec, "directions": {}}
    for tx, rx in (("a", "b"), ("b", "a")):
        sent_start = stats[tx].get("capture_started")
        heard_start = stats[rx].get("playout_started")
        pcm = read_wav(str(wavs[rx]))
        delays = (
            mouth_to_ear(float(sent_start), float(heard_start), pcm)
            if sent_start is not None and heard_start is not None
            else []
        )
        jitter = stats[rx].get("jitter", {})
        result["directions"][f"{tx}_to_{rx}"] = {
            "bursts_heard": len(delays),
            "mouth_to_ear_ms": [round(1000 * d, 1) for d in delays],
            "mouth_to_ear_p50_ms": round(1000 * statistics.median(delays), 1) if delays else None,
            "packets_received": stats[rx].get("received"),
            "lost": jitter.get("lost"),
            "concealed": jitter.get("concealed"),
            "audio_stage_cpu_percent_rx": cpu[rx],
        }
    return result


def print_table(result: dict[str, Any]) -> None:
    print(f"audio over a loopback call ({result['codec']} video beside it), {result['seconds']} s")
    dirs = result["directions"]
    print(f"{'':<30}" + "".join(f"{d:>16}" for d in dirs))
    for label, key in (
        ("bursts heard", "bursts_heard"),
        ("mouth-to-ear p50 (ms)", "mouth_to_ear_p50_ms"),
        ("packets received", "packets_received"),
        ("lost / concealed", None),
        ("audio stage CPU % (receiver)", "audio_stage_cpu_percent_rx"),
    ):
        if key is None:
            cells = [f"{d['lost']} / {d['concealed']}" for d in dirs.values()]
        else:
            cells = ["-" if d[key] is None else str(d[key]) for d in dirs.values()]
        print(f"{label:<30}" + "".join(f"{c:>16}" for c in cells))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=6.0, help="measured duration (6)")
    parser.add_argument("--codec", default="H264", help="the video codec beside it (H264)")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")


def run(args: argparse.Namespace) -> int:
    if not args.seconds > 0:
        print("vcall bench audio: --seconds must be > 0", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="vcall-bench-audio-") as tmp:
        result = run_call(args.seconds, Path(tmp), args.codec)
    print_table(result)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(result, out, indent=2)
        print(f"wrote {args.json}")
    heard = all(d["bursts_heard"] for d in result["directions"].values())
    return 0 if heard else 1


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.audio_call", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
