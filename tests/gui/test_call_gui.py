"""The whole call journey in real windows under Xvfb, with real parts: a real discovery server
process, a second real client window in its own process (``vcall gui --auto-accept``), the real
call manager and media pipeline. The test drives the in-process window with generated events
and checks screenshots: the peer's video area shows the moving, stamped test pattern."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest

from pipeline.sources.pattern import Stamp, read_stamp
from pipeline.stats import MediaStats
from pipeline.wire.sdp import parse_sdp
from tests.fixtures.discovery import DiscoveryProcess
from tests.gui.harness import Client, crop
from vcall.config import Config
from vcall.gui.call_screen import FILE_LABEL, PATTERN_LABEL
from vcall.gui.model import Phase, Screen

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("no_leaks")]

Shot = Callable[[str], np.ndarray]


class PeerWindow:
    """``vcall gui`` in its own process, logged in; its log goes to a file."""

    def __init__(self, server: DiscoveryProcess, tmp: Path, nick: str, *extra: str) -> None:
        self.log_path = tmp / f"{nick}.log"
        cmd = [
            sys.executable, "-m", "vcall", "gui", "--server", f"127.0.0.1:{server.port}",
            "--nick", nick, "--password", "pw", "--auto-login", "--geometry", "640x400+0+620",
            "--state-file", str(tmp / f"{nick}.json"), "--die-with-parent", str(os.getpid()),
            *extra,
        ]  # fmt: skip
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # the client hangs up and closes on SIGTERM
        try:
            code = self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"peer window ignored SIGTERM:\n{self.log()}") from None
        assert code == 0, f"peer window exited with {code}:\n{self.log()}"


@pytest.fixture
def alice(
    xvfb_display: str, tmp_path: Path, discovery_server: DiscoveryProcess
) -> Iterator[Client]:
    config = Config(server_host="127.0.0.1", server_port=discovery_server.port, ring_timeout=20)
    client = Client(config, tmp_path / "alice.json", geometry="1100x600+0+0")
    yield client
    client.close()


def log_in(client: Client, nick: str, server: DiscoveryProcess) -> None:
    client.login(nick, "pw", f"127.0.0.1:{server.port}")
    client.pump_until(lambda: client.app.model.screen is Screen.MAIN, 20, f"{nick} logged in")


def wait_listed(client: Client, nick: str, peer: PeerWindow) -> None:
    main = client.app.main
    deadline = time.monotonic() + 30
    while nick not in main.visible_nicks():
        assert peer.proc.poll() is None, f"peer window died:\n{peer.log()}"
        assert time.monotonic() < deadline, f"{nick} never listed:\n{peer.log()}"
        client.click(main.refresh_button)
        client.pump(0.3)


def peer_area(client: Client, shot: Shot, name: str) -> np.ndarray:
    return crop(shot(name), client.app.call.peer_view.image_box())


def self_area(client: Client, shot: Shot, name: str) -> np.ndarray:
    return crop(shot(name), client.app.call.self_view.image_box())


def stamp_of(image: np.ndarray, what: str) -> Stamp:
    stamp = read_stamp(image)
    assert stamp is not None, f"{what}: no test-pattern stamp readable"
    return stamp


def assert_moving(client: Client, shot: Shot, name: str) -> None:
    """Two screenshots of the peer's video: the stamped pattern, not black, and moving."""
    first = peer_area(client, shot, f"{name}-1")
    client.pump(0.5)
    second = peer_area(client, shot, f"{name}-2")
    assert first.shape == second.shape and first.shape[0] > 100 and first.shape[1] > 100
    assert first.mean() > 40, "peer video area is black"
    assert np.abs(first.astype(int) - second.astype(int)).mean() > 1.0, "peer video is frozen"
    a, b = stamp_of(first, name), stamp_of(second, name)
    assert b.frame_id > a.frame_id, f"{name}: frame ids do not advance ({a} -> {b})"


def stage_of(peer: PeerWindow, stage: str) -> psutil.Process:
    """One of the peer window's media stage processes (named ``vcall-<stage>``)."""
    for child in psutil.Process(peer.proc.pid).children(recursive=True):
        if child.name() == f"vcall-{stage}":
            return child
    raise AssertionError(f"peer has no vcall-{stage} process")


