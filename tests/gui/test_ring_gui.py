"""The ring and the ringback from a real window, heard for real: a private PulseAudio server
with a null sink (tests/audio/conftest.py) is the client's speaker, ``parec`` records its
monitor, and real agents call (and answer) the window. An incoming call rings with the
two-tone ring until the user declines; an outgoing call plays the 425 Hz ringback until the
callee answers; neither goes on afterwards."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.audio.conftest import PulseServer, _start_pulse
from tests.audio.test_ring import on_segments, peaks
from tests.fixtures.discovery import DiscoveryProcess
from tests.gui.agent import Agent
from tests.gui.harness import Client
from tests.gui.test_call_gui import log_in
from vcall.config import Config
from vcall.gui.model import Phase, Screen

pytestmark = [
    pytest.mark.gui,
    pytest.mark.usefixtures("no_leaks"),
    pytest.mark.skipif(
        not (shutil.which("pulseaudio") and shutil.which("parec")),
        reason="needs pulseaudio and parec (apt-get install pulseaudio pulseaudio-utils)",
    ),
]

Shot = Callable[[str], np.ndarray]
RATE = 48000
MAX_DROPOUT_S = 0.06  # shorter than the ring's own 0.2 s pause


@pytest.fixture
def speaker() -> Iterator[PulseServer]:
    """A private PulseAudio null sink as the machine's speaker (PULSE_SERVER for children)."""
    server = _start_pulse()
    previous = os.environ.get("PULSE_SERVER")
    os.environ["PULSE_SERVER"] = server.server
    try:
        yield server
    finally:
        if previous is None:
            os.environ.pop("PULSE_SERVER", None)
        else:
            os.environ["PULSE_SERVER"] = previous
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)


