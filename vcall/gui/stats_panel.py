"""The live statistics panel: figures in a grid and a small chart drawn on a Canvas.

It renders :class:`~vcall.gui.logic.StatsView` values and a :class:`~vcall.gui.logic.History`;
all arithmetic is in :mod:`vcall.gui.logic`. The chart reuses its Canvas items (coords updated)
rather than deleting and recreating them every half second.
"""

from __future__ import annotations

import tkinter as tk
from tkinter import ttk

from vcall.gui.logic import History, StatsView, chart_segments, nice_ceiling

# Series drawn on the chart: (History series, colour, legend label, unit).
CHART_SERIES = (
    ("fps_in", "#2e9e44", "frames/s", ""),
    ("c2d_p50_ms", "#e07020", "capture→display", "ms"),
    ("kbps_in", "#3070d0", "kbit/s", ""),
)


class StatsPanel(ttk.LabelFrame):
    ROWS = 16  # label rows kept ready: figures plus per-stage latencies

    def __init__(self, master: tk.Misc, *, chart_size: tuple[int, int] = (240, 90)) -> None:
        super().__init__(master, text="Statistics", padding=4)
        self.history = History()
        self._labels: list[tuple[ttk.Label, ttk.Label]] = []
        grid = ttk.Frame(self)
        grid.pack(fill="x")
        for row in range(self.ROWS):
            name = ttk.Label(grid, text="", font="TkSmallCaptionFont")
            value = ttk.Label(grid, text="", font="TkSmallCaptionFont", anchor="e")
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
        # One legend line per series, in the series' colour, in the chart's top-left corner.
        self._legend = {
            name: self.chart.create_text(
                4, 2 + 11 * i, anchor="nw", fill=colour, font="TkSmallCaptionFont", text=""
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

    def render(self, view: StatsView) -> None:
        rows = view.lines()[: self.ROWS]
        for index, (name_label, value_label) in enumerate(self._labels):
            name, value = rows[index] if index < len(rows) else ("", "")
            name_label.configure(text=name)
            value_label.configure(text=value)
        self._draw_chart()

    def _draw_chart(self) -> None:
        width = max(self.chart.winfo_width(), self._chart_size[0])
        height = self._chart_size[1]
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
            self.chart.itemconfigure(
                self._legend[name], text=f"{label} {latest}{unit} (scale {top:g})"
            )
            self.chart.tag_raise(self._legend[name])
