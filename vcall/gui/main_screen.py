"""Main screen: call a user by nick, or from the user list (refresh, filter as you type,
double-click or button to call); the recent calls (a second tab, its title marking missed
calls; double-click or "Call back"); choose the video codec of the calls to come; log out; exit.
Beside them, "Your video": a preview of the chosen source (the self view before any call) and
its picker (test pattern, cameras, the screen to share, a video file); a choice goes to
``on_source`` and is the source of the calls to come.

The user list shows each user's presence (online, offline, unknown for classic clients; issue
15, vcall/gui/presence.py), online users first, refreshed by the worker every few seconds; the
address and when the user was last seen are behind "Details…" (or the context-menu key /
right-click on a row).

Widgets only. The list keeps the last :class:`~vcall.gui.events.UserRow` set it was given and
re-renders it through :func:`~vcall.gui.logic.filter_users` on every keystroke in the filter.
The "Video codec" selector offers :data:`~vcall.gui.logic.CODEC_CHOICES`; a choice goes to
``on_codecs`` and the selector shows what :meth:`MainScreen.set_codec_preference` says.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable, Sequence
from tkinter import ttk

from vcall.gui.dialogs import InfoWindow
from vcall.gui.events import UserRow
from vcall.gui.i18n import _
from vcall.gui.logic import CODEC_CHOICES, codec_label, filter_users
from vcall.gui.presence import seen_text, status_text
from vcall.gui.sources import FILE_LABEL, source_choices, source_label
from vcall.gui.theme import colour
from vcall.gui.video import VideoView

PREVIEW_SIZE = (320, 240)
_PRESENCE_ORDER = {True: 0, None: 1, False: 2}  # the user list: online first, offline last
# Below this width the preview column would squeeze the list and the buttons: it is hidden
# (and the app stops previewing) until the window is wide enough again.
PREVIEW_MIN_WIDTH = 960


class MainScreen(ttk.Frame):
    def __init__(
        self,
        master: tk.Misc,
        *,
        on_call: Callable[[str], None],
        on_refresh: Callable[[], None],
        on_logout: Callable[[], None],
        on_exit: Callable[[], None],
        on_codecs: Callable[[tuple[str, ...]], None],
        on_source: Callable[[str], None] = lambda _spec: None,
        ask_file: Callable[[], str] = lambda: "",
    ) -> None:
        super().__init__(master, padding=12)
        self.on_call = on_call
        self.on_source = on_source
        self.ask_file = ask_file  # replaced in tests: the file chooser is a modal dialog
        self._source_spec = "pattern"
        self._source_specs: dict[str, str] = source_choices([])
        self.on_codecs = on_codecs
        self._codecs: tuple[str, ...] = CODEC_CHOICES[next(iter(CODEC_CHOICES))]
        self._users: tuple[UserRow, ...] = ()
        self._me = ""
        self.header = ttk.Label(self, text="", font=("TkHeadingFont", 12, "bold"))
        self.header.grid(row=0, column=0, columnspan=3, sticky="w", pady=(0, 8))

        self.call_nick = tk.StringVar(self)
        ttk.Label(self, text=_("Call by nick")).grid(row=1, column=0, sticky="w")
        self.call_entry = ttk.Entry(self, textvariable=self.call_nick, width=24)
        self.call_entry.grid(row=1, column=1, sticky="we", padx=4)
        self.call_entry.bind("<Return>", lambda _e: self._call_typed())
        self.call_button = ttk.Button(self, text=_("Call"), command=self._call_typed)
        self.call_button.grid(row=1, column=2, sticky="we")

        # For the calls to come: a call already begun keeps its codec.
        ttk.Label(self, text=_("Video codec")).grid(row=2, column=0, sticky="w", pady=(6, 0))
        width = max(len(label) for label in CODEC_CHOICES)
        self.codec = ttk.Combobox(self, values=list(CODEC_CHOICES), state="readonly", width=width)
        self.codec.grid(row=2, column=1, sticky="w", padx=4, pady=(6, 0))
        self.codec.bind("<<ComboboxSelected>>", lambda _e: self._codec_chosen())
        self.set_codec_preference(self._codecs)

        self.filter_text = tk.StringVar(self)
        ttk.Label(self, text=_("Filter")).grid(row=3, column=0, sticky="w", pady=(12, 4))
        self.filter_entry = ttk.Entry(self, textvariable=self.filter_text, width=24)
        self.filter_entry.grid(row=3, column=1, sticky="we", padx=4, pady=(12, 4))
        self.filter_text.trace_add("write", lambda *_a: self._render())
        self.refresh_button = ttk.Button(self, text=_("Refresh"), command=on_refresh)
        self.refresh_button.grid(row=3, column=2, sticky="we", pady=(12, 4))

        # Two tabs: the users, and the recent calls (the tab's title marks missed calls).
        self.tabs = ttk.Notebook(self)
        self.tabs.grid(row=4, column=0, columnspan=4, sticky="nsew")
        users = ttk.Frame(self.tabs)
        self.tabs.add(users, text=_("Users"))
        self.tree = ttk.Treeview(users, columns=("status",), height=14, selectmode="browse")
        self.tree.heading("#0", text=_("Nick"))
        self.tree.heading("status", text=_("Status"))
        self.tree.column("#0", width=180)
        self.tree.column("status", width=120)
        self.tree.grid(row=0, column=0, sticky="nsew")
        self.tree.bind("<Double-Button-1>", self._double_click)
        self.tree.bind("<Return>", lambda _e: self._call_selected())
        self.tree.bind("<Button-3>", self._details_click)
        self.tree.bind("<Menu>", lambda _e: self.show_details())
        self.details: InfoWindow | None = None
        scroll = ttk.Scrollbar(users, orient="vertical", command=self.tree.yview)
        scroll.grid(row=0, column=1, sticky="ns")
        self.tree.configure(yscrollcommand=scroll.set)
        users.columnconfigure(0, weight=1)
        users.rowconfigure(0, weight=1)

        recent = ttk.Frame(self.tabs)
        self.tabs.add(recent, text=_("Recent calls"))
        self._recent_tab = recent
        self.history = ttk.Treeview(
            recent, columns=("who", "what", "duration"), height=14, selectmode="browse"
        )
        for column, title, width in (
            ("#0", _("When"), 130),
            ("who", _("Who"), 120),
            ("what", _("Call"), 120),
            ("duration", _("Duration"), 90),
        ):
            self.history.heading(column, text=title)
            self.history.column(column, width=width, stretch=column == "who")  # fmt: skip
        self.history.tag_configure("missed", foreground=colour("error"))
        self.history.grid(row=0, column=0, sticky="nsew")
        self.history.bind("<Double-Button-1>", self._history_double_click)
        self.history.bind("<Return>", lambda _e: self._call_back())
        history_scroll = ttk.Scrollbar(recent, orient="vertical", command=self.history.yview)
        history_scroll.grid(row=0, column=1, sticky="ns")
        self.history.configure(yscrollcommand=history_scroll.set)
        self.call_back_button = ttk.Button(recent, text=_("Call back"), command=self._call_back)
        self.call_back_button.grid(row=1, column=0, sticky="w", pady=(6, 0))
        recent.columnconfigure(0, weight=1)
        recent.rowconfigure(0, weight=1)
        self.on_history_seen: Callable[[], None] = lambda: None  # the app marks missed seen
        self.tabs.bind("<<NotebookTabChanged>>", lambda _e: self._tab_changed())
        self._missed = 0

        buttons = ttk.Frame(self)
        buttons.grid(row=5, column=0, columnspan=3, sticky="we", pady=(8, 0))
        self.call_selected_button = ttk.Button(
            buttons, text=_("Call selected"), command=self._call_selected
        )
        self.call_selected_button.pack(side="left")
        self.details_button = ttk.Button(buttons, text=_("Details…"), command=self.show_details)
        self.details_button.pack(side="left", padx=4)
        self.exit_button = ttk.Button(buttons, text=_("Exit"), command=on_exit)
        self.exit_button.pack(side="right")
        self.logout_button = ttk.Button(buttons, text=_("Log out"), command=on_logout)
        self.logout_button.pack(side="right", padx=4)

        self.message = ttk.Label(self, text="", wraplength=480)
        self.message.grid(row=6, column=0, columnspan=3, sticky="we", pady=(8, 0))
        self.columnconfigure(1, weight=1)
        self.rowconfigure(4, weight=1)

        # The self view before any call, and the source of the calls to come.
        mine = ttk.Labelframe(self, text=_("Your video"), padding=6)
        mine.grid(row=0, column=4, rowspan=6, sticky="n", padx=(12, 0))
        self._preview_frame = mine
        self.bind("<Configure>", self._configured, add="+")
        self.preview = VideoView(
            mine, width=PREVIEW_SIZE[0], height=PREVIEW_SIZE[1], placeholder=_("Starting preview…")
        )
        self.preview.pack()
        row = ttk.Frame(mine)
        row.pack(fill="x", pady=(6, 0))
        ttk.Label(row, text=_("Source")).pack(side="left")
        self.source = ttk.Combobox(row, state="readonly", width=24)
        self.source.pack(side="left", padx=(6, 0), fill="x", expand=True)
        self.source.bind("<<ComboboxSelected>>", lambda _e: self._source_chosen())
        self.set_sources([], "pattern")

    def set_sources(self, cameras: list[str], current: str) -> None:
        """Offer the pattern, ``cameras``, the screen and a file; show ``current`` as chosen."""
        self._source_specs = source_choices(cameras)
        self._source_spec = current
        labels = list(self._source_specs)
        if source_label(current) not in self._source_specs:
            labels.append(source_label(current))
        values = [*labels, FILE_LABEL]
        if list(self.source.cget("values")) != values:
            self.source.configure(values=values)
        if self.source.get() != source_label(current):
            self.source.set(source_label(current))

    @property
    def preview_visible(self) -> bool:
        """Whether the preview column is on screen (the window is wide enough)."""
        return bool(self._preview_frame.winfo_manager()) and bool(self.winfo_ismapped())

    def _configured(self, event: tk.Event[tk.Misc]) -> None:
        if event.widget is not self:
            return
        shown = bool(self._preview_frame.winfo_manager())
        if event.width < PREVIEW_MIN_WIDTH and shown:
            self._preview_frame.grid_remove()
        elif event.width >= PREVIEW_MIN_WIDTH and not shown:
            self._preview_frame.grid()

    def show_preview_error(self, text: str) -> None:
        """The preview's source failed: say why where the picture would be."""
        self.preview.clear(text)

    def _source_chosen(self) -> None:
        label = self.source.get()
        if label == FILE_LABEL:
            path = self.ask_file()
            if not path:
                self.source.set(source_label(self._source_spec))
                return
            spec = f"file:{path}"
        elif label in self._source_specs:
            spec = self._source_specs[label]
        else:
            return
        if spec != self._source_spec:
            self._source_spec = spec
            self.on_source(spec)

    def set_identity(self, nick: str, server: str) -> None:
        self._me = nick
        self.header.configure(text=f"{nick} @ {server}")
        self._render()

    @property
    def users(self) -> tuple[UserRow, ...]:
        """The last list given to :meth:`set_users` (unfiltered)."""
        return self._users

    def set_users(self, users: Sequence[UserRow]) -> None:
        self._users = tuple(users)
        self._render()

    def set_history(self, rows: Sequence[tuple[str, str, str, str]], missed: int) -> None:
        """Show the recent calls, (when, who, what, duration) each, newest first; ``missed``
        calls not looked at yet mark the tab's title."""
        self.history.delete(*self.history.get_children())
        for index, (when, who, what, duration) in enumerate(rows):
            tags = ("missed",) if "missed" in what else ()
            self.history.insert(
                "", "end", iid=str(index), text=when, values=(who, what, duration), tags=tags
            )
        self._missed = missed
        title = _("Recent calls")
        if missed:
            title = _("Recent calls ● {missed} missed").format(missed=missed)
        self.tabs.tk.call(str(self.tabs), "tab", str(self._recent_tab), "-text", title)
        if missed and self.showing_history:
            self.on_history_seen()

    @property
    def showing_history(self) -> bool:
        return bool(self.winfo_ismapped()) and self._current_tab() == str(self._recent_tab)

    def show_history(self) -> None:
        self.tabs.tk.call(str(self.tabs), "select", str(self._recent_tab))

    @property
    def recent_tab_title(self) -> str:
        return str(self.tabs.tk.call(str(self.tabs), "tab", str(self._recent_tab), "-text"))

    def _current_tab(self) -> str:
        # ttk.Notebook's select/index are untyped in typeshed: ask Tk directly.
        return str(self.tabs.tk.call(str(self.tabs), "select"))

    def _tab_changed(self) -> None:
        if self._missed and self._current_tab() == str(self._recent_tab):
            self.on_history_seen()

    def _history_double_click(self, event: tk.Event[ttk.Treeview]) -> None:
        iid = self.history.identify_row(event.y)
        if iid:
            self.history.selection_set(iid)
            self._call_back()

    def _call_back(self) -> None:
        selection = self.history.selection()
        if not selection:
            self.show_message(_("Select a call in the list to call back."), error=True)
            return
        self.on_call(str(self.history.set(selection[0], "who")))

    def set_codec_preference(self, codecs: tuple[str, ...]) -> None:
        """Show ``codecs`` in the selector (one it does not offer is added to its list)."""
        self._codecs = codecs
        label = codec_label(codecs)
        values = list(CODEC_CHOICES)
        if label not in CODEC_CHOICES:
            values.append(label)
        if list(self.codec.cget("values")) != values:
            self.codec.configure(values=values)
        if self.codec.get() != label:
            self.codec.set(label)

    def visible_nicks(self) -> list[str]:
        return [str(self.tree.item(iid, "text")) for iid in self.tree.get_children()]

    def show_message(self, text: str, error: bool = False) -> None:
        self.message.configure(text=text, foreground=colour("error") if error else colour("ok"))

    def _codec_chosen(self) -> None:
        codecs = CODEC_CHOICES.get(self.codec.get())
        if codecs is not None and codecs != self._codecs:
            self.on_codecs(codecs)  # the selector follows the worker's CodecPreferenceChanged

    def _render(self) -> None:
        selected = self._selected_nick()
        self.tree.delete(*self.tree.get_children())
        # Each time: the theme may have changed (light/dark) since the last list.
        self.tree.tag_configure("online", foreground=colour("ok"))
        self.tree.tag_configure("offline", foreground=colour("muted"))
        users = filter_users(self._users, self.filter_text.get(), self._me)
        # Online first, then unknown (classic clients), then offline; by nick within each.
        users.sort(key=lambda u: _PRESENCE_ORDER[u.online])
        for index, user in enumerate(users):
            tags = () if user.online is None else ("online" if user.online else "offline",)
            iid = self.tree.insert("", "end", iid=str(index), text=user.nick,
                                   values=(status_text(user.online),), tags=tags)  # fmt: skip
            if user.nick == selected:
                self.tree.selection_set(iid)

    def status_of(self, nick: str) -> str:
        """The status column's text for ``nick`` ("" when not listed)."""
        for iid in self.tree.get_children():
            if self.tree.item(iid, "text") == nick:
                return str(self.tree.item(iid, "values")[0])
        return ""

    def show_details(self) -> InfoWindow | None:
        """The selected user's address, status and last-seen time in a small window."""
        nick = self._selected_nick()
        user = next((u for u in self._users if u.nick == nick), None)
        if user is None:
            self.show_message(_("Select a user first."), error=True)
            return None
        if self.details is not None and self.details.winfo_exists():
            self.details.destroy()
        self.details = InfoWindow(
            self,
            title=_("Details"),
            heading=user.nick,
            rows=[
                (_("Status"), status_text(user.online)),
                (_("Last seen"), seen_text(user.seen_age)),
                (_("Address"), f"{user.ip}:{user.port}"),
            ],
        )
        # Over the list (with no window manager it would sit at the screen's corner).
        self.details.geometry(f"+{self.tree.winfo_rootx() + 40}+{self.tree.winfo_rooty() + 40}")
        return self.details

    def _details_click(self, event: tk.Event[ttk.Treeview]) -> None:
        iid = self.tree.identify_row(event.y)
        if iid:
            self.tree.selection_set(iid)
            self.show_details()

    def _selected_nick(self) -> str | None:
        selection = self.tree.selection()
        return str(self.tree.item(selection[0], "text")) if selection else None

    def _double_click(self, event: tk.Event[ttk.Treeview]) -> None:
        iid = self.tree.identify_row(event.y)
        if iid:
            self.tree.selection_set(iid)
            self._call_selected()

    def _call_selected(self) -> None:
        nick = self._selected_nick()
        if nick is None:
            self.show_message(_("Select a user to call first."), error=True)
            return
        self.on_call(nick)

    def _call_typed(self) -> None:
        nick = self.call_nick.get().strip()
        if not nick:
            self.show_message(_("Type the nick of the user to call."), error=True)
            return
        self.on_call(nick)
