"""The call screen's layout under Xvfb as the window is resized: nothing a user needs is cut off.

A real Tk window holds a real :class:`CallScreen` (no call: its callbacks only record), rendered
in a connected state with a long status line. At each size, every control of the toolbar lies
fully inside the window, and the status bar's shortcut help is never clipped: it shrinks to a
shorter variant (or a pointer to the "Call" menu) instead. The main screen (with its "Video
codec" selector showing its longest choice) is checked at the same sizes. Screenshots are kept
as artifacts.
"""

from __future__ import annotations

import gc
import tkinter as tk
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from vcall.gui.call_screen import (
    FILE_LABEL,
    HELP_VARIANTS,
    PATTERN_LABEL,
    SCREEN_LABEL,
    CallScreen,
)
from vcall.gui.events import UserRow
from vcall.gui.logic import CODEC_CHOICES, StatsView
from vcall.gui.main_screen import PREVIEW_MIN_WIDTH, MainScreen
from vcall.gui.model import Phase, Screen, UiModel, status_line
from vcall.gui.theme import apply_theme

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("no_leaks")]

Shot = Callable[[str], np.ndarray]


# A panel with every row: headline figures (freezes included), six stage latencies, mode and CPU.
FULL_STATS = StatsView(
    fps_in=30.0, fps_out=30.0, kbps_in=5000, kbps_out=5000, loss_pct=0.0, lost_packets=0,
    rtt_ms=3.0, jitter_ms=0.1, c2d_p50_ms=17, c2d_p95_ms=37, freezes=12, freezes_s=10.8,
    longest_gap_ms=1450, mode="rtp", cpu_pct=50,
    stages=tuple((n, 1.0) for n in ("capture", "encode", "send", "receive", "jitter", "decode")),
)  # fmt: skip
HEADLINE_ROWS = 6  # up to "freezes / longest gap"


THEMES = ["light", "dark"]  # sv-ttk's two modes, as the client uses them (vcall.gui.theme)


@pytest.fixture(params=THEMES)
def screen(xvfb_display: str, request: pytest.FixtureRequest) -> Iterator[tuple[tk.Tk, CallScreen]]:
    root = tk.Tk()
    assert apply_theme(root, request.param) == request.param
    call = CallScreen(
        root,
        on_hangup=lambda: None,
        on_hold=lambda _h: None,
        on_pause=lambda _p: None,
        on_preset=lambda _n: None,
        on_source=lambda _s: None,
        on_display_size=lambda _a, _b: None,
        cameras=["camera:0"],
    )
    call.pack(fill="both", expand=True)
    model = UiModel(
        screen=Screen.CALL, phase=Phase.CONNECTED, nick="alice", peer="bob", mode="rtp",
        connected_at=0.0, hold_local=True, sending=False, preset="medium",
    )  # fmt: skip
    call.render(model, status_line(model, 61.0))
    call.stats.add(FULL_STATS)
    call.set_no_video("No video from bob for 12 s")
    yield root, call
    root.destroy()
    # Release the views' PhotoImages here, on the main thread, not in a later gc elsewhere.
    del call, root
    gc.collect()


def resize(root: tk.Tk, size: str) -> None:
    root.geometry(f"{size}+0+0")
    for _ in range(20):  # the window manager-less server applies it within a few rounds
        root.update()
    root.update_idletasks()


def inside(widget: tk.Misc, root: tk.Tk) -> bool:
    right = widget.winfo_rootx() + widget.winfo_width()
    bottom = widget.winfo_rooty() + widget.winfo_height()
    return (
        right <= root.winfo_rootx() + root.winfo_width()
        and bottom <= root.winfo_rooty() + root.winfo_height()
        and widget.winfo_width() >= widget.winfo_reqwidth()
    )


SIZES = ["1280x600", "1100x500", "900x480", "640x420"]


@pytest.mark.parametrize("size", SIZES)
def test_nothing_is_cut_off(screen: tuple[tk.Tk, CallScreen], size: str, screenshot: Shot) -> None:
    root, call = screen
    resize(root, size)
    assert root.winfo_width() == int(size.split("x", maxsplit=1)[0])
    for widget in (call.hangup_button, call.hold_button, call.pause_button, call.quality,
                   call.source, call.stats_button, call.status):  # fmt: skip
        assert inside(widget, root), f"{widget} cut off at {size}"
    # The no-video banner: whole, over the peer's video.
    banner, video = call.no_video, call.peer_view
    assert call.no_video_shown == "No video from bob for 12 s"
    assert inside(banner, root), f"no-video banner cut off at {size}"
    assert video.winfo_rootx() <= banner.winfo_rootx()
    assert banner.winfo_rootx() + banner.winfo_width() <= video.winfo_rootx() + video.winfo_width()
    help_text = call.help.cget("text")
    assert help_text in (*HELP_VARIANTS, "")
    # The help is shown whole (never clipped), and a wide window shows some of it.
    assert call.help.winfo_width() >= call.help.winfo_reqwidth(), f"help clipped at {size}"
    assert inside(call.help, root) or not help_text
    if root.winfo_width() >= 1100:
        assert help_text, "no shortcut help in a wide window"
    # The statistics: the chart whole and the headline figures shown, whatever the height.
    assert inside(call.stats.chart, root), f"chart cut off at {size}"
    # All headline rows from 480 px up; at the minimum size (two toolbar rows) most of them.
    headline = HEADLINE_ROWS if root.winfo_height() >= 480 else 3
    assert call.stats.rows_shown >= headline
    names = [name.cget("text") for name, _v in call.stats._labels if name.winfo_manager()]
    assert names[:headline] == [name for name, _v in FULL_STATS.lines()[:headline]]
    chart = call.stats.chart
    for item in chart.find_withtag("all"):
        if chart.type(item) == "text" and chart.itemcget(item, "text"):
            assert chart.bbox(item)[2] <= chart.winfo_width() + 1, "chart legend cut off"
    for name, value in call.stats._labels[: call.stats.rows_shown]:
        assert inside(name, root) and inside(value, root)
    image = screenshot(size)
    assert image.shape[1] >= root.winfo_width()


