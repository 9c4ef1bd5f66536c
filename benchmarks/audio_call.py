"""`vcall bench audio`: the voice of a loopback call between two media sessions (issue 12).

Each side sends 100 ms tone bursts once a second (1 kHz and 700 Hz) beside 720p H.264 video, and
records what it hears to a WAV file. Mouth-to-ear per burst: the receiver's playout time of the
burst's onset (its audio stage's playout start + the onset's sample / 48 kHz) minus the sender's
capture time of it (its capture start + k s); both on the one monotonic clock of this host, both
from the audio stages' own statistics, so the figure spans capture, Opus, RTP, the receive
stage's routing, the audio ring, the jitter buffer and decoding (devices excluded: no sound card
here). Also: the audio stage's CPU per side, and the jitter buffer's counts. Prints a table and
writes JSON (``--json``).

``--profile NAME`` (as root) runs the call instead between two agents through the impairment
lab (``benchmarks.netlab``, the profiles of ``vcall bench network``; e.g. ``loss5_reorder``:
5 % loss, 40±10 ms) for ``--seconds`` (60 by default there; 320x240 video beside it, no echo
canceller, whose noise suppression would take the steady tone for noise), against the issue's
target "no gap over 60 ms in the received WAV and no drift of delay over the call": alice sends
a steady 440 Hz tone, and bob's recording (``wavlog:``) gives the longest gap, the longest
stretch whose 5 ms windows stay 20 dB under the tone's median level (concealment that fades
counts as a gap once it is that quiet); bob sends ``beep:700:100/1000`` bursts placed on the shared
monotonic clock, and alice's recording gives each burst's mouth-to-ear, whose drift is the
median of the last ten minus that of the first ten.
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

from benchmarks.cli import write_json
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


GAP_WINDOW_MS = 5
GAP_LEVEL = 0.1  # -20 dB under the median level of the tone
DRIFT_BEEPS = 10
LAB_TONE, LAB_BEEP = "tone:440", "beep:700:100/1000"


def gaps_ms(pcm: np.ndarray, rate: int = RATE) -> list[tuple[float, float]]:
    """(start s, length ms) of each run of GAP_WINDOW_MS windows whose RMS is under GAP_LEVEL x
    the median window RMS, between the first and the last window above it (a steady tone's
    recording), longest first."""
    win = rate * GAP_WINDOW_MS // 1000
    n = len(pcm) // win
    if n == 0:
        return []
    rms = np.sqrt(np.mean(np.square(pcm[: n * win].astype(np.float64).reshape(n, win)), axis=1))
    loud = rms >= GAP_LEVEL * float(np.median(rms[rms > 0])) if np.any(rms > 0) else rms > 0
    idx = np.flatnonzero(loud)
    quiet = np.diff(idx) - 1  # quiet windows between two loud ones
    found = [
        (round((int(i) + 1) * GAP_WINDOW_MS / 1000, 3), float(q * GAP_WINDOW_MS))
        for i, q in zip(idx[:-1], quiet, strict=True)
        if q > 0
    ]
    return sorted(found, key=lambda g: -g[1])


def longest_gap_ms(pcm: np.ndarray, rate: int = RATE) -> float:
    """The longest of ``gaps_ms`` (0 for none)."""
    gaps = gaps_ms(pcm, rate)
    return gaps[0][1] if gaps else 0.0


def delay_drift_ms(delays_s: list[float], count: int = DRIFT_BEEPS) -> float | None:
    """Median of the last ``count`` delays minus the median of the first ``count`` (ms); None
    with fewer than 2 x count."""
    if len(delays_s) < 2 * count:
        return None
    first, last = statistics.median(delays_s[:count]), statistics.median(delays_s[-count:])
    return round(1000 * (last - first), 1)


def _final_audio_stats(path: Path) -> dict[str, Any]:
    """The ``audio`` part of an agent's ``--stats-json`` document ({} if there is none)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    audio = doc.get("audio") if isinstance(doc, dict) else None
    return audio if isinstance(audio, dict) else {}


