"""The main screen's "Video codec" selector in a real window under Xvfb (issue 10): choosing JPEG
makes the next call JPEG (the status line says so, and so does the callee, a real ``vcall
agent``), the choice is remembered in the state file for the next start, and the configuration
file or flag still wins over it at start."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.discovery import DiscoveryProcess
from tests.gui.harness import Client
from tests.gui.test_call_gui import log_in
from tests.gui.test_incoming_gui import Agent
from vcall.config import Config
from vcall.gui.model import Phase, Screen

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("no_leaks")]

Shot = Callable[[str], np.ndarray]
AUTOMATIC = "Automatic (H.264, else JPEG)"


def test_choosing_jpeg_makes_the_next_call_jpeg_and_is_remembered(
    xvfb_display: str, tmp_path: Path, discovery_server: DiscoveryProcess, screenshot: Shot
) -> None:
    state = tmp_path / "alice.json"
    config = Config(server_host="127.0.0.1", server_port=discovery_server.port, ring_timeout=20)
    bob = Agent(discovery_server, "bob", "--auto-answer")
    alice = Client(config, state, geometry="1100x600+0+0")
    try:
        bob.wait_event("registered")
        app, main = alice.app, alice.app.main
        log_in(alice, "alice", discovery_server)
        assert main.codec.get() == AUTOMATIC  # nothing configured or remembered
        assert str(main.codec.cget("state")) == "readonly"
        assert list(main.codec.cget("values")) == [AUTOMATIC, "H.264", "JPEG"]

        main.codec.set("JPEG")
        main.codec.event_generate("<<ComboboxSelected>>")
        alice.pump_until(
            lambda: main.message.cget("text") == "Video codec for calls: JPEG.", 10, "notice"
        )
        assert app.model.codec_preference == ("JPEG",) and main.codec.get() == "JPEG"
        assert json.loads(state.read_text())["codecs"] == ["JPEG"]  # remembered, nick kept
        assert json.loads(state.read_text())["nick"] == "alice"
        screenshot("main-screen-jpeg")

        alice.type_into(main.call_entry, "bob")
        alice.click(main.call_button)
        alice.pump_until(lambda: app.model.phase is Phase.CONNECTED, 30, "bob answers")
        alice.pump_until(lambda: "JPEG" in app.call.status.cget("text"), 5, "status line")
        status = app.call.status.cget("text")
        assert status.startswith("In call with bob") and status.endswith("RTP JPEG medium")
        started = bob.wait_event("started")
        assert (started["codec"], started["mode"]) == ("JPEG", "rtp")  # the callee agrees
        screenshot("in-call-jpeg")

        alice.click(app.call.hangup_button)
        alice.pump_until(lambda: app.model.screen is Screen.MAIN, 15, "main screen")
        assert main.codec.get() == "JPEG"  # a setting: it outlives the call
    finally:
        alice.close()
        bob.stop()

    # The next start shows the remembered choice; a configured codec wins over it.
    again = Client(config, state, geometry="1100x600+0+0")
    try:
        assert again.app.main.codec.get() == "JPEG"
        assert again.app.model.codec_preference == ("JPEG",)
    finally:
        again.close()
    pinned = Client(Config(codec="H264"), state, geometry="1100x600+0+0")
    try:
        assert pinned.app.main.codec.get() == "H.264"
        assert pinned.app.model.codec_preference == ("H264",)
    finally:
        pinned.close()
    assert json.loads(state.read_text())["codecs"] == ["JPEG"]  # starting changed nothing
