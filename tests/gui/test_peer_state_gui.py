"""The call experience in a real window under Xvfb, against a real peer: ``vcall agent`` with
media (the stamped test pattern) that mutes and pauses on command, so that the window shows
why ("bob paused their video" over the last frame, "bob is muted"), and the window's own mute
(button and M key, in step) and pause reach the agent as ``peer_media`` events. Screenshots
show each state. While the call is up, the agent freezes (SIGSTOP) to bring on the
reconnecting banner, and a third agent calls to find alice busy: she learns that it tried."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.discovery import DiscoveryProcess
from tests.gui.agent import Agent
from tests.gui.harness import Client, crop
from tests.gui.test_call_gui import log_in
from tests.gui.test_history_gui import rows
from vcall.config import Config
from vcall.gui.history import Outcome
from vcall.gui.model import Phase, Screen
from vcall.gui.video import VideoView

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("no_leaks")]

Shot = Callable[[str], np.ndarray]


@pytest.fixture
def alice(
    xvfb_display: str, tmp_path: Path, discovery_server: DiscoveryProcess
) -> Iterator[Client]:
    config = Config(server_host="127.0.0.1", server_port=discovery_server.port, ring_timeout=20)
    client = Client(config, tmp_path / "alice.json", geometry="1100x600+0+0")
    log_in(client, "alice", discovery_server)
    yield client
    client.close()


def call_bob(alice: Client, bob: Agent) -> None:
    """Dial bob from the list, as a user would, and wait for his video."""
    app = alice.app
    deadline = time.monotonic() + 30
    while "bob" not in app.main.visible_nicks():
        assert bob.proc.poll() is None, f"agent died:\n{bob.log_path.read_text()}"
        assert time.monotonic() < deadline, "bob never listed"
        alice.click(app.main.refresh_button)
        alice.pump(0.3)
    alice.double_click_row(app.main.tree, "bob")
    alice.pump_until(lambda: app.model.phase is Phase.CONNECTED, 30, "bob answers")
    alice.pump_until(lambda: app.call.peer_view.frames_shown > 5, 20, "bob's video")


def overlay_on_screen(image: np.ndarray, view: VideoView, label: str) -> np.ndarray:
    """The pixels of one of ``view``'s overlays (``"notice"`` or ``"mark"``) in a screenshot."""
    widget = getattr(view, label)
    box = (widget.winfo_rootx(), widget.winfo_rooty(), widget.winfo_width(), widget.winfo_height())
    return crop(image, box)


def assert_overlay(
    image: np.ndarray, view: VideoView, label: str, rgb: tuple[int, int, int]
) -> None:
    """The overlay is drawn: most of its box has its background colour (the rest is text)."""
    pixels = overlay_on_screen(image, view, label).reshape(-1, 3).astype(int)
    assert pixels.shape[0] > 100, f"{label} is too small to read"
    close = (np.abs(pixels - np.array(rgb)).max(axis=1) < 12).mean()
    assert close > 0.5, f"{label}: only {close:.0%} of its box has its colour"


