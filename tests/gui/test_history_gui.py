"""Call history, the missed-call mark, ringing and call-back in a real window under Xvfb,
against a real discovery server and real headless agents (call control only)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
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


@pytest.fixture
def alice(
    xvfb_display: str,
    tmp_path: Path,
    discovery_server: DiscoveryProcess,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Client]:
    # No D-Bus session here: the desktop notification must fail quietly (logged, counted).
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path / 'no-bus'}")
    config = Config(server_host="127.0.0.1", server_port=discovery_server.port, ring_timeout=3)
    client = Client(config, tmp_path / "alice.json", geometry="1000x600+0+0")
    yield client
    client.close()


def rows(client: Client) -> list[tuple[str, ...]]:
    tree = client.app.main.history
    return [
        (str(tree.item(iid, "text")), *map(str, tree.item(iid, "values")))
        for iid in tree.get_children()
    ]


def test_missed_call_history_and_call_back(
    alice: Client,
    discovery_server: DiscoveryProcess,
    tmp_path: Path,
    screenshot: Shot,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    app, main = alice.app, alice.app.main
    log_in(alice, "alice", discovery_server)
    assert rows(alice) == [] and main.recent_tab_title == "Recent calls"

    # bob calls; nobody answers within alice's 3 s: a missed call, marked.
    bob = Agent(discovery_server, "bob", "--call", "alice")
    carol = Agent(discovery_server, "carol", "--auto-deny")
    try:
        alice.pump_until(lambda: app.model.phase is Phase.RINGING, 30, "bob's call rings")
        assert app.rings >= 1  # the terminal bell, until vcall has audio
        assert alice.root.winfo_viewable()
        screenshot("ringing")
        alice.pump_until(lambda: app.model.phase is Phase.IDLE, 15, "the ring times out")
        assert app.rings >= 2  # it rang on while ringing
        assert main.recent_tab_title == "Recent calls ● 1 missed"
        [(when, who, what, duration)] = rows(alice)
        assert (who, what, duration) == ("bob", "↙ missed ●", "")
        assert ":" in when and not when.isdigit()  # a time of day, not an epoch
        assert main.history.tag_has("missed", "0")
        screenshot("missed-mark")
        # No notification server: the failure is logged and counted; the client goes on.
        alice.pump_until(lambda: app.notifier.failed >= 1, 10, "notification attempt")
        assert "desktop notification failed" in caplog.text

        # Looking at the recent calls clears the mark, in the file too.
        main.show_history()
        alice.pump(0.2)
        assert main.recent_tab_title == "Recent calls"
        assert rows(alice)[0][2] == "↙ missed"
        saved = json.loads((tmp_path / "history.json").read_text())
        assert [(r["peer"], r["direction"], r["outcome"], r["seen"]) for r in saved] == [
            ("bob", "incoming", "missed", True)
        ]
        screenshot("history")

        # Call back (double-click on the row): bob answers; a 2 s call is logged with its length.
        bob.wait_event("ended")  # a calling agent exits when its call ends: bob is back,
        bob.stop()  # now answering
        bob = Agent(discovery_server, "bob", "--auto-answer")
        bob.wait_event("registered")
        x, y, _w, h = main.history.bbox("0")  # type: ignore[misc]
        for _ in range(2):  # two quick clicks make Tk's double-click
            main.history.event_generate("<ButtonPress-1>", x=x + 5, y=y + h // 2)
            main.history.event_generate("<ButtonRelease-1>", x=x + 5, y=y + h // 2)
        alice.pump_until(lambda: app.model.phase is Phase.CONNECTED, 20, "bob answers")
        alice.pump(2.2)
        alice.key("<Control-e>")
        alice.pump_until(lambda: app.model.screen is Screen.MAIN, 15, "hung up")
        alice.pump_until(lambda: len(rows(alice)) == 2, 5, "the call logged")
        assert rows(alice)[0][1:] in [("bob", "↗ answered", "0:02"), ("bob", "↗ answered", "0:03")]

        # carol declines: "denied", no duration, no mark.
        alice.type_into(main.call_entry, "carol")
        alice.click(main.call_button)
        alice.pump_until(lambda: len(rows(alice)) == 3, 20, "carol's answer logged")
        assert rows(alice)[0][1:] == ("carol", "↗ denied", "")
        assert main.recent_tab_title == "Recent calls"
        screenshot("history-3")
        app.set_theme("dark")  # the missed row stays marked, in the dark palette's red
        assert str(main.history.tag_configure("missed", "foreground")) == "#ff8a80"
        alice.pump(0.3)
        screenshot("history-3-dark")
    finally:
        bob.stop()
        carol.stop()
    saved = json.loads((tmp_path / "history.json").read_text())
    assert [(r["peer"], r["outcome"]) for r in saved] == [
        ("carol", "denied"), ("bob", "answered"), ("bob", "missed"),
    ]  # fmt: skip
