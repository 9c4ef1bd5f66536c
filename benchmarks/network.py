"""`vcall bench network`: a real vcall call through the impairment lab, measured at both ends.

A :class:`~benchmarks.netlab.lab.Lab` is built with the chosen profile; host A runs a discovery
server and ``alice``'s agent, host B runs ``bob``'s agent (``--auto-answer``); alice calls bob
for ``--seconds``. The profile's timeline (rate steps, cuts) starts when alice's call starts.
Both agents write ``--stats-json`` with ``--stats-interval 1`` (JSON Lines: one sample a
second, the final document last) and print their call events as JSON lines on stdout.

"fps shown" is frames shown over the seconds from the first frame shown to the end of the call
(the caller's media session opens when it dials: the time before any video can come is not a
low frame rate); "first frame after (s)" is when that first frame came, from the call's start.

The media statistics of each agent are of what it RECEIVES: alice's file describes
bob -> alice (b_to_a), bob's file alice -> bob (a_to_b). Both agents run on this machine, so
they share CLOCK_MONOTONIC and the pattern's embedded capture time makes capture-to-display a
true one-way figure across the lab (the percentiles are the receiver's latency window at the
end of the call, not necessarily the whole call).

"Survived" means the caller's call ended with ``hangup`` (its own hang-up after ``--seconds``)
and the callee's with ``peer_hangup``; any other end reason (heartbeat timeout, connection
lost) is a call the network killed. For a profile with cuts, "video back after" is the time
from the cut's end (the impairer's own clock) to the first 1 s sample whose frames_shown had
grown since the last sample before the cut's end: coarse, an upper bound with 1 s resolution.

``--json FILE`` writes the configuration, the profile, per-direction results, each second's key
figures, what the lab applied and counted, and the host load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psutil

from benchmarks.cli import write_json
from benchmarks.netlab.errors import LabError
from benchmarks.netlab.lab import A_IP, Host, Lab
from benchmarks.netlab.profiles import PROFILES, Profile, get_profile
from benchmarks.netlab.timeline import AppliedEvent

DISCOVERY_PORT = 8000  # the lab's namespaces are new: nothing else listens in them
START_TIMEOUT = 20.0  # s for the discovery server, a registration, the call to start
END_SLACK = 30.0  # s after --seconds (and the timeline) for the call to end
EXIT_TIMEOUT = 15.0  # s for an agent to exit once its call ended
STDERR_TAIL = 3000  # characters of a failed agent's stderr printed
DIRECTIONS = {"a_to_b": "bob", "b_to_a": "alice"}  # direction -> the agent that received it
EXPECTED_END = {"alice": "hangup", "bob": "peer_hangup"}


class BenchError(RuntimeError):
    """The benchmark could not run the call (a process failed or timed out)."""


class LabAgent:
    """``python -m vcall agent`` inside a lab host, registered with the discovery server of
    ``start_discovery``; its stdout events (each with the ``time.monotonic()`` it was read at,
    ``_at``) and its stderr collected by threads. ``stats`` is where ``extra`` asked the agent
    to write ``--stats-json`` (None: it was not asked). ``home``: the agent's own configuration
    and data folders (its identity, the directory's pinned key): each lab's discovery server has
    a new key, so agents must not share the user's pins (a pinned key that changed is refused)."""

    def __init__(
        self,
        lab: Lab,
        host: Host,
        nick: str,
        extra: Sequence[str],
        stats: Path | None = None,
        *,
        home: Path,
    ) -> None:
        self.nick = nick
        self.stats_path = stats
        self.events: list[dict[str, Any]] = []
        self.stderr = b""
        self._cond = threading.Condition()
        argv = [
            "-m", "vcall", "agent", "--nick", nick, "--password", f"pw-{nick}",
            "--server", f"{A_IP}:{DISCOVERY_PORT}", "--listen-ip", lab.address(host), *extra,
        ]  # fmt: skip
        env = {
            **os.environ,
            "XDG_CONFIG_HOME": str(home / nick / "config"),
            "XDG_DATA_HOME": str(home / nick / "data"),
        }
        self.proc = lab.python(
            host,
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self._threads = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue  # not an event line: ignore it
            if isinstance(event, dict):
                event["_at"] = time.monotonic()
                with self._cond:
                    self.events.append(event)
                    self._cond.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def find(self, name: str) -> dict[str, Any] | None:
        with self._cond:
            return next((e for e in self.events if e.get("event") == name), None)

    def wait(self, name: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                event = next((e for e in self.events if e.get("event") == name), None)
                if event is not None:
                    return event
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    break
                self._cond.wait(min(left, 0.5))
        raise BenchError(f"{self.nick}: no {name!r} event within {timeout:.0f} s\n{self.report()}")

    def finish(self, timeout: float) -> int | None:
        """Wait for the agent to exit (None: it did not); its output threads are joined."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        for thread in self._threads:
            thread.join(2.0)
        return rc

    def report(self) -> str:
        rc = self.proc.poll()
        events = [e.get("event") for e in self.events]
        tail = self.stderr.decode(errors="replace")[-STDERR_TAIL:]
        return f"{self.nick} (exit {rc}), events {events}; stderr tail:\n{tail}"


def start_discovery(lab: Lab, workdir: Path) -> None:
    """A discovery server in host A on DISCOVERY_PORT, its log and database in ``workdir``;
    returns once it listens. BenchError if it does not start."""
    log = workdir / "discovery.log"
    with open(log, "wb") as out:
        server = lab.python(
            Host.A,
            ["-m", "vcall.discovery.server", "--host", A_IP, "--port", str(DISCOVERY_PORT),
             "--db", str(workdir / "discovery.sqlite3"),
             "--identity-dir", str(workdir / "discovery-identity")],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out,
        )  # fmt: skip
    deadline = time.monotonic() + START_TIMEOUT
    while f"listening on {A_IP}:{DISCOVERY_PORT}" not in log.read_text(errors="replace"):
        if server.poll() is not None or time.monotonic() > deadline:
            text = log.read_text(errors="replace")[-STDERR_TAIL:]
            raise BenchError(f"discovery server did not start (exit {server.poll()}):\n{text}")
        time.sleep(0.05)


def read_stats(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The samples (lines with ``t``) and the final document (the last line without) of an
    agent's JSON Lines stats file; unreadable lines are skipped."""
    samples: list[dict[str, Any]] = []
    final: dict[str, Any] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return samples, final
    for line in lines:
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if not isinstance(doc, dict):
            continue
        if "t" in doc:
            samples.append(doc)
        else:
            final = doc
    return samples, final


def _first_frame_after_start(
    samples: list[dict[str, Any]], seconds: float | None, showing: float | None
) -> float | None:
    """Seconds from the call's start (the agent's ``t`` = 0) to the first frame shown: the
    session's uptime then, less the uptime when the call started (a sample's uptime - its t;
    the caller's session opens when it dials, and call setup over a lossy path takes seconds)."""
    if not samples or not seconds or not showing:  # no frame shown, or an agent without it
        return None
    first = samples[0]
    if first.get("uptime_s") is None:
        return None
    started = float(first["uptime_s"]) - float(first["t"])
    return round(seconds - showing - started, 2)


def _key_figures(sample: dict[str, Any]) -> dict[str, Any]:
    c2d = sample.get("latency_ms", {}).get("capture_to_display", {})
    freezes = sample.get("freezes", {})
    return {
        "t": sample.get("t"),
        "frames_shown": freezes.get("frames_shown"),
        "fps_shown": sample.get("fps_shown"),
        "bitrate_received_bps": sample.get("bitrate_received_bps"),
        "lost_packets": sample.get("loss", {}).get("lost_packets"),
        "freeze_count": freezes.get("freeze_count"),
        "pli_sent": sample.get("pli_sent"),
        "c2d_p50_ms": c2d.get("p50"),
        # what the *sender* of this direction was allowed (the other agent's congestion stats
        # are about its own sending; these are the receiver's: its REMB estimate of this path)
        "estimate_bps": sample.get("congestion", {}).get("estimate_bps"),
        "recovered": sample.get("repair", {}).get("recovered"),
    }


def _fps_after(samples: list[dict[str, Any]], start_s: float) -> float | None:
    """Frames shown per second from ``start_s`` into the call to its end (convergence)."""
    inside = [s for s in samples if float(s["t"]) >= start_s]
    if len(inside) < 2:
        return None
    first, last = inside[0], inside[-1]
    frames = int(last.get("freezes", {}).get("frames_shown") or 0) - int(
        first.get("freezes", {}).get("frames_shown") or 0
    )
    span = float(last["t"]) - float(first["t"])
    return round(frames / span, 2) if span > 0 else None


def _mean_after(samples: list[dict[str, Any]], start_s: float) -> int | None:
    rates = [
        s["bitrate_received_bps"]
        for s in samples
        if float(s["t"]) >= start_s and s.get("bitrate_received_bps")
    ]
    return round(sum(rates) / len(rates)) if rates else None


def video_back_after(
    samples: list[dict[str, Any]], call_start: float, cut_end: float
) -> float | None:
    """Seconds from ``cut_end`` to the first sample after it whose frames_shown exceeds that of
    the last sample before it (sample times: ``call_start + t``); None if video never came back.
    """
    before = 0
    for sample in samples:
        at = call_start + float(sample["t"])
        frames = int(sample.get("freezes", {}).get("frames_shown") or 0)
        if at <= cut_end:
            before = frames
        elif frames > before:
            return round(at - cut_end, 2)
    return None


def _direction(
    receiver: LabAgent,
    call_start: float | None,
    cuts: list[AppliedEvent],
) -> dict[str, Any]:
    assert receiver.stats_path is not None
    samples, final = read_stats(receiver.stats_path)
    freezes = final.get("freezes", {})
    seconds = final.get("uptime_s") or (samples[-1]["t"] if samples else None)
    frames = freezes.get("frames_shown")
    showing = freezes.get("showing_s") or seconds
    c2d = final.get("latency_ms", {}).get("capture_to_display", {})
    rates = [s["bitrate_received_bps"] for s in samples if s.get("bitrate_received_bps")]
    ended = receiver.find("ended")
    back: list[float | None] = []
    for event in cuts:
        if event.cut is not None and call_start is not None:
            back.append(video_back_after(samples, call_start, event.cut.end))
    return {
        "receiver": receiver.nick,
        "seconds": seconds,
        "frames_shown": frames,
        # From the first frame shown: the caller's session opens when it dials, and its ringing
        # time (no video can come yet) is not a low frame rate. When the first frame came is
        # its own row.
        "fps_shown": round(frames / showing, 2) if frames and showing else 0.0,
        "first_frame_s": _first_frame_after_start(samples, seconds, freezes.get("showing_s")),
        "freeze_count": freezes.get("freeze_count"),
        "total_freezes_duration_s": freezes.get("total_freezes_duration_s"),
        "longest_gap_ms": freezes.get("longest_gap_ms"),
        "c2d_p50_ms": c2d.get("p50"),
        "c2d_p95_ms": c2d.get("p95"),
        "c2d_count": c2d.get("count"),
        "lost_packets": final.get("loss", {}).get("lost_packets"),
        "pli_sent": final.get("pli_sent"),
        "nacks_sent": final.get("repair", {}).get("nacks_sent"),
        "recovered": final.get("repair", {}).get("recovered"),
        "abandoned": final.get("repair", {}).get("abandoned"),
        "superseded": final.get("repair", {}).get("superseded"),
        "estimate_last_bps": final.get("congestion", {}).get("estimate_bps"),
        "fps_after_5s": _fps_after(samples, 5.0),
        "bitrate_after_5s_bps": _mean_after(samples, 5.0),
        "bitrate_last_bps": samples[-1].get("bitrate_received_bps") if samples else None,
        "bitrate_mean_bps": round(sum(rates) / len(rates)) if rates else None,
        "end_reason": ended.get("reason") if ended else None,
        "survived": bool(ended and ended.get("reason") == EXPECTED_END[receiver.nick]),
        "video_back_after_cut_s": back,
        "codec": final.get("codec_name"),
        "samples": [_key_figures(s) for s in samples],
        "have_final_stats": bool(final),
    }


def run_call(args: argparse.Namespace, profile: Profile, workdir: Path) -> dict[str, Any]:
    media = ["--preset", args.preset, "--codec", args.codec]
    load_before = os.getloadavg()
    cpu_before = psutil.cpu_times()
    lab = Lab(profile, seed=args.seed)
    agents: dict[str, LabAgent] = {}
    cuts: list[AppliedEvent] = []
    applied: list[AppliedEvent] = []
    call_start: dict[str, float | None] = {}
    problems: list[str] = []
    try:
        start_discovery(lab, workdir)

        def start_agent(host: Host, nick: str, *extra: str) -> LabAgent:
            stats = workdir / f"{nick}.jsonl"
            return LabAgent(
                lab,
                host,
                nick,
                ["--source", "pattern", "--stats-json", str(stats), "--stats-interval", "1",
                 *media, *extra],
                stats,
                home=workdir,
            )  # fmt: skip

        agents["bob"] = start_agent(Host.B, "bob", "--auto-answer", "--once")
        agents["bob"].wait("registered", START_TIMEOUT)
        agents["alice"] = start_agent(
            Host.A, "alice", "--call", "bob", "--seconds", str(args.seconds)
        )
        started = agents["alice"].wait("started", START_TIMEOUT)
        timeline = lab.start_timeline()
        call_start["alice"] = float(started["_at"])
        bob_started = agents["bob"].wait("started", START_TIMEOUT)
        call_start["bob"] = float(bob_started["_at"])
        ends = args.seconds + max(profile.timeline_s - args.seconds, 0.0) + END_SLACK
        for nick in ("alice", "bob"):
            agents[nick].wait("ended", ends)
            ends = EXIT_TIMEOUT
        try:
            applied = timeline.wait(EXIT_TIMEOUT)
        except LabError as exc:
            problems.append(f"timeline: {exc}")
            applied = list(timeline.applied)
        cuts = [e for e in applied if e.cut is not None]
        for agent in agents.values():
            rc = agent.finish(EXIT_TIMEOUT)
            if rc != 0:
                problems.append(f"agent exited {rc}: {agent.report()}")
        impairer = lab.impairer_stats()
    except BenchError as exc:
        problems.append(str(exc))
        impairer = {}
    finally:
        lab.close()
    cpu_after = psutil.cpu_times()
    if "alice" not in agents or "bob" not in agents or "alice" not in call_start:
        raise BenchError("\n".join(problems) or "the call did not start")
    directions = {
        d: _direction(agents[nick], call_start.get(nick), cuts) for d, nick in DIRECTIONS.items()
    }
    for d, result in directions.items():
        if not result["have_final_stats"]:
            problems.append(f"{d}: no final stats from {result['receiver']}")
    idle = (cpu_after.idle + cpu_after.iowait) - (cpu_before.idle + cpu_before.iowait)
    total = sum(cpu_after) - sum(cpu_before)
    return {
        "benchmark": "network",
        "config": {
            "profile": profile.name,
            "preset": args.preset,
            "codec": args.codec,
            "seconds": args.seconds,
            "seed": args.seed,
            "stats_interval_s": 1.0,
        },
        "profile": asdict(profile),
        "timeline": [
            {
                "planned_s": e.planned_s,
                "at_call_s": round(e.at - (call_start.get("alice") or e.at), 3),
                "what": e.what,
                "cut": asdict(e.cut) if e.cut else None,
            }
            for e in applied
        ],
        "impairer": impairer,
        "host": {
            "cpus": os.cpu_count(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "machine_busy_percent": round(100.0 * (1 - idle / total), 1) if total > 0 else 0.0,
            "python": platform.python_version(),
        },
        "directions": directions,
        "problems": problems,
    }


def _fmt(value: Any, scale: float = 1.0, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, int | float):
        return (
            f"{value / scale:.{digits}f}"
            if scale != 1.0 or isinstance(value, float)
            else str(value)
        )
    return str(value)


def print_table(result: dict[str, Any]) -> None:
    cfg, host = result["config"], result["host"]
    print(
        f"network: profile {cfg['profile']}, preset {cfg['preset']}, codec {cfg['codec']}, "
        f"{cfg['seconds']:g} s call (load {host['loadavg_before'][0]} on {host['cpus']} CPUs; "
        f"machine {host['machine_busy_percent']}% busy)"
    )
    dirs = result["directions"]
    rows: list[tuple[str, str, float, int]] = [
        ("frames shown", "frames_shown", 1.0, 0),
        ("fps shown", "fps_shown", 1.0, 1),
        ("first frame after (s)", "first_frame_s", 1.0, 2),
        ("freezes", "freeze_count", 1.0, 0),
        ("freeze total (s)", "total_freezes_duration_s", 1.0, 2),
        ("longest gap (ms)", "longest_gap_ms", 1.0, 0),
        ("capture->display p50 (ms)", "c2d_p50_ms", 1.0, 1),
        ("capture->display p95 (ms)", "c2d_p95_ms", 1.0, 1),
        ("packets lost", "lost_packets", 1.0, 0),
        ("PLIs sent", "pli_sent", 1.0, 0),
        ("NACKs sent", "nacks_sent", 1.0, 0),
        ("packets recovered (RTX)", "recovered", 1.0, 0),
        ("repairs abandoned", "abandoned", 1.0, 0),
        ("repairs superseded (keyframe)", "superseded", 1.0, 0),
        ("estimate kbit/s (REMB, last)", "estimate_last_bps", 1000.0, 0),
        ("fps shown after 5 s", "fps_after_5s", 1.0, 1),
        ("kbit/s after 5 s (mean)", "bitrate_after_5s_bps", 1000.0, 0),
        ("kbit/s received (last)", "bitrate_last_bps", 1000.0, 0),
        ("kbit/s received (mean)", "bitrate_mean_bps", 1000.0, 0),
        ("end reason", "end_reason", 1.0, 0),
        ("survived", "survived", 1.0, 0),
    ]
    print(f"{'':<28}" + "".join(f"{d + ' (' + dirs[d]['receiver'] + ' rx)':>22}" for d in dirs))
    for label, key, scale, digits in rows:
        cells = [_fmt(dirs[d][key], scale, digits) for d in dirs]
        print(f"{label:<28}" + "".join(f"{c:>22}" for c in cells))
    n_cuts = max(len(d["video_back_after_cut_s"]) for d in dirs.values())
    for i in range(n_cuts):
        cells = [
            _fmt(d["video_back_after_cut_s"][i], 1.0, 1)
            if i < len(d["video_back_after_cut_s"])
            else "-"
            for d in dirs.values()
        ]
        label = f"video back after cut {i + 1} (s)"
        print(f"{label:<28}" + "".join(f"{c:>22}" for c in cells))
    if n_cuts:
        print("(video back: from the cut's end to the first 1 s sample with new frames; coarse)")
    for problem in result["problems"]:
        print(f"problem: {problem}", file=sys.stderr)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="clean", help="lab profile, or 'list' (clean)")
    parser.add_argument("--preset", default="high", help="quality preset (high)")
    parser.add_argument("--codec", default="H264", help="video codec: H264 | JPEG (H264)")
    parser.add_argument("--seconds", type=float, default=20.0, help="call duration (20)")
    parser.add_argument("--seed", type=int, default=0, help="the impairer's seed (0)")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument(
        "--keep-stats",
        metavar="DIR",
        help="copy both agents' per-second statistics (JSON Lines, every stage) into DIR",
    )


def run(args: argparse.Namespace) -> int:
    if args.profile == "list":
        for name, profile in PROFILES.items():
            print(f"{name:<16}{profile.description}")
        return 0
    try:
        profile = get_profile(args.profile)
    except ValueError as exc:
        print(f"vcall bench network: {exc}", file=sys.stderr)
        return 2
    if not (args.seconds > 0):
        print("vcall bench network: --seconds must be > 0", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="vcall-bench-network-") as tmp:
        try:
            result = run_call(args, profile, Path(tmp))
        except (BenchError, LabError) as exc:
            print(f"vcall bench network: {exc}", file=sys.stderr)
            return 1
        finally:
            if args.keep_stats:
                keep = Path(args.keep_stats)
                keep.mkdir(parents=True, exist_ok=True)
                for f in Path(tmp).glob("*.jsonl"):
                    shutil.copy(f, keep / f.name)
    print_table(result)
    write_json(args.json, result)
    return 1 if result["problems"] else 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.network", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
