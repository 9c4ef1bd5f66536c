"""Interop tests run real ffmpeg / GStreamer processes: none may outlive its test.

The suite-wide ``no_leaks`` fixture also checks /dev/shm globally, which flags other concurrent
pipeline runs on a shared machine; these tests create no segment, so they check children only.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import psutil
import pytest


@pytest.fixture(autouse=True)
def no_child_left() -> Iterator[None]:
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    yield
    left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    for p in left:
        p.kill()
    assert not left, f"child processes left running: {left}"


@pytest.fixture(autouse=True, scope="session")
def _tools_installed() -> None:
    # The project's set-up installs them (scripts/system-deps.sh test); a missing tool is a
    # broken set-up, so fail loudly instead of skipping.
    missing = [t for t in ("ffmpeg", "gst-launch-1.0") if shutil.which(t) is None]
    assert not missing, f"interop tests need {missing}: run `make test` (it installs them)"
