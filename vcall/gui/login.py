"""Login and registration screen: nick, password, server, "remember password".

Widgets only: :attr:`LoginScreen.on_submit` receives what the user typed once it passes the
local checks (:func:`~vcall.gui.logic.valid_nick`, server address syntax); the app posts it to the
worker. Return in any field submits.

Nicks are unique ignoring case (issue 15): when the typed nick reaches an account spelled
differently ("Alice" typed, "alice" registered), :meth:`LoginScreen.ask_account` opens a small
:class:`AccountQuestion` window (not a blocking ``messagebox``: Tk keeps running) that offers
to log into that account with its own spelling, or to choose another nick.

The server field is also a choice among the directories announced on the network with
mDNS/DNS-SD (issue 15, vcall/discovery/mdns.py): the app's browser finds them off the Tk
thread; this screen polls its snapshot every second.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable, Sequence
from tkinter import ttk

from vcall.config import ConfigError, parse_server
from vcall.discovery.mdns import FoundDirectory
from vcall.gui.i18n import _
from vcall.gui.logic import valid_nick, valid_password
from vcall.gui.theme import colour
from vcall.passwords import keyring_problem

# (nick, password, (host, port), remember_password)
SubmitHandler = Callable[[str, str, tuple[str, int], bool], None]
LAN_POLL_MS = 1000  # how often the server choice looks at the directories found on the LAN


class LoginScreen(ttk.Frame):
    def __init__(
        self,
        master: tk.Misc,
        *,
        on_submit: SubmitHandler,
        directories: Callable[[], Sequence[FoundDirectory]] | None = None,
    ) -> None:
        """``directories``: the directories found on the network now (a thread-safe
        snapshot, mdns.DirectoryBrowser.found), offered in the server choice."""
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
            entry: ttk.Entry
            if key == "server":  # typed, or chosen among the directories found on the LAN
                entry = self.server_choice = ttk.Combobox(form, textvariable=var, width=31)
            else:
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
        self.question: AccountQuestion | None = None
        self.server_choice.bind("<<ComboboxSelected>>", lambda _e: self._server_chosen())
        self._directories = directories
        self._found: dict[str, str] = {}  # label -> HOST:PORT
        self._poll_id: str | None = None
        if directories is not None:
            self._poll_id = self.after(LAN_POLL_MS // 4, self._poll_directories)

    def destroy(self) -> None:
        if self._poll_id is not None:
            self.after_cancel(self._poll_id)
            self._poll_id = None
        super().destroy()

    def _poll_directories(self) -> None:
        """Offer the directories found on the network (label "name — host:port")."""
        assert self._directories is not None
        found = {d.label: d.address for d in self._directories()}
        if found != self._found:
            self._found = found
            self.server_choice.configure(values=list(found))
        self._poll_id = self.after(LAN_POLL_MS, self._poll_directories)

    def _server_chosen(self) -> None:
        # A found directory's label stands for its address: the field takes HOST:PORT.
        address = self._found.get(self.server.get())
        if address is not None:
            self.server.set(address)

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

    def ask_account(self, typed: str, account: str) -> AccountQuestion:
        """Ask whether ``typed`` meant the existing ``account``; yes logs in as ``account``
        (submitting the form again with that spelling), no asks for another nick."""
        self.set_busy(False)
        self.show_message("")
        if self.question is not None and self.question.winfo_exists():
            self.question.destroy()

        def use_account() -> None:
            self.nick.set(account)
            self.submit()

        def choose_another() -> None:
            text = _("The nick {account} is taken (nicks ignore case): choose another.")
            self.show_message(text.format(account=account))
            self.entries["nick"].focus_set()

        self.question = AccountQuestion(
            self, typed=typed, account=account, on_yes=use_account, on_no=choose_another
        )
        return self.question

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


class AccountQuestion(tk.Toplevel):
    """Asks "An account named alice exists. Log in as alice?" with two buttons; Return answers
    yes, Escape (or closing the window) no."""

    def __init__(
        self,
        master: tk.Misc,
        *,
        typed: str,
        account: str,
        on_yes: Callable[[], None],
        on_no: Callable[[], None],
    ) -> None:
        super().__init__(master)
        self.title(_("Existing account"))
        self.transient(master.winfo_toplevel())
        self._on_yes, self._on_no = on_yes, on_no
        body = ttk.Frame(self, padding=16)
        body.pack(fill="both", expand=True)
        text = _(
            "An account named {account} already exists, and nicks ignore case: "
            "{typed} is the same nick. Log in to the account {account} (with its password)?"
        ).format(account=account, typed=typed)
        self.text = ttk.Label(body, text=text, wraplength=360, justify="left")
        self.text.grid(row=0, column=0, columnspan=2, sticky="w", pady=(0, 12))
        self.yes_button = ttk.Button(
            body, text=_("Log in as {account}").format(account=account), command=self.yes
        )
        self.yes_button.grid(row=1, column=0, sticky="e", padx=(0, 8))
        self.no_button = ttk.Button(body, text=_("Choose another nick"), command=self.no)
        self.no_button.grid(row=1, column=1, sticky="w")
        self.bind("<Return>", lambda _e: self.yes())
        self.bind("<Escape>", lambda _e: self.no())
        self.protocol("WM_DELETE_WINDOW", self.no)
        # Over the middle of the main window (with no window manager it would sit at 0,0).
        self.update_idletasks()
        top = master.winfo_toplevel()
        x = top.winfo_rootx() + max(0, (top.winfo_width() - self.winfo_reqwidth()) // 2)
        y = top.winfo_rooty() + max(0, (top.winfo_height() - self.winfo_reqheight()) // 3)
        self.geometry(f"+{x}+{y}")
        self.yes_button.focus_set()

    def yes(self) -> None:
        self.destroy()
        self._on_yes()

    def no(self) -> None:
        self.destroy()
        self._on_no()
