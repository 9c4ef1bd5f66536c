"""Driving real client windows in the test process: start a ClientApp, type, click, wait.

Input goes through Tk's own event machinery (``event_generate``): key presses into entries,
button press/release pairs on buttons, double-clicks on list rows. Waiting pumps the Tk event
loop (``update``) until a condition holds, so file handlers and ``after`` callbacks run as they
do under ``mainloop``.
"""

from __future__ import annotations

import time
import tkinter as tk
from collections.abc import Callable
from pathlib import Path
from tkinter import ttk

import numpy as np

from vcall.config import Config
from vcall.gui.client import AppOptions, ClientApp

KEYSYMS = {" ": "space", ".": "period", ":": "colon", "-": "minus", "_": "underscore"}


class Client:
    """One in-process client window."""

    def __init__(self, config: Config, state_file: Path, geometry: str = "1100x680+0+0") -> None:
        self.closed = False
        self.root = tk.Tk()
        self.root.geometry(geometry)
        self.app = ClientApp(self.root, config, AppOptions(state_file=state_file))
        self.pump_until(self.root.winfo_viewable, 5.0, "window mapped")

    def pump(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.root.update()
            time.sleep(0.005)

    def pump_until(self, condition: Callable[[], object], timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.root.update()
            if condition():
                return
            time.sleep(0.005)
        raise AssertionError(f"timed out after {timeout} s waiting for: {what}")

    def type_into(self, entry: ttk.Entry, text: str, clear: bool = True) -> None:
        entry.focus_force()
        self.root.update()
        if clear:
            entry.delete(0, "end")
        for char in text:
            entry.event_generate("<KeyPress>", keysym=KEYSYMS.get(char, char))
        self.root.update()

    def click(self, widget: tk.Misc) -> None:
        self.root.update()
        widget.event_generate("<Enter>", x=3, y=3)
        widget.event_generate("<ButtonPress-1>", x=3, y=3)
        widget.event_generate("<ButtonRelease-1>", x=3, y=3)
        self.root.update()

    def key(self, sequence: str) -> None:
        """A shortcut such as ``<Control-h>``, delivered to the focused widget."""
        focus = self.root.focus_get() or self.root
        focus.event_generate(sequence)
        self.root.update()

    def double_click_row(self, tree: ttk.Treeview, nick: str) -> None:
        for iid in tree.get_children():
            if tree.item(iid, "text") == nick:
                tree.see(iid)
                self.root.update()
                x, y, _w, h = tree.bbox(iid)  # type: ignore[misc]
                # Tk will not generate a Double event; two quick clicks make one.
                for _ in range(2):
                    tree.event_generate("<ButtonPress-1>", x=x + 5, y=y + h // 2)
                    tree.event_generate("<ButtonRelease-1>", x=x + 5, y=y + h // 2)
                self.root.update()
                return
        raise AssertionError(f"{nick} not in the list {tree.get_children()}")

    def login(self, nick: str, password: str, server: str) -> None:
        screen = self.app.login
        self.type_into(screen.entries["nick"], nick)
        self.type_into(screen.entries["password"], password)
        self.type_into(screen.entries["server"], server)
        self.click(screen.button)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.app.shutdown()
        self.root.destroy()


def crop(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x, y, w, h = box
    return image[y : y + h, x : x + w]
