"""Call screen: the peer's video large, the self-view small, the call's controls, the
statistics panel and a status bar.

Widgets only; every control calls one of the ``on_*`` callbacks given by the app, which posts
the command to the worker. :meth:`CallScreen.render` shows a :class:`~vcall.gui.model.UiModel`.
Keyboard shortcuts are bound by the app (:mod:`vcall.gui.shortcuts`).

The large view (:attr:`CallScreen.peer_view`) and the picture-in-picture
(:attr:`CallScreen.self_view`, movable by dragging, hideable) show the peer and oneself, or the
other way round once swapped (:meth:`CallScreen.set_swapped`); :attr:`peer_target` and
:attr:`self_target` say which view shows whom. Notices over each picture say why it stopped
("bob put the call on hold", "Your video is off"). In full screen (:meth:`set_fullscreen`) only
the video and the picture-in-picture remain.
"""

from __future__ import annotations

import os
import tkinter as tk
from collections.abc import Callable
from tkinter import filedialog, ttk
from tkinter import font as tkfont

import platformdirs

from pipeline.presets import PRESET_NAMES
from vcall.gui.audio_controls import AudioControls
from vcall.gui.i18n import _
from vcall.gui.icons import Icons, ui_scale
from vcall.gui.logic import fit_text, pip_box, pip_position
from vcall.gui.model import Phase, UiModel
from vcall.gui.shortcuts import HELP_VARIANTS
from vcall.gui.sources import (
    FILE_LABEL,
    PATTERN_LABEL,
    SCREEN_LABEL,
    VIDEO_FILETYPES,
    source_choices,
    source_label,
)
from vcall.gui.stats_panel import StatsPanel
from vcall.gui.theme import colour
from vcall.gui.video import VideoView

__all__ = ["FILE_LABEL", "PATTERN_LABEL", "SCREEN_LABEL", "CallScreen", "source_label"]


def ask_video_file(parent: tk.Misc, title: str) -> str:
    """The file chooser, filtered to video files, starting in the user's videos folder."""
    return filedialog.askopenfilename(
        parent=parent, title=title, filetypes=VIDEO_FILETYPES, initialdir=videos_dir()
    )


