"""Children that die with their controller: fork, fd hygiene, parent-death signal, watchdog.

Stage processes are forked from the controller (``ChildProcess``). Guarantees, for every child:

- It keeps only the descriptors it was given (plus stdin/stdout/stderr and the streams of the
  logging handlers): everything else the controller had open at fork time (call-control TCP
  sockets, listening sockets, other sessions' pipes, the X connection) is closed at once, so a
  child never keeps a TCP connection from sending its FIN or a port bound after the controller
  closed it.
- ``prctl(PR_SET_PDEATHSIG, SIGKILL)``: the kernel kills the child when the thread that forked
  it exits, including when the controller is SIGKILLed. (Hence ``Launcher``: a session forks
  its children from a thread that lives as long as the session, never from a short-lived
  worker thread.) The race where the controller dies before prctl runs is closed by checking
  the parent pid afterwards.
- A watchdog thread blocks on the read end of a pipe whose only write end is the controller's;
  EOF (the controller is gone, whatever the reason) ends the child with ``os._exit``.

Forking from a multi-threaded controller (the launcher thread forks while the Tk, asyncio and
worker threads run) leaves every lock another thread held at that instant held forever in the
child. So the child touches as little as possible before its stage runs, in this order:

- PR_SET_PDEATHSIG first, through a ``prctl`` resolved at import in the controller (no
  ``dlopen``/``dlsym`` in the child: the dynamic loader's lock may be held): whatever the child
  blocks on afterwards, it still dies with its controller.
- stdout, stderr and every logging handler's text stream are replaced by fresh objects over the
  same descriptors: a thread that was inside ``write`` at fork time holds the stream's buffer
  lock, and the first log line or the exit flush would wait on it forever. The inherited
  objects are kept referenced (their finaliser would flush through that lock). The logging
  module's own locks are re-created by CPython's at-fork hook.
- Inherited objects are frozen, not collected: a collection would run finalisers of other
  threads' garbage in the child, which may take their locks.

``ChildProcess`` is a small fork wrapper rather than ``multiprocessing.Process`` because the
latter's child must keep an unnamed pipe open for the parent's ``join``, which the fd policy
above would close; ours waits on a pidfd instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import io
import logging
import multiprocessing
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15


def _load_prctl() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


# Resolved here, in the controller: a forked child must not dlopen (see the module docstring).
_PRCTL = _load_prctl()
# Streams a child replaced; referenced so that they are never finalised (see _fresh_streams).
_ABANDONED: list[Any] = []


def _prctl(option: int, value: int | bytes) -> bool:
    if _PRCTL is None:
        return False
    arg: Any = ctypes.c_char_p(value) if isinstance(value, bytes) else ctypes.c_ulong(value)
    result: int = _PRCTL(option, arg, ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))
    return result == 0


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent thread dies."""
    if not _prctl(PR_SET_PDEATHSIG, sig):
        logger.warning("prctl(PR_SET_PDEATHSIG) unavailable: relying on the watchdog pipe")
        return False
    return True


