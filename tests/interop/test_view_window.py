"""`vcall view` with its Tk window, under the suite's private X server (Xvfb)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from tests.interop.tools import QUADRANTS, free_port, running, send_vcall, wait_bound

pytestmark = [pytest.mark.interop, pytest.mark.gui]


def _area(screen: np.ndarray, rgb: tuple[int, int, int]) -> int:
    """Pixels of the screen within 12 of a colour in every channel."""
    return int((np.abs(screen.astype(int) - np.array(rgb)).max(axis=2) <= 12).sum())


def _shown(before: np.ndarray, during: np.ndarray, colour: tuple[int, int, int]) -> bool:
    return _area(during, colour) - _area(before, colour) > 0.8 * 160 * 112


def test_view_window_shows_the_stream(
    xvfb_display: str, screenshot: Callable[[str], np.ndarray]
) -> None:
    port = free_port()
    cmd = [
        sys.executable, "-m", "vcall", "view", "--rtp", str(port), "--bind", "127.0.0.1",
        "--seconds", "30",
    ]  # fmt: skip
    with running(cmd) as view:
        wait_bound(port, view)
        before = screenshot("before")
        stop = threading.Event()
        sender = threading.Thread(
            target=send_vcall, args=(port, 900), kwargs={"fps": 30, "stop": stop}
        )
        sender.start()
        try:
            # Poll: a loaded machine may take a while to map the window and show a frame.
            deadline = time.monotonic() + 20
            while True:
                time.sleep(0.5)
                during = screenshot("during")
                if all(_shown(before, during, c) for c in QUADRANTS.values()):
                    break
                if time.monotonic() > deadline:
                    break
        finally:
            stop.set()
            sender.join()
        view.terminate()  # SIGTERM: like closing the window
        view.wait(15)
        assert view.stdout is not None
        out = view.stdout.read().decode()
    assert view.returncode == 0, out
    assert "frames 0 " not in out.splitlines()[-1], out
    # Each quadrant of the picture (112 x 160 pixels, minus JPEG edges) is on the screen.
    for colour in QUADRANTS.values():
        assert _shown(before, during, colour), colour