def videos_dir() -> str:
    """The user's videos folder (XDG_VIDEOS_DIR through platformdirs), else the home folder."""
    folder = platformdirs.user_videos_dir()
    return folder if os.path.isdir(folder) else os.path.expanduser("~")


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
        on_mute: Callable[[bool], None] = lambda _muted: None,
        on_volume: Callable[[float], None] = lambda _volume: None,
        volume: float = 1.0,
        cameras: list[str] | None = None,
        peer_size: tuple[int, int] = (800, 450),
    ) -> None:
        super().__init__(master, padding=6)
        self._on_hold = on_hold
        self._on_pause = on_pause
        self._on_mute = on_mute
        self._on_preset = on_preset
        self._on_source = on_source
        self._on_display_size = on_display_size
        self._model = UiModel()
        self._on_save_sdp = on_save_sdp
        # Replaced in tests: the file choosers are modal Tk dialogs.
        self.ask_file: Callable[[], str] = lambda: ask_video_file(self, "Send a video file")
        self.ask_sdp_path: Callable[[], str] = lambda: filedialog.asksaveasfilename(
            parent=self, title="Save the SDP of the stream we send",
            defaultextension=".sdp", initialfile="vcall.sdp",
        )  # fmt: skip

        self.peer_view = VideoView(
            self, width=peer_size[0], height=peer_size[1], placeholder="Waiting for video…",
            on_resize=lambda _w, _h: self._resized(),
        )  # fmt: skip
        self.peer_view.grid(row=0, column=0, sticky="nsew")
        # The picture-in-picture: placed over the large view, dragged with the mouse.
        pip = ui_scale(self)  # the picture-in-picture's size in pixels follows HiDPI
        self.self_view = VideoView(
            self, width=round(192 * pip), height=round(108 * pip), placeholder="Self view",
            notice_font="TkSmallCaptionFont",
        )  # fmt: skip
        self.self_view.configure(highlightthickness=1, highlightbackground="#cccccc")
        self._pip_position = (1.0, 1.0)  # bottom right (logic.pip_box)
        self._pip_visible = True
        self._swapped = False
        self._fullscreen = False
        self._drag_from: tuple[int, int, int, int] | None = None
        self.self_view.bind_picture("<ButtonPress-1>", self._drag_start)
        self.self_view.bind_picture("<B1-Motion>", self._drag_move)
        self.on_fullscreen: Callable[[], None] = lambda: None  # the app's toggle
        for view in (self.peer_view, self.self_view):
            view.bind_picture("<Double-Button-1>", lambda _e: self.on_fullscreen())
        side = ttk.Frame(self, padding=(6, 0, 0, 0))
        side.grid(row=0, column=1, sticky="ns")
        self._side = side
        self._side_fits: dict[tuple[int, int], int] = {}  # call screen size -> rows (_fit_side)
        self.stats = StatsPanel(side, on_save_sdp=self.save_sdp)
        self.stats.pack(fill="x")

        # The call's controls under the video: the call actions, then the media settings, which
        # wrap to a second row when the window is too narrow for one (see _wrap_toolbar).
        bar = ttk.Frame(self, padding=(0, 6, 0, 0))
        bar.grid(row=1, column=0, columnspan=2, sticky="we")
        self.toolbar = bar
        actions = ttk.Frame(bar)
        actions.grid(row=0, column=0, sticky="w")
        # Icons drawn at this screen's scale (vcall.gui.icons), beside the words.
        self.icons = Icons(self)
        self.hangup_button = ttk.Button(
            actions, text=_("Hang up"), command=on_hangup,
            image=self.icons.get("hangup"), compound="left",
        )  # fmt: skip
        self.hangup_button.pack(side="left")
        self.hold_button = ttk.Button(
            actions, text=_("Hold"), width=8, command=self.toggle_hold,
            image=self.icons.get("hold"), compound="left",
        )  # fmt: skip
        self.hold_button.pack(side="left", padx=(6, 0))
        self.pause_button = ttk.Button(
            actions, text=_("Stop video (V)"), width=15, command=self.toggle_pause,
            image=self.icons.get("video"), compound="left",
        )  # fmt: skip
        self.pause_button.pack(side="left", padx=(6, 0))
        # The microphone, in step with the M key (both go through the call manager's mute).
        self.mute_button = ttk.Button(
            actions, text=_("Mute (M)"), width=11, command=self.toggle_mute,
            image=self.icons.get("mic"), compound="left",
        )  # fmt: skip
        self.mute_button.pack(side="left", padx=(6, 0))
        settings = ttk.Frame(bar)
        self._toolbar_parts = (actions, settings)
        settings.grid(row=0, column=1, sticky="w", padx=(12, 0))
        ttk.Label(settings, text=_("Quality")).pack(side="left", padx=(0, 4))
        self.quality = ttk.Combobox(settings, values=PRESET_NAMES, state="readonly", width=7)
        self.quality.pack(side="left")
        self.quality.bind("<<ComboboxSelected>>", lambda _e: self._on_preset(self.quality.get()))
        ttk.Label(settings, text=_("Source")).pack(side="left", padx=(12, 4))
        self._sources: dict[str, str] = {}
        self.source = ttk.Combobox(settings, state="readonly", width=22)
        self.source.pack(side="left")
        self.source.bind("<<ComboboxSelected>>", lambda _e: self._source_chosen())
        self.set_cameras(cameras if cameras is not None else [])
        self.stats_button = ttk.Button(
            settings, text=_("Stats"), width=6, command=self.toggle_stats,
            image=self.icons.get("stats"), compound="left",
        )  # fmt: skip
        self.stats_button.pack(side="left", padx=(12, 0))
        # The microphone's level and the speaker volume (vcall/gui/audio_controls.py).
        self.audio_controls = AudioControls(settings, on_volume=on_volume, volume=volume)
        self.audio_controls.pack(side="left", padx=(12, 0))
        bar.bind("<Configure>", lambda _e: self._wrap_toolbar(), add="+")

        status = ttk.Frame(self, relief="sunken", padding=(4, 2))
        status.grid(row=2, column=0, columnspan=2, sticky="we", pady=(6, 0))
        self.status_bar = status
        # Connection quality in plain words, with bars (logic.connection_quality); the figures
        # behind it are in the statistics panel.
        self.quality_bars = tk.Canvas(status, width=22, height=14, highlightthickness=0)
        self.quality_bars.pack(side="left", padx=(0, 4))
        self.quality_label = ttk.Label(status, text="", anchor="w")
        self.quality_label.pack(side="left", padx=(0, 12))
        self.quality_level = 0
        self.set_quality(0, "")
        self.status = ttk.Label(status, text="", anchor="w")
        self.status.pack(side="left")
        # Messages during the call (a source that fails, "SDP saved"), next to the call state.
        self.notice = ttk.Label(status, text="", foreground=colour("error"), anchor="w")
        self.notice.pack(side="left", fill="x", expand=True, padx=(12, 0))
        # The shortcut help: as much of it as fits (re-fitted on resize and on status changes).
        self.help = ttk.Label(status, text=HELP_VARIANTS[0], foreground=colour("muted"))
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

    def toggle_mute(self) -> None:
        if self._model.phase is Phase.CONNECTED:
            self._on_mute(not self._model.muted)

    def next_quality(self) -> None:
        names = list(PRESET_NAMES)
        current = names.index(self._model.preset) if self._model.preset in names else 0
        self._on_preset(names[(current + 1) % len(names)])

    def toggle_stats(self) -> None:
        if self.stats.winfo_manager():
            self.stats.pack_forget()
        else:
            self.stats.pack(fill="x")
            self._fit_side()

    def save_sdp(self) -> None:
        path = self.ask_sdp_path()
        if path:
            self._on_save_sdp(path)

    @property
    def stats_visible(self) -> bool:
        return bool(self.stats.winfo_manager())

    def set_cameras(self, cameras: list[str]) -> None:
        self._sources = source_choices(cameras)
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

    # ------------------------------------------------------------------- the two views

    @property
    def peer_target(self) -> VideoView:
        """The view showing the peer's video (the large one unless swapped)."""
        return self.self_view if self._swapped else self.peer_view

    @property
    def self_target(self) -> VideoView:
        """The view showing our own video (the picture-in-picture unless swapped)."""
        return self.peer_view if self._swapped else self.self_view

    @property
    def swapped(self) -> bool:
        return self._swapped

    @property
    def pip_visible(self) -> bool:
        return self._pip_visible

    @property
    def fullscreen(self) -> bool:
        return self._fullscreen

    def set_swapped(self, swapped: bool) -> None:
        """Show the peer in the picture-in-picture and ourselves large (or back). The app
        re-points the video feed at :attr:`peer_target` / :attr:`self_target`."""
        if swapped == self._swapped:
            return
        notices = (self.peer_target.notice_shown, self.self_target.notice_shown)
        marks = (self.peer_target.mark_shown, self.self_target.mark_shown)
        banner = self.peer_target.banner_shown
        self.peer_target.set_banner("")
        self._swapped = swapped
        self.peer_target.set_banner(banner)
        self.set_peer_notice(notices[0])
        self.set_self_notice(notices[1])
        self.peer_target.set_mark(marks[0])
        self.self_target.set_mark(marks[1])
        self._report_size()

    def set_pip_visible(self, visible: bool) -> None:
        self._pip_visible = visible
        self._place_pip()
        self._report_size()

    def set_fullscreen(self, on: bool) -> None:
        """Only the video (and the picture-in-picture) in full screen; everything back after."""
        if on == self._fullscreen:
            return
        self._fullscreen = on
        for part in (self._side, self.toolbar, self.status_bar):
            if on:
                part.grid_remove()
            else:
                part.grid()
        self.configure(padding=0 if on else 6)

    def _place_pip(self) -> None:
        if not self._pip_visible:
            self.self_view.place_forget()
            return
        x, y, width, height = pip_box(self.peer_view.area, self._pip_position)
        self.self_view.place(in_=self.peer_view, x=x, y=y, width=width, height=height)
        self.self_view.lift()

    def move_pip(self, x: float, y: float) -> None:
        """Put the picture-in-picture's top left corner near (``x``, ``y``) px of the large
        view, kept whole inside it."""
        self._pip_position = pip_position(self.peer_view.area, x, y)
        self._place_pip()

    def pip_offset(self) -> tuple[int, int]:
        """The picture-in-picture's (x, y) inside the large view, in pixels."""
        return (
            self.self_view.winfo_rootx() - self.peer_view.winfo_rootx(),
            self.self_view.winfo_rooty() - self.peer_view.winfo_rooty(),
        )

    def _drag_start(self, event: tk.Event[tk.Misc]) -> None:
        x, y = self.pip_offset()
        self._drag_from = (event.x_root, event.y_root, x, y)

    def _drag_move(self, event: tk.Event[tk.Misc]) -> None:
        if self._drag_from is None:
            return
        x_root, y_root, x, y = self._drag_from
        self.move_pip(x + event.x_root - x_root, y + event.y_root - y_root)

    def set_peer_notice(self, text: str) -> None:
        """Show ``text`` over the peer's picture ("" hides it): why it stopped."""
        self.peer_target.set_notice(text)

    def set_self_notice(self, text: str) -> None:
        """Show ``text`` over our own picture ("" hides it): "Your video is off"."""
        self.self_target.set_notice(text)

    def set_marks(self, peer: str, own: str) -> None:
        """The small marks over the peer's picture and our own ("bob is muted", "Muted")."""
        self.peer_target.set_mark(peer)
        self.self_target.set_mark(own)

    def set_banner(self, text: str) -> None:
        """The banner across the peer's picture ("Reconnecting to bob… 12 s"; "" hides it)."""
        self.peer_target.set_banner(text)

    def set_no_video(self, text: str) -> None:
        """Show ``text`` over the peer's video ("" hides it); as :meth:`set_peer_notice`."""
        self.set_peer_notice(text)

    @property
    def no_video(self) -> tk.Label:
        """The banner over the peer's picture."""
        return self.peer_target.notice

    @property
    def no_video_shown(self) -> str:
        """The banner's text over the peer's picture while it is on screen, else ""."""
        return self.peer_target.notice_shown

    def set_quality(self, bars: int, words: str) -> None:
        """Show ``bars`` of 4 (rising heights; the lit ones coloured by level) and ``words``."""
        self.quality_level = bars
        canvas = self.quality_bars
        canvas.delete("all")
        canvas.configure(background=str(ttk.Style(self).lookup("TFrame", "background") or "#ddd"))
        lit = {1: "#d32f2f", 2: "#f9a825", 3: "#7cb342", 4: "#2e7d32"}.get(bars, "")
        for index in range(4):
            height = 5 + 3 * index
            x = 1 + index * 5
            fill = lit if index < bars else colour("muted")
            canvas.create_rectangle(x, 14 - height, x + 3, 14, fill=fill, outline="", tags="bar")
        if words != self.quality_label.cget("text"):
            self.quality_label.configure(text=words)
            self._fit_help()

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
        free -= self.quality_bars.winfo_reqwidth() + 16
        free -= font.measure(self.quality_label.cget("text")) + 12
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
        self._place_pip()
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
        self._on_display_size(self.peer_target.area, self.self_target.area)

    # ------------------------------------------------------------------------- render

    def render(self, model: UiModel, status: str) -> None:
        self._model = model
        connected = model.phase is Phase.CONNECTED
        state = "normal" if connected else "disabled"
        self.hold_button.configure(text=_("Resume") if model.hold_local else _("Hold"), state=state)
        self.pause_button.configure(
            text=_("Start video (V)") if not model.sending else _("Stop video (V)"), state=state
        )
        self.mute_button.configure(
            text=_("Unmute (M)") if model.muted else _("Mute (M)"),
            image=self.icons.get("mic_off" if model.muted else "mic"),
            state=state,
        )
        self.quality.set(model.preset)
        self._refresh_sources()
        self.hangup_button.configure(
            text="Cancel call" if model.phase is Phase.DIALING else "Hang up"
        )
        self.notice.configure(
            text=model.message, foreground=colour("error") if model.message_error else colour("ok")
        )
        self.status.configure(text=status)
        self._fit_help()
