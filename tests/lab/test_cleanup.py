"""Nothing outlives a lab: not on close, not when the test body fails, not when the process that
owns the lab is SIGKILLed; and a new lab sweeps away the namespaces of dead owners."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable

import psutil
import pytest

from benchmarks.netlab import namespaces
from benchmarks.netlab.lab import Host, Lab
from tests.lab.conftest import LabFactory

pytestmark = pytest.mark.lab


def _gone(pid: int) -> bool:
    """Dead, or a zombie (an orphan's zombie waits for init, which may not reap it soon)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_until(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} after {timeout} s"
        time.sleep(0.05)


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True) if not _gone(p.pid)}


def _root_links() -> set[str]:
    return set(namespaces.run(["ip", "-o", "link", "show"]).split("\n"))


def _assert_removed(names: Iterable[str], pids: Iterable[int]) -> None:
    left = set(names) & set(namespaces.names())
    assert not left, f"namespaces left: {left}"
    alive = [p for p in pids if not _gone(p)]
    assert not alive, f"processes left: {alive}"


def test_close_kills_everything_and_removes_the_namespaces(make_lab: LabFactory) -> None:
    links_before = {line.split(":")[1] for line in _root_links() if line}
    children_before = _children()
    lab = make_lab(stop_timeout=0.5)
    sleeper = lab.popen(Host.A, ["sleep", "60"])
    # Ignores SIGTERM, and so does the grandchild the lab never heard of.
    stubborn = lab.popen(Host.B, ["sh", "-c", "trap '' TERM; sleep 60 & wait"])
    sock = lab.socket(Host.A)
    names = list(lab.names.values())
    _wait_until(lambda: len(namespaces.pids(lab.names[Host.B])) == 2, "no grandchild in B")
    pids = [p for n in names for p in namespaces.pids(n)]
    assert len(pids) == 4  # sleeper, sh, its sleep, the impairer
    impairer = lab.impairer_process
    assert impairer is not None
    lab.close()
    _assert_removed(names, pids)
    assert sleeper.returncode == -signal.SIGTERM
    assert stubborn.returncode == -signal.SIGKILL
    assert impairer.returncode == 0  # told to quit: it exits cleanly
    assert sock.fileno() == -1
    assert _children() <= children_before  # the reaper is gone too
    assert {line.split(":")[1] for line in _root_links() if line} == links_before
    lab.close()  # idempotent


def test_a_failing_test_body_leaves_nothing(lab_machine: None) -> None:
    with pytest.raises(ZeroDivisionError), Lab() as lab:
        names = list(lab.names.values())
        sleeper = lab.popen(Host.A, ["sleep", "60"])
        1 / 0  # noqa: B018
    _assert_removed(names, [sleeper.pid])


OWNER = """
import json, sys, time
import psutil
from benchmarks.netlab.lab import Host, Lab

lab = Lab()
sleeper = lab.popen(Host.A, ["sleep", "60"])
reaper = [p.pid for p in psutil.Process().children() if "benchmarks.netlab.reaper" in p.cmdline()]
info = {"names": list(lab.names.values()), "sleeper": sleeper.pid,
        "impairer": lab.impairer_process.pid, "reaper": reaper}
print(json.dumps(info), flush=True)
time.sleep(60)
"""


def test_a_sigkilled_owner_leaves_nothing(lab_machine: None) -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert owner.stdout is not None
        ready, _, _ = select.select([owner.stdout], [], [], 15)
        assert ready, "the owner did not start its lab"
        line = owner.stdout.readline()
        assert line, owner.stderr.read() if owner.stderr else ""
        info = json.loads(line)
        assert len(info["reaper"]) == 1 and set(info["names"]) <= set(namespaces.names())
        # Stopped, so that what follows is the death signal's doing alone.
        reaper = psutil.Process(info["reaper"][0])
        reaper.suspend()
    finally:
        owner.kill()
        owner.wait()
    try:
        pids = [info["sleeper"], info["impairer"]]
        # The death signal: the lab's programs die with their owner, at once.
        _wait_until(lambda: all(_gone(p) for p in pids), "programs outlived their owner", 1.0)
        assert set(info["names"]) <= set(namespaces.names())
    finally:
        reaper.resume()
    # The reaper: it sees its pipe closed and removes the namespaces, then exits.
    _wait_until(lambda: not set(info["names"]) & set(namespaces.names()), "namespaces left")
    _wait_until(lambda: _gone(info["reaper"][0]), "the reaper is still running")
    assert not [n for n in namespaces.names() if namespaces.owner_pid(n) == owner.pid]


def test_a_new_lab_removes_the_namespaces_of_dead_owners(make_lab: LabFactory) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = [f"{namespaces.PREFIX}{dead.pid}-0-{role}" for role in "arb"]
    alive = f"{namespaces.PREFIX}{os.getpid()}-99999-a"  # ours, and we are alive
    for name in [*stale, alive]:
        namespaces.add(name)
    # No death signal: this one would survive its owner, as a lab's grandchild can.
    squatter = subprocess.Popen(
        ["ip", "netns", "exec", stale[0], "sleep", "60"], start_new_session=True
    )
    try:
        _wait_until(lambda: namespaces.pids(stale[0]) == [squatter.pid], "no squatter")
        make_lab()
        assert not set(stale) & set(namespaces.names())
        assert squatter.wait(5) == -signal.SIGKILL
        assert alive in namespaces.names()  # a live owner's namespace is left alone
    finally:
        squatter.kill()
        squatter.wait()
        for name in [*stale, alive]:
            namespaces.destroy(name)
