"""Incoming-call dialog: "<peer> is calling", accept or deny, with a ring countdown.

The call manager denies an unanswered call itself after its ring timeout; the dialog shows the
time left and, should the manager's word be late, denies when it reaches zero. Return accepts,
Escape denies. The app closes the dialog when the call is connected or ends.
"""

from __future__ import annotations

import math
import time
import tkinter as tk
from collections.abc import Callable
from tkinter import ttk


class IncomingDialog(tk.Toplevel):
    def __init__(
        self,
        master: tk.Misc,
        *,
        peer: str,
        timeout: float,
        on_accept: Callable[[], None],
        on_deny: Callable[[], None],
    ) -> None:
        super().__init__(master)
        self.title(f"Call from {peer}")
        self.resizable(False, False)
        self.transient(master.winfo_toplevel())
        self._on_accept = on_accept
        self._on_deny = on_deny
        self._deadline = time.monotonic() + timeout
        self._answered = False
        body = ttk.Frame(self, padding=16)
        body.pack(fill="both", expand=True)
        ttk.Label(body, text=f"{peer} is calling", font=("TkHeadingFont", 14, "bold")).pack(
            pady=(0, 8)
        )
        self.countdown = ttk.Label(body, text="")
        self.countdown.pack(pady=(0, 12))
        buttons = ttk.Frame(body)
        buttons.pack()
        self.accept_button = ttk.Button(buttons, text="Accept (Enter)", command=self.accept)
        self.accept_button.pack(side="left", padx=4)
        self.deny_button = ttk.Button(buttons, text="Deny (Esc)", command=self.deny)
        self.deny_button.pack(side="left", padx=4)
        self.bind("<Return>", lambda _e: self.accept())
        self.bind("<Escape>", lambda _e: self.deny())
        for sequence in ("<Control-w>", "<Control-W>"):  # closes this window: a decline
            self.bind(sequence, self._close_key)
        self.protocol("WM_DELETE_WINDOW", self.deny)
        self.accept_button.focus_set()
        self._centre_over(master.winfo_toplevel())
        self._tick_id: str | None = None
        self._tick()

    def _centre_over(self, window: tk.Misc) -> None:
        self.update_idletasks()
        x = window.winfo_rootx() + (window.winfo_width() - self.winfo_reqwidth()) // 2
        y = window.winfo_rooty() + (window.winfo_height() - self.winfo_reqheight()) // 3
        self.geometry(f"+{max(0, x)}+{max(0, y)}")

    def accept(self) -> None:
        if not self._answered:
            self._answered = True
            self._on_accept()
            self._disable("Connecting…")

    def deny(self) -> None:
        if not self._answered:
            self._answered = True
            self._on_deny()
            self._disable("Declined.")

    def _close_key(self, _event: tk.Event[tk.Misc]) -> str:
        self.deny()
        return "break"  # not the application's Ctrl+W behind the dialog

    def close(self) -> None:
        if self._tick_id is not None:
            self.after_cancel(self._tick_id)
            self._tick_id = None
        self.destroy()

    def _disable(self, text: str) -> None:
        self.accept_button.configure(state="disabled")
        self.deny_button.configure(state="disabled")
        self.countdown.configure(text=text)

    def _tick(self) -> None:
        self._tick_id = None
        if self._answered:
            return
        left = self._deadline - time.monotonic()
        if left <= 0:
            self.deny()
            return
        self.countdown.configure(text=f"Ringing… {math.ceil(left)} s to answer")
        self._tick_id = self.after(250, self._tick)
