"""SRTP cost per packet: protect + unprotect of one RTP packet (pipeline/transport/srtp.py).

    python -m benchmarks.srtp [--packets 20000] [--payload 1200] [--json artifacts/srtp.json]
                              [--call SECONDS [--preset high] [--repeat 2]]

Times, per packet, ``SrtpProtection.protect`` (sender) and ``unprotect`` (receiver) of an RTP
packet with a ``--payload``-byte payload (AES_CM_128_HMAC_SHA1_80, libsrtp 2 via pylibsrtp),
each packet timed alone with ``time.perf_counter_ns``, SRTCP of a 52-byte receiver report too.
Prints p50/p95/p99 in microseconds and the packets per second one core sustains at the p50,
and writes them as JSON. ``--call S`` also runs real calls (two ``vcall agent`` processes and
an embedded discovery server with TLS, H.264 at ``--preset``) of S seconds, alternately with
keys (TLS + SRTP) and with ``--no-identity`` (no encryption), ``--repeat`` times each, and
reports the CPU seconds both agents and their stage processes used (``os.wait4`` rusage) and
the increase. At 720p30 H.264 (about 2.5 Mbit/s, ~260 packets/s) a call protects and
unprotects a few hundred packets per second per direction.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pipeline.transport.srtp import SUITE, SrtpProtection, new_master_key


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--packets", type=int, default=20000, help="packets timed (20000)")
    parser.add_argument("--payload", type=int, default=1200, help="RTP payload bytes (1200)")
    parser.add_argument("--json", default="artifacts/srtp.json", help="output file")
    parser.add_argument("--call", type=float, metavar="S", help="also time real S-second calls")
    parser.add_argument("--preset", default="high", help="quality preset of --call (high)")
    parser.add_argument("--repeat", type=int, default=2, help="calls per variant (2)")


def _pct(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000.0


def _summary(ns: list[int]) -> dict[str, float]:
    return {
        "p50_us": _pct(ns, 0.5),
        "p95_us": _pct(ns, 0.95),
        "p99_us": _pct(ns, 0.99),
        "mean_us": statistics.fmean(ns) / 1000.0,
    }


def measure(packets: int, payload_len: int) -> dict[str, Any]:
    """Per-packet timings (us) of protect, unprotect and both, for RTP and RTCP."""
    key = new_master_key()
    tx = SrtpProtection(tx_key=key, rx_key=None)
    rx = SrtpProtection(tx_key=None, rx_key=key)
    payload = os.urandom(payload_len)
    protect_ns: list[int] = []
    unprotect_ns: list[int] = []
    clock = time.perf_counter_ns
    for i in range(packets + 200):
        plain = struct.pack("!BBHII", 0x80, 96, i & 0xFFFF, i * 3000, 0x1234) + payload
        t0 = clock()
        wire = tx.protect(plain)
        t1 = clock()
        back = rx.unprotect(wire)
        t2 = clock()
        if back != plain:
            raise RuntimeError("srtp round trip changed the packet")
        if i >= 200:  # warm-up
            protect_ns.append(t1 - t0)
            unprotect_ns.append(t2 - t1)
    both = [a + b for a, b in zip(protect_ns, unprotect_ns, strict=True)]
    ctx = SrtpProtection(tx_key=key, rx_key=None, rtcp=True)
    crx = SrtpProtection(tx_key=None, rx_key=key, rtcp=True)
    report = struct.pack("!BBHI", 0x81, 201, 7, 0x1234) + os.urandom(24)
    rtcp_ns: list[int] = []
    for _ in range(min(packets, 5000)):
        t0 = clock()
        crx.unprotect(ctx.protect(report))
        rtcp_ns.append(clock() - t0)
    p50 = _pct(both, 0.5)
    return {
        "suite": SUITE,
        "payload_bytes": payload_len,
        "packets": packets,
        "protect": _summary(protect_ns),
        "unprotect": _summary(unprotect_ns),
        "protect_plus_unprotect": _summary(both),
        "srtcp_protect_plus_unprotect": _summary(rtcp_ns),
        "packets_per_s_one_core_at_p50": round(1e6 / p50) if p50 > 0 else None,
        "machine": {"python": platform.python_version(), "load": os.getloadavg()},
    }


def _agent(nick: str, server: tuple[str, int], home: str, *extra: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "XDG_DATA_HOME": os.path.join(home, nick, "data"),
        "XDG_CONFIG_HOME": os.path.join(home, nick, "config"),
        "VCALL_PASSWORD": "pw-" + nick,
    }
    cmd = [sys.executable, "-m", "vcall", "agent", "--nick", nick, "--listen-ip", "127.0.0.1",
           "--server", f"{server[0]}:{server[1]}", *extra]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)


def _cpu_of(proc: subprocess.Popen[bytes], timeout: float) -> float:
    """CPU seconds (user + system) of ``proc`` and its reaped descendants, once it exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid, _status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = 0
            return float(usage.ru_utime + usage.ru_stime)
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("an agent did not exit")


