"""Before any call, the main screen previews the chosen source (the self view) beside its picker,
which offers the test pattern, cameras, the screen (sharing) and a video file (issue 15).

The preview thread alone with real sources; then a real window under Xvfb against a real
discovery server, read back from screenshots: the pattern's machine-readable stamp is in the
preview, goes when the screen is chosen, and the preview lets go of its source while a call is
being made (the capture process needs the camera) and comes back after it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.sources.pattern import read_stamp
from tests.fixtures.discovery import DiscoveryProcess
from tests.gui.harness import Client, crop
from tests.gui.test_call_gui import log_in
from tests.gui.test_incoming_gui import Agent
from vcall.config import Config
from vcall.gui.model import Phase
from vcall.gui.preview import SourcePreview
from vcall.gui.sources import FILE_LABEL, PATTERN_LABEL, SCREEN_LABEL

Shot = Callable[[str], np.ndarray]


def wait(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


# --- the preview thread ------------------------------------------------------------------------


def test_preview_thread_shows_the_pattern_then_a_file_and_lets_go(tmp_path: Path) -> None:
    clip = tmp_path / "red.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 90))
    for _ in range(5):
        writer.write(np.full((90, 160, 3), (0, 0, 255), np.uint8))  # BGR red, 16:9
    writer.release()
    preview = SourcePreview((320, 240), fps=20)
    try:
        preview.start("pattern")
        wait(lambda: (f := preview.latest()) is not None and f[0] >= 3, 10, "pattern frames")
        latest = preview.latest()
        assert latest is not None
        assert read_stamp(latest[1]) is not None  # the stamped pattern, as RGB
        preview.start(f"file:{clip}")
        assert preview.latest() is None  # nothing of the old source after a switch
        wait(lambda: preview.latest() is not None, 10, "file frames")
        latest = preview.latest()
        assert latest is not None
        rgb = latest[1]
        # RGB red, letterboxed: 16:9 in 4:3 leaves black bars above and below.
        assert rgb[120, 160, 0] > 200 and rgb[120, 160, 2] < 60
        assert rgb[:20].max() < 20 and rgb[-20:].max() < 20
        assert preview.spec == f"file:{clip}" and preview.running and not preview.error
    finally:
        preview.stop()
    assert preview.join(5.0), "a preview thread outlived stop()"
    assert not preview.running and preview.latest() is None


def test_preview_of_a_missing_source_says_why(tmp_path: Path) -> None:
    preview = SourcePreview()
    preview.start(f"file:{tmp_path / 'gone.mp4'}")
    wait(lambda: preview.error, 10, "an error")
    assert "no such video file" in preview.error
    assert preview.join(5.0) and preview.latest() is None


# --- the main screen -----------------------------------------------------------------------------


@pytest.fixture
def alice(
    xvfb_display: str, tmp_path: Path, discovery_server: DiscoveryProcess
) -> Iterator[Client]:
    config = Config(server_host="127.0.0.1", server_port=discovery_server.port, ring_timeout=20)
    client = Client(config, tmp_path / "alice.json", geometry="1100x640+0+0")
    yield client
    client.close()


def preview_area(client: Client, shot: Shot, name: str) -> np.ndarray:
    client.pump(0.3)
    client.root.update_idletasks()
    return crop(shot(name), client.app.main.preview.image_box())


@pytest.mark.gui
@pytest.mark.usefixtures("no_leaks")
def test_main_screen_previews_the_chosen_source(
    alice: Client, discovery_server: DiscoveryProcess, screenshot: Shot, tmp_path: Path
) -> None:
    app, main = alice.app, alice.app.main
    log_in(alice, "alice", discovery_server)
    assert main.source.get() == PATTERN_LABEL
    assert list(main.source.cget("values"))[-2:] == [SCREEN_LABEL, FILE_LABEL]
    assert SCREEN_LABEL in list(app.call.source.cget("values"))  # and in the call's picker
    alice.pump_until(lambda: main.preview.frames_shown >= 3, 15, "the preview shows frames")
    first = preview_area(alice, screenshot, "preview-pattern")
    assert first.shape[:2] == (240, 320)
    stamp = read_stamp(first)
    assert stamp is not None, "the pattern's stamp is not in the preview"
    alice.pump(0.5)
    later = read_stamp(preview_area(alice, screenshot, "preview-pattern-later"))
    assert later is not None and later.frame_id > stamp.frame_id  # it moves

    # Screen sharing, chosen in the picker: the preview shows the screen, no stamp.
    main.source.set(SCREEN_LABEL)
    main.source.event_generate("<<ComboboxSelected>>")
    assert app.model.source == "screen"
    alice.pump_until(lambda: app.preview.spec == "screen", 2, "the preview switches")
    alice.pump_until(lambda: app.worker._source == "screen", 10, "the worker takes the screen")
    shown = main.preview.frames_shown
    alice.pump_until(lambda: main.preview.frames_shown >= shown + 3, 15, "screen frames")
    screen = preview_area(alice, screenshot, "preview-screen")
    assert read_stamp(screen) is None
    assert float(screen.std()) > 10  # the desktop with this window in it, not a blank

    # A file that cannot be opened: the preview says so instead of freezing.
    main.ask_file = lambda: str(tmp_path / "missing.mp4")
    main.source.set(FILE_LABEL)
    main.source.event_generate("<<ComboboxSelected>>")
    alice.pump_until(lambda: "No preview" in main.preview._text.cget("text"), 10, "the error")
    assert main.preview._text.winfo_ismapped()
    screenshot("preview-error")

    # Back to the pattern, then a call being made: the preview lets go of its source.
    main.source.set(PATTERN_LABEL)
    main.source.event_generate("<<ComboboxSelected>>")
    alice.pump_until(lambda: app.preview.latest() is not None, 10, "the pattern again")
    gina = Agent(discovery_server, "gina")  # rings, never answers
    try:
        gina.wait_event("registered")
        alice.type_into(main.call_entry, "gina")
        alice.click(main.call_button)
        alice.pump_until(lambda: app.model.phase is Phase.DIALING, 20, "dialling gina")
        alice.pump_until(lambda: not app.preview.spec, 2, "the preview stops")
        assert app.preview.join(5.0), "the preview thread kept its source during the call"
        alice.click(app.call.hangup_button)
        alice.pump_until(lambda: app.model.phase is Phase.IDLE, 20, "the call cancelled")
        alice.pump_until(lambda: app.preview.running, 5, "the preview is back")
        shown = main.preview.frames_shown
        alice.pump_until(lambda: main.preview.frames_shown > shown, 10, "preview frames again")
        assert read_stamp(preview_area(alice, screenshot, "preview-after-call")) is not None
    finally:
        gina.stop()


def test_no_screen_choice_without_a_display(monkeypatch: pytest.MonkeyPatch) -> None:
    from vcall.gui.sources import source_choices, source_label

    monkeypatch.delenv("DISPLAY", raising=False)
    assert list(source_choices(["camera:0"])) == [PATTERN_LABEL, "Camera 0"]
    monkeypatch.setenv("DISPLAY", ":99")
    assert source_choices([])[SCREEN_LABEL] == "screen"
    assert source_label("screen:2") == "Screen 2 (share)"
