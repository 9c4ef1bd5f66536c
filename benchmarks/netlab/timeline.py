"""Timed changes of a running lab (rate steps, cuts), played on a thread.

Guarantees:
- Actions run in the order of their offsets, each no earlier than ``start + at_s``
  (``start`` is ``time.monotonic()`` when the timeline is made); a late one runs at once.
- A failing action does not stop the ones after it; ``wait()`` raises the first failure as a
  :class:`~benchmarks.netlab.errors.LabError` once all have run.
- ``applied`` records each action's planned offset, the time it took effect and, for a cut,
  the impairer's own window, so measurements can be lined up with what really happened.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from benchmarks.netlab.errors import LabError

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CutWindow:
    """A cut as the impairer applied it, in CLOCK_MONOTONIC seconds (``time.monotonic()``)."""

    start: float
    end: float


@dataclass(frozen=True, slots=True)
class TimedAction:
    at_s: float  # offset from the timeline's start
    what: str
    action: Callable[[], CutWindow | None]


@dataclass(frozen=True, slots=True)
class AppliedEvent:
    planned_s: float  # offset from the timeline's start
    at: float  # time.monotonic() once applied
    what: str
    cut: CutWindow | None = None


class Timeline:
    """Plays ``actions`` on a daemon thread from now; ``cancel()`` stops before the next one."""

    def __init__(self, actions: Sequence[TimedAction]) -> None:
        self._actions = sorted(actions, key=lambda a: a.at_s)
        self.applied: list[AppliedEvent] = []
        self.errors: list[Exception] = []
        self._stop = threading.Event()
        self.start = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="vclab-timeline", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for item in self._actions:
            if self._stop.wait(max(0.0, self.start + item.at_s - time.monotonic())):
                return
            try:
                cut = item.action()
            except Exception as exc:  # reported by wait(); the later actions still run
                logger.warning("timeline action %r failed: %s", item.what, exc)
                self.errors.append(exc)
                continue
            self.applied.append(AppliedEvent(item.at_s, time.monotonic(), item.what, cut))

    def wait(self, timeout: float | None = None) -> list[AppliedEvent]:
        """Block until every action has run (or ``timeout``); what was applied."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise LabError(f"timeline still running after {timeout} s")
        if self.errors:
            raise LabError(f"timeline action failed: {self.errors[0]}") from self.errors[0]
        return list(self.applied)

    def cancel(self) -> None:
        self._stop.set()
        self._thread.join()
