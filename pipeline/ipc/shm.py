"""Shared-memory segments with one owner: naming, creation, unlinking, stale-segment removal.

Every segment vcall creates is called ``vcall_<controller pid>_<session token>_<kind>`` and lives
in /dev/shm. Guarantees:

- Only the controller creates segments (``SegmentSet.create``) and only the set that created a
  segment unlinks it (``SegmentSet.close``, idempotent). Stage processes inherit the mappings
  through fork and never attach by name, so they never register or unlink anything.
- ``remove_stale()`` (called at every session start) unlinks segments whose controller is gone:
  its pid no longer exists, or the pid was reused by a process started after the segment was
  created. Segments of live controllers are never touched.
- If the controller is killed, Python's multiprocessing resource tracker (each segment is
  registered with it at creation, as ``multiprocessing.shared_memory`` does) also unlinks them
  once the last process holding its pipe has exited.

Segments are POSIX shared memory (what ``shm_open`` and ``multiprocessing.shared_memory`` use on
Linux: files in /dev/shm, mapped with mmap). ``Segment`` maps them itself rather than through
``SharedMemory`` because ``SharedMemory.close`` raises (and its finaliser prints) BufferError
while any numpy view of the mapping is alive; a ``Segment`` mapping simply goes away with its
last view.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import re
import secrets
from multiprocessing import resource_tracker
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


class Segment:
    """One mapped segment. ``buf`` is a writable memoryview of the whole mapping."""

    def __init__(self, name: str, size: int) -> None:
        fd = os.open(SHM_DIR / name, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, size)
            self._mmap = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            (SHM_DIR / name).unlink()
            raise
        os.close(fd)
        # The tracker unlinks it if this process dies without doing so (name as shm_open's).
        resource_tracker.register("/" + name, "shared_memory")
        self.name = name
        self.size = size
        self.buf: memoryview = memoryview(self._mmap)

    def close(self) -> None:
        """Drop this object's own view; the mapping goes when the last numpy view does."""
        with contextlib.suppress(BufferError):
            self.buf.release()
            self._mmap.close()

    def unlink(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (SHM_DIR / self.name).unlink()
        resource_tracker.unregister("/" + self.name, "shared_memory")


class SegmentSet:
    """The segments of one session, created by the controller and unlinked together."""

    def __init__(self) -> None:
        self.token = secrets.token_hex(4)
        self._owner_pid = os.getpid()
        self._segments: list[Segment] = []
        self._closed = False

    def name_for(self, kind: str) -> str:
        if not re.fullmatch(r"[a-z0-9]+", kind):
            raise ShmError(f"segment kind must be [a-z0-9]+, got {kind!r}")
        return f"{segment_prefix(self._owner_pid)}{self.token}_{kind}"

    def create(self, kind: str, size: int) -> Segment:
        """Create (exclusively) a zero-filled segment of ``size`` bytes."""
        if self._closed:
            raise ShmError("segment set is closed")
        if os.getpid() != self._owner_pid:
            raise ShmError("only the controller that owns the set creates segments")
        if size <= 0:
            raise ShmError(f"segment size must be positive, got {size}")
        segment = Segment(self.name_for(kind), size)
        self._segments.append(segment)
        return segment

    @property
    def names(self) -> list[str]:
        return [s.name for s in self._segments]

    def close(self) -> None:
        """Close the mappings and unlink the segments (owner process only); idempotent."""
        if self._closed:
            return
        self._closed = True
        owner = os.getpid() == self._owner_pid
        for segment in self._segments:
            segment.close()
            if owner:
                segment.unlink()
        self._segments.clear()