class Watchdog:
    """A pipe whose write end stays in the controller; children exit on its EOF."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        self._closed = False

    def close(self) -> None:
        """Controller side: closing the write end tells every child to exit."""
        if self._closed:
            return
        self._closed = True
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


def _logging_fds() -> set[int]:
    """Descriptors the logging handlers write to (kept so children can still log)."""
    fds = set()
    for ref in list(logging._handlerList):  # type: ignore[attr-defined]
        handler = ref()
        stream = getattr(handler, "stream", None)
        with contextlib.suppress(Exception):
            fds.add(stream.fileno())  # type: ignore[union-attr]
    return fds


def _fresh_stream(stream: Any, done: dict[int, Any]) -> Any:
    if id(stream) in done:
        return done[id(stream)]
    new = stream
    if isinstance(stream, io.TextIOWrapper):
        try:
            fd = stream.fileno()
            new = io.TextIOWrapper(
                io.BufferedWriter(io.FileIO(fd, "w", closefd=False)),
                encoding=stream.encoding,
                errors=stream.errors,
                line_buffering=stream.line_buffering,
                write_through=stream.write_through,
            )
        except (OSError, ValueError):  # not backed by a descriptor, or closed: keep it
            new = stream
    if new is not stream:
        _ABANDONED.append(stream)
    done[id(stream)] = new
    return new


def _fresh_streams() -> None:
    """Child, right after fork: stdout, stderr and the logging handlers' text streams become
    new objects over the same descriptors (nothing is flushed or closed: the old objects' buffer
    locks may be held by a thread that does not exist here)."""
    done: dict[int, Any] = {}
    sys.stdout = _fresh_stream(sys.stdout, done)
    sys.stderr = _fresh_stream(sys.stderr, done)
    for ref in list(logging._handlerList):  # type: ignore[attr-defined]
        handler = ref()
        stream = vars(handler).get("stream") if handler is not None else None
        if stream is not None:  # (logging.lastResort's is a property: sys.stderr, done above)
            # Assigned, not setStream(): that would flush the old stream.
            handler.stream = _fresh_stream(stream, done)


def close_fds_except(keep: Iterable[int]) -> int:
    """Close every open descriptor not in ``keep`` (0, 1, 2 are always kept); returns how many."""
    kept = {0, 1, 2, *keep}
    closed = 0
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in kept:
            with contextlib.suppress(OSError):
                os.close(fd)
                closed += 1
    return closed


def child_init(
    controller_pid: int,
    watchdog_read_fd: int,
    keep_fds: Iterable[int] = (),
    on_eof: Callable[[], None] = _exit_now,
) -> None:
    """First thing a forked stage process runs (after ChildProcess's own fork-safety steps)."""
    # Everything inherited from the controller is frozen, never collected here: collecting it
    # would run finalisers of other threads' objects (which may take locks those threads held
    # at fork time), and a controller socket collected later would close whatever new
    # descriptor had reused its number.
    gc.freeze()
    close_fds_except({watchdog_read_fd, *keep_fds, *_logging_fds()})
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


class ChildProcess:
    """A forked child running ``target()``; exit code 0 on return, 1 on an exception."""

    def __init__(self, name: str, target: Callable[[], None]) -> None:
        self.name = name
        self._target = target
        self.pid: int | None = None
        self._pidfd = -1
        self.exitcode: int | None = None

    def start(self) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            # Fork-safety first (see the module docstring): die with the forking thread even if
            # something below blocks, then stop using stream objects whose locks may be held.
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # no logging yet: child_init warns
            if os.getppid() != parent:
                os._exit(0)
            _fresh_streams()
            code = 1
            try:
                multiprocessing.current_process().name = self.name
                _prctl(PR_SET_NAME, self.name.encode()[:15])
                self._target()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 0
            except BaseException:
                logger.exception("%s crashed", self.name)
            finally:
                with contextlib.suppress(Exception):
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(code)
        self.pid = pid
        self._target = _nothing  # the parent does not need what the child ran
        try:
            self._pidfd = os.pidfd_open(pid)
        except OSError:
            self._pidfd = -1

    def poll(self) -> int | None:
        """The exit code if the child has ended (reaping it), else None."""
        if self.exitcode is not None or self.pid is None:
            return self.exitcode
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            self.exitcode = -1
            return self.exitcode
        if pid == 0:
            return None
        self.exitcode = os.waitstatus_to_exitcode(status)
        return self.exitcode

    def is_alive(self) -> bool:
        return self.pid is not None and self.poll() is None

    def join(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.is_alive():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return
            if self._pidfd >= 0:
                select.select([self._pidfd], [], [], left)
            else:
                time.sleep(0.01 if left is None else min(0.01, left))

    def _signal(self, sig: int) -> None:
        if self.pid is not None and self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def close(self) -> None:
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1


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
        except BaseException as exc:
            self._error = exc
            self._started.set()
            return
        finally:
            self._start = _nothing  # drop what the start function referenced
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
