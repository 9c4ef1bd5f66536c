"""Call screen: the peer's video large, the self-view small, the call's controls, the
statistics panel and a status bar.

Widgets only; every control calls one of the ``on_*`` callbacks given by the app, which posts
the command to the worker. :meth:`CallScreen.render` shows a :class:`~vcall.gui.model.UiModel`.
Keyboard shortcuts (bound by the app while this screen shows, see :data:`SHORTCUTS`).
"""

from __future__ import annotations

import os
import tkinter as tk
from collections.abc import Callable
from tkinter import filedialog, ttk
from tkinter import font as tkfont

from pipeline.presets import PRESET_NAMES
from vcall.gui.logic import fit_text
from vcall.gui.model import Phase, UiModel
from vcall.gui.stats_panel import StatsPanel
from vcall.gui.video import VideoView

# Tk event sequence -> (menu label, short word for the status bar's help line). The app binds
# them and lists them in its "Call" menu with their accelerators, so they stay discoverable even
# when the window is too narrow for the help line.
SHORTCUTS = {
    "<Control-e>": ("Hang up", "hang up"),
    "<Control-h>": ("Hold / resume", "hold"),
    "<Control-p>": ("Pause / resume sending", "pause"),
    "<Control-q>": ("Next quality", "quality"),
    "<Control-s>": ("Statistics panel", "stats"),
}


def key_name(sequence: str) -> str:
    """``"<Control-e>"`` -> ``"Ctrl+E"`` (menus' accelerator text and the help line)."""
    return f"Ctrl+{sequence[-2].upper()}"


# The help line, longest first; the status bar shows the longest that fits (logic.fit_text).
HELP_VARIANTS = (
    " · ".join(f"{key_name(seq)} {label.lower()}" for seq, (label, _w) in SHORTCUTS.items()),
    " · ".join(f"{key_name(seq)} {word}" for seq, (_l, word) in SHORTCUTS.items()),
    "Shortcuts: Call menu",
)
PATTERN_LABEL = "Test pattern"
FILE_LABEL = "Video file…"


def source_label(spec: str) -> str:
    if spec == "pattern":
        return PATTERN_LABEL
    if spec.startswith("file:"):
        return f"File: {os.path.basename(spec[5:])}"
    if spec.startswith("camera:"):
        return f"Camera {spec[7:]}"
    return spec


