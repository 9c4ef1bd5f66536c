"""The live statistics panel: figures in a grid and a small chart drawn on a Canvas.

It renders :class:`~vcall.gui.logic.StatsView` values and a :class:`~vcall.gui.logic.History`;
all arithmetic is in :mod:`vcall.gui.logic`. The chart reuses its Canvas items (coords updated)
rather than deleting and recreating them every half second.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from tkinter import ttk

from vcall.gui.logic import History, StatsView, chart_segments, fit_rows, nice_ceiling

# Series drawn on the chart: (History series, colour, legend label, unit).
CHART_SERIES = (
    ("fps_in", "#3cc45a", "fps", ""),
    ("c2d_p50_ms", "#f08a3c", "c→d", " ms"),
    ("kbps_in", "#5a90f0", "kbit/s", ""),
)


VALUE_CHARS = 26  # the longest figure: "H264 1.23 Mbit/s, estimate"


class StatsPanel(ttk.LabelFrame):
    ROWS = 14  # label rows kept ready: figures plus per-stage latencies

    def __init__(
        self,
        master: tk.Misc,
        *,
        on_save_sdp: Callable[[], None] | None = None,
        chart_size: tuple[int, int] = (240, 64),
    ) -> None:
        # The title row holds the "Save SDP…" button: no extra row in a short window.
        title = ttk.Frame(master)
        super().__init__(master, labelwidget=title, padding=(4, 0, 4, 4))
        ttk.Label(title, text="Statistics").pack(side="left")
        # For ffplay / GStreamer: the SDP of the RTP stream this side sends (issue #6).
        self.save_sdp_button = ttk.Button(
            title, text="Save SDP…", style="Small.TButton", command=on_save_sdp or (lambda: None)
        )
        self.save_sdp_button.pack(side="left", padx=(8, 0))
        ttk.Style(self).configure("Small.TButton", padding=(4, 0), font="TkSmallCaptionFont")
        self.history = History()
        self.max_rows = self.ROWS  # lowered by the call screen when the window is short
        self._view = StatsView()
        self._labels: list[tuple[ttk.Label, ttk.Label]] = []
        grid = ttk.Frame(self)
        grid.pack(fill="x")
        for row in range(self.ROWS):
            name = ttk.Label(grid, text="", font="TkSmallCaptionFont")
            # A fixed width: a longer figure arriving mid-call must not widen the column (and
            # shrink the video beside it).
            value = ttk.Label(
                grid, text="", font="TkSmallCaptionFont", anchor="e", width=VALUE_CHARS
            )
            name.grid(row=row, column=0, sticky="w")
            value.grid(row=row, column=1, sticky="e", padx=(8, 0))
            self._labels.append((name, value))
        grid.columnconfigure(1, weight=1)
        width, height = chart_size
        self._chart_size = chart_size
        self.chart = tk.Canvas(
            self, width=width, height=height, background="#101418", highlightthickness=0
        )
        self.chart.pack(fill="x", pady=(4, 0))
        self._lines: dict[str, list[int]] = {name: [] for name, *_ in CHART_SERIES}
        # The legend: one line along the chart's top, each series in its colour.
        self._legend = {
            name: self.chart.create_text(
                4 + 80 * i, 2, anchor="nw", fill=colour, font="TkSmallCaptionFont", text=""
            )
            for i, (name, colour, *_rest) in enumerate(CHART_SERIES)
        }
        self.render(StatsView())

    def add(self, view: StatsView) -> None:
        self.history.add(view)
        self.render(view)

    def reset(self) -> None:
        self.history.clear()
        self.render(StatsView())

    @property
    def row_height(self) -> int:
        return max(1, self._labels[0][0].winfo_reqheight())

    @property
    def rows_shown(self) -> int:
        return sum(1 for name, _value in self._labels if name.winfo_manager())

    def set_max_rows(self, rows: int) -> None:
        rows = max(0, min(self.ROWS, rows))
        if rows != self.max_rows:
            self.max_rows = rows
            self.render(self._view)

    def render(self, view: StatsView) -> None:
        self._view = view
        rows = fit_rows(view.lines(), min(self.max_rows, self.ROWS))
        for index, (name_label, value_label) in enumerate(self._labels):
            if index < len(rows):
                name_label.configure(text=rows[index][0])
                value_label.configure(text=rows[index][1])
                name_label.grid()
                value_label.grid()
            else:  # unused rows take no space
                name_label.grid_remove()
                value_label.grid_remove()
        self._draw_chart()

    def _draw_chart(self) -> None:
        width = max(self.chart.winfo_width(), self._chart_size[0])
        height = self._chart_size[1]
        legend: list[tuple[str, str, str]] = []  # (series, "fps 30", " /50")
        for name, colour, label, unit in CHART_SERIES:
            values = self.history.series(name)
            known = [v for v in values if v is not None]
            top = nice_ceiling(max(known) if known else 1.0)
            segments = chart_segments(values, width, height, self.history.length, top)
            items = self._lines[name]
            while len(items) < len(segments):
                items.append(self.chart.create_line(0, 0, 0, 0, fill=colour, width=1.5))
            for item, coords in zip(items, segments, strict=False):
                self.chart.coords(item, *coords)
                self.chart.itemconfigure(item, state="normal")
            for item in items[len(segments) :]:
                self.chart.itemconfigure(item, state="hidden")
            latest = f"{known[-1]:.0f}" if known else "–"
            legend.append((name, f"{label} {latest}{unit}", f" /{top:g}"))
        self._place_legend(legend)

    def _place_legend(self, legend: list[tuple[str, str, str]]) -> None:
        """One line along the chart's top; without the scales when that is too wide."""
        shown = self.chart.winfo_width()
        width = shown if shown > 1 else self._chart_size[0]
        for with_scale in (True, False):
            x = 4
            for name, text, scale in legend:
                item = self._legend[name]
                self.chart.itemconfigure(item, text=text + scale if with_scale else text)
                self.chart.coords(item, x, 2)
                self.chart.tag_raise(item)
                box = self.chart.bbox(item)
                x = (box[2] if box else x) + 8
            if x - 8 <= width:
                return
