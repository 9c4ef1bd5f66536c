"""A video view: one persistent PhotoImage updated in place, centred in a fixed-size frame.

The frame never takes its size from the picture (propagation off), so showing a bigger frame
cannot grow the window and feed back into the display size; :attr:`on_resize` reports the area
available, which the client passes to ``MediaSession.set_display_size``.

Three overlays, each hidden when its text is "": a notice over the top of the picture (why it
stopped: "bob put the call on hold"), a small mark in its bottom left corner (a state that
does not stop the picture: "bob is muted") and a banner across its top edge (the call itself is
in trouble: "Reconnecting to bob… 12 s").
"""

from __future__ import annotations

import logging
import tkinter as tk
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from vcall.gui.logic import to_ppm

logger = logging.getLogger(__name__)


class VideoView(tk.Frame):
    def __init__(
        self,
        master: tk.Misc,
        *,
        width: int,
        height: int,
        placeholder: str = "",
        on_resize: Callable[[int, int], None] | None = None,
        notice_font: str = "TkHeadingFont",
    ) -> None:
        super().__init__(master, width=width, height=height, background="black")
        self.pack_propagate(False)
        self.grid_propagate(False)
        self.on_resize = on_resize
        self.frames_shown = 0
        # No -width/-height: a photo with an explicit size would keep it and crop new data.
        self._photo = tk.PhotoImage(master=self)
        self._image = tk.Label(self, image=self._photo, background="black", borderwidth=0)
        self._image.place(relx=0.5, rely=0.5, anchor="center")
        self._text = tk.Label(
            self, text=placeholder, foreground="#bbbbbb", background="black", wraplength=width
        )
        self._text.place(relx=0.5, rely=0.5, anchor="center")
        self._size = (width, height)
        # Over the top of the picture (the last frame stays on screen): why it stopped
        # ("bob put the call on hold", "No video from bob for 4 s"); hidden when "".
        self.notice = tk.Label(
            self, text="", foreground="#ffffff", background="#8a1c1c", font=notice_font,
            padx=8, pady=3,
        )  # fmt: skip
        # Bottom left, small: a state that leaves the picture alone ("bob is muted").
        self.mark = tk.Label(
            self, text="", foreground="#ffffff", background="#303030",
            font="TkSmallCaptionFont", padx=6, pady=2,
        )  # fmt: skip
        # Across the top edge, amber: the call is in trouble ("Reconnecting to bob… 12 s").
        self.banner = tk.Label(
            self, text="", foreground="#000000", background="#ffb300", font=notice_font,
            pady=4,
        )  # fmt: skip
        self.bind("<Configure>", self._configured)

    def bind_picture(self, sequence: str, handler: Callable[[tk.Event[tk.Misc]], object]) -> None:
        """Bind ``sequence`` on the whole view: the frame, the picture and the placeholder
        (events go to the innermost widget, which is the picture once video shows)."""
        for widget in (self, self._image, self._text, self.notice, self.mark, self.banner):
            widget.bind(sequence, handler, add="+")

    def set_notice(self, text: str) -> None:
        """Show ``text`` over the top of the picture ("" hides it)."""
        if text == self.notice.cget("text") and bool(self.notice.winfo_manager()) == bool(text):
            return
        self.notice.configure(text=text, wraplength=max(60, self._size[0] - 16))
        if text:
            # Above the centre (where a placeholder goes), below the top edge (where the test
            # pattern carries its machine-readable stamp, read from screenshots).
            self.notice.place(relx=0.5, rely=0.3, anchor="center")
            self.notice.lift()
        else:
            self.notice.place_forget()

    @property
    def notice_shown(self) -> str:
        """The notice's text while it is on screen, else ""."""
        return str(self.notice.cget("text")) if self.notice.winfo_manager() else ""

    def set_mark(self, text: str) -> None:
        """Show ``text`` in the bottom left corner of the view ("" hides it)."""
        if text == self.mark.cget("text") and bool(self.mark.winfo_manager()) == bool(text):
            return
        self.mark.configure(text=text)
        if text:
            self.mark.place(x=6, rely=1.0, y=-6, anchor="sw")
            self.mark.lift()
        else:
            self.mark.place_forget()

    def set_banner(self, text: str) -> None:
        """Show ``text`` across the top edge of the view ("" hides it)."""
        if text == self.banner.cget("text") and bool(self.banner.winfo_manager()) == bool(text):
            return
        self.banner.configure(text=text)
        if text:
            self.banner.place(relx=0.0, rely=0.0, relwidth=1.0, anchor="nw")
            self.banner.lift()
        else:
            self.banner.place_forget()

    @property
    def banner_shown(self) -> str:
        """The banner's text while it is on screen, else ""."""
        return str(self.banner.cget("text")) if self.banner.winfo_manager() else ""

    @property
    def mark_shown(self) -> str:
        """The mark's text while it is on screen, else ""."""
        return str(self.mark.cget("text")) if self.mark.winfo_manager() else ""

    @property
    def area(self) -> tuple[int, int]:
        """The (width, height) the picture may use."""
        return self._size

    def image_box(self) -> tuple[int, int, int, int]:
        """Root-window (x, y, width, height) of the picture shown now (for screenshots)."""
        return (
            self._image.winfo_rootx(),
            self._image.winfo_rooty(),
            self._photo.width(),
            self._photo.height(),
        )

    def show(self, rgb: npt.NDArray[np.uint8]) -> None:
        """Show an (H, W, 3) uint8 RGB picture; replaces the previous one in place."""
        self._photo.configure(data=to_ppm(rgb), format="ppm")
        if self.frames_shown == 0:
            self._text.place_forget()
        self.frames_shown += 1

    def clear(self, placeholder: str | None = None) -> None:
        """Blank the picture and show ``placeholder`` (keeps the old text if None)."""
        self._photo.blank()
        self._photo.configure(width=0, height=0)  # 0: the size follows the next data
        if placeholder is not None:
            self._text.configure(text=placeholder)
        self._text.place(relx=0.5, rely=0.5, anchor="center")
        self.frames_shown = 0

    def _configured(self, event: tk.Event[tk.Misc]) -> None:
        size = (max(2, event.width), max(2, event.height))
        if size != self._size:
            self._size = size
            self._text.configure(wraplength=size[0])
            if self.on_resize is not None:
                self.on_resize(*size)
