"""The commands as a user runs them, under Xvfb: `vcall gui` out of the box (this machine's
directory, served by the first of two clients and used by the second; SIGTERM closes it
cleanly), `vcall demo` (two windows showing each other's moving pattern), and
`vcall bench ui` (runs and reports sane figures)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.discovery import free_port
from vcall.config import Config, ConfigError
from vcall.discovery.client import DiscoveryClient, WrongPassword
from vcall.discovery.embedded import EmbeddedServer
from vcall.gui import app as gui_app
from vcall.gui.demo import MENUBAR_PX, _geometries
from vcall.gui.directory import LocalDirectory

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("no_leaks")]

Shot = Callable[[str], np.ndarray]


def vcall(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "vcall", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )


def test_build_config_flags_override_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[server]\nhost = "far.example"\n[media]\npreset = "low"\n')
    parser = argparse.ArgumentParser()
    gui_app.add_arguments(parser)
    config = gui_app.build_config(parser.parse_args(["--config", str(path)]))
    assert config == Config(server_host="far.example", preset="low")
    args = parser.parse_args(["--config", str(path), "--server", "near:9", "--preset", "high"])
    assert gui_app.build_config(args).server == ("near", 9)
    assert gui_app.build_config(args).preset == "high"


def test_gui_server_flag_takes_a_failover_list(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[server]\nhost = "far.example"\nfallbacks = ["spare:7"]\n')
    parser = argparse.ArgumentParser()
    gui_app.add_arguments(parser)
    config = gui_app.build_config(
        parser.parse_args(["--config", str(path), "--server", "a:8000,b:9000, c"])
    )
    assert config.server == ("a", 8000)
    assert config.server_fallbacks == (("b", 9000), ("c", 8000))
    # One server on the command line keeps the file's fallbacks.
    one = gui_app.build_config(parser.parse_args(["--config", str(path), "--server", "a"]))
    assert one.server_fallbacks == (("spare", 7),)
    with pytest.raises(ConfigError):
        gui_app.build_config(parser.parse_args(["--config", str(path), "--server", ","]))


def _wait_logged_in(proc: subprocess.Popen[bytes], state: Path) -> dict[str, object]:
    deadline = time.monotonic() + 30
    while not state.exists():
        assert proc.poll() is None, proc.communicate()[0].decode()
        assert time.monotonic() < deadline, "never logged in"
        time.sleep(0.2)
    saved: dict[str, object] = json.loads(state.read_text())
    return saved


def test_gui_out_of_the_box_and_two_on_one_machine(xvfb_display: str, tmp_path: Path) -> None:
    """No config, no server: the first vcall serves this machine's directory on a known port
    (here a free one, by --directory-port), the second logs in to it, so each lists the other;
    the users persist in the data folder; SIGTERM exits 0."""
    port = free_port()
    data = tmp_path / "data"
    procs = []
    try:
        for nick in ("first", "second"):
            env = {
                **os.environ,
                "XDG_CONFIG_HOME": str(tmp_path / nick),
                "XDG_DATA_HOME": str(data),
            }
            procs.append(vcall("gui", "--nick", nick, "--password", "pw", "--auto-login",
                               "--directory-port", str(port), env=env))  # fmt: skip
            saved = _wait_logged_in(procs[-1], tmp_path / nick / "vcall" / "state.json")
            assert saved["nick"] == nick and saved["server"] == f"127.0.0.1:{port}"
            assert "password" not in saved
        with DiscoveryClient("127.0.0.1", port, timeout=5) as client:
            assert {"first", "second"} <= {user.nick for user in client.list_users()}
    finally:
        outs = []
        for proc in reversed(procs):  # the second first: the first one serves the directory
            proc.send_signal(signal.SIGTERM)
            outs.append(proc.communicate(timeout=20)[0].decode())
    second_out, first_out = outs
    assert all(proc.returncode == 0 for proc in procs), outs
    assert f"serving this machine's directory at 127.0.0.1:{port}" in first_out
    assert f"using this machine's directory at 127.0.0.1:{port}" in second_out
    # The accounts outlive the process: the directory's file holds them for the next start.
    assert (data / "vcall" / "directory.sqlite3").stat().st_size > 0
    with EmbeddedServer("127.0.0.1", 0, db=str(data / "vcall" / "directory.sqlite3")) as server:
        assert server.address is not None
        with DiscoveryClient(*server.address, timeout=5) as client, pytest.raises(WrongPassword):
            client.register("first", "127.0.0.1", 5000, "another-password", ["V0"])


def test_a_busy_directory_port_falls_back_to_a_private_server(tmp_path: Path) -> None:
    """Something that is not a directory holds the port: a private server on a free port."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        directory = LocalDirectory(port, tmp_path / "d.sqlite3")
        try:
            host, used = directory.open()  # the squatter never answers: the probe times out
            assert directory.serving and host == "127.0.0.1" and used != port
        finally:
            directory.close()


