"""Nothing outlives the controller: SIGKILL of a controller, the watchdog pipe, stale segments,
clean and idempotent close."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

from pipeline.ipc import lifecycle, shm
from pipeline.session import MediaSession

pytestmark = pytest.mark.usefixtures("no_leaks")

REPO = Path(__file__).resolve().parents[2]
GONE_WITHIN_S = 5.0

CONTROLLER = textwrap.dedent(
    """
    import os, sys, threading, time
    from pipeline.session import MediaSession
    session = MediaSession(bind_ip="127.0.0.1", preset="low")
    if sys.argv[1] == "thread":  # as the GUI does: open() from a worker thread that ends
        worker = threading.Thread(target=session.open)
        worker.start()
        worker.join()
    else:
        session.open()
    pids = [p.pid for p in session._procs.values() if p.pid is not None]
    print(" ".join(map(str, pids)), flush=True)
    time.sleep(60)
    """
)


def _wait_gone(pids: list[int], timeout: float = GONE_WITHIN_S) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = pids
    while time.monotonic() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
        if not alive:
            return []
        time.sleep(0.05)
    return alive


@pytest.mark.parametrize("opened_from", ["main", "thread"])
def test_sigkilled_controller_leaves_no_process_and_no_segment(opened_from: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CONTROLLER, opened_from],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # the resource tracker's leak warning is expected here
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        stage_pids = [int(p) for p in line.split()]
        assert len(stage_pids) == 5
        segments = shm.list_segments(proc.pid)
        assert segments, "the controller created no segment?"
        # Stage processes may be reparented to us or to init: either way they must go.
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert _wait_gone(stage_pids) == []
        # The controller's resource tracker unlinks its segments once the last holder of its
        # pipe (the controller; stages closed their copy) is gone: no need to wait for the
        # next start (whose remove_stale() is tested below).
        deadline = time.monotonic() + GONE_WITHIN_S
        while shm.list_segments(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert shm.list_segments(proc.pid) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_watchdog_pipe_eof_ends_the_child_even_without_the_death_signal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No parent-death signal: only the watchdog can end the child.
    monkeypatch.setattr(lifecycle, "set_parent_death_signal", lambda sig=0: False)
    dog = lifecycle.Watchdog()
    controller = os.getpid()

    def sleeper() -> None:
        lifecycle.child_init(controller, dog.read_fd)
        time.sleep(30)

    child = lifecycle.ChildProcess("vcall-test", sleeper)
    child.start()
    try:
        time.sleep(0.3)
        assert child.is_alive()
        dog.close()  # what the controller's death does to the pipe
        child.join(GONE_WITHIN_S)
        assert child.exitcode == 0
    finally:
        child.kill()
        child.join()
        child.close()
        dog.close()


def test_children_keep_only_the_descriptors_they_are_given() -> None:
    """A controller's TCP connection must not stay open in a stage (its FIN would never go)."""
    dog = lifecycle.Watchdog()
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server_side, _ = listener.accept()
    result_r, result_w = os.pipe()
    controller = os.getpid()

    def probe() -> None:
        lifecycle.child_init(controller, dog.read_fd, keep_fds=(result_w,))
        still_open = []
        for fd in (client.fileno(), listener.fileno(), dog.write_fd):
            try:
                os.fstat(fd)
                still_open.append(fd)
            except OSError:
                pass
        os.write(result_w, repr(still_open).encode())

    child = lifecycle.ChildProcess("vcall-test", probe)
    child.start()
    try:
        os.close(result_w)
        assert os.read(result_r, 100) == b"[]"
        child.join(GONE_WITHIN_S)
        assert child.exitcode == 0
        # The controller closes its end of the call: the peer sees EOF at once.
        client.close()
        server_side.settimeout(5)
        assert server_side.recv(10) == b""
    finally:
        child.kill()
        child.join()
        child.close()
        for sock in (server_side, listener, client):
            sock.close()
        os.close(result_r)
        dog.close()


def test_a_crashing_child_exits_with_code_1() -> None:
    def boom() -> None:
        raise RuntimeError("stage bug")

    child = lifecycle.ChildProcess("vcall-test", boom)
    child.start()
    child.join(GONE_WITHIN_S)
    child.close()
    assert child.exitcode == 1


FORK_DURING_A_WRITE = textwrap.dedent(
    """
    import logging, sys, threading
    from pipeline.ipc import lifecycle
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")

    def flood():  # blocks inside stderr's write, holding its buffer lock, until drained
        sys.stderr.write("x" * (1 << 20))
        sys.stderr.flush()

    flooder = threading.Thread(target=flood, daemon=True)
    flooder.start()
    sys.stdin.readline()  # the test saw the pipe full: the lock is held now

    def stage():
        logging.getLogger("stage").info("stage up")
        print("child printed", flush=True)

    child = lifecycle.ChildProcess("vcall-test", stage)
    child.start()
    print("forked", flush=True)
    child.join(20)
    if child.exitcode is None:
        child.kill()
        child.join(5)
        print("stuck", flush=True)
    else:
        print("exit", child.exitcode, flush=True)
    child.close()
    flooder.join(20)
    """
)