class Recorder:
    """``parec`` of the null sink's monitor into a raw file (48 kHz mono s16le), readable while
    it grows. (The monitor delivers nothing before the first sound; from then on, in real
    time: so "the samples recorded so far" marks a moment in the recording.)"""

    def __init__(self, server: PulseServer, path: Path) -> None:
        self.path = path
        self._out = open(path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            ["parec", "-d", server.monitor, "--rate=48000", "--channels=1", "--format=s16le",
             "--latency-msec=20"],
            stdout=self._out, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def heard(self) -> np.ndarray:
        return np.fromfile(self.path, "<i2").astype(np.float64)

    def wait_loud(self, client: Client, after: int, what: str) -> None:
        """Pump ``client`` until a sound is recorded after sample ``after``."""

        def loud() -> bool:
            return bool((np.abs(self.heard()[after:]) > 1000).any())

        client.pump_until(loud, 15, what)

    def stop(self) -> np.ndarray:
        self.proc.terminate()
        self.proc.wait(5)
        self._out.close()
        return self.heard()


def tones(pcm: np.ndarray) -> list[tuple[int, int, str]]:
    """Each stretch of tone: (start, end) samples and what it is: "ring" (400 + 450 Hz),
    "ringback" (425 Hz) or "other" (too short to tell, or something else)."""
    out = []
    merged: list[list[float]] = []
    for start_s, end_s in on_segments(pcm, 300):
        # A sound server that starts a stream under load can drop a few ms: one tone still.
        if merged and start_s - merged[-1][1] < MAX_DROPOUT_S:
            merged[-1][1] = end_s
        else:
            merged.append([start_s, end_s])
    for start_s, end_s in merged:
        a, b = round(start_s * RATE), round(end_s * RATE)
        kind = "other"
        if b - a > 0.1 * RATE:
            if peaks(pcm[a:b], 2) == pytest.approx([400.0, 450.0], abs=8.0):
                kind = "ring"
            elif peaks(pcm[a:b], 1) == pytest.approx([425.0], abs=8.0):
                kind = "ringback"
        out.append((a, b, kind))
    return out


def test_ring_until_declined_and_ringback_until_cancelled_or_answered(
    xvfb_display: str,
    tmp_path: Path,
    discovery_server: DiscoveryProcess,
    speaker: PulseServer,
    screenshot: Shot,
) -> None:
    config = Config(
        server_host="127.0.0.1", server_port=discovery_server.port, ring_timeout=20,
        audio_in="off", audio_out="device:pulse",
    )  # fmt: skip
    alice = Client(config, tmp_path / "alice.json", geometry="1100x600+0+0")
    recorder = Recorder(speaker, tmp_path / "heard.raw")
    agents: list[Agent] = []
    try:
        app = alice.app
        assert app.ringer is not None
        log_in(alice, "alice", discovery_server)
        # bob calls: the ring, until alice declines (inside a beat).
        agents.append(Agent(discovery_server, "bob", "--no-media", "--call", "alice"))
        alice.pump_until(lambda: app.model.phase is Phase.RINGING, 30, "bob's call rings")
        recorder.wait_loud(alice, 0, "the ring")
        assert app.ringer.playing and app.ringer.fallback is None
        screenshot("ringing")
        assert app.incoming is not None
        alice.pump(1.2)  # the first double beat (0.4 + 0.2 + 0.4 s) is heard whole
        alice.click(app.incoming.deny_button)
        declined = len(recorder.heard())
        alice.pump_until(lambda: app.model.phase is Phase.IDLE, 10, "declined")
        assert not app.ringer.playing
        alice.pump(1.0)

        # alice calls carol, who lets it ring: the ringback, until alice cancels.
        agents.append(Agent(discovery_server, "carol", "--no-media"))
        deadline = time.monotonic() + 30
        while "carol" not in app.main.visible_nicks():
            assert time.monotonic() < deadline, "carol never listed"
            alice.click(app.main.refresh_button)
            alice.pump(0.3)
        dialled = len(recorder.heard())
        alice.double_click_row(app.main.tree, "carol")
        recorder.wait_loud(alice, dialled, "the ringback")
        alice.pump(0.3)
        alice.click(app.call.hangup_button)  # "Cancel call"
        cancelled = len(recorder.heard())
        alice.pump_until(lambda: app.model.screen is Screen.MAIN, 15, "cancelled")
        assert not app.ringer.playing
        alice.pump(1.0)
        # ...and once more: the ringback ends when carol answers.
        agents[1].send("quit")
        agents.append(Agent(discovery_server, "dave", "--no-media", "--auto-answer"))
        alice.pump(1.0)
        alice.click(app.main.refresh_button)
        alice.pump_until(lambda: "dave" in app.main.visible_nicks(), 20, "dave listed")
        alice.double_click_row(app.main.tree, "dave")
        alice.pump_until(lambda: app.model.phase is Phase.CONNECTED, 30, "dave answers")
        assert not app.ringer.playing and app.ringer.started == 3
        alice.click(app.call.hangup_button)
        alice.pump_until(lambda: app.model.screen is Screen.MAIN, 15, "hung up")
    finally:
        heard = recorder.stop()
        for agent in agents:
            agent.stop()
        alice.close()

    found = tones(heard)
    rings = [(a, b) for a, b, kind in found if kind == "ring"]
    backs = [(a, b) for a, b, kind in found if kind == "ringback"]
    assert rings and backs, found
    assert all(b - a < 0.1 * RATE for a, b, kind in found if kind == "other"), found
    # The ring before the decline only, the ringback between the dial and the cancel only:
    # each ends within 0.5 s (the device's buffers) of the click.
    slack = RATE // 2
    assert all(b < declined + slack for _a, b in rings), (rings, declined)
    assert all(dialled <= a for a, _b in backs), (backs, dialled)
    assert backs[0][1] < cancelled + slack, (backs, cancelled)
    # Relative to the recording's length at the click: parec's file lags by 0.1-0.2 s.
    print(f"\nring heard until {(rings[-1][1] - declined) / RATE * 1000:.0f} ms after the "
          f"decline, ringback until {(backs[0][1] - cancelled) / RATE * 1000:.0f} ms after the "
          f"cancel")  # fmt: skip
