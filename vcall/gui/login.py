"""Login and registration screen: nick, password, server, "remember password".

Widgets only: :attr:`LoginScreen.on_submit` receives what the user typed once it passes the
local checks (:func:`~vcall.gui.logic.valid_nick`, server address syntax); the app posts it to the
worker. Return in any field submits.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from tkinter import ttk

from vcall.config import ConfigError, parse_server
from vcall.gui.i18n import _
from vcall.gui.logic import valid_nick, valid_password
from vcall.gui.theme import colour
from vcall.passwords import keyring_problem

# (nick, password, (host, port), remember_password)
SubmitHandler = Callable[[str, str, tuple[str, int], bool], None]


class LoginScreen(ttk.Frame):
    def __init__(self, master: tk.Misc, *, on_submit: SubmitHandler) -> None:
        super().__init__(master)
        form = ttk.Frame(self, padding=24)
        form.place(relx=0.5, rely=0.4, anchor="center")  # a compact form, centred
        self.on_submit = on_submit
        self.nick = tk.StringVar(self)
        self.password = tk.StringVar(self)
        self.server = tk.StringVar(self)
        self.remember = tk.BooleanVar(self, value=False)
        ttk.Label(form, text="vcall", font=("TkHeadingFont", 20, "bold")).grid(
            row=0, column=0, columnspan=2, pady=(0, 16)
        )
        self.entries: dict[str, ttk.Entry] = {}
        for row, (label, var, key, show) in enumerate(
            (
                (_("Nick"), self.nick, "nick", ""),
                (_("Password"), self.password, "password", "•"),
                (_("Server"), self.server, "server", ""),
            ),
            start=1,
        ):
            ttk.Label(form, text=label).grid(row=row, column=0, sticky="e", padx=(0, 8), pady=4)
            entry = ttk.Entry(form, textvariable=var, width=32, show=show)
            entry.grid(row=row, column=1, sticky="we", pady=4)
            entry.bind("<Return>", lambda _e: self.submit())
            self.entries[key] = entry
        self.remember_check = ttk.Checkbutton(
            form, text=_("Remember password on this computer"), variable=self.remember
        )
        self.remember_check.grid(row=4, column=1, sticky="w", pady=4)
        # The password is remembered only in the OS keyring (vcall/passwords.py): without one,
        # the box is off and says why. Checked once per process (at start, before mainloop).
        self.keyring_problem = keyring_problem()
        if self.keyring_problem is not None:
            self.remember_check.configure(
                state="disabled", text=_("Remember password (unavailable: no OS keyring)")
            )
        self.button = ttk.Button(form, text=_("Register and log in"), command=self.submit)
        self.button.grid(row=5, column=1, sticky="e", pady=(8, 4))
        self.message = ttk.Label(form, text="", foreground=colour("error"), wraplength=380)
        self.message.grid(row=6, column=0, columnspan=2, sticky="we", pady=(8, 0))
        self.hint = ttk.Label(
            form,
            text=_("The first registration of a nick sets its password."),
            foreground=colour("muted"),
        )
        self.hint.grid(row=7, column=0, columnspan=2, sticky="we")
        form.columnconfigure(1, weight=1)

    def fill(self, nick: str, server: str, password: str = "", remember: bool = False) -> None:
        self.nick.set(nick)
        self.server.set(server)
        self.password.set(password)
        self.remember.set(remember and self.keyring_problem is None)

    def focus_first_empty(self) -> None:
        for key, var in (("nick", self.nick), ("password", self.password)):
            if not var.get():
                self.entries[key].focus_set()
                return
        self.button.focus_set()

    def show_message(self, text: str, error: bool = True) -> None:
        self.message.configure(text=text, foreground=colour("error") if error else colour("ok"))

    def set_busy(self, busy: bool) -> None:
        self.button.configure(state="disabled" if busy else "normal")
        if busy:
            self.show_message(_("Registering…"), error=False)

    def submit(self) -> None:
        if str(self.button.cget("state")) == "disabled":
            return
        nick, password = self.nick.get().strip(), self.password.get()
        problem = valid_nick(nick) or valid_password(password)
        if problem is None:
            try:
                server = parse_server(self.server.get())
            except ConfigError as exc:
                problem = f"Server: {exc}."
        if problem is not None:
            self.show_message(problem)
            return
        self.on_submit(nick, password, server, self.remember.get())
