"""The Settings window: the microphone and speaker to use (issue 12), and the rest in use.

Two read-only ``ttk.Combobox`` choices, **Microphone** and **Speaker**: "System default", each
PortAudio capture (playback) device by name, and "Off". The window never asks PortAudio itself:
``on_list()`` posts a request to the client's worker (which lists the devices in a thread
of its own, :class:`vcall.gui.events.ListAudioDevices`) and :meth:`SettingsWindow.fill` puts
the answer in; meanwhile the window says "Looking for devices…", and a failure is said in
words. **Refresh** lists again (a headset plugged in since shows).
**Apply** (or Enter) hands the two choices to ``on_apply(audio_in, audio_out)`` as specs
("device", "device:NAME", "off"): the worker remembers them in the state file and the next
call (and the next ring) uses them. Below, the settings in use as (name, value) rows, and a
footer saying which wins: ``--audio-in``/``--audio-out`` > ``[audio] input``/``output`` naming a
device (or anything but plain "device") > this window > the system default
(:func:`vcall.config.start_audio`). Escape and Ctrl+W close the window.

Guarantees: every label goes through :func:`vcall.gui.i18n._`; nothing here blocks (no
PortAudio, no file); a chosen device missing from the list is still shown (as "NAME (not
found)"), so opening and applying never loses a choice made with another device plugged in.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable, Sequence
from tkinter import ttk

from vcall.gui.i18n import _
from vcall.gui.theme import colour

DEFAULT = "device"  # the spec of "System default"
OFF = "off"
DEVICE_PREFIX = "device:"


def choices(names: Sequence[str], current: str) -> list[tuple[str, str]]:
    """(label, spec) rows of one combobox: the default, each device ``names[i]`` as
    "device:NAME", "Off"; the ``current`` spec's device is kept (marked "not found") when it is
    not among ``names``. Pure."""
    rows = [(_("System default"), DEFAULT)]
    rows += [(name, DEVICE_PREFIX + name) for name in names]
    current_name = current.removeprefix(DEVICE_PREFIX)
    if current.startswith(DEVICE_PREFIX) and current_name not in names:
        rows.append((_("{name} (not found)").format(name=current_name), current))
    rows.append((_("Off"), OFF))
    return rows


class DeviceChoice:
    """One labelled combobox over (label, spec) rows; ``spec`` is what is chosen."""

    def __init__(self, master: ttk.Frame, row: int, title: str, current: str) -> None:
        ttk.Label(master, text=title, font="TkDefaultFont 10 bold").grid(
            row=row, column=0, sticky="w", padx=(0, 16), pady=2
        )
        self.box = ttk.Combobox(master, state="readonly", width=44)
        self.box.grid(row=row, column=1, sticky="we", pady=2)
        self._rows: list[tuple[str, str]] = []
        self.set_names([], current)

    def set_names(self, names: Sequence[str], current: str | None = None) -> None:
        """Offer ``names`` (keeping the choice shown unless ``current`` is given)."""
        chosen = self.spec if current is None else current
        self._rows = choices(names, chosen)
        self.box.configure(values=[label for label, _spec in self._rows])
        self.box.current([spec for _label, spec in self._rows].index(chosen))

    @property
    def spec(self) -> str:
        index = self.box.current()
        return self._rows[index][1] if 0 <= index < len(self._rows) else DEFAULT

    @property
    def labels(self) -> list[str]:
        return [label for label, _spec in self._rows]

    def choose(self, label: str) -> None:
        """Select the row shown as ``label`` (ValueError if none): what a click does."""
        self.box.current(self.labels.index(label))
        self.box.event_generate("<<ComboboxSelected>>")


class SettingsWindow(tk.Toplevel):
    """The Settings window (see the module docstring). ``audio``: the (input, output) specs in
    the choice now; ``pinned``: the (input, output) specs the flags or config file impose, ""
    where they leave the choice to this window."""

    def __init__(
        self,
        master: tk.Misc,
        *,
        rows: Sequence[tuple[str, str]],
        config_file: str,
        audio: tuple[str, str],
        pinned: tuple[str, str],
        on_list: Callable[[], None],
        on_apply: Callable[[str, str], None],
    ) -> None:
        super().__init__(master)
        self.title(_("Settings"))
        self.transient(master.winfo_toplevel())
        self._on_list = on_list
        self._on_apply = on_apply
        body = ttk.Frame(self, padding=14)
        body.pack(fill="both", expand=True)
        body.columnconfigure(1, weight=1)
        heading = ttk.Label(body, text=_("Sound"), font=("TkHeadingFont", 12, "bold"))
        heading.grid(row=0, column=0, columnspan=3, sticky="w", pady=(0, 6))
        self.microphone = DeviceChoice(body, 1, _("Microphone"), audio[0])
        self.speaker = DeviceChoice(body, 2, _("Speaker"), audio[1])
        self.refresh_button = ttk.Button(body, text=_("Refresh"), command=self.refresh)
        self.refresh_button.grid(row=1, column=2, rowspan=2, sticky="e", padx=(8, 0))
        self.status = ttk.Label(body, text="", wraplength=640)
        self.status.grid(row=3, column=0, columnspan=3, sticky="w", pady=(4, 0))
        notes = [
            _("Microphone set by the config file or --audio-in: {spec}").format(spec=pinned[0])
            if pinned[0]
            else "",
            _("Speaker set by the config file or --audio-out: {spec}").format(spec=pinned[1])
            if pinned[1]
            else "",
        ]
        self.pinned_note = ttk.Label(
            body, text="\n".join(n for n in notes if n), foreground=colour("error")
        )
        self.pinned_note.grid(row=4, column=0, columnspan=3, sticky="w")

        heading = ttk.Label(body, text=_("Settings in use"), font=("TkHeadingFont", 12, "bold"))
        heading.grid(row=5, column=0, columnspan=3, sticky="w", pady=(12, 6))
        self.rows: list[tuple[str, str]] = list(rows)
        for index, (name, value) in enumerate(self.rows, start=6):
            ttk.Label(body, text=name, font="TkDefaultFont 10 bold").grid(
                row=index, column=0, sticky="w", padx=(0, 16)
            )
            ttk.Label(body, text=value).grid(row=index, column=1, columnspan=2, sticky="w")
        last = 6 + len(self.rows)
        footer = _(
            "The microphone and speaker chosen here apply from the next call and are remembered. "
            "--audio-in/--audio-out, then [audio] input/output in {config_file}, win over them "
            "when they name a device (or tone:, file:, off). To change the other settings, edit "
            "that file (TOML; see vcall gui --help) and start vcall again."
        ).format(config_file=config_file)
        self.footer = ttk.Label(body, text=footer, wraplength=640, foreground=colour("muted"))
        self.footer.grid(row=last, column=0, columnspan=3, sticky="w", pady=(10, 0))
        buttons = ttk.Frame(body)
        buttons.grid(row=last + 1, column=0, columnspan=3, sticky="e", pady=(12, 0))
        self.apply_button = ttk.Button(buttons, text=_("Apply"), command=self.apply)
        self.apply_button.pack(side="left", padx=(0, 6))
        self.close_button = ttk.Button(buttons, text=_("Close"), command=self.destroy)
        self.close_button.pack(side="left")
        for sequence in ("<Escape>", "<Control-w>", "<Control-W>"):
            self.bind(sequence, self._close)
        self.bind("<Return>", self._apply_key)
        self.bind("<KP_Enter>", self._apply_key)
        self.looking = False
        self.refresh()
        self.microphone.box.focus_set()

    def refresh(self) -> None:
        """Ask for the device list (answered by :meth:`fill`); never blocks."""
        self.looking = True
        self.refresh_button.state(["disabled"])
        self.status.configure(text=_("Looking for devices…"), foreground=colour("muted"))
        self._on_list()

    def fill(self, inputs: Sequence[str], outputs: Sequence[str], error: str = "") -> None:
        """The worker's answer: offer these devices, or say why there are none."""
        self.looking = False
        self.refresh_button.state(["!disabled"])
        self.microphone.set_names(inputs)
        self.speaker.set_names(outputs)
        if error:
            text = _("Cannot list the sound devices: {error}").format(error=error)
            self.status.configure(text=text, foreground=colour("error"))
        else:
            text = _("{inputs} microphones and {outputs} speakers found.").format(
                inputs=len(inputs), outputs=len(outputs)
            )
            self.status.configure(text=text, foreground=colour("muted"))

    def apply(self) -> None:
        """Hand the choices over; they apply from the next call."""
        self._on_apply(self.microphone.spec, self.speaker.spec)
        self.status.configure(
            text=_("Saved: the next call uses these devices."), foreground=colour("ok")
        )

    def _apply_key(self, _event: tk.Event[tk.Misc]) -> str:
        self.apply()
        return "break"

    def _close(self, _event: tk.Event[tk.Misc]) -> str:
        self.destroy()
        return "break"  # Ctrl+W closes this window, not the application behind it
