"""Keys, menus, notices over the video, full screen and the picture-in-picture, in a real
window under Xvfb against real peers: a real discovery server process and a headless
``vcall agent`` with the real media pipeline that calls, holds and resumes from its stdin.

What is on screen is asserted from the widgets and from screenshots (the peer's video carries
the stamped test pattern; ours is a file without stamps, so the two pictures can be told apart).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from tkinter import ttk

import numpy as np
import pytest

from pipeline.sources.pattern import read_stamp
from tests.fixtures.discovery import DiscoveryProcess
from tests.gui.agent import Agent
from tests.gui.harness import Client, crop
from tests.gui.test_call_gui import log_in
from vcall.config import Config, load_state
from vcall.gui.dialogs import InfoWindow
from vcall.gui.model import Phase, Screen

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("no_leaks")]

Shot = Callable[[str], np.ndarray]


@pytest.fixture
def alice(
    xvfb_display: str, tmp_path: Path, discovery_server: DiscoveryProcess
) -> Iterator[Client]:
    clip = tmp_path / "clip.mp4"  # our own video: plain blue, no test-pattern stamp in it
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i",
         "color=c=0x1f4fbf:size=320x240:rate=15", "-t", "3", "-pix_fmt", "yuv420p", str(clip)],
        check=True, timeout=60,
    )  # fmt: skip
    config = Config(
        server_host="127.0.0.1", server_port=discovery_server.port, ring_timeout=20,
        source=f"file:{clip}", preset="low",
    )  # fmt: skip
    client = Client(config, tmp_path / "alice.json", geometry="1000x600+0+0")
    yield client
    client.close()


def menu_labels(menu: object) -> list[str]:
    import tkinter as tk

    assert isinstance(menu, tk.Menu)
    last = menu.index("end")
    labels = []
    for index in range(0 if last is None else last + 1):
        if menu.type(index) not in ("separator", "tearoff"):
            labels.append(str(menu.entrycget(index, "label")))
    return labels


def test_menus_help_and_entry_keys(
    alice: Client, discovery_server: DiscoveryProcess, screenshot: Shot
) -> None:
    app, root = alice.app, alice.root
    # The menu bar: vcall (Settings, Quit), Call, View, Help.
    bar = app.menus.bar
    assert menu_labels(bar) == ["vcall", "Call", "View", "Help"]
    assert menu_labels(root.nametowidget(bar.entrycget(0, "menu"))) == [
        "Settings…", "Close window", "Quit",
    ]  # fmt: skip
    assert menu_labels(app.menus.call_menu) == [
        "Hang up", "Hold / resume", "Video on / off", "Mute / unmute", "Next quality",
        "Statistics panel",
    ]  # fmt: skip
    accelerators = [app.menus.call_menu.entrycget(i, "accelerator") for i in range(6)]
    assert accelerators == ["Ctrl+E", "Ctrl+H", "V", "M", "Ctrl+L", "Ctrl+S"]
    assert all(app.menus.call_menu.entrycget(i, "state") == "disabled" for i in range(6))

    # Ctrl+A selects all the text of an entry (Tk's default would move to the line start).
    nick = app.login.entries["nick"]
    alice.type_into(nick, "alice")
    alice.key("<Control-a>")
    assert nick.selection_present() and nick.selection_get() == "alice"

    log_in(alice, "alice", discovery_server)
    # Plain keys go into entries: "v" and "m" are typed, not shortcuts (and not on this screen).
    alice.type_into(app.main.filter_entry, "vm")
    assert app.main.filter_text.get() == "vm"
    # Escape on the main screen does nothing (there is no call to hang up, no full screen).
    alice.key("<Escape>")
    assert app.model.screen is Screen.MAIN

    # F1 lists the shortcuts; Escape closes the list, not anything else.
    alice.key("<F1>")
    window = app.info_window
    assert isinstance(window, InfoWindow) and window.winfo_exists()
    alice.pump_until(window.winfo_viewable, 5, "shortcuts window mapped")
    keys = [key for key, _what in window.rows]
    for key in ("Ctrl+Q", "Ctrl+W", "V", "M", "F11", "Esc", "F1", "Ctrl+E", "Ctrl+H"):
        assert key in keys
    screenshot("shortcuts")
    window.close_button.focus_force()
    alice.key("<Escape>")
    assert not window.winfo_exists()
    assert app.model.screen is Screen.MAIN and not app._exiting

    # Settings and About open from the menu, and Ctrl+W closes them, not the application.
    app.show_settings()
    window = app.info_window
    assert window is not None
    alice.pump_until(window.winfo_viewable, 5, "settings window mapped")
    rows = dict(window.rows)
    assert rows["Discovery server"] == f"127.0.0.1:{discovery_server.port}"
    assert rows["Quality"] == "low"
    screenshot("settings")
    window.close_button.focus_force()
    alice.key("<Control-w>")
    assert not window.winfo_exists() and not app._exiting
    app.show_about()
    assert app.info_window is not None and app.info_window.rows[0][0] == "What"
    app.info_window.destroy()

    # Ctrl+Q quits: the window goes, the worker unregisters and stops.
    app.main.filter_entry.focus_force()
    alice.key("<Control-q>")
    assert app._exiting and not root.winfo_viewable()
    alice.pump_until(lambda: not app.worker.running, 15, "worker stopped after Ctrl+Q")


def large(client: Client, shot: Shot, name: str) -> np.ndarray:
    return crop(shot(name), client.app.call.peer_view.image_box())


def small(client: Client, shot: Shot, name: str) -> np.ndarray:
    return crop(shot(name), client.app.call.self_view.image_box())


def plain_blue(image: np.ndarray) -> bool:
    """Our own video (the plain blue clip), with room for the notice and the codec's noise."""
    blue = np.abs(image.astype(int) - (0x1F, 0x4F, 0xBF)).max(axis=2) < 40
    return image.size > 0 and float(blue.mean()) > 0.8