def test_a_child_forked_while_another_thread_writes_to_stderr_does_not_deadlock() -> None:
    """A thread of the controller is inside a write to stderr (blocked on a full pipe, holding
    the stream's buffer lock) when a stage is forked: the child's log line, print and exit
    flush must not wait on that lock, which nobody in the child will ever release."""
    import fcntl
    import termios

    proc = subprocess.Popen(
        [sys.executable, "-c", FORK_DURING_A_WRITE],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        capacity = fcntl.fcntl(proc.stderr.fileno(), 1032)  # F_GETPIPE_SZ
        queued = bytearray(4)
        deadline = time.monotonic() + 20
        while int.from_bytes(queued, sys.byteorder) < capacity:
            assert time.monotonic() < deadline, "the flooding thread never filled the pipe"
            time.sleep(0.01)
            fcntl.ioctl(proc.stderr.fileno(), termios.FIONREAD, queued)
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == b"forked\n"
        err = proc.stderr.read()  # drains: the flood ends, then the child's line can pass
        out = proc.stdout.read().decode()
        proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()
    assert "exit 0" in out, out
    assert "child printed" in out
    assert b"stage up" in err


STUCK_ON_AN_INHERITED_LOCK = textwrap.dedent(
    """
    import threading, time
    from pipeline.ipc import lifecycle
    held = threading.Lock()
    holder_ready = threading.Event()

    def hold():  # another controller thread, inside some lock when the stage is forked
        with held:
            holder_ready.set()
            time.sleep(60)

    threading.Thread(target=hold, daemon=True).start()
    holder_ready.wait()
    # The stage blocks on the inherited lock before child_init could run (as a child stuck in
    # a logging or stdio lock did): only a death signal set before the target protects it.
    child = lifecycle.ChildProcess("vcall-test", held.acquire)
    child.start()
    print(child.pid, flush=True)
    time.sleep(60)
    """
)


def test_a_child_stuck_on_an_inherited_lock_still_dies_with_its_controller() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", STUCK_ON_AN_INHERITED_LOCK], cwd=REPO, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    pid = 0
    try:
        pid = int(proc.stdout.readline())
        proc.kill()
        proc.wait()
        alive = _wait_gone([pid])
        assert alive == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        if pid and _wait_gone([pid], 0.1):
            os.kill(pid, signal.SIGKILL)  # what the old code left behind


def test_death_signal_follows_the_launcher_thread_not_a_worker_thread() -> None:
    """open() from a short-lived worker thread: stages must survive the thread's end."""
    session = MediaSession(bind_ip="127.0.0.1", preset="low")
    worker = threading.Thread(target=session.open)
    worker.start()
    worker.join()
    try:
        time.sleep(0.5)
        pids = [p.pid for p in session._procs.values() if p.pid is not None]
        assert len(pids) == 5
        assert all(psutil.pid_exists(p) for p in pids)
        assert session.stats().to_dict()["dead_stages"] == []
    finally:
        session.close()


def test_stale_segments_of_a_dead_controller_are_removed_at_the_next_start() -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = shm.SHM_DIR / f"vcall_{dead.pid}_deadbeef_raw"
    stale.write_bytes(b"\0" * 4096)
    mine = shm.SHM_DIR / f"vcall_{os.getpid()}_cafebabe_raw"  # a live controller's: kept
    mine.write_bytes(b"\0" * 16)
    try:
        session = MediaSession(bind_ip="127.0.0.1", preset="low")
        session.open()
        session.close()
        assert not stale.exists()
        assert mine.exists()
    finally:
        stale.unlink(missing_ok=True)
        mine.unlink(missing_ok=True)


def test_close_is_clean_and_idempotent() -> None:
    session = MediaSession(bind_ip="127.0.0.1", preset="low")
    session.open()
    pids = [p.pid for p in session._procs.values() if p.pid is not None]
    names = shm.list_segments()
    assert any(n.startswith(shm.segment_prefix()) for n in names)
    session.close()
    session.close()
    assert _wait_gone(pids, 0.5) == []
    assert shm.list_segments(os.getpid()) == []


def test_stage_processes_run_at_the_requested_nice_offset() -> None:
    session = MediaSession(bind_ip="127.0.0.1", preset="low", stage_nice=3)
    try:
        session.open()
        pids = [p.pid for p in session._procs.values() if p.pid is not None]
        mine = psutil.Process().nice()
        deadline = time.monotonic() + GONE_WITHIN_S  # the child renices itself after child_init
        while {psutil.Process(p).nice() for p in pids} != {min(mine + 3, 19)}:
            assert time.monotonic() < deadline, [psutil.Process(p).nice() for p in pids]
            time.sleep(0.05)
    finally:
        session.close()
