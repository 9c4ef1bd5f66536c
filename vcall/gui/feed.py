"""The video feed: a media session's newest frames into the call screen's two views.

Driven by the session's notify fd as a Tk file handler: when it is readable, ``latest()`` (a
non-blocking copy out of shared memory) gives the newest peer and self-view frames, and each one
not shown yet replaces the picture of its :class:`~vcall.gui.video.VideoView` in place. The fd
is the worker's duplicate, owned here: closed after the handler is removed, so Tk never watches
a closed descriptor even when the session closes first.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import select
import time
import tkinter as tk
from typing import TYPE_CHECKING, Any

from vcall.gui.video import VideoView

if TYPE_CHECKING:
    from pipeline.session import Frame

logger = logging.getLogger(__name__)


class VideoFeed:
    def __init__(self, widget: tk.Misc, peer_view: VideoView, self_view: VideoView) -> None:
        self._tk = widget.tk
        self._views = (peer_view, self_view)
        self._session: Any = None
        self._fd: int | None = None
        self._shown: list[int | None] = [None, None]
        self.frames_handled = 0
        # Durations (ms) of the handler's last runs, for `vcall bench ui`.
        self.handler_ms: collections.deque[float] = collections.deque(maxlen=4096)

    @property
    def attached(self) -> bool:
        return self._session is not None

    def set_views(self, peer_view: VideoView, self_view: VideoView) -> None:
        """Show the peer's frames in ``peer_view`` and ours in ``self_view`` from now on (the
        call screen swapped its views); the newest frames are drawn again at the next wake."""
        self._views = (peer_view, self_view)
        self._shown = [None, None]

    def attach(self, session: Any, fd: int) -> None:
        """Start showing ``session``'s frames; ``fd`` (a dup of its notify fd) is ours now."""
        self.detach()
        self._session, self._fd = session, fd
        self._shown = [None, None]
        self._tk.createfilehandler(fd, tk.READABLE, self._on_readable)

    def detach(self, placeholder: str = "Waiting for video…") -> None:
        fd, self._fd, self._session = self._fd, None, None
        if fd is not None:
            with contextlib.suppress(tk.TclError, ValueError):
                self._tk.deletefilehandler(fd)
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(tk.TclError):  # the window may be gone already
            self._views[0].clear(placeholder)
            self._views[1].clear()

    def _on_readable(self, fd: int, _mask: int) -> None:
        start = time.perf_counter()
        self._show_newest(fd)
        self.handler_ms.append((time.perf_counter() - start) * 1000.0)

    def _show_newest(self, fd: int) -> None:
        # latest() drains the eventfd; drain our duplicate too, never blocking, in case the
        # session is closing and latest() returns early.
        with contextlib.suppress(OSError):
            if select.select([fd], [], [], 0)[0]:
                os.read(fd, 8)
        session = self._session
        if session is None:
            return
        try:
            frames: tuple[Frame | None, Frame | None] = session.latest()
        except Exception:
            logger.debug("latest() failed", exc_info=True)
            return
        self.frames_handled += 1
        for index, frame in enumerate(frames):
            if frame is not None and frame.frame_id != self._shown[index]:
                self._views[index].show(frame.image)
                self._shown[index] = frame.frame_id
