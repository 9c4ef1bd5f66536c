"""The shell every stage process runs: child set-up, a select loop, control messages, stats.

A stage is a subclass of ``Stage`` that lists the fds it waits on, handles control messages and
does one step when something is ready. ``Stage.run`` never busy-waits: it sleeps in ``select``
on those fds plus the control pipe, with the timeout the stage asks for. Control messages are
the frozen dataclasses of ``pipeline.control`` (a stage matches on their class); ``Stop`` or EOF
on the control pipe ends the loop, ``ResetStats`` is handled here, anything else goes to the
stage's ``handle``; the watchdog (``lifecycle.child_init``) ends the process if the controller
dies.
"""

from __future__ import annotations

import logging
import os
import select
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from pipeline.control import ControlMessage, ResetStats, Stop
from pipeline.ipc import lifecycle
from pipeline.stats import LatencyWindow, StatsChannel

logger = logging.getLogger(__name__)

# OpenCV threads in each stage process. Its worker threads spin after each parallel job:
# between frames 33 ms apart a 720p I420 <-> RGB pair cost 2.7 ms of CPU with OpenCV's two
# threads against 1.7 ms with one (100 frames, one window); the stages are parallel already.
# Set by the controller before it forks the stages (pipeline.session): cv2.setNumThreads in a
# child forked while the parent's OpenCV pool was running hangs (reproduced).
OPENCV_THREADS = 1
# Longest a stage sleeps without looking at its control pipe and publishing stats.
MAX_SLEEP_S = 0.25
# At most this many control messages are handled per loop turn (the pipe is the bound).
MAX_CONTROL_PER_TURN = 16


@dataclass(slots=True)
class StageContext:
    """What the controller hands a stage process (inherited through fork, never pickled)."""

    name: str
    controller_pid: int
    watchdog_fd: int
    control: Connection
    stats: StatsChannel
    keep_fds: tuple[int, ...] = field(default=())
    nice: int = 0  # added to the stage process's nice value (the controller's UI thread first)
    # time.time() - time.monotonic(), taken once by the controller for all its stages: the
    # audio and video sender reports map RTP time to NTP through the same offset, so a wall
    # clock stepped between two stage starts cannot skew the peer's lip sync (None: now).
    wallclock_offset: float | None = None


class Stage:
    """Base of a stage's loop. Subclasses override ``wait_fds``, ``timeout``, ``step``."""

    def __init__(self, ctx: StageContext) -> None:
        self.ctx = ctx
        self.running = True
        self.latency: dict[str, LatencyWindow] = {}
        self.counters: dict[str, int] = {}
        self._reset_ns = time.monotonic_ns()

    # -- for subclasses -------------------------------------------------------------------
    def wallclock_offset(self) -> float:
        """The session's wall-clock offset (``StageContext.wallclock_offset``), or now's."""
        offset = self.ctx.wallclock_offset
        return time.time() - time.monotonic() if offset is None else offset

    def wait_fds(self) -> Sequence[int]:
        return ()

    def timeout(self, now_ns: int) -> float:
        return MAX_SLEEP_S

    def step(self, ready: Sequence[int], now_ns: int) -> None:
        """Called every loop turn with the fds that are readable (maybe none)."""

    def handle(self, msg: ControlMessage) -> None:
        """A control message this stage acts on (the others are ignored)."""

    def snapshot(self, now_ns: int) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        """Release what the stage opened (sources, sockets)."""

    def reset_stats(self) -> None:
        """Start the stage's own counters afresh (its parts' counters: edges...)."""

    # -- helpers ----------------------------------------------------------------------------
    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def window(self, name: str) -> LatencyWindow:
        win = self.latency.get(name)
        if win is None:
            win = self.latency[name] = LatencyWindow()
        return win

    def publish(self, now_ns: int, force: bool = False) -> None:
        # Building the snapshot sorts every latency window: only when it will be written (it
        # was built on every loop turn, i.e. every packet in send and receive).
        if not force and not self.ctx.stats.due(now_ns):
            return
        snap: dict[str, Any] = {
            "pid": os.getpid(),
            "counters": dict(self.counters),
            # The time the counters and windows cover: frames / since_reset_s is a rate.
            "since_reset_s": round((now_ns - self._reset_ns) / 1e9, 4),
            "latency_ms": {k: v.summary() for k, v in self.latency.items()},
        }
        snap.update(self.snapshot(now_ns))
        self.ctx.stats.publish(snap, now_ns, force)

    def _poll_control(self) -> None:
        conn = self.ctx.control
        for _ in range(MAX_CONTROL_PER_TURN):
            try:
                if not conn.poll(0):
                    return
                msg: ControlMessage = conn.recv()
            except (EOFError, OSError):
                logger.debug("%s: control pipe closed", self.ctx.name)
                self.running = False
                return
            match msg:
                case Stop():
                    self.running = False
                    return
                case ResetStats():
                    self.latency.clear()
                    self.counters.clear()
                    self.reset_stats()
                    self._reset_ns = time.monotonic_ns()
                    continue
            try:
                self.handle(msg)
            except Exception:
                logger.exception("%s: control message %s failed", self.ctx.name, type(msg).__name__)

    def run(self) -> None:
        control_fd = self.ctx.control.fileno()
        try:
            while self.running:
                now = time.monotonic_ns()
                fds = [control_fd, *self.wait_fds()]
                timeout = max(0.0, min(self.timeout(now), MAX_SLEEP_S))
                try:
                    ready, _, _ = select.select(fds, [], [], timeout)
                except InterruptedError:
                    continue
                if control_fd in ready:
                    self._poll_control()
                    if not self.running:
                        break
                now = time.monotonic_ns()
                self.step([fd for fd in ready if fd != control_fd], now)
                self.publish(now)
        finally:
            self.publish(time.monotonic_ns(), force=True)
            self.close()


def stage_main(ctx: StageContext, factory: Callable[[StageContext], Stage]) -> None:
    """Process target: set up the child, build the stage inside it, run it."""
    lifecycle.child_init(
        ctx.controller_pid, ctx.watchdog_fd, keep_fds=(ctx.control.fileno(), *ctx.keep_fds)
    )
    if ctx.nice > 0:
        os.nice(ctx.nice)
    # An exception propagates to lifecycle.ChildProcess: logged, exit code 1, and the controller
    # shows the stage in stats()["dead_stages"].
    stage = factory(ctx)
    stage.run()
