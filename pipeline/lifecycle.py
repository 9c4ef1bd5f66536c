"""Children that die with their controller: parent-death signal, pipe-EOF watchdog, fd hygiene.

Stage processes are forked from the controller. Guarantees, for every child set up with
``child_init``:

- ``prctl(PR_SET_PDEATHSIG, SIGKILL)``: the kernel kills the child when the thread that forked
  it exits, including when the controller is SIGKILLed. (Hence ``Launcher``: the session forks
  its children from a thread that lives as long as the session, never from a short-lived
  worker thread.)
- A watchdog thread blocks on the read end of a pipe whose only write end is held by the
  controller; EOF (the controller is gone, whatever the reason) ends the child with
  ``os._exit``. The race where the controller dies before prctl runs is closed by checking the
  parent pid after prctl.
- Descriptors that only the controller may hold (the write ends of watchdog and control pipes,
  registered with ``register_controller_fd``) are closed in every child right after fork, so a
  sibling never keeps another session's watchdog pipe open.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterable
from typing import Any

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1

_controller_fds: set[int] = set()
_controller_fds_lock = threading.Lock()


def register_controller_fd(fd: int) -> None:
    """``fd`` must be closed in every forked child (it keeps a watchdog/control pipe open)."""
    with _controller_fds_lock:
        _controller_fds.add(fd)


def unregister_controller_fd(fd: int) -> None:
    with _controller_fds_lock:
        _controller_fds.discard(fd)


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent thread dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        result: int = libc.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(sig), 0, 0, 0)
    except (OSError, AttributeError):
        logger.warning("prctl unavailable: relying on the watchdog pipe only")
        return False
    if result != 0:
        logger.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
        return False
    return True


class Watchdog:
    """A pipe whose write end stays in the controller; children exit on its EOF."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        register_controller_fd(self.write_fd)
        self._closed = False

    def close(self) -> None:
        """Controller side: closing the write end tells every child to exit."""
        if self._closed:
            return
        self._closed = True
        unregister_controller_fd(self.write_fd)
        for fd in (self.write_fd, self.read_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


def _watch(read_fd: int, on_eof: Callable[[], None]) -> None:
    while True:
        try:
            data = os.read(read_fd, 1)
        except InterruptedError:
            continue
        except OSError:
            data = b""
        if not data:
            on_eof()
            return


def _exit_now() -> None:
    logger.debug("controller gone: stage %d exits", os.getpid())
    os._exit(0)


def child_init(
    controller_pid: int,
    watchdog_read_fd: int,
    keep_fds: Iterable[int] = (),
    on_eof: Callable[[], None] = _exit_now,
) -> None:
    """First thing a forked stage process runs."""
    keep = set(keep_fds)
    with _controller_fds_lock:
        stale = _controller_fds - keep
        _controller_fds.clear()
    for fd in stale:
        with contextlib.suppress(OSError):
            os.close(fd)
    set_parent_death_signal()
    # SIGINT goes to the controller's whole process group from a terminal: the controller
    # decides when its stages stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _terminate)
    if os.getppid() != controller_pid:
        # The controller died before prctl took effect.
        os._exit(0)
    threading.Thread(
        target=_watch, args=(watchdog_read_fd, on_eof), name="watchdog", daemon=True
    ).start()


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def _nothing() -> None:
    return None


class Launcher:
    """A thread that runs ``start`` (forking children) and stays alive until ``close``.

    PR_SET_PDEATHSIG fires when the *thread* that forked a child exits, so children must be
    forked from a thread that lives as long as they should.
    """

    def __init__(self, start: Callable[[], None], name: str = "vcall-launcher") -> None:
        self._start = start
        self._started = threading.Event()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        try:
            self._start()
            self._start = _nothing  # drop what the start function referenced
        except BaseException as exc:
            self._error = exc
            self._started.set()
            return
        self._started.set()
        self._stop.wait()

    def run(self) -> None:
        """Start the thread and wait for ``start`` to finish; re-raise what it raised."""
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
