"""Interop tests run real ffmpeg / GStreamer (and vcall pipeline) processes: none may outlive
its test.

The suite-wide ``no_leaks`` fixture also checks /dev/shm globally, which flags other concurrent
pipeline runs on a shared machine; MediaSession cleans its own segments (tested in
tests/pipeline), so these tests check child processes only.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from multiprocessing import resource_tracker

import psutil
import pytest

GRACE_S = 5.0


def _children() -> set[int]:
    procs = psutil.Process().children(recursive=True)
    return {p.pid for p in procs if p.status() != psutil.STATUS_ZOMBIE}


@pytest.fixture(autouse=True)
def no_child_left() -> Iterator[None]:
    # multiprocessing's resource tracker is a session-long helper started lazily: not a leak.
    resource_tracker.ensure_running()
    before = _children()
    yield
    deadline = time.monotonic() + GRACE_S
    while (left := _children() - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in left:
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).kill()
    assert not left, f"child processes left running: {sorted(left)}"


@pytest.fixture(autouse=True, scope="session")
def _tools_installed() -> None:
    # The project's set-up installs them (scripts/system-deps.sh test); a missing tool is a
    # broken set-up, so fail loudly instead of skipping.
    missing = [t for t in ("ffmpeg", "gst-launch-1.0") if shutil.which(t) is None]
    assert not missing, f"interop tests need {missing}: run `make test` (it installs them)"