def test_in_call_keys_notices_fullscreen_and_pip(
    alice: Client, discovery_server: DiscoveryProcess, screenshot: Shot
) -> None:
    app, call = alice.app, alice.app.call
    log_in(alice, "alice", discovery_server)
    bob = Agent(discovery_server, "bob", "--preset", "low", "--call", "alice")  # with media
    try:
        alice.pump_until(lambda: app.incoming is not None, 30, "bob's call rings")
        incoming = app.incoming
        assert incoming is not None
        alice.click(incoming.accept_button)
        alice.pump_until(lambda: app.model.phase is Phase.CONNECTED, 20, "connected")
        alice.pump_until(lambda: call.peer_view.frames_shown > 5, 20, "bob's video")
        alice.pump_until(lambda: call.self_view.frames_shown > 5, 20, "our video")
        assert all(app.menus.call_menu.entrycget(i, "state") == "normal" for i in range(6))
        # Connection quality in plain words and bars: loopback is excellent or good.
        alice.pump_until(lambda: call.quality_level > 0, 15, "a quality figure")
        assert call.quality_level >= 3
        assert call.quality_label.cget("text") in ("Excellent connection", "Good connection")
        lit = [call.quality_bars.itemcget(i, "fill") for i in call.quality_bars.find_withtag("bar")]
        assert len(lit) == 4 and len(set(lit[: call.quality_level])) == 1
        # The theme follows the View menu: dark, then light again.
        app.set_theme("dark")
        assert ttk.Style(alice.root).theme_use() == "sun-valley-dark"
        alice.pump(0.5)
        screenshot("in-call-dark")
        app.set_theme("light")
        assert ttk.Style(alice.root).theme_use() == "sun-valley-light"
        assert load_state(app._state_file).theme == "light"  # remembered for the next start
        # The self view is a picture-in-picture inside the large view, bottom right.
        x, y = call.pip_offset()
        area = call.peer_view.area
        assert x > area[0] // 2 and y > area[1] // 2
        assert x + call.self_view.winfo_width() <= area[0]
        assert read_stamp(large(alice, screenshot, "pip")) is not None  # bob's pattern, large
        assert read_stamp(small(alice, screenshot, "pip-small")) is None  # our file, small

        # Escape never hangs up.
        call.focus_force()
        alice.key("<Escape>")
        alice.pump(0.5)
        assert app.model.phase is Phase.CONNECTED

        # M mutes the microphone (the call manager decides what is sent); M again unmutes.
        alice.key("<m>")
        alice.pump_until(lambda: app.model.muted, 10, "muted")
        alice.pump_until(lambda: "muted" in call.status.cget("text"), 10, "muted shown")
        assert app.model.sending  # a mute is not a video pause
        alice.key("<m>")
        alice.pump_until(lambda: not app.model.muted, 10, "unmuted")

        # V turns our video off: the self view says so; V again turns it back on.
        alice.key("<v>")
        alice.pump_until(lambda: not app.model.sending, 10, "video off")
        assert call.self_target.notice_shown == "Your video is off (V turns it on)"
        assert call.pause_button.cget("text") == "Start video (V)"
        assert call.no_video_shown == ""  # bob's picture is not ours to mark
        screenshot("video-off")
        alice.key("<V>")  # Caps Lock on
        alice.pump_until(lambda: app.model.sending, 10, "video on")
        assert call.self_target.notice_shown == ""

        # bob holds: his picture stays (the last frame) under the words; then resumes.
        bob.send("hold")
        alice.pump_until(lambda: app.model.hold_remote, 10, "held by bob")
        alice.pump(0.3)
        assert call.no_video_shown == "bob put the call on hold"
        assert call.self_target.notice_shown == "On hold: not sent"
        held = large(alice, screenshot, "held-by-bob")
        assert held.mean() > 40, "the last frame is gone"
        bob.send("resume")
        alice.pump_until(lambda: not app.model.hold_remote, 10, "resumed by bob")
        alice.pump(0.3)
        assert call.no_video_shown == "" and call.self_target.notice_shown == ""
        # We hold: the words say how to resume.
        alice.key("<Control-h>")
        alice.pump_until(lambda: app.model.hold_local, 10, "held by us")
        alice.pump(0.3)
        assert call.no_video_shown == "On hold: Ctrl+H resumes"
        screenshot("held-by-us")
        alice.key("<Control-h>")
        alice.pump_until(lambda: not app.model.hold_local, 10, "resumed by us")

        # F11: the video fills the screen (toolbar, statistics and status bar gone); Escape
        # leaves full screen and the call goes on.
        before = alice.root.winfo_width()
        alice.key("<F11>")
        alice.pump(0.5)
        assert call.fullscreen
        assert not call.toolbar.winfo_ismapped() and not call.status_bar.winfo_ismapped()
        assert call.peer_view.winfo_width() >= alice.root.winfo_screenwidth() - 4
        screenshot("fullscreen")
        alice.key("<Escape>")
        alice.pump(0.5)
        assert not call.fullscreen and call.toolbar.winfo_ismapped()
        assert alice.root.winfo_width() == before
        assert app.model.phase is Phase.CONNECTED
        # A double-click on the video enters full screen too.
        for _ in range(2):
            call.peer_view.event_generate("<ButtonPress-1>", x=50, y=50)
            call.peer_view.event_generate("<ButtonRelease-1>", x=50, y=50)
        alice.pump(0.5)
        assert call.fullscreen
        alice.key("<F11>")
        alice.pump(0.5)
        assert not call.fullscreen

        # The picture-in-picture is dragged to the top left; it stays whole inside the view.
        pip = call.self_view
        pip.event_generate("<ButtonPress-1>", x=10, y=10, rootx=500, rooty=400)
        pip.event_generate("<B1-Motion>", x=10, y=10, rootx=-2000, rooty=-2000)
        pip.event_generate("<ButtonRelease-1>", x=10, y=10, rootx=-2000, rooty=-2000)
        alice.pump(0.3)
        assert call.pip_offset() == (8, 8)
        screenshot("pip-moved")
        # Swapped: our file large, bob's pattern small.
        app.swap_views()
        time.sleep(0.1)
        alice.pump(1.0)
        assert read_stamp(large(alice, screenshot, "swapped")) is None
        # The picture-in-picture is too small for the stamp to be read: bob's many colours,
        # not our plain blue.
        assert plain_blue(large(alice, screenshot, "swapped-large"))
        assert not plain_blue(small(alice, screenshot, "swapped-small"))
        app.swap_views()
        alice.pump(1.0)
        # (The picture-in-picture, top left now, covers the stamp of bob's picture.)
        assert not plain_blue(large(alice, screenshot, "unswapped"))
        assert plain_blue(small(alice, screenshot, "unswapped-small"))
        # Hidden from the View menu's check box, shown again.
        app.menus.pip_shown.set(False)
        app.menus.view_menu.invoke(1)  # toggles the variable back to True and calls the command
        assert call.pip_visible and pip.winfo_ismapped()
        app.menus.view_menu.invoke(1)
        alice.pump(0.2)
        assert not call.pip_visible and not pip.winfo_ismapped()
        screenshot("pip-hidden")

        # Ctrl+E hangs up.
        alice.key("<Control-e>")
        alice.pump_until(lambda: app.model.screen is Screen.MAIN, 15, "main screen")
    finally:
        bob.stop()
