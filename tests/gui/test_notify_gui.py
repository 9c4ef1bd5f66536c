"""Desktop notifications through a real D-Bus session bus (``dbus-daemon``) and a real
notification server (``dunst``, drawing on the test's X server): an incoming call notifies,
the Tk thread never waits for the bus, a stopped server only delays the notification."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.discovery import DiscoveryProcess
from tests.gui.harness import Client
from tests.gui.test_call_gui import log_in
from tests.gui.test_incoming_gui import Agent
from vcall.config import Config
from vcall.gui.model import Phase
from vcall.gui.notify import Notifier

pytestmark = [
    pytest.mark.gui,
    pytest.mark.usefixtures("no_leaks"),
    pytest.mark.skipif(
        not (shutil.which("dbus-daemon") and shutil.which("dunst")),
        reason="needs dbus-daemon and dunst (apt-get install dbus dunst)",
    ),
]

Shot = Callable[[str], np.ndarray]


class Desktop:
    """A private D-Bus session bus with dunst serving org.freedesktop.Notifications."""

    def __init__(self, tmp: Path, display: str) -> None:
        self.env = dict(os.environ)
        self.bus = subprocess.Popen(
            ["dbus-daemon", "--session", "--nofork", "--print-address=1",
             f"--address=unix:path={tmp / 'bus'}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        assert self.bus.stdout is not None
        self.address = self.bus.stdout.readline().strip()
        assert self.address.startswith("unix:"), self.address
        self.env.update(DBUS_SESSION_BUS_ADDRESS=self.address, DISPLAY=display)
        self.log = open(tmp / "dunst.log", "wb")  # noqa: SIM115 - closed in stop()
        self.dunst = subprocess.Popen(
            ["dunst", "-config", "/dev/null"], env=self.env, stdout=self.log, stderr=self.log
        )
        deadline = time.monotonic() + 10
        while self.ctl("is-paused") != "false":
            assert time.monotonic() < deadline, (tmp / "dunst.log").read_text()
            time.sleep(0.1)

    def ctl(self, *args: str) -> str:
        done = subprocess.run(
            ["dunstctl", *args], env=self.env, capture_output=True, text=True, timeout=10,
            check=False,
        )  # fmt: skip
        return done.stdout.strip()

    def shown(self) -> int:
        return int(self.ctl("count", "displayed") or 0)

    def summaries(self) -> list[tuple[str, str]]:
        """(app name, summary) of every notification so far (closed ones, from the history)."""
        self.ctl("close-all")
        data = json.loads(self.ctl("history") or "{}").get("data", [[]])[0]
        return [(n["appname"]["data"], n["summary"]["data"]) for n in data]

    def stop(self) -> None:
        for proc in (self.dunst, self.bus):
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.bus.stdout is not None:
            self.bus.stdout.close()
        self.log.close()


@pytest.fixture
def desktop(
    xvfb_display: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Desktop]:
    session = Desktop(tmp_path, xvfb_display)
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", session.address)
    try:
        yield session
    finally:
        session.stop()


def wait(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        time.sleep(0.05)


def test_notifier_sends_and_never_waits_for_the_bus(desktop: Desktop) -> None:
    notifier = Notifier()
    try:
        notifier.notify("bob is calling", "Open vcall to answer or decline.")
        wait(lambda: notifier.sent == 1, 15, "notification dispatched")
        wait(lambda: desktop.shown() == 1, 5, "dunst shows it")
        # A server that does not answer (stopped): notify() still returns at once, before
        # anything could have been sent; the notification goes out when the server is back.
        desktop.dunst.send_signal(signal.SIGSTOP)
        notifier.notify("carol is calling", "Open vcall to answer or decline.")
        assert notifier.sent == 1 and notifier.failed == 0
        time.sleep(0.5)
        assert notifier.sent == 1  # still waiting on the stopped server
        desktop.dunst.send_signal(signal.SIGCONT)
        wait(lambda: notifier.sent + notifier.failed == 2, 15, "second notification")
        assert notifier.sent == 2
        assert desktop.summaries() == [
            ("vcall", "carol is calling"), ("vcall", "bob is calling"),
        ]  # fmt: skip
    finally:
        notifier.close()
    assert not notifier.running
    notifier.notify("late", "after close")
    assert notifier.dropped == 1


def test_incoming_call_notifies_the_desktop(
    desktop: Desktop,
    xvfb_display: str,
    tmp_path: Path,
    discovery_server: DiscoveryProcess,
    screenshot: Shot,
) -> None:
    config = Config(server_host="127.0.0.1", server_port=discovery_server.port, ring_timeout=20)
    alice = Client(config, tmp_path / "alice.json", geometry="900x560+0+0")
    bob = None
    try:
        log_in(alice, "alice", discovery_server)
        bob = Agent(discovery_server, "bob", "--call", "alice")
        app = alice.app
        alice.pump_until(lambda: app.model.phase is Phase.RINGING, 30, "bob's call rings")
        alice.pump_until(lambda: app.notifier.sent == 1, 15, "notification sent")
        alice.pump_until(lambda: desktop.shown() == 1, 5, "dunst shows it")
        alice.pump(0.3)
        # The window was raised and the dialog is on top of it, centred over it.
        dialog = app.incoming
        assert dialog is not None and dialog.winfo_viewable()
        x, y = dialog.winfo_rootx(), dialog.winfo_rooty()
        assert x > 100 and x + dialog.winfo_width() < alice.root.winfo_width() - 100
        assert 50 < y < alice.root.winfo_height()
        screenshot("ringing-notified")  # dunst's bubble, top right, over the screen
        assert app.notifier.failed == 0
        # Ctrl+W in the dialog closes the dialog (a decline), not the application.
        dialog.accept_button.focus_force()
        alice.key("<Control-w>")
        alice.pump_until(lambda: app.model.phase is Phase.IDLE, 15, "declined")
        assert not app._exiting and alice.root.winfo_viewable()
        assert desktop.summaries() == [("vcall", "bob is calling")]
    finally:
        if bob is not None:
            bob.stop()
        alice.close()
