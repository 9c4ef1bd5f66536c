"""The call screen's audio controls: a microphone level meter and a speaker volume slider.

API::

    METER_FLOOR_DB = -60.0
    def meter_fraction(dbfs: float | None) -> float     # 0..1 of the bar (pure)
    def volume_percent(volume: float) -> int            # 0..150 (pure)
    class AudioControls(ttk.Frame):
        def __init__(self, master, *, on_volume: Callable[[float], None], volume: float = 1.0)
        set_level(dbfs: float | None, muted: bool = False) -> None   # from the call's stats
        set_volume(volume: float) -> None                             # move the slider, no call
        level -> float     # the fraction the bar shows now
        volume -> float    # the slider's value, 0.0..1.5
        meter: tk.Canvas; slider: ttk.Scale

A widget module only: it draws what it is given. The level comes from the call's statistics
(``MediaStats.audio.input_dbfs``, the audio stage's input after echo cancellation) which the
worker samples off the Tk thread; moving the slider calls ``on_volume`` (the client posts
``SetVolume`` to the worker, which tells the media session): the Tk thread never touches
audio. The bar covers ``METER_FLOOR_DB``..0 dBFS (speech sits around -30..-10); it is greyed
while muted (the level still shows, so a user can check the microphone before unmuting).

Guarantees: ``set_level`` accepts any float (NaN, infinities, None: an empty bar); the slider
reports values rounded to 5 %, clamped to 0..150 %.
"""

from __future__ import annotations

import math
import tkinter as tk
from collections.abc import Callable
from tkinter import ttk

from vcall.gui.i18n import _
from vcall.gui.theme import colour

METER_FLOOR_DB = -60.0
MAX_VOLUME = 1.5
METER_SIZE = (60, 10)
_STEP = 0.05


def meter_fraction(dbfs: float | None) -> float:
    """How much of the meter a level of ``dbfs`` fills: 0 at or below METER_FLOOR_DB (and for
    None or NaN), 1 at 0 dBFS and above, linear in dB between."""
    if dbfs is None or math.isnan(dbfs):
        return 0.0
    return max(0.0, min(1.0, (dbfs - METER_FLOOR_DB) / -METER_FLOOR_DB))


def volume_percent(volume: float) -> int:
    """The slider's value shown as a whole percentage, 0..150."""
    return round(100 * max(0.0, min(MAX_VOLUME, volume)))


class AudioControls(ttk.Frame):
    """The microphone meter and the volume slider; see the module docstring."""

    def __init__(
        self,
        master: tk.Misc,
        *,
        on_volume: Callable[[float], None],
        volume: float = 1.0,
    ) -> None:
        super().__init__(master)
        self._on_volume = on_volume
        self._level = 0.0
        self._sent = max(0.0, min(MAX_VOLUME, volume))
        ttk.Label(self, text=_("Mic")).pack(side="left", padx=(0, 4))
        w, h = METER_SIZE
        self.meter = tk.Canvas(self, width=w, height=h, highlightthickness=1, borderwidth=0)
        self.meter.pack(side="left")
        self._bar = self.meter.create_rectangle(0, 0, 0, h, width=0, fill=colour("ok"))
        ttk.Label(self, text=_("Volume")).pack(side="left", padx=(10, 4))
        self._value = tk.DoubleVar(self, value=self._sent)
        self.slider = ttk.Scale(
            self, from_=0.0, to=MAX_VOLUME, orient="horizontal", length=90,
            variable=self._value, command=lambda _v: self._moved(),
        )  # fmt: skip
        self.slider.pack(side="left")
        self._percent = ttk.Label(self, width=5, text=f"{volume_percent(self._sent)} %")
        self._percent.pack(side="left", padx=(4, 0))

    @property
    def level(self) -> float:
        return self._level

    @property
    def volume(self) -> float:
        return round(round(self._value.get() / _STEP) * _STEP, 2)

    def set_level(self, dbfs: float | None, muted: bool = False) -> None:
        """Show the microphone's level (dBFS; None: no audio in this call)."""
        self._level = meter_fraction(dbfs)
        w, h = METER_SIZE
        self.meter.coords(self._bar, 0, 0, round(w * self._level), h)
        self.meter.itemconfigure(self._bar, fill=colour("muted" if muted else "ok"))

    def set_volume(self, volume: float) -> None:
        """Move the slider to ``volume`` (0.0..1.5) without calling ``on_volume``."""
        self._sent = max(0.0, min(MAX_VOLUME, volume))
        self._value.set(self._sent)
        self._percent.configure(text=f"{volume_percent(self._sent)} %")

    def _moved(self) -> None:
        volume = max(0.0, min(MAX_VOLUME, self.volume))
        self._percent.configure(text=f"{volume_percent(volume)} %")
        if abs(volume - self._sent) >= _STEP / 2:  # one post per 5 % step, not per pixel
            self._sent = volume
            self._on_volume(volume)
