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

from pipeline.presets import PRESET_NAMES
from vcall.gui.model import Phase, UiModel
from vcall.gui.stats_panel import StatsPanel
from vcall.gui.video import VideoView

# Tk event sequence -> what it does (shown in the window's help line).
SHORTCUTS = {
    "<Control-e>": "hang up",
    "<Control-h>": "hold / resume",
    "<Control-p>": "pause / resume sending",
    "<Control-q>": "next quality",
    "<Control-s>": "statistics panel",
}
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
            on_resize=lambda _w, _h: self._report_size(),
        )  # fmt: skip
        self.peer_view.grid(row=0, column=0, sticky="nsew")
        side = ttk.Frame(self, padding=(6, 0, 0, 0))
        side.grid(row=0, column=1, sticky="ns")
        self.self_view = VideoView(side, width=192, height=108, placeholder="Self view")
        self.self_view.pack(anchor="n")
        self.stats = StatsPanel(side, on_save_sdp=self.save_sdp)
        self.stats.pack(fill="x", pady=(6, 0))

        # The call's controls in one toolbar row under the video.
        bar = ttk.Frame(self, padding=(0, 6, 0, 0))
        bar.grid(row=1, column=0, columnspan=2, sticky="we")
        self.hangup_button = ttk.Button(bar, text="Hang up", command=on_hangup)
        self.hangup_button.pack(side="left")
        self.hold_button = ttk.Button(bar, text="Hold", width=8, command=self.toggle_hold)
        self.hold_button.pack(side="left", padx=(6, 0))
        self.pause_button = ttk.Button(bar, text="Pause", width=14, command=self.toggle_pause)
        self.pause_button.pack(side="left", padx=(6, 0))
        ttk.Label(bar, text="Quality").pack(side="left", padx=(12, 4))
        self.quality = ttk.Combobox(bar, values=PRESET_NAMES, state="readonly", width=7)
        self.quality.pack(side="left")
        self.quality.bind("<<ComboboxSelected>>", lambda _e: self._on_preset(self.quality.get()))
        ttk.Label(bar, text="Source").pack(side="left", padx=(12, 4))
        self._sources: dict[str, str] = {}
        self.source = ttk.Combobox(bar, state="readonly", width=22)
        self.source.pack(side="left")
        self.source.bind("<<ComboboxSelected>>", lambda _e: self._source_chosen())
        self.set_cameras(cameras if cameras is not None else [])
        self.stats_button = ttk.Button(bar, text="Stats", width=6, command=self.toggle_stats)
        self.stats_button.pack(side="left", padx=(12, 0))

        status = ttk.Frame(self, relief="sunken", padding=(4, 2))
        status.grid(row=2, column=0, columnspan=2, sticky="we", pady=(6, 0))
        self.status = ttk.Label(status, text="", anchor="w")
        self.status.pack(side="left")
        # Messages during the call (a source that fails, "SDP saved"), next to the call state.
        self.notice = ttk.Label(status, text="", foreground="#b00020", anchor="w")
        self.notice.pack(side="left", fill="x", expand=True, padx=(12, 0))
        help_text = " · ".join(f"Ctrl+{seq[-2].upper()} {what}" for seq, what in SHORTCUTS.items())
        ttk.Label(status, text=help_text, foreground="#666666").pack(side="right")
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
        self.status.configure(text=status)
        self.notice.configure(
            text=model.message, foreground="#b00020" if model.message_error else "#1b5e20"
        )