def test_help_follows_the_width(screen: tuple[tk.Tk, CallScreen]) -> None:
    root, call = screen
    resize(root, "1280x600")
    wide = call.help.cget("text")
    resize(root, "640x420")
    narrow = call.help.cget("text")
    assert len(narrow) < len(wide)
    resize(root, "1280x600")
    assert call.help.cget("text") == wide  # growing the window brings it back


def test_stats_rows_follow_the_height(screen: tuple[tk.Tk, CallScreen]) -> None:
    root, call = screen
    resize(root, "1100x1000")
    assert call.stats.rows_shown == len(FULL_STATS.lines())  # room for all
    # The client's smallest window: the self view is a picture-in-picture now, so the side
    # column holds the headline rows at least.
    resize(root, "1100x420")
    assert call.stats.rows_shown >= HEADLINE_ROWS
    resize(root, "1100x300")  # below the client's minimum: fewer rows, the chart whole
    short = call.stats.rows_shown
    assert 0 < short < len(FULL_STATS.lines())
    resize(root, "1100x1000")
    assert call.stats.rows_shown == len(FULL_STATS.lines())


def test_source_selector_lists_cameras_screen_file_and_pattern(
    screen: tuple[tk.Tk, CallScreen],
) -> None:
    _root, call = screen
    values = list(call.source.cget("values"))
    assert values == [PATTERN_LABEL, "Camera 0", SCREEN_LABEL, FILE_LABEL]
    call.set_cameras(["camera:/dev/video0", "camera:/dev/video2"])
    values = list(call.source.cget("values"))
    assert values == [
        PATTERN_LABEL, "Camera /dev/video0", "Camera /dev/video2", SCREEN_LABEL, FILE_LABEL
    ]  # fmt: skip
    chosen: list[str] = []
    call._on_source = chosen.append
    call.source.set("Camera /dev/video2")
    call.source.event_generate("<<ComboboxSelected>>")
    call.source.set(SCREEN_LABEL)  # screen sharing
    call.source.event_generate("<<ComboboxSelected>>")
    call.ask_file = lambda: ""  # the chooser cancelled: nothing sent, the selector restored
    call.source.set(FILE_LABEL)
    call.source.event_generate("<<ComboboxSelected>>")
    assert chosen == ["camera:/dev/video2", "screen"]
    assert call.source.get() == PATTERN_LABEL


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("size", SIZES)
def test_main_screen_nothing_is_cut_off(
    xvfb_display: str, size: str, theme: str, screenshot: Shot
) -> None:
    root = tk.Tk()
    assert apply_theme(root, theme) == theme
    chosen: list[tuple[str, ...]] = []
    main = MainScreen(
        root, on_call=lambda _n: None, on_refresh=lambda: None, on_logout=lambda: None,
        on_exit=lambda: None, on_codecs=chosen.append,
    )  # fmt: skip
    try:
        main.pack(fill="both", expand=True)
        main.set_identity("alice", "127.0.0.1:8000")
        main.set_users([UserRow(f"user{i:02d}", "127.0.0.1", 9000 + i) for i in range(30)])
        main.show_message("Video codec for calls: Automatic (H.264, else JPEG).")
        longest = max(CODEC_CHOICES, key=len)
        main.set_codec_preference(CODEC_CHOICES[longest])
        resize(root, size)
        assert main.codec.get() == longest
        for widget in (main.call_entry, main.call_button, main.codec, main.filter_entry,
                       main.refresh_button, main.call_selected_button, main.logout_button,
                       main.exit_button, main.message):  # fmt: skip
            assert inside(widget, root), f"{widget} cut off at {size}"
        assert main.tree.winfo_height() > 60, f"user list squeezed out at {size}"
        # The preview of one's own video: beside the list when there is room, else hidden.
        wide = int(size.split("x", maxsplit=1)[0]) >= PREVIEW_MIN_WIDTH
        assert main.preview_visible == wide, size
        if wide:
            assert inside(main.preview, root) and inside(main.source, root), size
        screenshot(f"main-{size}-{theme}")
        # The selector posts a choice once (the one shown already is no change).
        main.codec.set("JPEG")
        main.codec.event_generate("<<ComboboxSelected>>")
        main.set_codec_preference(("JPEG",))  # the app renders the worker's answer
        main.codec.event_generate("<<ComboboxSelected>>")
        assert chosen == [("JPEG",)]
    finally:
        root.destroy()
        del main, root
        gc.collect()
