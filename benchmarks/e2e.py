"""`vcall bench e2e`: a loopback call between two MediaSessions on the test pattern.

Both sessions run in this process (the controller) with their ten stage processes; the
controller also does what a GUI does with every frame: wakes on ``notify_fd()`` and copies the
newest frames out with ``latest()``. After a warm-up the statistics are reset, the call runs
for ``--seconds``, and the figures of that interval are reported: per-stage latency p50/p95/p99
in each direction (capture-to-display read from the pattern's embedded capture time), frames/s
sent and shown, bitrate, loss, and CPU of every process as a share of one core and of the
machine. ``--json FILE`` writes everything, plus the targets and whether they were met.
"""

from __future__ import annotations

import argparse
import os
import platform
import select
import sys
import time
from typing import Any

import psutil

from benchmarks.cli import write_json
from benchmarks.relay import LossyRelay
from pipeline.codecs.registry import DEFAULT_VIDEO
from pipeline.control import MediaMode, PeerEndpoint
from pipeline.presets import PRESETS, Preset
from pipeline.session import MediaSession
from pipeline.stats import LATENCY_ORDER

TARGETS = {"c2d_p50_ms": 15.0, "c2d_p99_ms": 25.0, "fps_shown": 29.0, "cpu_share_of_machine": 50.0}
LOCAL = "127.0.0.1"


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH, got {text!r}") from None
    if w <= 0 or h <= 0 or w % 8 or h % 8 or w > 1920 or h > 1080:
        raise argparse.ArgumentTypeError(f"WxH must be multiples of 8 up to 1920x1080: {text!r}")
    return w, h


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--resolution", type=_size, default=(1280, 720), help="WxH (1280x720)")
    parser.add_argument("--fps", type=int, default=30, help="frames per second (30)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured duration (10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring (2)")
    parser.add_argument("--quality", type=int, default=70, help="JPEG quality (70)")
    parser.add_argument(
        "--bitrate",
        type=int,
        default=None,
        help="H.264 target bit/s (default: the preset of that size, e.g. high: 2000000)",
    )
    parser.add_argument("--mode", choices=("rtp", "v0"), default="rtp", help="media mode (rtp)")
    parser.add_argument(
        "--display", type=_size, default=None, help="peer view WxH (default: the resolution)"
    )
    parser.add_argument("--codec", default=DEFAULT_VIDEO, help="video codec (vcall codecs)")
    parser.add_argument(
        "--jpeg-backend", default="auto", help="JPEG library: turbojpeg | opencv | auto"
    )
    parser.add_argument(
        "--stage-nice",
        type=int,
        default=None,
        help="stage processes' nice offset (session default)",
    )
    parser.add_argument(
        "--drop-every",
        type=int,
        default=0,
        metavar="N",
        help="relay a->b through a loopback relay that drops every N-th RTP datagram (0: none)",
    )
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")


def _consume(sessions: list[MediaSession], until: float) -> int:
    """The controller's part: wake on new frames, copy the newest out (as Tk would)."""
    fds = {s.notify_fd(): s for s in sessions}
    reads = 0
    while (left := until - time.monotonic()) > 0:
        ready, _, _ = select.select(list(fds), [], [], min(left, 0.1))
        for fd in ready:
            fds[fd].latest()
            reads += 1
    return reads


def _rate(stats: dict[str, Any], stage: str) -> float:
    """Frames the stage counted since the statistics were reset, per second of that time."""
    snap = stats["stages"].get(stage, {})
    seconds = snap.get("since_reset_s", 0.0)
    frames = snap.get("counters", {}).get("frames", 0)
    return round(frames / seconds, 2) if seconds > 0 else 0.0


