"""`vcall demo`: two clients on one machine calling each other on the test pattern.

Starts an embedded discovery server on loopback, then two client windows as separate processes
(``vcall gui``): "bob" logs in and auto-accepts; once the server knows bob, "alice" logs in and
calls him. Both send the stamped test pattern. The demo ends when both windows are closed, after
``--duration`` seconds, on Ctrl+C or SIGTERM (closing both clients properly); the clients die
with it even if it is killed (parent-death signal).
This is what ``make run`` starts.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline.presets import PRESET_NAMES
from vcall.config import format_server

logger = logging.getLogger(__name__)

REGISTER_TIMEOUT = 30.0  # s to wait for the first client to register (slow first import)
PASSWORD = "demo"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=PRESET_NAMES, default="medium", help="quality")
    parser.add_argument("--source", default="pattern", help="video source of both clients")
    parser.add_argument("--duration", type=float, default=0.0, help="stop after S seconds")
    parser.add_argument("--no-call", action="store_true", help="log in both but do not call")


def _screen_size() -> tuple[int, int]:
    import tkinter as tk  # noqa: PLC0415

    try:
        root = tk.Tk()
    except tk.TclError:
        return (1280, 1024)
    try:
        return (root.winfo_screenwidth(), root.winfo_screenheight())
    finally:
        root.destroy()


# The client's menubar sits above the area a Tk geometry sizes (about 32 px here): leave room.
MENUBAR_PX = 40


def _geometries(screen: tuple[int, int]) -> tuple[str, str]:
    """Two windows side by side when the screen is wide, else one above the other; each one's
    menubar included, neither overlaps the other nor leaves the screen."""
    sw, sh = screen
    if sw >= 1800:
        w, h = min(940, sw // 2 - 10), min(600, sh - 80 - MENUBAR_PX)
        return f"{w}x{h}+0+0", f"{w}x{h}+{w + 10}+0"
    w, h = min(1100, sw), max(420, min(600, sh // 2 - 10 - MENUBAR_PX))
    return f"{w}x{h}+0+0", f"{w}x{h}+0+{h + MENUBAR_PX + 10}"


def _demo_audio(hz: int) -> tuple[str, ...]:
    """A 200 ms tone every 2 s as the microphone, the default speaker as the output."""
    return ("--audio-in", f"tone:{hz}:200/2000", "--audio-out", "device")


def _client(
    server: str, nick: str, geometry: str, state: Path, args: argparse.Namespace, *extra: str
) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable, "-m", "vcall", "gui", "--server", server, "--nick", nick,
        "--password", PASSWORD, "--auto-login", "--geometry", geometry,
        "--title", "vcall demo", "--state-file", str(state / nick / "state.json"),
        "--preset", args.preset, "--source", args.source, "--die-with-parent", str(os.getpid()),
        *extra,
    ]  # fmt: skip
    logger.info("starting %s", " ".join(cmd))
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL)


def wait_registered(
    server: tuple[str, int],
    nick: str,
    proc: subprocess.Popen[bytes],
    timeout: float = REGISTER_TIMEOUT,
) -> bool:
    """Whether the server knows ``nick`` within ``timeout`` s, while ``proc`` (its client) runs;
    also used by `vcall bench ui`."""
    from vcall.discovery.client import DiscoveryClient, DiscoveryError  # noqa: PLC0415

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with DiscoveryClient(*server, timeout=2.0) as client:
                client.query(nick)
                return True
        except DiscoveryError:
            time.sleep(0.2)
    return False


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(10.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(args: argparse.Namespace) -> int:
    from vcall.discovery.embedded import EmbeddedServer  # noqa: PLC0415

    if not os.environ.get("DISPLAY"):
        logger.error("vcall demo needs a display (DISPLAY is not set)")
        return 1
    first, second = _geometries(_screen_size())
    procs: list[subprocess.Popen[bytes]] = []
    stopping = False

    def on_sigterm(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True  # the loop below stops both clients properly

    signal.signal(signal.SIGTERM, on_sigterm)
    with EmbeddedServer() as server, tempfile.TemporaryDirectory(prefix="vcall-demo-") as tmp:
        address = server.address
        assert address is not None
        text = format_server(*address)
        logger.info("demo discovery server at %s", text)
        try:
            # Each side sends tone bursts, not its microphone: two clients on one machine's
            # speakers and microphone would feed back; each hears the other's tone instead.
            bob = _client(text, "bob", first, Path(tmp), args, "--auto-accept", *_demo_audio(660))
            procs.append(bob)
            if not wait_registered(address, "bob", bob):
                logger.error("bob did not register within %.0f s", REGISTER_TIMEOUT)
                return 1
            call = () if args.no_call else ("--call", "bob")
            procs.append(_client(text, "alice", second, Path(tmp), args, *call, *_demo_audio(440)))
            deadline = time.monotonic() + args.duration if args.duration > 0 else None
            while any(p.poll() is None for p in procs) and not stopping:
                if deadline is not None and time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            _stop(procs)
    codes = [p.returncode for p in procs]
    logger.info("demo clients exited with %s", codes)
    return 0 if all(code in (0, -signal.SIGTERM) for code in codes) else 1
