"""Incoming calls and failed calls in a real window under Xvfb, against real peers: another
client window (accept, video), headless agents (deny, missed call, busy, declined), and a
registered address where nobody listens (unreachable)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.discovery import DiscoveryProcess, free_port
from tests.gui.agent import Agent as MediaAgent
from tests.gui.harness import Client
from tests.gui.test_call_gui import PeerWindow, assert_moving, log_in, wait_listed
from vcall.config import Config
from vcall.discovery.client import DiscoveryClient
from vcall.gui.model import Phase, Screen

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("no_leaks")]

Shot = Callable[[str], np.ndarray]


class Agent(MediaAgent):
    """``vcall agent`` (call control only), its JSON events read from stdout."""

    def __init__(self, server: DiscoveryProcess, nick: str, *extra: str) -> None:
        super().__init__(server, nick, "--no-media", *extra)


@pytest.fixture
def make_alice(
    xvfb_display: str, tmp_path: Path, discovery_server: DiscoveryProcess
) -> Iterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(ring_timeout: float = 20.0) -> Client:
        config = Config(
            server_host="127.0.0.1", server_port=discovery_server.port, ring_timeout=ring_timeout
        )
        made.append(Client(config, tmp_path / "alice.json", geometry="1100x600+0+0"))
        log_in(made[-1], "alice", discovery_server)
        return made[-1]

    yield make
    for client in made:
        client.close()


def test_incoming_accept_then_deny(
    make_alice: Callable[..., Client],
    discovery_server: DiscoveryProcess,
    tmp_path: Path,
    screenshot: Shot,
) -> None:
    alice = make_alice()
    app = alice.app
    bob = PeerWindow(discovery_server, tmp_path, "bob", "--call", "alice")
    try:
        alice.pump_until(lambda: app.incoming is not None, 30, f"bob's call rings\n{bob.log()}")
        assert app.model.phase is Phase.RINGING
        screenshot("ringing")
        dialog = app.incoming
        assert dialog is not None
        # The dialog's keys are on its buttons; its title says who we are and who calls.
        assert dialog.accept_button.cget("text") == "Accept (Enter)"
        assert dialog.deny_button.cget("text") == "Deny (Esc)"
        assert dialog.title() == "vcall — alice — bob is calling"
        alice.click(dialog.accept_button)
        alice.pump_until(lambda: app.model.phase is Phase.CONNECTED, 20, "connected")
        assert app.incoming is None  # the dialog closed
        alice.pump_until(lambda: app.call.peer_view.frames_shown > 10, 20, "peer video")
        assert_moving(alice, screenshot, "accepted")
        # Bob uses his keyboard: real X input (XTest) into the other process's window.
        window = subprocess.run(
            ["xdotool", "search", "--sync", "--name", "^vcall.* bob .*in call with alice$"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout.split()[0]  # fmt: skip
        subprocess.run(["xdotool", "windowfocus", "--sync", window], check=True, timeout=20)
        subprocess.run(["xdotool", "key", "ctrl+h"], check=True, timeout=20)  # bob holds
        alice.pump_until(lambda: app.model.hold_remote, 15, "held by bob")
        assert "held by bob" in app.call.status.cget("text")
        assert app.call.hold_button.cget("text") == "Hold"  # our own hold is separate
        subprocess.run(["xdotool", "key", "ctrl+h"], check=True, timeout=20)  # bob resumes
        alice.pump_until(lambda: not app.model.hold_remote, 15, "bob resumes")
        subprocess.run(["xdotool", "key", "ctrl+e"], check=True, timeout=20)  # bob hangs up
        alice.pump_until(lambda: app.model.screen is Screen.MAIN, 15, "bob hangs up")
        assert app.main.message.cget("text") == "bob hung up."
    finally:
        bob.stop()

    carol = Agent(discovery_server, "carol", "--call", "alice")
    try:
        alice.pump_until(lambda: app.incoming is not None, 20, "carol's call rings")
        dialog = app.incoming
        assert dialog is not None
        alice.click(dialog.deny_button)
        alice.pump_until(lambda: app.model.phase is Phase.IDLE, 15, "denied")
        assert app.main.message.cget("text") == "You declined the call from carol."
        assert carol.wait_event("ended")["reason"] == "peer_denied"
    finally:
        carol.stop()


def test_missed_call(make_alice: Callable[..., Client], discovery_server: DiscoveryProcess) -> None:
    alice = make_alice(ring_timeout=2.0)
    app = alice.app
    dave = Agent(discovery_server, "dave", "--call", "alice")
    try:
        alice.pump_until(lambda: app.incoming is not None, 20, "dave's call rings")
        alice.pump_until(lambda: app.incoming is None, 10, "ringing stops by itself")
        assert app.main.message.cget("text") == "Missed call from dave."
        assert dave.wait_event("ended")["reason"] == "peer_denied"
    finally:
        dave.stop()


def test_busy_declined_unreachable_messages(
    make_alice: Callable[..., Client], discovery_server: DiscoveryProcess, screenshot: Shot
) -> None:
    agents = [
        Agent(discovery_server, "dave", "--auto-deny"),
        Agent(discovery_server, "erin", "--auto-answer"),
        Agent(discovery_server, "gina"),  # rings, never answers
    ]
    try:
        for agent in agents:
            agent.wait_event("registered")
        agents.append(Agent(discovery_server, "frank", "--call", "erin"))
        agents[-1].wait_event("started")  # erin is now in a call
        with DiscoveryClient(*discovery_server.address) as other:  # nobody listens there
            other.register("ghost", "127.0.0.1", free_port(), "pw", ["V0"])
        alice = make_alice()
        app, main = alice.app, alice.app.main
        for nick, expected in (
            ("dave", "dave declined the call."),
            ("erin", "erin is busy in another call."),
            ("ghost", "Cannot reach ghost"),
            ("nobody", "No user called nobody is registered."),
        ):
            alice.type_into(main.call_entry, nick)
            alice.click(main.call_button)
            # The previous call's message may still be re-rendered (a list refresh) until this
            # call starts: wait for this call's own words.
            deadline = time.monotonic() + 30
            while not (main.message.cget("text").startswith(expected) and not app.model.in_call):
                text = main.message.cget("text")
                assert time.monotonic() < deadline, f"calling {nick}: shows {text!r}"
                alice.pump(0.05)
            assert str(main.message.cget("foreground")) == "#b00020"  # shown as an error
        screenshot("call-failed")

        # Cancelling an outgoing call with the button while the peer's phone rings.
        alice.type_into(main.call_entry, "gina")
        alice.click(main.call_button)
        alice.pump_until(lambda: app.model.phase is Phase.DIALING, 10, "dialing gina")
        assert app.call.hangup_button.cget("text") == "Cancel call"
        agents[2].wait_event("incoming")
        alice.click(app.call.hangup_button)
        alice.pump_until(lambda: not app.model.in_call, 15, "cancelled")
        assert main.message.cget("text") == "Call with gina ended."
        ended = agents[2].wait_event("ended")
        assert ended["reason"] == "peer_hangup", ended
    finally:
        for agent in agents:
            agent.stop()


def test_peer_vanishes_mid_call(
    make_alice: Callable[..., Client], discovery_server: DiscoveryProcess, tmp_path: Path
) -> None:
    alice = make_alice()
    app = alice.app
    bob = PeerWindow(discovery_server, tmp_path, "bob", "--call", "alice")
    try:
        alice.pump_until(lambda: app.incoming is not None, 30, f"bob's call rings\n{bob.log()}")
        alice.key("<Return>")  # accepts in the dialog
        alice.pump_until(lambda: app.model.phase is Phase.CONNECTED, 20, "connected")
        alice.pump_until(lambda: app.call.peer_view.frames_shown > 3, 20, "peer video")
        bob.proc.kill()  # no goodbye: the call-control connection just drops
        alice.pump_until(lambda: app.model.screen is Screen.MAIN, 15, "call ends")
        assert app.main.message.cget("text") in (
            "Lost the connection to bob.",
            "bob stopped responding; the call was ended.",
        )
    finally:
        bob.proc.kill()
        bob.proc.wait()


def test_closing_the_window_mid_call_hangs_up(
    make_alice: Callable[..., Client], discovery_server: DiscoveryProcess, tmp_path: Path
) -> None:
    alice = make_alice()
    app = alice.app
    bob = PeerWindow(discovery_server, tmp_path, "bob", "--auto-accept")
    try:
        wait_listed(alice, "bob", bob)
        alice.type_into(app.main.call_entry, "bob")
        alice.key("<Return>")  # Return in the nick field calls
        alice.pump_until(lambda: app.model.phase is Phase.CONNECTED, 30, f"call\n{bob.log()}")
        alice.pump_until(lambda: app.call.peer_view.frames_shown > 3, 20, "peer video")
        # The window manager's close button runs the WM_DELETE_WINDOW protocol handler.
        alice.root.tk.eval(alice.root.protocol("WM_DELETE_WINDOW"))
        assert alice.root.state() == "withdrawn"
        alice.pump_until(lambda: not app.worker.running, 15, "worker stopped")
        deadline = time.monotonic() + 10
        while "ended (peer_hangup)" not in bob.log():
            assert time.monotonic() < deadline, f"bob never heard CALL_END:\n{bob.log()}"
            time.sleep(0.1)
    finally:
        bob.stop()