def wait_stats(client: Client, check: Callable[[MediaStats], bool], what: str) -> None:
    def ready() -> bool:
        stats = client.app.last_stats
        return stats is not None and check(stats)

    client.pump_until(ready, 15, what)


def test_call_hold_resume_quality_source_hangup(
    alice: Client, discovery_server: DiscoveryProcess, tmp_path: Path, screenshot: Shot
) -> None:
    video = tmp_path / "clip.mp4"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=30",
         "-t", "2", "-pix_fmt", "yuv420p", str(video)],
        check=True, timeout=60,
    )  # fmt: skip
    bob = PeerWindow(discovery_server, tmp_path, "bob", "--auto-accept")
    try:
        app = alice.app
        log_in(alice, "alice", discovery_server)
        wait_listed(alice, "bob", bob)
        alice.type_into(app.main.filter_entry, "bo")
        alice.double_click_row(app.main.tree, "bob")
        alice.pump_until(lambda: app.model.screen is Screen.CALL, 10, "call screen")
        alice.pump_until(
            lambda: app.model.phase is Phase.CONNECTED, 30, f"bob answers\n{bob.log()}"
        )
        alice.pump_until(lambda: app.call.peer_view.frames_shown > 10, 20, "peer video")
        assert "In call with bob" in app.call.status.cget("text")
        assert alice.root.title() == "vcall — alice — in call with bob"
        # The shortcuts are listed, with their keys, in the (now enabled) Call menu.
        menu = app.menus.call_menu
        assert [menu.entrycget(i, "accelerator") for i in range(6)] == [
            "Ctrl+E", "Ctrl+H", "V", "M", "Ctrl+L", "Ctrl+S",
        ]  # fmt: skip
        assert all(menu.entrycget(i, "state") == "normal" for i in range(6))
        assert_moving(alice, screenshot, "in-call")
        assert app.call.self_view.frames_shown > 0

        # Hold (shortcut): video stops both ways; the last frame stays on screen.
        alice.key("<Control-h>")
        alice.pump_until(lambda: app.model.hold_local, 10, "hold")
        assert app.call.hold_button.cget("text") == "Resume"
        alice.pump(1.0)  # frames in flight land
        held_a = peer_area(alice, screenshot, "held-1")
        alice.pump(0.7)
        held_b = peer_area(alice, screenshot, "held-2")
        assert stamp_of(held_a, "held") == stamp_of(held_b, "held"), "video moves while held"
        assert "on hold" in app.call.status.cget("text")
        assert alice.root.title() == "vcall — alice — in call with bob (on hold)"

        # Resume (button): moving again.
        alice.click(app.call.hold_button)
        alice.pump_until(lambda: not app.model.hold_local, 10, "resume")
        alice.pump(1.0)
        assert_moving(alice, screenshot, "resumed")
        assert app.call.no_video_shown == ""  # the video came back within 3 s of the resume

        # bob's video stops (his capture stage stopped; call control goes on): after 3 s a
        # banner over the video says so, counting; it goes when the frames are back. (Not the
        # send stage: the H.264 frames it would skip are references of the ones after them.)
        capture = stage_of(bob, "capture")
        capture.send_signal(signal.SIGSTOP)
        try:
            alice.pump_until(lambda: app.call.no_video_shown, 6, "no-video banner")
            stopped = app.call.no_video_shown
            assert stopped.startswith("No video from bob for "), stopped
            alice.pump_until(
                lambda: app.call.no_video_shown not in ("", stopped), 3, "the banner counts on"
            )
            screenshot("no-video")
        finally:
            capture.send_signal(signal.SIGCONT)
        alice.pump_until(lambda: not app.call.no_video_shown, 10, "banner gone with the video")
        assert app.model.phase is Phase.CONNECTED
        assert app.last_stats is not None and app.last_stats.freezes.longest_gap_ms > 3000
        assert_moving(alice, screenshot, "after-stop")

        # A smaller window: the display stage is asked for the new size, and the picture fits.
        alice.root.geometry("800x480+0+0")
        alice.pump_until(
            lambda: app.call.peer_view.image_box()[2] <= app.call.peer_view.area[0] < 700,
            15, "video re-fitted to the smaller window",
        )  # fmt: skip
        # Let the layout settle (the side column's width follows its widest statistic).
        settled: list[tuple[int, int, int, int]] = []

        def steady() -> bool:
            settled.append(app.call.peer_view.image_box())
            alice.pump(0.3)
            return app.call.peer_view.image_box() == settled[-1]

        alice.pump_until(steady, 15, "layout settles")
        x, y, w, h = app.call.peer_view.image_box()
        assert x + w <= alice.root.winfo_rootx() + 800 and y + h <= alice.root.winfo_rooty() + 480
        assert_moving(alice, screenshot, "resized")
        alice.root.geometry("1100x600+0+0")

        # Pause sending (button), resume sending (the V key, as in Jitsi and Meet).
        alice.click(app.call.pause_button)
        wait_stats(alice, lambda s: s.info.sending is False, "sending paused")
        assert "sending paused" in app.call.status.cget("text")
        alice.key("<v>")
        wait_stats(alice, lambda s: s.info.sending is True, "sending resumed")

        # Quality: the selector, then the shortcut (next preset).
        app.call.quality.set("high")
        app.call.quality.event_generate("<<ComboboxSelected>>")
        wait_stats(alice, lambda s: s.info.preset.size == (1280, 720), "720p")
        alice.key("<Control-l>")
        wait_stats(alice, lambda s: s.info.preset.name == "max", "max quality")
        assert app.call.quality.get() == "max"

        # Source: a video file through the chooser; our self-view stops showing the pattern.
        app.call.ask_file = lambda: str(video)
        app.call.source.set(FILE_LABEL)
        app.call.source.event_generate("<<ComboboxSelected>>")
        wait_stats(alice, lambda s: s.source == f"file:{video}", "file source")
        alice.pump_until(
            lambda: read_stamp(self_area(alice, screenshot, "file-source")) is None,
            10, "self-view shows the file",
        )  # fmt: skip
        assert app.call.source.get() == "File: clip.mp4"
        app.call.source.set(PATTERN_LABEL)
        app.call.source.event_generate("<<ComboboxSelected>>")
        wait_stats(alice, lambda s: s.source == "pattern", "pattern source")

        # Statistics panel: figures and the chart; the shortcut hides and shows it.
        assert app.call.stats_visible
        figures = dict(app.call.stats.history.series("fps_in") and [("ok", "")])
        assert figures, "no statistics arrived"
        assert app.last_stats is not None and app.last_stats.fps_shown > 0
        # Save SDP (issue #6): the RTP stream we send, as ffplay / GStreamer read it.
        sdp_path = tmp_path / "alice.sdp"
        app.call.ask_sdp_path = lambda: str(sdp_path)
        alice.click(app.call.stats.save_sdp_button)
        alice.pump_until(sdp_path.exists, 10, "SDP written")
        video_sdp = parse_sdp(sdp_path.read_text(), encodings=("H264", "JPEG"))
        assert f"{video_sdp.address}:{video_sdp.port}" == app.last_stats.info.peer
        # Two vcall peers negotiate H.264 by default (the agent and the GUI offer H264, JPEG).
        assert (video_sdp.encoding, video_sdp.payload_type) == ("H264", 96)
        assert app.last_stats.info.codec_name == "H264"
        # The file lands before the worker's "saved" event reaches Tk: wait for the notice.
        saved = f"SDP saved to {sdp_path}."
        alice.pump_until(lambda: app.call.notice.cget("text") == saved, 10, "SDP notice")
        alice.key("<Control-s>")
        assert not app.call.stats_visible
        alice.key("<Control-s>")
        assert app.call.stats_visible
        screenshot("stats")

        # Hang up (shortcut): back on the main screen with a message.
        alice.key("<Control-e>")
        alice.pump_until(lambda: app.model.screen is Screen.MAIN, 15, "main screen after hangup")
        assert app.main.message.cget("text") == "Call with bob ended."
        assert alice.root.title() == "vcall — alice"
        assert menu.entrycget(0, "state") == "disabled"
        assert app.call.peer_view.frames_shown == 0  # the view was cleared
        screenshot("after-hangup")
    finally:
        bob.stop()