def _direction(tx: dict[str, Any], rx: dict[str, Any]) -> dict[str, Any]:
    latency: dict[str, Any] = {}
    for name, stage in LATENCY_ORDER:
        if name == "self_view":
            continue
        source = tx if stage == "send" else rx
        if name in source["latency_ms"]:
            latency[name] = source["latency_ms"][name]
    latency["controller_read"] = rx["controller_read_ms"]
    # Rates over the whole measured time (the stages' own fps figures cover their last 2 s).
    return {
        "latency_ms": latency,
        "fps_sent": _rate(tx, "send"),
        "fps_shown": _rate(rx, "display"),
        "bitrate_bps": tx["bitrate_sent_bps"],
        "loss": rx["loss"],
        "jitter_ms": rx["jitter_ms"],
        "rtt_ms": tx["rtt_ms"],
        "drops": rx["drops"],
        "pli_sent": rx.get("pli_sent", 0),
        "freezes": rx.get("freezes", {}),
        "frames_shown": rx["stages"].get("display", {}).get("counters", {}).get("frames", 0),
    }


def _cpu(stats_a: dict[str, Any], stats_b: dict[str, Any]) -> dict[str, float]:
    cpu: dict[str, float] = {}
    for tag, st in (("a", stats_a), ("b", stats_b)):
        for name, value in st["cpu_percent"].items():
            if name not in ("total", "controller"):
                cpu[f"{tag}.{name}"] = value
    cpu["controller"] = stats_a["cpu_percent"].get("controller", 0.0)
    cpu["total"] = round(sum(cpu.values()), 1)
    return cpu


def run_call(args: argparse.Namespace) -> dict[str, Any]:
    width, height = args.resolution
    same_size = [p for p in PRESETS.values() if (p.width, p.height) == (width, height)]
    bitrate = args.bitrate or (same_size[0].bitrate if same_size else 0)
    preset = Preset("bench", width, height, args.quality, args.fps, bitrate)
    view = args.display or args.resolution
    extra = {} if args.stage_nice is None else {"stage_nice": args.stage_nice}
    kwargs: dict[str, Any] = {
        "bind_ip": LOCAL,
        "preset": preset,
        "codec": args.codec,
        "jpeg_backend": args.jpeg_backend,
        "peer_view": view,
        **extra,
    }
    a, b = MediaSession(**kwargs), MediaSession(**kwargs)
    mode = MediaMode(args.mode)
    relay: LossyRelay | None = None
    try:
        port_a, port_b = a.open(), b.open()
        if args.drop_every:
            relay = LossyRelay(port_b, args.drop_every, LOCAL)
        target_b = port_b if relay is None else relay.port
        a.connect(PeerEndpoint(LOCAL, target_b, mode, 0xA, 0xB, codec=args.codec))
        b.connect(PeerEndpoint(LOCAL, port_a, mode, 0xB, 0xA, codec=args.codec))
        _consume([a, b], time.monotonic() + args.warmup)
        a.reset_stats()
        b.reset_stats()
        start = time.monotonic()
        machine_before = psutil.cpu_times()
        reads = _consume([a, b], start + args.seconds)
        elapsed = time.monotonic() - start
        machine = _busy_percent(machine_before, psutil.cpu_times())
        stats_a, stats_b = a.stats().to_dict(), b.stats().to_dict()
    finally:
        if relay is not None:
            relay.close()
        a.close()
        b.close()
    cpu = _cpu(stats_a, stats_b)
    ncpu = os.cpu_count() or 1
    share = round(cpu["total"] / ncpu, 1)
    directions = {
        "a_to_b": _direction(stats_a, stats_b),
        "b_to_a": _direction(stats_b, stats_a),
    }
    c2d = [d["latency_ms"].get("capture_to_display", {}) for d in directions.values()]
    met = {
        "c2d_p50_ms": all(c.get("p50", 1e9) <= TARGETS["c2d_p50_ms"] for c in c2d),
        "c2d_p99_ms": all(c.get("p99", 1e9) <= TARGETS["c2d_p99_ms"] for c in c2d),
        "fps_shown": all(d["fps_shown"] >= TARGETS["fps_shown"] for d in directions.values()),
        "cpu_share_of_machine": share < TARGETS["cpu_share_of_machine"],
    }
    return {
        "benchmark": "e2e",
        "config": {
            "resolution": [width, height],
            "fps": args.fps,
            "quality": args.quality,
            "bitrate": preset.bitrate_bps,
            "drop_every": args.drop_every,
            "mode": args.mode,
            "display": list(view),
            "seconds": round(elapsed, 3),
            "warmup": args.warmup,
            "codec": stats_a.get("codec_name"),
            "codec_backend": stats_a.get("codec"),
        },
        "host": {
            "cpus": ncpu,
            "loadavg": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            # The whole machine's CPU use during the measurement (all cores, ours included), and
            # the part that was not this call: other work competing for the same cores.
            "machine_busy_percent": machine,
            "others_busy_percent": round(max(0.0, machine - share), 1),
        },
        "directions": directions,
        "cpu_percent": cpu,
        "cpu_share_of_machine": share,
        "controller_frames_read": reads,
        "dead_stages": stats_a["dead_stages"] + stats_b["dead_stages"],
        "targets": TARGETS,
        "targets_met": met,
    }


