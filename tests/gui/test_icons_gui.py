"""Icons on the call controls, the window icon, and HiDPI scaling (issue 15).

The drawing alone; then real windows under Xvfb: the call screen's buttons show their icons
(read back from a screenshot: the red of "Hang up"), the window icon reaches the X server
(``xprop`` reads _NET_WM_ICON at 32, 64 and 128 px), and on a 192 dpi screen (a private Xvfb
started with ``-dpi 192``) the icons are drawn twice as big.
"""

from __future__ import annotations

import gc
import os
import re
import subprocess
import sys
import tkinter as tk
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.gui.harness import crop
from vcall.gui.call_screen import CallScreen
from vcall.gui.icons import (
    APP_ICON_SIZES,
    BASE_ICON_PX,
    ICON_NAMES,
    Icons,
    draw,
    env_scale,
    ui_scale,
)
from vcall.gui.model import Phase, Screen, UiModel, status_line
from vcall.gui.theme import apply_theme

Shot = Callable[[str], np.ndarray]


@pytest.mark.parametrize("name", ICON_NAMES)
@pytest.mark.parametrize("size", [8, 20, 40, 128])
def test_icons_are_drawn_at_any_size_on_a_clear_ground(name: str, size: int) -> None:
    icon = draw(name, size)
    assert icon.shape == (size, size, 4) and icon.dtype == np.uint8
    opaque = icon[..., 3] > 200
    assert opaque.mean() > 0.15, "hardly anything drawn"
    if name != "app":  # the app icon is a full rounded square
        assert icon[0, 0, 3] == 0 and icon[-1, -1, 3] == 0  # transparent corners
    assert not icon[icon[..., 3] == 0, :3].any()  # no colour under full transparency


def test_hang_up_is_red_and_bad_requests_are_refused() -> None:
    icon = draw("hangup", 64)
    b, g, r, a = (int(v) for v in icon[4, 32])  # the top of the red disc
    assert a == 255 and r > 180 and g < 80 and b < 80
    with pytest.raises(ValueError, match="no icon"):
        draw("nope", 20)
    with pytest.raises(ValueError, match=r"not in 8\.\.512"):
        draw("hold", 4)


@pytest.fixture
def call_screen(xvfb_display: str) -> Iterator[tuple[tk.Tk, CallScreen]]:
    root = tk.Tk()
    apply_theme(root, "light")
    call = CallScreen(
        root, on_hangup=lambda: None, on_hold=lambda _h: None, on_pause=lambda _p: None,
        on_preset=lambda _n: None, on_source=lambda _s: None,
        on_display_size=lambda _a, _b: None, cameras=[],
    )  # fmt: skip
    call.pack(fill="both", expand=True)
    model = UiModel(screen=Screen.CALL, phase=Phase.CONNECTED, nick="alice", peer="bob",
                    mode="rtp", connected_at=0.0)  # fmt: skip
    call.render(model, status_line(model, 5.0))
    root.geometry("1000x600+0+0")
    for _ in range(20):
        root.update()
    yield root, call
    root.destroy()
    del call, root
    gc.collect()


def test_call_controls_show_their_icons(
    call_screen: tuple[tk.Tk, CallScreen], screenshot: Shot
) -> None:
    root, call = call_screen
    for button in (call.hangup_button, call.hold_button, call.pause_button, call.stats_button):
        assert str(button.cget("image")), f"{button} has no icon"
        assert str(button.cget("compound")) == "left"  # beside its words, which stay
    shot = screenshot("call-controls")
    button = call.hangup_button
    box = (button.winfo_rootx(), button.winfo_rooty(), button.winfo_width(), button.winfo_height())
    pixels = crop(shot, box).reshape(-1, 3).astype(int)
    red = (pixels[:, 0] > 180) & (pixels[:, 1] < 90) & (pixels[:, 2] < 90)
    assert red.sum() > 40, "no red hang-up icon on the Hang up button"
    assert call.icons.size == round(BASE_ICON_PX * ui_scale(root))


