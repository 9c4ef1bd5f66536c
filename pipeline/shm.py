"""Shared-memory segments with one owner: naming, creation, unlinking, stale-segment removal.

Every segment vcall creates is called ``vcall_<controller pid>_<session token>_<kind>`` and lives
in /dev/shm. Guarantees:

- Only the controller creates segments (``SegmentSet.create``) and only the set that created a
  segment unlinks it (``SegmentSet.close``, idempotent). Stage processes inherit the mappings
  through fork and never attach by name, so they never register or unlink anything.
- ``remove_stale()`` (called at every session start) unlinks segments whose controller is gone:
  its pid no longer exists, or the pid was reused by a process started after the segment was
  created. Segments of live controllers are never touched.
- If the controller is killed, Python's multiprocessing resource tracker (which registered each
  segment at creation) also unlinks them once the last process holding its pipe has exited.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
from multiprocessing import shared_memory
from pathlib import Path

import psutil

logger = logging.getLogger(__name__)

PREFIX = "vcall_"
SHM_DIR = Path("/dev/shm")
_NAME_RE = re.compile(r"^vcall_(\d+)_")
# A segment's ctime may precede its creator's recorded start time by clock granularity only.
_START_SLACK_S = 1.0


class ShmError(Exception):
    """Misuse of a segment set (closed set, bad kind name)."""


def segment_prefix(pid: int | None = None) -> str:
    """``vcall_<pid>_``: the prefix of every segment created by controller ``pid``."""
    return f"{PREFIX}{os.getpid() if pid is None else pid}_"


def list_segments(pid: int | None = None) -> list[str]:
    """Names of vcall segments in /dev/shm (of controller ``pid`` only, when given)."""
    prefix = PREFIX if pid is None else segment_prefix(pid)
    try:
        return sorted(p.name for p in SHM_DIR.iterdir() if p.name.startswith(prefix))
    except FileNotFoundError:
        return []


def _owner_alive(pid: int, created: float) -> bool:
    try:
        proc = psutil.Process(pid)
        started = proc.create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True
    # A pid reused by a process started after the segment appeared is not its owner.
    return started <= created + _START_SLACK_S


def remove_stale() -> list[str]:
    """Unlink vcall segments whose controller is dead; returns the names removed."""
    removed = []
    for name in list_segments():
        match = _NAME_RE.match(name)
        if match is None:
            continue
        path = SHM_DIR / name
        try:
            created = path.stat().st_ctime
        except FileNotFoundError:
            continue
        if _owner_alive(int(match.group(1)), created):
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(name)
    if removed:
        logger.info("removed %d stale shared-memory segment(s): %s", len(removed), removed)
    return removed


class SegmentSet:
    """The segments of one session, created by the controller and unlinked together."""

    def __init__(self) -> None:
        self.token = secrets.token_hex(4)
        self._owner_pid = os.getpid()
        self._segments: list[shared_memory.SharedMemory] = []
        self._closed = False

    def name_for(self, kind: str) -> str:
        if not re.fullmatch(r"[a-z0-9]+", kind):
            raise ShmError(f"segment kind must be [a-z0-9]+, got {kind!r}")
        return f"{segment_prefix(self._owner_pid)}{self.token}_{kind}"

    def create(self, kind: str, size: int) -> shared_memory.SharedMemory:
        """Create (exclusively) a zero-filled segment of at least ``size`` bytes."""
        if self._closed:
            raise ShmError("segment set is closed")
        if os.getpid() != self._owner_pid:
            raise ShmError("only the controller that owns the set creates segments")
        shm = shared_memory.SharedMemory(name=self.name_for(kind), create=True, size=size)
        self._segments.append(shm)
        return shm

    @property
    def names(self) -> list[str]:
        return [s.name for s in self._segments]

    def close(self) -> None:
        """Close the mappings and unlink the segments (owner process only); idempotent."""
        if self._closed:
            return
        self._closed = True
        owner = os.getpid() == self._owner_pid
        for shm in self._segments:
            try:
                shm.close()
            except BufferError:
                # A numpy view is still alive somewhere: the mapping goes when it is collected;
                # unlinking below still removes the name.
                logger.debug("segment %s still has exported views", shm.name)
            if owner:
                with contextlib.suppress(FileNotFoundError):
                    shm.unlink()
        self._segments.clear()
