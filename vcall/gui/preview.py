"""The self view before any call: the chosen source captured on a thread of its own.

API::

    class SourcePreview(size=(320, 240), fps=10.0, *, opener=open_source)
        .start(spec: str) -> None      # (re)start on ``spec``; returns at once
        .stop() -> None                # returns at once; the thread closes the source itself
        .latest() -> tuple[int, RGB] | None   # (frame number, (h, w, 3) uint8 RGB), newest
        .error -> str                  # why the source could not be opened or read ("" if fine)
        .spec -> str                   # the source being previewed ("" when stopped)
        .running -> bool
        .join(timeout) -> bool         # tests and exit: whether every thread has ended

The Tk thread only calls ``start``/``stop``/``latest`` (none of them waits on a device: a
camera's read blocks only the preview's thread) and polls ``latest`` with ``after()``, as
IDLE's shell polls its subprocess. Each start gets a new thread with its own stop flag, so an
old thread still inside a blocking read can never show its frames after a switch.

Guarantees:
- At most one preview thread is reading at a time after ``stop`` returns except one finishing
  its current read; every thread closes its source when it ends (``join`` waits for that, e.g.
  before a call opens the same camera in the capture process).
- Frames are the source's own (:func:`pipeline.sources.video.open_source`: letterboxed into
  ``size``, a file at its own frame rate), converted to RGB; at most ``fps`` a second.
- An open or read failure ends that thread and sets ``error`` (``SourceError`` and its kin,
  ``OSError``, ``ValueError``); nothing is raised to the caller.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from pipeline.sources.video import Source, SourceError, open_source

logger = logging.getLogger(__name__)

RGB = npt.NDArray[np.uint8]
Opener = Callable[..., Source]


class _Run:
    """One preview thread's own state: its stop flag and its source spec."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None


class SourcePreview:
    def __init__(
        self, size: tuple[int, int] = (320, 240), fps: float = 10.0, *, opener: Opener = open_source
    ) -> None:
        self.size = size
        self.period_s = 1.0 / fps
        self.fps = fps
        self._opener = opener
        self._lock = threading.Lock()
        self._latest: tuple[int, RGB] | None = None
        self._count = 0
        self._run: _Run | None = None
        self._threads: list[threading.Thread] = []
        self.error = ""

    @property
    def spec(self) -> str:
        return self._run.spec if self._run is not None else ""

    @property
    def running(self) -> bool:
        run = self._run
        return run is not None and run.thread is not None and run.thread.is_alive()

    def start(self, spec: str) -> None:
        """Preview ``spec`` from now on (the previous source is let go)."""
        self.stop()
        run = _Run(spec)
        with self._lock:
            self._latest = None
            self.error = ""
        run.thread = threading.Thread(
            target=self._capture, args=(run,), name=f"preview {spec}", daemon=True
        )
        self._run = run
        self._threads = [t for t in self._threads if t.is_alive()] + [run.thread]
        run.thread.start()

    def stop(self) -> None:
        """Stop previewing; returns at once (the thread ends after its current read)."""
        run, self._run = self._run, None
        if run is not None:
            run.stop.set()
        with self._lock:
            self._latest = None

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for every preview thread to end; whether they all did."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = [t for t in self._threads if t.is_alive()]
        return not self._threads

    def latest(self) -> tuple[int, RGB] | None:
        """The newest frame (its number counts up from 1 per preview start), or None."""
        with self._lock:
            return self._latest

    def _capture(self, run: _Run) -> None:
        width, height = self.size
        try:
            source = self._opener(run.spec, width, height, self.fps)
        except (SourceError, OSError, ValueError) as exc:
            self._fail(run, str(exc))
            return
        bgr = np.empty((height, width, 3), np.uint8)
        count = 0
        try:
            next_at = time.monotonic()
            while not run.stop.is_set():
                frame_id = source.read_into(bgr, time.monotonic_ns())
                if frame_id is not None:
                    count += 1
                    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
                    with self._lock:
                        if self._run is run:
                            self._latest = (count, rgb)
                next_at = max(next_at + self.period_s, time.monotonic())
                run.stop.wait(max(0.0, next_at - time.monotonic()))
        except (SourceError, OSError, ValueError) as exc:
            self._fail(run, str(exc))
        finally:
            source.close()

    def _fail(self, run: _Run, message: str) -> None:
        logger.warning("preview of %s: %s", run.spec, message)
        with self._lock:
            if self._run is run:
                self.error = message