def _net_wm_icon_sizes(title: str, display: str) -> list[tuple[int, int]]:
    """The icon sizes X windows named ``title`` carry (found by xdotool, read by xprop)."""
    env = {**os.environ, "DISPLAY": display}
    ids = subprocess.run(
        ["xdotool", "search", "--name", title], capture_output=True, text=True, timeout=10,
        check=False, env=env,
    ).stdout.split()  # fmt: skip
    sizes = []
    for window_id in ids:
        out = subprocess.run(
            ["xprop", "-display", display, "-id", window_id, "_NET_WM_ICON"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout  # fmt: skip
        sizes += [(int(w), int(h)) for w, h in re.findall(r"Icon \((\d+) x (\d+)\)", out)]
    return sizes


def test_the_window_icon_reaches_the_x_server(xvfb_display: str) -> None:
    root = tk.Tk()
    try:
        title = f"vcall icon test {os.getpid()}"
        root.title(title)
        icons = Icons(root)
        root.iconphoto(True, *icons.app())
        for _ in range(10):
            root.update()
        sizes = _net_wm_icon_sizes(title, xvfb_display)
        assert sorted(sizes) == [(s, s) for s in APP_ICON_SIZES], sizes
    finally:
        root.destroy()


@pytest.fixture
def hidpi_display() -> Iterator[str]:
    """A private Xvfb at 192 dpi."""
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [
            *("Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1280x1024x24"),
            *("-dpi", "192", "-nolisten", "tcp"),
        ],
        pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as pipe:
            number = pipe.readline().strip()
        assert number, "Xvfb did not start"
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_icons_scale_with_the_screen_dpi(hidpi_display: str) -> None:
    # In a child process: Tk keeps its connection to a display until the process exits, and
    # an X server that goes away under a live connection makes Tk exit the whole process.
    code = (
        "import tkinter as tk\n"
        "from vcall.gui.icons import Icons, ui_scale\n"
        f"root = tk.Tk(screenName={hidpi_display!r})\n"
        "icons = Icons(root)\n"
        "print(round(ui_scale(root), 2), icons.size, icons.get('hangup').width())\n"
        "root.destroy()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    scale, size, width = done.stdout.split()
    assert float(scale) == pytest.approx(2.0, rel=0.05)
    assert (int(size), int(width)) == (40, 40)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"VCALL_SCALE": "1.5", "GDK_SCALE": "2"}, 1.5),  # the user's own setting wins
        ({"GDK_SCALE": "2"}, 2.0),
        ({"GDK_SCALE": "2", "GDK_DPI_SCALE": "0.75"}, 1.5),
        ({"GDK_DPI_SCALE": "1.25"}, 1.25),
        ({"QT_SCALE_FACTOR": "1.75"}, 1.75),
        ({"GDK_SCALE": "abc", "QT_SCALE_FACTOR": "2"}, 2.0),  # unreadable: ignored
        ({"VCALL_SCALE": "40"}, None),  # absurd: ignored
        ({"VCALL_SCALE": "nan"}, None),
    ],
)
def test_the_desktop_scale_comes_from_the_environment(
    environ: dict[str, str], expected: float | None
) -> None:
    assert env_scale(environ) == (None if expected is None else pytest.approx(expected))


def _fonts_and_icons(display: str, scale: str | None) -> tuple[float, float, int, int]:
    code = (
        "import tkinter as tk, tkinter.font as tkfont\n"
        "from vcall.gui.icons import Icons, apply_scaling\n"
        f"root = tk.Tk(screenName={display!r})\n"
        "scale = apply_scaling(root)\n"
        "print(scale, float(root.tk.call('tk', 'scaling')),\n"
        "      tkfont.nametofont('TkDefaultFont').metrics('linespace'), Icons(root).size)\n"
        "root.destroy()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GDK_", "QT_", "VCALL_S"))}
    if scale is not None:
        env["VCALL_SCALE"] = scale
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False,
        cwd=Path(__file__).resolve().parents[2], env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    ui, tk_scaling, linespace, icon = done.stdout.split()
    return float(ui), float(tk_scaling), int(linespace), int(icon)


def test_a_scaled_desktop_scales_fonts_and_icons_on_a_96_dpi_screen(xvfb_display: str) -> None:
    """GNOME/KDE scaling on X reports about 96 dpi and says 2x in the environment: fonts (in
    points) and icons grow with it."""
    plain = _fonts_and_icons(xvfb_display, None)
    scaled = _fonts_and_icons(xvfb_display, "2")
    assert plain[0] < 1.2 and plain[3] == round(BASE_ICON_PX * plain[0])  # Xvfb: ~100 dpi
    assert scaled[0] == 2.0 and scaled[3] == 40
    assert scaled[1] == pytest.approx(2 * 96 / 72, rel=0.01)
    assert scaled[2] >= 1.7 * plain[2], (plain, scaled)
