"""Named network namespaces of the lab: creation, command lines, killing, removal, stale sweep.

Every namespace the lab makes is called ``vclab<owner pid>-<n>-<role>`` (role ``a``, ``r`` or
``b``), so that anyone can tell whose it is and whether its owner is still alive. Namespaces
are files under /run/netns (``ip netns add``); deleting that file kills nothing and frees
nothing while a process, or a socket, still lives in the namespace, so removal here always
kills the namespace's processes first (``ip netns pids``).

Guarantees:
- :func:`exec_argv` builds a command line that runs a program inside a namespace with
  PR_SET_PDEATHSIG = SIGKILL (``setpriv --pdeathsig``, kept across ``ip netns exec``'s exec):
  the program dies when the thread that started it dies, even by SIGKILL. Start such programs
  from a thread that lives as long as they should (the main thread, in tests).
- :func:`stop_process` leaves its process reaped (SIGTERM, then SIGKILL after a timeout).
- :func:`destroy` leaves no process in the namespace and no /run/netns entry; it refuses to
  touch a namespace that is the caller's own or init's (never kills outside the lab).
- :func:`remove_stale` removes only ``vclab*`` namespaces whose owner pid is not alive.
- :func:`in_netns` runs a function on a short-lived thread that entered the namespace, so
  sockets can be made inside a namespace without a subprocess; no thread stays behind in it.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from benchmarks.netlab.errors import LabError

logger = logging.getLogger(__name__)

PREFIX = "vclab"
NETNS_DIR = Path("/run/netns")
NAME_RE = re.compile(rf"^{PREFIX}(\d+)-(\d+)-([arb])$")
COMMAND_TIMEOUT = 10.0
KILL_TIMEOUT = 5.0
STOP_TIMEOUT = 3.0  # s between SIGTERM and SIGKILL in stop_process
CLONE_NEWNET = 0x40000000

T = TypeVar("T")


class NetnsError(LabError):
    """A namespace operation failed (the message has the command and its stderr)."""


def run(argv: Sequence[str], *, stdin: str | None = None, timeout: float = COMMAND_TIMEOUT) -> str:
    """Run a short command (``ip``, ``tc``); its stdout, or NetnsError with its stderr."""
    try:
        done = subprocess.run(
            list(argv), input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetnsError(f"{' '.join(argv)}: {exc}") from exc
    if done.returncode != 0:
        raise NetnsError(f"{' '.join(argv)} exited with {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def ip_batch(commands: Sequence[str], netns: str | None = None) -> None:
    """Run ``ip`` commands (one per line, without the leading ``ip``) in one process, inside
    ``netns`` when given; stops at the first failure."""
    prefix = ["ip", "-n", netns] if netns else ["ip"]
    run([*prefix, "-batch", "-"], stdin="\n".join(commands) + "\n")


def exec_argv(netns: str, argv: Sequence[str]) -> list[str]:
    """The command line that runs ``argv`` inside ``netns``, killed when its starter dies."""
    return ["setpriv", "--pdeathsig", "KILL", "--", "ip", "netns", "exec", netns, *argv]


def names() -> list[str]:
    """The lab namespaces that exist now, of every owner."""
    try:
        return sorted(n for n in os.listdir(NETNS_DIR) if NAME_RE.match(n))
    except FileNotFoundError:
        return []


def owner_pid(name: str) -> int | None:
    m = NAME_RE.match(name)
    return int(m.group(1)) if m else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pids(name: str) -> list[int]:
    """The processes in the namespace (``ip netns pids``)."""
    try:
        out = run(["ip", "netns", "pids", name])
    except NetnsError:
        if not (NETNS_DIR / name).exists():
            return []
        raise
    return [int(p) for p in out.split()]


def _is_foreign(name: str) -> bool:
    """True when the namespace is neither ours nor init's (a guard before killing in it)."""
    try:
        target = os.stat(NETNS_DIR / name).st_ino
    except FileNotFoundError:
        return False
    for own in ("/proc/self/ns/net", "/proc/1/ns/net"):
        with contextlib.suppress(OSError):
            if os.stat(own).st_ino == target:
                return False
    return True


def kill_all(name: str, timeout: float = KILL_TIMEOUT) -> list[int]:
    """SIGKILL every process in the namespace until none is left; the pids killed."""
    if not _is_foreign(name):
        return []
    killed: list[int] = []
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in pids(name) if p != os.getpid()]
        if not left:
            return killed
        if time.monotonic() > deadline:
            raise NetnsError(f"processes {left} in {name} survived SIGKILL for {timeout} s")
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        # A killed child of ours stays a zombie until its owner reaps it, but a zombie has no
        # namespace any more, so it leaves `ip netns pids` at once.
        time.sleep(0.02)


def stop_process(proc: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` s; reaped; its pipes closed."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def add(name: str) -> None:
    run(["ip", "netns", "add", name])


def destroy(name: str) -> None:
    """Kill the namespace's processes, then delete it (nothing if it does not exist)."""
    if not (NETNS_DIR / name).exists():
        return
    kill_all(name)
    with contextlib.suppress(NetnsError):
        run(["ip", "netns", "delete", name])
    if (NETNS_DIR / name).exists():
        raise NetnsError(f"namespace {name} still exists after ip netns delete")


def remove_stale() -> list[str]:
    """Destroy the lab namespaces whose owner process is gone; the names removed."""
    removed: list[str] = []
    for name in names():
        pid = owner_pid(name)
        if pid is None or pid_alive(pid):
            continue
        try:
            destroy(name)
        except NetnsError as exc:  # another sweeper (its reaper) may be racing us
            if (NETNS_DIR / name).exists():
                logger.warning("could not remove stale namespace %s: %s", name, exc)
                continue
        logger.info("removed stale namespace %s (owner pid %d is gone)", name, pid)
        removed.append(name)
    return removed


_libc = ctypes.CDLL(None, use_errno=True)


def in_netns(name: str, fn: Callable[[], T]) -> T:
    """Call ``fn`` on a new thread that has entered the namespace; its result or exception.

    A network namespace is a per-thread attribute on Linux: sockets made by ``fn`` belong to
    the namespace for their whole life, whichever thread uses them later.
    """
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            fd = os.open(NETNS_DIR / name, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({name}): {os.strerror(err)}")
            finally:
                os.close(fd)
            result.append(fn())
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target, name=f"netns-{name}")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]