@pytest.mark.parametrize("screen", [(1280, 1024), (1920, 1080), (2560, 1440)])
def test_demo_windows_neither_overlap_nor_leave_the_screen(screen: tuple[int, int]) -> None:
    boxes = []
    for geometry in _geometries(screen):
        size, x, y = geometry.split("+")
        width, height = (int(v) for v in size.split("x"))
        # The window as drawn: its menubar (32 px with Tk's default font) above the geometry.
        boxes.append((int(x), int(y), width, height + 32))
        assert int(x) + width <= screen[0] and int(y) + height + 32 <= screen[1]
    (ax, ay, aw, ah), (bx, by, _bw, _bh) = boxes
    assert bx >= ax + aw or by >= ay + ah, f"demo windows overlap: {boxes}"
    assert MENUBAR_PX >= 32


def test_demo_shows_two_moving_videos(xvfb_display: str, screenshot: Shot) -> None:
    proc = vcall("demo", "--duration", "60")
    try:
        first, second = _geometries((1280, 1024))
        boxes = []
        for geometry in (first, second):
            size, x, y = geometry.split("+")
            width, height = (int(v) for v in size.split("x"))
            # The middle of the video area: left of the side column, above the toolbar.
            boxes.append((int(x) + 150, int(y) + 60, width // 2 - 150, height // 2))
        deadline = time.monotonic() + 25
        while True:
            a = screenshot("demo-1")
            if all(a[y : y + h, x : x + w].mean() > 40 for x, y, w, h in boxes):
                break
            assert proc.poll() is None, proc.communicate()[0].decode()[-3000:]
            assert time.monotonic() < deadline, "the demo windows show no video"
            time.sleep(0.5)
        time.sleep(0.5)
        b = screenshot("demo-2")
        for x, y, w, h in boxes:
            diff = np.abs(a[y : y + h, x : x + w].astype(int) - b[y : y + h, x : x + w]).mean()
            assert diff > 1.0, "a demo video is frozen"
    finally:
        proc.send_signal(signal.SIGTERM)  # the demo closes both clients and exits 0
        out = proc.communicate(timeout=40)[0].decode()
    assert proc.returncode == 0, out[-3000:]


@pytest.mark.parametrize("mode", [[], ["--synthetic"]], ids=["call", "synthetic"])
def test_bench_ui_runs(xvfb_display: str, tmp_path: Path, mode: list[str]) -> None:
    out_json = tmp_path / "ui.json"
    proc = vcall(
        "bench", "ui", "--preset", "medium", "--seconds", "2", "--warmup", "0.5",
        "--json", str(out_json), *mode,
    )  # fmt: skip
    out = proc.communicate(timeout=90)[0].decode()
    assert proc.returncode == 0, out[-3000:]
    result = json.loads(out_json.read_text())
    assert result["samples"] > 20
    assert 0 <= result["lag_ms"]["p50"] <= result["lag_ms"]["p99"] <= result["lag_ms"]["max"]
    assert result["frames_shown_per_s"] > 0
    assert result["mode"] == ("synthetic" if mode else "call")
    assert result["frame_handler_calls"] > 0 and result["frame_handler_ms"]["p50"] > 0
    assert "p99" in out


@pytest.mark.parametrize(
    ("remembered", "remote"),
    [("far.example:8000", True), ("10.1.2.3:1", True), ("127.0.0.1:4000", False),
     ("localhost:1", False), ("[::1]:5", False), ("", False), ("bad:port", False)],
)  # fmt: skip
def test_a_remembered_remote_server_replaces_the_embedded_one(
    remembered: str, remote: bool
) -> None:
    # An embedded server's port changes every start: remembering it would point nowhere.
    assert gui_app._remote(remembered) is remote
