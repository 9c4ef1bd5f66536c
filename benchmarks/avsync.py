"""`vcall bench avsync`: the A/V offset of a loopback call, measured with a flash and a beep.

Two media sessions call each other on 127.0.0.1, each sending the stamped test pattern and the
``beep:HZ:100/1000`` audio source. Both halves of the "flash-and-beep" are marked on the one
monotonic clock of the sender: the beep starts at every instant k x 1 s (``ClockBeepSource``
places its onset on the sample of that instant), and the flash is the first video frame
captured at or after the same instant, recognised at the receiver by the capture time the
pattern carries in its pixels (``pipeline.sources.pattern``: the mark survives the codec).

The receiver records when each flash was displayed (the display stage's ``DISPLAYED`` stamp of
the frame, read from the peer ring by polling ``MediaSession.latest``) and when each beep was
played (its onset in the WAV the audio stage wrote, ``wavlog:`` sink: the time its frame was
handed to the sink + its place in the frame / 48 kHz, so a playout stall cannot shift it).
For burst k:

- capture-to-display = flash displayed - flash captured (the pattern's stamp);
- mouth-to-ear = beep onset played - k x 1 s;
- A/V offset = capture-to-display - mouth-to-ear: positive when the picture comes later than
  the sound (a viewer sees the lips move after hearing the word), negative when it comes first.

``--video-delay-ms D`` puts a relay in each direction that holds the video's datagrams (every
RTP datagram but the audio's payload type) D ms longer than the audio's: a path where the
picture comes late, which lip sync (``pipeline.audio.sync``) should answer by delaying the
sound; ``--no-lip-sync`` measures the same call with the audio never delayed (the "before").

All times are one host's CLOCK_MONOTONIC, so no clock offset enters. Devices are excluded (no
sound card or screen here): what is measured is capture to the display stage's RGB frame and
to the audio stage's playout write. Prints a table and writes JSON (``--json``).
"""

from __future__ import annotations

import argparse
import heapq
import json
import select
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.audio_call import RATE, onsets
from benchmarks.cli import write_json
from pipeline.audio.frames import FRAME_SAMPLES
from pipeline.audio.sinks import read_write_times
from pipeline.audio.sources import read_wav
from pipeline.codecs.base import MediaKind
from pipeline.codecs.registry import for_mode
from pipeline.control import AudioSpec, MediaMode, PeerEndpoint
from pipeline.session import MediaSession
from pipeline.stats import percentile

LOCAL = "127.0.0.1"
BEEP_HZ = (1000, 700)
BEEP_MS, PERIOD_MS = 100, 1000
POLL_S = 0.002
WARMUP_S = 6.0  # the call settles (codec, jitter buffers, and lip sync converging) first


class VideoDelayRelay:
    """Forwards an RTP/RTCP port pair on loopback to ``target_port`` (+1), holding every RTP
    datagram whose payload type is not ``audio_pt`` ``delay_s`` longer (a thread, select with a
    10 ms timeout; ``close`` stops it and closes the sockets)."""

    def __init__(self, target_port: int, delay_s: float, audio_pt: int) -> None:
        self.target, self.delay_s, self.audio_pt = target_port, delay_s, audio_pt
        while True:  # an even port and the odd one after it
            rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            rtp.bind((LOCAL, 0))
            rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                if rtp.getsockname()[1] % 2:
                    raise OSError("odd")
                rtcp.bind((LOCAL, rtp.getsockname()[1] + 1))
            except OSError:
                rtp.close()
                rtcp.close()
                continue
            break
        self.port = int(rtp.getsockname()[1])
        self._socks = {rtp: target_port, rtcp: target_port + 1}
        self._out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._held: list[tuple[float, int, bytes, int]] = []  # (due, order, datagram, port)
        self._order = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="avsync-relay", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select(list(self._socks), [], [], 0.01 if self._held else 0.05)
            now = time.monotonic()
            for sock in ready:
                data = sock.recv(65536)
                port = self._socks[sock]
                video = port == self.target and len(data) > 1 and data[1] & 0x7F != self.audio_pt
                self._order += 1
                heapq.heappush(self._held, (now + (self.delay_s if video else 0.0),
                                            self._order, data, port))  # fmt: skip
            while self._held and self._held[0][0] <= time.monotonic():
                _, _, data, port = heapq.heappop(self._held)
                self._out.sendto(data, (LOCAL, port))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in [*self._socks, self._out]:
            sock.close()