def _busy_percent(before: Any, after: Any) -> float:
    """Percent of all cores busy between two psutil.cpu_times() samples."""
    idle = (after.idle + after.iowait) - (before.idle + before.iowait)
    total = sum(after) - sum(before)
    return round(100.0 * (1 - idle / total), 1) if total > 0 else 0.0


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)


def print_table(result: dict[str, Any]) -> None:
    cfg = result["config"]
    print(
        f"e2e loopback call, {cfg['mode']}, {cfg['resolution'][0]}x{cfg['resolution'][1]} "
        f"@ {cfg['fps']} fps, q{cfg['quality']}, display {cfg['display'][0]}x"
        f"{cfg['display'][1]}, codec {cfg['codec']} ({cfg['codec_backend']}), "
        f"{cfg['seconds']:.1f} s "
        f"(load {result['host']['loadavg'][0]} on {result['host']['cpus']} CPUs; machine "
        f"{result['host']['machine_busy_percent']}% busy, of which others "
        f"{result['host']['others_busy_percent']}%)"
    )
    dirs = result["directions"]
    names = list(dirs["a_to_b"]["latency_ms"])
    print(f"{'stage (ms)':<22}" + "".join(f"{d + ' p50/p95/p99':>26}" for d in dirs))
    for name in names:
        cells = []
        for d in dirs.values():
            s = d["latency_ms"].get(name, {})
            cells.append(f"{_fmt(s.get('p50'))}/{_fmt(s.get('p95'))}/{_fmt(s.get('p99'))}")
        print(f"{name:<22}" + "".join(f"{c:>26}" for c in cells))
    for key in ("fps_sent", "fps_shown", "bitrate_bps", "jitter_ms", "rtt_ms"):
        print(f"{key:<22}" + "".join(f"{_fmt(d[key]):>26}" for d in dirs.values()))
    lost = [d["loss"].get("lost_packets") for d in dirs.values()]
    print(f"{'lost_packets':<22}" + "".join(f"{_fmt(v):>26}" for v in lost))
    for key in ("freeze_count", "total_freezes_duration_s", "longest_gap_ms"):
        row = [d.get("freezes", {}).get(key) for d in dirs.values()]
        print(f"{key:<22}" + "".join(f"{_fmt(v):>26}" for v in row))
    print("CPU % of one core: " + ", ".join(f"{k} {v}" for k, v in result["cpu_percent"].items()))
    print(
        f"whole call: {result['cpu_share_of_machine']}% of the machine's "
        f"{result['host']['cpus']} cores"
    )
    met = result["targets_met"]
    print("targets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in met.items()))


def run(args: argparse.Namespace) -> int:
    result = run_call(args)
    print_table(result)
    write_json(args.json, result)
    if result["dead_stages"]:
        print(f"stages died: {result['dead_stages']}", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.e2e", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