class CallScreen(ttk.Frame):
    def __init__(
        self,
        master: tk.Misc,
        *,
        on_hangup: Callable[[], None],
        on_hold: Callable[[bool], None],
        on_pause: Callable[[bool], None],
        on_preset: Callable[[str], None],
        on_source: Callable[[str], None],
        on_display_size: Callable[[tuple[int, int], tuple[int, int]], None],
        on_save_sdp: Callable[[str], None] = lambda _path: None,
        cameras: list[str] | None = None,
        peer_size: tuple[int, int] = (800, 450),
    ) -> None:
        super().__init__(master, padding=6)
        self._on_hold = on_hold
        self._on_pause = on_pause
        self._on_preset = on_preset
        self._on_source = on_source
        self._on_display_size = on_display_size
        self._model = UiModel()
        self._on_save_sdp = on_save_sdp
        # Replaced in tests: the file choosers are modal Tk dialogs.
        self.ask_file: Callable[[], str] = lambda: filedialog.askopenfilename(
            parent=self, title="Send a video file"
        )
        self.ask_sdp_path: Callable[[], str] = lambda: filedialog.asksaveasfilename(
            parent=self, title="Save the SDP of the stream we send",
            defaultextension=".sdp", initialfile="vcall.sdp",
        )  # fmt: skip

        self.peer_view = VideoView(
            self, width=peer_size[0], height=peer_size[1], placeholder="Waiting for video…",
            on_resize=lambda _w, _h: self._resized(),
        )  # fmt: skip
        self.peer_view.grid(row=0, column=0, sticky="nsew")
        # Over the top of the peer's video (the last frame stays on screen when it stops):
        # "No video from bob for 4 s" (model.no_video_notice); hidden while there is video.
        self.no_video = tk.Label(
            self.peer_view, text="", foreground="#ffffff", background="#8a1c1c",
            font="TkHeadingFont", padx=10, pady=4,
        )  # fmt: skip
        side = ttk.Frame(self, padding=(6, 0, 0, 0))
        side.grid(row=0, column=1, sticky="ns")
        self._side = side
        self._side_fits: dict[tuple[int, int], int] = {}  # call screen size -> rows (_fit_side)
        self.self_view = VideoView(side, width=192, height=108, placeholder="Self view")
        self.self_view.pack(anchor="n")
        self.stats = StatsPanel(side, on_save_sdp=self.save_sdp)
        self.stats.pack(fill="x", pady=(6, 0))

        # The call's controls under the video: the call actions, then the media settings, which
        # wrap to a second row when the window is too narrow for one (see _wrap_toolbar).
        bar = ttk.Frame(self, padding=(0, 6, 0, 0))
        bar.grid(row=1, column=0, columnspan=2, sticky="we")
        self.toolbar = bar
        actions = ttk.Frame(bar)
        actions.grid(row=0, column=0, sticky="w")
        self.hangup_button = ttk.Button(actions, text="Hang up", command=on_hangup)
        self.hangup_button.pack(side="left")
        self.hold_button = ttk.Button(actions, text="Hold", width=8, command=self.toggle_hold)
        self.hold_button.pack(side="left", padx=(6, 0))
        self.pause_button = ttk.Button(actions, text="Pause", width=14, command=self.toggle_pause)
        self.pause_button.pack(side="left", padx=(6, 0))
        settings = ttk.Frame(bar)
        self._toolbar_parts = (actions, settings)
        settings.grid(row=0, column=1, sticky="w", padx=(12, 0))
        ttk.Label(settings, text="Quality").pack(side="left", padx=(0, 4))
        self.quality = ttk.Combobox(settings, values=PRESET_NAMES, state="readonly", width=7)
        self.quality.pack(side="left")
        self.quality.bind("<<ComboboxSelected>>", lambda _e: self._on_preset(self.quality.get()))
        ttk.Label(settings, text="Source").pack(side="left", padx=(12, 4))
        self._sources: dict[str, str] = {}
        self.source = ttk.Combobox(settings, state="readonly", width=22)
        self.source.pack(side="left")
        self.source.bind("<<ComboboxSelected>>", lambda _e: self._source_chosen())
        self.set_cameras(cameras if cameras is not None else [])
        self.stats_button = ttk.Button(settings, text="Stats", width=6, command=self.toggle_stats)
        self.stats_button.pack(side="left", padx=(12, 0))
        bar.bind("<Configure>", lambda _e: self._wrap_toolbar(), add="+")

        status = ttk.Frame(self, relief="sunken", padding=(4, 2))
        status.grid(row=2, column=0, columnspan=2, sticky="we", pady=(6, 0))
        self.status_bar = status
        self.status = ttk.Label(status, text="", anchor="w")
        self.status.pack(side="left")
        # Messages during the call (a source that fails, "SDP saved"), next to the call state.
        self.notice = ttk.Label(status, text="", foreground="#b00020", anchor="w")
        self.notice.pack(side="left", fill="x", expand=True, padx=(12, 0))
        # The shortcut help: as much of it as fits (re-fitted on resize and on status changes).
        self.help = ttk.Label(status, text=HELP_VARIANTS[0], foreground="#666666")
        self.help.pack(side="right")
        status.bind("<Configure>", lambda _e: self._fit_help(), add="+")
        self.columnconfigure(0, weight=1)
        self.rowconfigure(0, weight=1)

    # ------------------------------------------------------------------------ actions

    def toggle_hold(self) -> None:
        if self._model.phase is Phase.CONNECTED:
            self._on_hold(not self._model.hold_local)

    def toggle_pause(self) -> None:
        if self._model.phase is Phase.CONNECTED:
            self._on_pause(self._model.sending)

    def next_quality(self) -> None:
        names = list(PRESET_NAMES)
        current = names.index(self._model.preset) if self._model.preset in names else 0
        self._on_preset(names[(current + 1) % len(names)])

    def toggle_stats(self) -> None:
        if self.stats.winfo_manager():
            self.stats.pack_forget()
        else:
            self.stats.pack(fill="x", pady=(6, 0))
            self._fit_side()

    def save_sdp(self) -> None:
        path = self.ask_sdp_path()
        if path:
            self._on_save_sdp(path)

    @property
    def stats_visible(self) -> bool:
        return bool(self.stats.winfo_manager())

    def set_cameras(self, cameras: list[str]) -> None:
        self._sources = {PATTERN_LABEL: "pattern"}
        self._sources.update({source_label(c): c for c in cameras})
        self._refresh_sources()

    def _refresh_sources(self) -> None:
        labels = list(self._sources)
        current = source_label(self._model.source)
        if current not in self._sources:
            labels.append(current)
        self.source.configure(values=[*labels, FILE_LABEL])
        self.source.set(current)

    def _source_chosen(self) -> None:
        label = self.source.get()
        if label == FILE_LABEL:
            path = self.ask_file()
            if not path:
                self.source.set(source_label(self._model.source))
                return
            self._on_source(f"file:{path}")
        elif label in self._sources:
            self._on_source(self._sources[label])

    def set_no_video(self, text: str) -> None:
        """Show ``text`` over the peer's video ("" hides it)."""
        if text == self.no_video.cget("text"):
            return
        self.no_video.configure(text=text, wraplength=max(100, self.peer_view.area[0] - 20))
        if text:
            self.no_video.place(relx=0.5, y=10, anchor="n")
            self.no_video.lift()
        else:
            self.no_video.place_forget()

    @property
    def no_video_shown(self) -> str:
        """The banner's text while it is on screen, else ""."""
        return str(self.no_video.cget("text")) if self.no_video.winfo_manager() else ""

    def set_status(self, text: str) -> None:
        if text != self.status.cget("text"):
            self.status.configure(text=text)
            self._fit_help()

    def _fit_help(self) -> None:
        bar = self.status_bar
        font = tkfont.nametofont("TkDefaultFont")
        # The bar's width less its padding, the call state, the notice and a gap.
        free = bar.winfo_width() - 8 - 12 - 12
        free -= font.measure(self.status.cget("text")) + font.measure(self.notice.cget("text"))
        text = fit_text(HELP_VARIANTS, free, font.measure)
        if text != self.help.cget("text"):
            self.help.configure(text=text)

    def _wrap_toolbar(self) -> None:
        actions, settings = self._toolbar_parts
        one_row = actions.winfo_reqwidth() + 12 + settings.winfo_reqwidth()
        row, column, padx = (0, 1, 12) if one_row <= self.toolbar.winfo_width() else (1, 0, 0)
        info = settings.grid_info()
        if (int(info["row"]), int(info["column"])) != (row, column):
            settings.grid_configure(row=row, column=column, padx=(padx, 0), pady=(6 * row, 0))

    def _resized(self) -> None:
        self._fit_side()
        self._report_size()

    def _fit_side(self) -> None:
        """As many statistics rows as the video row's height holds (the chart stays whole).

        The rows shown change the side column's requested size, which feeds back into the
        video's size and so into this method. To make that loop end, the side column's
        geometry is brought up to date before it is read, and for one size of the call screen
        the number of rows may only go down: a cycle between two answers settles on the smaller.
        """
        stats = self.stats
        if not self.stats_visible:
            return
        self._side.update_idletasks()
        row = stats.row_height
        fixed = self._side.winfo_reqheight() - stats.rows_shown * row
        rows = (self.peer_view.winfo_height() - fixed) // row
        screen = (self.winfo_width(), self.winfo_height())
        rows = min(rows, self._side_fits.get(screen, rows))
        self._side_fits[screen] = rows
        stats.set_max_rows(rows)

    def _report_size(self) -> None:
        self._on_display_size(self.peer_view.area, self.self_view.area)

    # ------------------------------------------------------------------------- render

    def render(self, model: UiModel, status: str) -> None:
        self._model = model
        connected = model.phase is Phase.CONNECTED
        state = "normal" if connected else "disabled"
        self.hold_button.configure(text="Resume" if model.hold_local else "Hold", state=state)
        self.pause_button.configure(
            text="Resume sending" if not model.sending else "Pause sending", state=state
        )
        self.quality.set(model.preset)
        self._refresh_sources()
        self.hangup_button.configure(
            text="Cancel call" if model.phase is Phase.DIALING else "Hang up"
        )
        self.notice.configure(
            text=model.message, foreground="#b00020" if model.message_error else "#1b5e20"
        )
        self.status.configure(text=status)
        self._fit_help()
