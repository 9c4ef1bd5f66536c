"""`vcall bench ui`: Tk event-loop lag while the client shows a 1280x720, 30 frames/s call.

Set-up: an embedded discovery server; a headless peer (``vcall agent --auto-answer``, its own
process) sending the test pattern at the chosen preset; the real client window (``ClientApp``,
this process, its real worker and media session) calls it and shows the peer's video and the
self-view. Without a ``DISPLAY`` the benchmark starts its own Xvfb.

Measurement: once video is on screen, a callback is scheduled with ``after(INTERVAL)`` over and
over inside ``mainloop``; each run records its lateness, ``actual - (scheduled + INTERVAL)``.
That is the time any user input would have waited behind the client's own work (drawing frames,
handling events). Prints p50/p95/p99/max in ms, frames shown per second; ``--json FILE`` writes::

    {"benchmark": "ui", "preset": "high", "seconds": 10, "interval_ms": 10, "samples": N,
     "lag_ms": {"p50": ..., "p95": ..., "p99": ..., "max": ..., "mean": ...},
     "frames_shown_per_s": ..., "peer_view": [w, h], "display": ":N"}
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import tkinter as tk
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.presets import PRESET_NAMES

logger = logging.getLogger(__name__)

TARGET_P99_MS = 20.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=PRESET_NAMES, default="high", help="(high: 720p30)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time (10)")
    parser.add_argument("--interval", type=float, default=10.0, help="after() interval, ms (10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="s of video before measuring")
    parser.add_argument("--geometry", default="1280x800+0+0", help="client window geometry")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")


def _percentiles(values: list[float]) -> dict[str, float]:
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return {k: float("nan") for k in ("p50", "p95", "p99", "max", "mean")}
    p50, p95, p99 = np.percentile(data, [50, 95, 99])
    return {
        "p50": round(float(p50), 3),
        "p95": round(float(p95), 3),
        "p99": round(float(p99), 3),
        "max": round(float(data.max()), 3),
        "mean": round(float(data.mean()), 3),
    }


@dataclass(slots=True)
class _Progress:
    phase: str = "connecting"  # -> calling -> warmup -> measuring
    t0: float = 0.0
    frames0: int = 0
    due: float = 0.0


def _wait_registered(server: tuple[str, int], nick: str, proc: subprocess.Popen[bytes]) -> bool:
    from vcall.discovery.client import DiscoveryClient, DiscoveryError

    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with DiscoveryClient(*server, timeout=2.0) as client:
                client.query(nick)
                return True
        except DiscoveryError:
            time.sleep(0.2)
    return False


def _measure(args: argparse.Namespace, display: str) -> dict[str, Any]:
    from vcall.config import Config
    from vcall.discovery.embedded import EmbeddedServer
    from vcall.gui.client import AppOptions, ClientApp
    from vcall.gui.model import Phase

    with EmbeddedServer() as server, tempfile.TemporaryDirectory(prefix="vcall-bench-") as tmp:
        assert server.address is not None
        host, port = server.address
        agent = [
            sys.executable, "-m", "vcall", "agent", "--nick", "peer", "--password", "x",
            "--server", f"{host}:{port}", "--listen-ip", "127.0.0.1",
            "--advertise-ip", "127.0.0.1", "--auto-answer", "--preset", args.preset,
        ]  # fmt: skip
        peer = subprocess.Popen(agent, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        if not _wait_registered(server.address, "peer", peer):
            peer.kill()
            peer.wait()
            return {"error": "the peer agent did not register within 30 s"}
        root = tk.Tk()
        root.geometry(args.geometry)
        app = ClientApp(
            root,
            Config(server_host=host, server_port=port, preset=args.preset),
            AppOptions(
                nick="bench", password="x", auto_login=True, state_file=Path(tmp) / "s.json"
            ),
        )
        lags: list[float] = []
        handler_ms: list[float] = []
        result: dict[str, Any] = {}
        interval = args.interval / 1000.0
        state = _Progress()
        deadline = time.monotonic() + 60.0

        def tick() -> None:
            now = time.monotonic()
            if state.phase == "measuring":
                lags.append((now - state.due) * 1000.0)
                if now - state.t0 >= args.seconds:
                    frames = app.call.peer_view.frames_shown - state.frames0
                    result["frames_shown_per_s"] = round(frames / (now - state.t0), 2)
                    result["peer_view"] = list(app.call.peer_view.area)
                    # What the display stage produced, to tell the pipeline from the Tk thread.
                    result["display_stage_fps"] = app.last_stats.get("fps_shown")
                    result["client_pipeline_cpu_pct"] = app.last_stats.get("cpu_percent", {}).get(
                        "total"
                    )
                    handler_ms.extend(app.feed.handler_ms)
                    root.quit()
                    return
            elif state.phase == "connecting":
                if app.model.screen.value == "main" and not app.model.in_call:
                    app.main.on_call("peer")  # as the Call button does
                    state.phase = "calling"
                if now > deadline:
                    result["error"] = "the call did not start within 60 s"
                    root.quit()
                    return
            elif state.phase == "calling":
                if app.model.phase is Phase.CONNECTED and app.call.peer_view.frames_shown > 0:
                    state.phase, state.t0 = "warmup", now
                elif now > deadline:
                    result["error"] = "no video within 60 s"
                    root.quit()
                    return
            elif state.phase == "warmup" and now - state.t0 >= args.warmup:
                state.phase, state.t0 = "measuring", now
                state.frames0 = app.call.peer_view.frames_shown
                app.feed.handler_ms.clear()
            state.due = time.monotonic() + interval
            root.after(int(args.interval), tick)

        root.after(100, tick)
        try:
            root.mainloop()
        finally:
            app.shutdown()
            root.destroy()
            if peer.stdin is not None:
                peer.stdin.close()
            peer.terminate()
            try:
                peer.wait(10)
            except subprocess.TimeoutExpired:
                peer.kill()
                peer.wait()
    result.update(
        benchmark="ui",
        preset=args.preset,
        seconds=args.seconds,
        interval_ms=args.interval,
        samples=len(lags),
        lag_ms=_percentiles(lags),
        frame_handler_ms=_percentiles(handler_ms),
        frame_handler_busy_pct=round(sum(handler_ms) / (10.0 * args.seconds), 1),
        frame_handler_calls=len(handler_ms),
        display=display,
        load_average=round(os.getloadavg()[0], 2),
    )
    return result


def run(args: argparse.Namespace) -> int:
    from vcall.gui.xvfb import Xvfb

    xvfb = None
    display = os.environ.get("DISPLAY", "")
    if not display:
        xvfb = Xvfb((1280, 1024))
        display = xvfb.start()
        os.environ["DISPLAY"] = display
    try:
        result = _measure(args, display)
    finally:
        if xvfb is not None:
            xvfb.stop()
    if "error" in result:
        print(f"vcall bench ui: {result['error']}", file=sys.stderr)
        return 1
    lag = result["lag_ms"]
    print(f"Tk event-loop lag during a {args.preset} call shown in the window ({display})")
    print(f"after({args.interval:g} ms) x {result['samples']} over {args.seconds:g} s")
    print(f"{'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}   frames shown/s   peer view")
    print(
        f"{lag['p50']:>8.2f} {lag['p95']:>8.2f} {lag['p99']:>8.2f} {lag['max']:>8.2f}"
        f"   {result['frames_shown_per_s']:>14.1f}   {result['peer_view'][0]}x"
        f"{result['peer_view'][1]}  (ms)"
    )
    handler = result["frame_handler_ms"]
    print(
        f"frame handler (latest() + PPM + PhotoImage): p50 {handler['p50']:.2f} ms, "
        f"p99 {handler['p99']:.2f} ms, {result['frame_handler_busy_pct']:.0f} % of the Tk thread"
    )
    print(
        f"display stage produced {result['display_stage_fps']} frames/s; load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    verdict = "meets" if lag["p99"] < TARGET_P99_MS else "MISSES"
    print(f"p99 {verdict} the {TARGET_P99_MS:g} ms target")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ui", description=__doc__)
    add_arguments(parser)
    logging.basicConfig(level=logging.WARNING)
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