def one_call(seconds: float, preset: str, secure: bool) -> dict[str, Any]:
    """One real call alice -> bob; CPU seconds of both agents' process trees."""
    from vcall.discovery.embedded import EmbeddedServer

    flags = ["--preset", preset, "--codec", "h264"] + ([] if secure else ["--no-identity"])
    home = tempfile.mkdtemp(prefix="vcall-bench-srtp-")
    server = EmbeddedServer(identity_dir=os.path.join(home, "server"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        address = server.start()
        bob = _agent("bob", address, home, *flags, "--auto-answer", "--once")
        procs.append(bob)
        assert bob.stdout is not None
        for line in bob.stdout:
            if json.loads(line)["event"] == "registered":
                break
        alice = _agent("alice", address, home, *flags, "--call", "bob", "--seconds", str(seconds))
        procs.append(alice)
        assert alice.stdout is not None
        protection = ""
        for line in alice.stdout:
            event = json.loads(line)
            if event["event"] == "started":
                protection = event["protection"]
        cpu = _cpu_of(alice, 30) + _cpu_of(bob, 30)
        return {"protection": protection, "cpu_s": round(cpu, 3), "cpu_per_s": cpu / seconds}
    finally:
        for proc in procs:
            if proc.returncode is None and proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


def measure_calls(seconds: float, preset: str, repeat: int) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {"srtp_tls": [], "plain": []}
    for _ in range(repeat):  # alternated: the machine's load drifts
        runs["plain"].append(one_call(seconds, preset, secure=False))
        runs["srtp_tls"].append(one_call(seconds, preset, secure=True))
    plain = statistics.median(r["cpu_per_s"] for r in runs["plain"])
    srtp = statistics.median(r["cpu_per_s"] for r in runs["srtp_tls"])
    return {
        "seconds": seconds,
        "preset": preset,
        "runs": runs,
        "cpu_cores_plain_median": round(plain, 4),
        "cpu_cores_srtp_tls_median": round(srtp, 4),
        "increase_percent": round(100.0 * (srtp - plain) / plain, 2) if plain else None,
    }


def run(args: argparse.Namespace) -> int:
    result = measure(args.packets, args.payload)
    print(f"SRTP {result['suite']}, {args.payload}-byte payload, {args.packets} packets (us):")
    print(f"{'':28}{'p50':>8}{'p95':>8}{'p99':>8}")
    for name in ("protect", "unprotect", "protect_plus_unprotect", "srtcp_protect_plus_unprotect"):
        row = result[name]
        print(f"{name:28}{row['p50_us']:8.2f}{row['p95_us']:8.2f}{row['p99_us']:8.2f}")
    print(f"one core at the p50: {result['packets_per_s_one_core_at_p50']} packets/s")
    if args.call:
        calls = measure_calls(args.call, args.preset, args.repeat)
        result["calls"] = calls
        print(
            f"{args.call:g} s calls at {args.preset}, both agents' CPU (cores, median of "
            f"{args.repeat}): plain {calls['cpu_cores_plain_median']:.3f}, srtp+tls "
            f"{calls['cpu_cores_srtp_tls_median']:.3f} ({calls['increase_percent']:+.1f} %)"
        )
        for name, runs in calls["runs"].items():
            print(
                f"  {name}: " + ", ".join(f"{r['cpu_s']:.2f} s ({r['protection']})" for r in runs)
            )
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {path}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
