"""The client's menu bar (vcall, Call, View, Help) and its keyboard shortcuts, bound on the
root window.

Widgets and bindings only: every entry and key calls one of the app's actions by name (the
:data:`~vcall.gui.shortcuts.SHORTCUTS` table's names plus "settings", "about", "swap",
"pip" and "theme"). Call-scope keys act on the call screen only; plain keys (V, M, Escape) stand
aside while the user types into an entry and inside other windows (the incoming call's dialog
has its own Escape). Ctrl+A selects all in every entry.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable, Mapping
from tkinter import ttk
from typing import Any

from vcall.config import THEME_CHOICES
from vcall.gui.i18n import _
from vcall.gui.shortcuts import BY_ACTION, SHORTCUTS, Scope, plain_key_applies

Action = Callable[[], object]
CALL_ENTRIES = ("hangup", "hold", "video", "mute", "quality", "stats")  # the Call menu
VIEW_CALL_ENTRIES = (0, 2)  # the View menu's entries for a call: full screen, swap views


class MenuBar:
    def __init__(
        self,
        root: tk.Tk,
        actions: Mapping[str, Action],
        *,
        on_call_screen: Callable[[], bool],
        on_pip: Callable[[bool], None],
        on_theme: Callable[[str], None],
        theme: str,
    ) -> None:
        self.root = root
        self._on_call_screen = on_call_screen
        missing = {s.action for s in SHORTCUTS} - set(actions)
        if missing:
            raise ValueError(f"no action for the shortcuts {sorted(missing)}")
        for shortcut in SHORTCUTS:
            handler = self._handler(shortcut.action, actions[shortcut.action])
            for sequence in shortcut.sequences:
                root.bind_all(sequence, handler)
        # Ctrl+A selects all (Tk's default moves to the line start, as in Emacs).
        for cls in ("TEntry", "Entry", "TCombobox"):
            root.bind_class(cls, "<Control-a>", select_all)
            root.bind_class(cls, "<Control-A>", select_all)

        self.bar = tk.Menu(root, tearoff=False)
        app_menu = tk.Menu(self.bar, tearoff=False)
        app_menu.add_command(label=_("Settings…"), command=actions["settings"])
        app_menu.add_separator()
        for name in ("close", "quit"):
            shortcut = BY_ACTION[name]
            app_menu.add_command(
                label=shortcut.label, accelerator=shortcut.key, command=actions[name]
            )
        self.bar.add_cascade(label="vcall", menu=app_menu)
        self.call_menu = tk.Menu(self.bar, tearoff=False)
        for name in CALL_ENTRIES:
            shortcut = BY_ACTION[name]
            self.call_menu.add_command(
                label=shortcut.label, accelerator=shortcut.key, command=actions[name],
                state="disabled",
            )  # fmt: skip
        self.bar.add_cascade(label=_("Call"), menu=self.call_menu)
        self.view_menu = tk.Menu(self.bar, tearoff=False)
        self.pip_shown = tk.BooleanVar(root, value=True)
        self.view_menu.add_command(
            label=_("Full screen"), accelerator=BY_ACTION["fullscreen"].key,
            command=actions["fullscreen"], state="disabled",
        )  # fmt: skip
        self.view_menu.add_checkbutton(
            label=_("Show self view"), variable=self.pip_shown,
            command=lambda: on_pip(self.pip_shown.get()),
        )  # fmt: skip
        self.view_menu.add_command(label=_("Swap views"), command=actions["swap"], state="disabled")
        self.view_menu.add_separator()
        self.theme_choice = tk.StringVar(root, value=theme)
        for choice in THEME_CHOICES:
            self.view_menu.add_radiobutton(
                label=f"{choice.capitalize()} theme", value=choice, variable=self.theme_choice,
                command=lambda: on_theme(self.theme_choice.get()),
            )  # fmt: skip
        self.bar.add_cascade(label=_("View"), menu=self.view_menu)
        help_menu = tk.Menu(self.bar, tearoff=False)
        help_menu.add_command(
            label=BY_ACTION["help"].label, accelerator=BY_ACTION["help"].key,
            command=actions["help"],
        )  # fmt: skip
        help_menu.add_command(label=_("About vcall"), command=actions["about"])
        self.bar.add_cascade(label=_("Help"), menu=help_menu)
        self.show(True)

    def show(self, shown: bool) -> None:
        """The menu bar on the window, or none (full screen)."""
        self.root.configure({"menu": self.bar if shown else ""})

    def set_call_screen(self, on: bool) -> None:
        """Enable the call's entries while the call screen shows."""
        state = "normal" if on else "disabled"
        for index in range(len(CALL_ENTRIES)):
            self.call_menu.entryconfigure(index, state=state)
        for index in VIEW_CALL_ENTRIES:
            self.view_menu.entryconfigure(index, state=state)

    def _handler(self, name: str, action: Action) -> Callable[[tk.Event[tk.Misc]], str | None]:
        shortcut = BY_ACTION[name]

        def handler(event: tk.Event[tk.Misc]) -> str | None:
            if shortcut.scope is Scope.CALL and not self._on_call_screen():
                return None
            if shortcut.plain and not plain_key_applies(int(event.state), typing_into(event)):
                return None  # the key goes to the entry
            if shortcut.plain and not self._in_root(event.widget):
                return None  # a dialog's own keys (the incoming call's Escape denies)
            action()
            return "break"

        return handler

    def _in_root(self, widget: Any) -> bool:
        return not isinstance(widget, tk.Misc) or widget.winfo_toplevel() is self.root


def typing_into(event: tk.Event[tk.Misc]) -> bool:
    """Whether the key goes into an editable entry (plain-key shortcuts then stand aside)."""
    widget = event.widget
    if not isinstance(widget, tk.Entry | ttk.Entry | tk.Text):
        return False
    try:
        return str(widget.cget("state")) not in ("readonly", "disabled")
    except tk.TclError:
        return True


def select_all(event: tk.Event[tk.Misc]) -> str:
    """Ctrl+A in an entry: select all its text, the cursor at the end."""
    widget = event.widget
    if isinstance(widget, tk.Entry | ttk.Entry):
        widget.selection_range(0, "end")
        widget.icursor("end")
    return "break"