@dataclass(frozen=True, slots=True)
class Shown:
    """One peer frame the receiver displayed: the pattern's frame id and capture time, and when
    the display stage finished it (monotonic ns)."""

    pattern_id: int
    capture_ns: int
    shown_ns: int


class FrameLog:
    """Polls a session's newest peer frame in a thread and keeps every distinct one."""

    def __init__(self, session: MediaSession) -> None:
        self._session = session
        self._stop = threading.Event()
        self.frames: dict[int, Shown] = {}
        self._thread = threading.Thread(target=self._run, name="avsync-frames", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            peer, _ = self._session.latest()
            if peer is not None and peer.pattern_id and peer.capture_ns:
                self.frames.setdefault(
                    peer.pattern_id, Shown(peer.pattern_id, peer.capture_ns, peer.shown_ns)
                )


def flashes(frames: dict[int, Shown], period_s: float) -> dict[int, Shown]:
    """Burst index k -> the flash frame of instant k x period: the first frame captured at or
    after it, recognised only when the frame before it was seen too (captured before the
    instant), so that a frame the poller missed never stands in for the flash."""
    period_ns = round(period_s * 1e9)
    out: dict[int, Shown] = {}
    for f in frames.values():
        before = frames.get(f.pattern_id - 1)
        if before is None:
            continue
        k = f.capture_ns // period_ns
        if before.capture_ns < k * period_ns <= f.capture_ns:
            out[k] = f
    return out


def beeps(write_times: Any, pcm: Any, period_s: float) -> dict[int, float]:
    """Burst index k -> mouth-to-ear (s) of the beep sent at k x period, from the onsets in a
    received recording whose frame i was played at ``write_times[i]`` (monotonic s)."""
    out: dict[int, float] = {}
    for h in onsets(pcm):
        frame = h // FRAME_SAMPLES
        if frame >= len(write_times):
            continue
        t_heard = float(write_times[frame]) + (h % FRAME_SAMPLES) / RATE
        k = int(t_heard // period_s)  # the latest instant before it was heard (delay < period)
        out[k] = t_heard - k * period_s
    return out


def _ms(values: list[float], p: float) -> float | None:
    return round(percentile(sorted(values), p), 1) if values else None


def pair_up(flash: dict[int, Shown], beep: dict[int, float]) -> dict[str, Any]:
    """The figures of one direction from its flashes and beeps (times in ms)."""
    c2d, m2e, offsets = [], [], []
    for k in sorted(set(flash) & set(beep)):
        f = flash[k]
        video = (f.shown_ns - f.capture_ns) / 1e6
        audio = beep[k] * 1000
        c2d.append(video)
        m2e.append(audio)
        offsets.append(video - audio)
    return {
        "pairs": len(offsets),
        "offset_ms": [round(o, 1) for o in offsets],
        "offset_p50_ms": _ms(offsets, 50),
        "abs_offset_p95_ms": _ms([abs(o) for o in offsets], 95),
        "capture_to_display_p50_ms": _ms(c2d, 50),
        "capture_to_display_p95_ms": _ms(c2d, 95),
        "mouth_to_ear_p50_ms": _ms(m2e, 50),
        "mouth_to_ear_p95_ms": _ms(m2e, 95),
        "flashes_seen": len(flash),
        "beeps_heard": len(beep),
    }


def _audio_stage(session: MediaSession) -> dict[str, Any]:
    return dict(session.stats().stages.get("audio", {}))


def run_call(  # noqa: PLR0917 - one call's knobs
    seconds: float,
    workdir: Path,
    codec: str,
    preset: str,
    video_delay_ms: float = 0.0,
    lip_sync: bool = True,
    warmup: float = WARMUP_S,
) -> dict[str, Any]:
    wavs = {"a": workdir / "a_hears.wav", "b": workdir / "b_hears.wav"}
    hz = dict(zip(("a", "b"), BEEP_HZ, strict=True))
    sessions = {
        side: MediaSession(
            bind_ip=LOCAL,
            preset=preset,
            codec=codec,
            audio=AudioSpec(
                source=f"beep:{hz[side]}:{BEEP_MS}/{PERIOD_MS}",
                sink=f"wavlog:{wavs[side]}",
                processing=False,
                lip_sync=lip_sync,
            ),
        )
        for side in ("a", "b")
    }
    a, b = sessions["a"], sessions["b"]
    logs = {side: FrameLog(s) for side, s in sessions.items()}
    relays: list[VideoDelayRelay] = []
    try:
        port_a, port_b = a.open(), b.open()
        if video_delay_ms > 0:
            audio_pt = for_mode(MediaMode.RTP, MediaKind.AUDIO).info.payload_type
            for port in (port_a, port_b):
                relays.append(VideoDelayRelay(port, video_delay_ms / 1000, audio_pt))
            port_a, port_b = relays[0].port, relays[1].port
        a.connect(PeerEndpoint(LOCAL, port_b, MediaMode.RTP, 11, 22, codec=codec))
        b.connect(PeerEndpoint(LOCAL, port_a, MediaMode.RTP, 22, 11, codec=codec))
        time.sleep(warmup)
        for log in logs.values():
            log.start()
        time.sleep(seconds)
        for log in logs.values():
            log.stop()
        audio = {side: _audio_stage(s) for side, s in sessions.items()}
        fps = {side: s.stats().fps_shown for side, s in sessions.items()}
    finally:
        for log in logs.values():
            log.stop()
        a.close()
        b.close()
        for relay in relays:
            relay.close()
    period_s = PERIOD_MS / 1000
    result: dict[str, Any] = {
        "seconds": seconds,
        "warmup_s": warmup,
        "codec": codec,
        "preset": preset,
        "video_delay_ms": video_delay_ms,
        "lip_sync": lip_sync,
        "directions": {},
    }
    for tx, rx in (("a", "b"), ("b", "a")):
        path = audio[rx].get("path", {})
        wav = str(wavs[rx])
        beep = beeps(read_write_times(wav), read_wav(wav), period_s)
        start_k = min(logs[rx].frames.values(), key=lambda f: f.capture_ns, default=None)
        if start_k is not None:  # only bursts sent while the frames were logged
            first = start_k.capture_ns // round(period_s * 1e9) + 1
            beep = {k: v for k, v in beep.items() if k >= first}
        figures = pair_up(flashes(logs[rx].frames, period_s), beep)
        figures["fps_shown"] = fps[rx]
        figures["sync"] = path.get("sync")
        result["directions"][f"{tx}_to_{rx}"] = figures
    return result


def print_table(result: dict[str, Any]) -> None:
    print(
        f"A/V offset over a loopback call ({result['codec']}, {result['preset']}, video held "
        f"{result['video_delay_ms']:g} ms more, lip sync {'on' if result['lip_sync'] else 'off'}"
        f"), {result['seconds']} s; offset = capture-to-display - mouth-to-ear"
    )
    dirs = result["directions"]
    print(f"{'':<30}" + "".join(f"{d:>14}" for d in dirs))
    for label, key in (
        ("flash/beep pairs", "pairs"),
        ("A/V offset p50 (ms)", "offset_p50_ms"),
        ("|A/V offset| p95 (ms)", "abs_offset_p95_ms"),
        ("capture-to-display p50 (ms)", "capture_to_display_p50_ms"),
        ("capture-to-display p95 (ms)", "capture_to_display_p95_ms"),
        ("mouth-to-ear p50 (ms)", "mouth_to_ear_p50_ms"),
        ("mouth-to-ear p95 (ms)", "mouth_to_ear_p95_ms"),
        ("fps shown", "fps_shown"),
    ):
        cells = ["-" if d[key] is None else str(d[key]) for d in dirs.values()]
        print(f"{label:<30}" + "".join(f"{c:>14}" for c in cells))
    for name, d in dirs.items():
        sync = d.get("sync")
        if sync:
            print(f"lip sync {name}: {json.dumps(sync)}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=12.0, help="measured duration (12)")
    parser.add_argument(
        "--warmup", type=float, default=WARMUP_S, help=f"seconds before measuring ({WARMUP_S:g})"
    )
    parser.add_argument("--codec", default="H264", help="the video codec (H264)")
    parser.add_argument("--preset", default="high", help="the video preset (high: 720p30)")
    parser.add_argument(
        "--video-delay-ms", type=float, default=0.0, help="hold the video this much longer (0)"
    )
    parser.add_argument(
        "--no-lip-sync", action="store_true", help="never delay the audio (measure only)"
    )
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")


def run(args: argparse.Namespace) -> int:
    if not args.seconds > 0 or args.warmup < 0:
        print("vcall bench avsync: --seconds must be > 0, --warmup >= 0", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="vcall-bench-avsync-") as tmp:
        result = run_call(
            args.seconds,
            Path(tmp),
            args.codec,
            args.preset,
            video_delay_ms=args.video_delay_ms,
            lip_sync=not args.no_lip_sync,
            warmup=args.warmup,
        )
    print_table(result)
    write_json(args.json, result)
    paired = all(d["pairs"] for d in result["directions"].values())
    return 0 if paired else 1


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.avsync", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