def run_lab(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """The call through the impairment lab (see the module docstring); BenchError if the agents
    do not get through a call."""
    from benchmarks.avsync import beeps
    from benchmarks.netlab.lab import Host, Lab
    from benchmarks.netlab.profiles import get_profile
    from benchmarks.network import (
        END_SLACK,
        EXIT_TIMEOUT,
        START_TIMEOUT,
        BenchError,
        LabAgent,
        start_discovery,
    )
    from pipeline.audio.sinks import read_write_times

    profile = get_profile(args.profile)
    wavs = {"alice": workdir / "alice_hears.wav", "bob": workdir / "bob_hears.wav"}
    # No echo canceller: its noise suppression takes a steady test tone for noise and eats it,
    # which would read as gaps; what is measured here is the network path.
    media = ["--source", "pattern", "--preset", "low", "--codec", args.codec, "--no-echo-cancel"]
    stats = {nick: workdir / f"{nick}.jsonl" for nick in ("alice", "bob")}
    lab = Lab(profile, seed=1)
    agents: list[LabAgent] = []
    try:
        start_discovery(lab, workdir)
        bob = LabAgent(
            lab, Host.B, "bob",
            [*media, "--audio-in", LAB_BEEP, "--audio-out", f"wavlog:{wavs['bob']}",
             "--auto-answer", "--once", "--stats-json", str(stats["bob"])],
            stats["bob"], home=workdir,
        )  # fmt: skip
        agents.append(bob)
        bob.wait("registered", START_TIMEOUT)
        alice = LabAgent(
            lab, Host.A, "alice",
            [*media, "--audio-in", LAB_TONE, "--audio-out", f"wavlog:{wavs['alice']}",
             "--call", "bob", "--seconds", str(args.seconds), "--stats-json", str(stats["alice"])],
            stats["alice"], home=workdir,
        )  # fmt: skip
        agents.append(alice)
        alice.wait("started", START_TIMEOUT)
        alice.wait("ended", args.seconds + END_SLACK)
        bob.wait("ended", EXIT_TIMEOUT)
        for agent in agents:
            if agent.finish(EXIT_TIMEOUT) != 0:
                raise BenchError(f"agent failed: {agent.report()}")
    finally:
        lab.close()
    heard_by_bob = read_wav(str(wavs["bob"]))
    alice_wav = str(wavs["alice"])
    delays = beeps(read_write_times(alice_wav), read_wav(alice_wav), PERIOD_MS / 1000)
    series = [delays[k] for k in sorted(delays)]
    # What each receiver's audio stage counted (its final statistics): the causes of gaps.
    heard = {nick: _final_audio_stats(path) for nick, path in stats.items()}
    keys = ("lost", "concealed", "fec", "late", "discarded", "underruns", "stretched",
            "delay_ms", "jitter_ms", "sync_offset_ms", "sync_delay_ms")  # fmt: skip
    return {
        "a_to_b_audio_stats": {k: heard["bob"].get(k) for k in keys},
        "b_to_a_audio_stats": {k: heard["alice"].get(k) for k in keys},
        "profile": profile.name,
        "description": profile.description,
        "seconds": args.seconds,
        "a_to_b_longest_gap_ms": longest_gap_ms(heard_by_bob),
        "a_to_b_gaps_over_40ms": [g for g in gaps_ms(heard_by_bob) if g[1] > 40],  # (s, ms)
        "b_to_a_bursts_heard": len(series),
        "b_to_a_mouth_to_ear_ms": [round(1000 * d, 1) for d in series],
        "b_to_a_mouth_to_ear_p50_ms": round(1000 * statistics.median(series), 1)
        if series
        else None,
        "b_to_a_delay_drift_ms": delay_drift_ms(series),
    }


def print_lab(result: dict[str, Any]) -> None:
    print(f"audio through the lab: {result['profile']} ({result['description']}), "
          f"{result['seconds']:g} s")  # fmt: skip
    print(f"  a->b longest gap in the received WAV: {result['a_to_b_longest_gap_ms']:.0f} ms "
          f"(target <= 60); gaps over 40 ms (s into the WAV, ms): "
          f"{result['a_to_b_gaps_over_40ms'][:8]}")  # fmt: skip
    print(f"  b->a mouth-to-ear p50: {result['b_to_a_mouth_to_ear_p50_ms']} ms over "
          f"{result['b_to_a_bursts_heard']} bursts; drift (last 10 - first 10): "
          f"{result['b_to_a_delay_drift_ms']} ms")  # fmt: skip
    for direction in ("a_to_b", "b_to_a"):
        print(f"  {direction} receiver's audio: {json.dumps(result[f'{direction}_audio_stats'])}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seconds", type=float, default=None, help="measured duration (6; 60 with --profile)"
    )
    parser.add_argument("--codec", default="H264", help="the video codec beside it (H264)")
    parser.add_argument(
        "--profile",
        help="run through the impairment lab with this profile (root; e.g. loss5_reorder)",
    )
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")


def run(args: argparse.Namespace) -> int:
    if args.seconds is None:
        args.seconds = 60.0 if args.profile else 6.0
    if not args.seconds > 0:
        print("vcall bench audio: --seconds must be > 0", file=sys.stderr)
        return 2
    if args.profile:
        with tempfile.TemporaryDirectory(prefix="vcall-bench-audio-lab-") as tmp:
            lab_result = run_lab(args, Path(tmp))
        print_lab(lab_result)
        write_json(args.json, lab_result)
        return 0 if lab_result["b_to_a_bursts_heard"] else 1
    with tempfile.TemporaryDirectory(prefix="vcall-bench-audio-") as tmp:
        result = run_call(args.seconds, Path(tmp), args.codec)
    print_table(result)
    write_json(args.json, result)
    heard = all(d["bursts_heard"] for d in result["directions"].values())
    return 0 if heard else 1


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.audio_call", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