def test_peer_state_own_mute_reconnecting_banner_and_a_busy_attempt(
    alice: Client, discovery_server: DiscoveryProcess, screenshot: Shot
) -> None:
    app, call = alice.app, alice.app.call
    bob = Agent(discovery_server, "bob", "--auto-answer", "--preset", "low")
    try:
        call_bob(alice, bob)
        bob.wait_event("started")
        # The ringback played while bob's phone rang (or, with no speaker here, gave way to
        # the bell: pipeline/audio/ring.py), and stopped when he answered.
        assert app.ringer is not None and app.ringer.started == 1 and not app.ringer.playing
        assert call.mute_button.cget("text") == "Mute (M)"
        assert str(call.mute_button.cget("state")) == "normal"

        # bob mutes: a mark over his picture; his video goes on.
        bob.send("mute")
        alice.pump_until(lambda: call.peer_view.mark_shown == "bob is muted", 10, "bob muted")
        shown = call.peer_view.frames_shown
        alice.pump_until(lambda: call.peer_view.frames_shown > shown + 3, 10, "video goes on")
        assert call.peer_view.notice_shown == ""
        assert_overlay(screenshot("peer-muted"), call.peer_view, "mark", (0x30, 0x30, 0x30))

        # bob pauses: why, over his last frame (not a silently frozen picture).
        bob.send("pause")
        alice.pump_until(
            lambda: call.peer_view.notice_shown == "bob paused their video", 10, "bob paused"
        )
        alice.pump(0.5)  # frames in flight when he paused
        shown = call.peer_view.frames_shown
        alice.pump(1.0)
        assert call.peer_view.frames_shown == shown, "bob's video still flows"
        image = screenshot("peer-paused")
        assert_overlay(image, call.peer_view, "notice", (0x8A, 0x1C, 0x1C))
        assert_overlay(image, call.peer_view, "mark", (0x30, 0x30, 0x30))
        assert crop(image, call.peer_view.image_box()).mean() > 40, "the last frame is gone"
        assert "No video" not in call.peer_view.notice_shown

        # Our mute, by the button: the button, our own mark and bob's event agree.
        alice.click(call.mute_button)
        alice.pump_until(lambda: app.model.muted, 10, "muted by the button")
        bob.wait_event("peer_media", muted=True, paused=False)
        assert call.mute_button.cget("text") == "Unmute (M)"
        alice.pump_until(lambda: call.self_view.mark_shown == "Muted (M)", 5, "own mark")
        assert_overlay(screenshot("self-muted"), call.self_view, "mark", (0x30, 0x30, 0x30))
        # ...and M takes it back: the same path, so the button follows.
        alice.key("<m>")
        alice.pump_until(lambda: not app.model.muted, 10, "unmuted by M")
        bob.wait_event("peer_media", muted=False, paused=False)
        assert call.mute_button.cget("text") == "Mute (M)"
        alice.pump_until(lambda: call.self_view.mark_shown == "", 5, "own mark gone")
        # Our pause: bob learns it too.
        alice.key("<v>")
        alice.pump_until(lambda: not app.model.sending, 10, "paused by V")
        bob.wait_event("peer_media", muted=False, paused=True)
        alice.key("<v>")
        alice.pump_until(lambda: app.model.sending, 10, "resumed by V")
        bob.wait_event("peer_media", muted=False, paused=False)

        # bob takes both back: the words go, his video moves again.
        bob.send("unpause")
        bob.send("unmute")
        alice.pump_until(
            lambda: call.peer_view.notice_shown == "" and call.peer_view.mark_shown == "",
            10,
            "bob back",
        )
        shown = call.peer_view.frames_shown
        alice.pump_until(lambda: call.peer_view.frames_shown > shown + 3, 10, "video again")
        screenshot("peer-back")

        # bob freezes (SIGSTOP: no heartbeat, his TCP connection stays up): the call is
        # reconnecting, and a banner over his video counts the silence until he is back.
        bob.proc.send_signal(signal.SIGSTOP)
        try:
            alice.pump_until(
                lambda: call.peer_view.banner_shown.startswith("Reconnecting to bob… "),
                8,
                "the reconnecting banner",
            )
            alice.pump_until(
                lambda: call.peer_view.banner_shown.endswith(("3 s", "4 s")), 5, "it counts"
            )
            assert_overlay(screenshot("reconnecting"), call.peer_view, "banner", (0xFF, 0xB3, 0))
        finally:
            bob.proc.send_signal(signal.SIGCONT)
        alice.pump_until(lambda: call.peer_view.banner_shown == "", 8, "the banner goes")
        assert app.model.phase is Phase.CONNECTED  # the outage did not end the call

        # carol calls while alice is in the call: busy, and alice learns that she tried.
        carol = Agent(discovery_server, "carol", "--no-media", "--call", "alice")
        try:
            assert carol.wait_event("ended")["reason"] == "busy"
        finally:
            carol.stop()
        alice.pump_until(
            lambda: call.notice.cget("text") == "carol tried to call you", 10, "told of carol"
        )
        record = app.call_log.records[0]
        assert (record.peer, record.outcome, record.seen) == ("carol", Outcome.MISSED_BUSY, False)
        assert app.model.phase is Phase.CONNECTED  # the call with bob goes on undisturbed
        screenshot("busy-missed")
        alice.click(call.hangup_button)
        alice.pump_until(lambda: app.model.screen is Screen.MAIN, 15, "hung up")
        assert not app.model.peer_muted and not app.model.peer_paused  # per call
        # The history, on the main screen: the busy attempt, marked unseen, and the call.
        history = rows(alice)
        assert [row[1:3] for row in history[:2]] == [
            ("bob", "↗ answered"),
            ("carol", "↙ missed (busy) ●"),
        ], history
        assert "1 missed" in app.main.recent_tab_title
    finally:
        bob.stop()
