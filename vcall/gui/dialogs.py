"""Small windows of the client's menus: keyboard shortcuts (F1) and about.

Widgets only, non-modal (the call goes on behind them); Escape and Ctrl+W close each. The
Settings window, which also chooses the microphone and speaker, is :mod:`vcall.gui.settings`.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Sequence
from tkinter import ttk

import vcall


class InfoWindow(tk.Toplevel):
    """A titled table of (name, value) rows with a Close button."""

    def __init__(
        self,
        master: tk.Misc,
        *,
        title: str,
        heading: str,
        rows: Sequence[tuple[str, str]],
        footer: str = "",
    ) -> None:
        super().__init__(master)
        self.title(title)
        self.transient(master.winfo_toplevel())
        body = ttk.Frame(self, padding=14)
        body.pack(fill="both", expand=True)
        ttk.Label(body, text=heading, font=("TkHeadingFont", 12, "bold")).grid(
            row=0, column=0, columnspan=2, sticky="w", pady=(0, 8)
        )
        self.rows: list[tuple[str, str]] = list(rows)
        for index, (name, value) in enumerate(self.rows, start=1):
            ttk.Label(body, text=name, font="TkDefaultFont 10 bold").grid(
                row=index, column=0, sticky="w", padx=(0, 16)
            )
            ttk.Label(body, text=value).grid(row=index, column=1, sticky="w")
        if footer:
            ttk.Label(body, text=footer, wraplength=420, foreground="#555555").grid(
                row=len(self.rows) + 1, column=0, columnspan=2, sticky="w", pady=(10, 0)
            )
        self.close_button = ttk.Button(body, text="Close", command=self.destroy)
        self.close_button.grid(row=len(self.rows) + 2, column=1, sticky="e", pady=(12, 0))
        for sequence in ("<Escape>", "<Control-w>", "<Control-W>"):
            self.bind(sequence, self._close)
        self.close_button.focus_set()

    def _close(self, _event: tk.Event[tk.Misc]) -> str:
        self.destroy()
        return "break"  # Ctrl+W closes this window, not the application behind it


def shortcuts_window(master: tk.Misc, rows: Sequence[tuple[str, str]]) -> InfoWindow:
    return InfoWindow(master, title="Keyboard shortcuts", heading="Keyboard shortcuts", rows=rows)


def about_window(master: tk.Misc) -> InfoWindow:
    return InfoWindow(
        master,
        title="About vcall",
        heading=f"vcall {vcall.__version__}",
        rows=[
            ("What", "1:1 video calls: Tk client, discovery server, RTP video"),
            ("Protocol", "compatible with the classic Redes II práctica 3 clients"),
            ("Video", "H.264 (RFC 6184) or JPEG (RFC 2435) over RTP"),
        ],
    )
