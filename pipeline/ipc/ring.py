"""Shared-memory frame ring: fixed slots, one writer that never waits, readers that get the newest.

Layout of a ring's segment: a 4 KiB header (magic, slot count, slot capacity, write count), then
``n_slots`` slots, each a 256-byte slot header (the frame's descriptor) followed by ``capacity``
data bytes, page aligned.

Guarantees:

- The writer never waits: it writes into the slot after the last one it committed, whatever the
  readers are doing. The newest frame wins; a reader that falls behind skips to the newest and
  counts the frames it never saw as ``dropped``.
- Torn reads are detected, never returned silently: each slot has a sequence lock (odd while the
  writer owns the slot, bumped again on commit). A reader remembers the lock value with the
  descriptor and ``valid(desc)`` after using the data tells whether the writer touched the slot
  meanwhile; torn frames are discarded and counted as ``torn``.
- Pixels never travel through pipes: readers get views into the slot (``array``/``view``); only
  the 8-byte eventfd counter wakes them. Each reader has its own eventfd (the counter coalesces,
  so a burst of frames costs one wake-up). Several rings may share one eventfd (the controller
  waits on one fd for both display rings).
- Per-stage timestamps (``time.monotonic_ns()``, index ``Ts``) travel in the descriptor, and so
  does a raw picture's layout (``pixel_format``: ``pipeline.pixels``; ``begin_picture`` and
  ``picture`` shape the slot for it).

Only the controller creates rings (see ``shm.SegmentSet``); stage processes use them through
fork-inherited mappings and eventfds.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import select
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from pipeline.errors import LocalProtocolError
from pipeline.ipc.shm import Segment, SegmentSet
from pipeline.pixels import PixelFormat, raw_shape

logger = logging.getLogger(__name__)

MAGIC = 0x5643414C4C524E47  # "VCALLRNG"
HEADER_BYTES = 4096
SLOT_HEADER_BYTES = 256
PAGE = 4096
N_STAMPS = 16

# Ring header words.
_H_MAGIC, _H_SLOTS, _H_CAPACITY, _H_WRITES = range(4)
# Slot header words; the stamps follow.
(
    _S_LOCK,
    _S_SEQ,
    _S_FRAME,
    _S_NBYTES,
    _S_WIDTH,
    _S_HEIGHT,
    _S_SOURCE_WIDTH,
    _S_SOURCE_HEIGHT,
    _S_QUALITY,
    _S_KEYFRAME,
    _S_PATTERN_ID,
) = range(11)
_S_STAMPS = 11  # 11 + N_STAMPS words of 8 bytes fit the 256-byte slot header
_S_PIXEL_FORMAT = _S_STAMPS + N_STAMPS  # raw rings: the picture's PixelFormat

U8Array = npt.NDArray[np.uint8]


class Ts(enum.IntEnum):
    """Index of a per-stage timestamp in a descriptor (0 = not set)."""

    CAPTURE = 0  # the frame's capture time (source clock, or the pattern's embedded stamp)
    CAPTURED = 1  # committed to the raw ring
    ENCODE_START = 2
    ENCODED = 3  # committed to the tx JPEG ring
    SEND_START = 4
    SENT = 5  # last datagram handed to the kernel
    RECV_FIRST = 6  # first datagram of the frame received
    RECV_COMPLETE = 7  # frame complete (reassembled)
    PLAYOUT = 8  # released by the jitter buffer, committed to the rx JPEG ring
    DECODE_START = 9
    DISPLAYED = 10  # decoded into the RGB ring, controller notified


def _picture_shape(fmt: PixelFormat, width: int, height: int) -> tuple[tuple[int, ...], int]:
    """The shape and byte count of a raw picture (``pixels.raw_shape``), or RingError."""
    try:
        shape = raw_shape(fmt, width, height)
    except ValueError as exc:
        raise RingError(str(exc)) from None
    return shape, int(np.prod(shape))


def _pixel_format(value: int) -> PixelFormat:
    """The slot header's format word; an unknown value (never written by us) reads as BGR24."""
    try:
        return PixelFormat(value)
    except ValueError:
        return PixelFormat.BGR24


class RingError(LocalProtocolError):
    """Misuse of a ring (bad sizes, frame larger than a slot)."""


@dataclass(frozen=True, slots=True)
class Descriptor:
    """What a reader knows about one committed frame; ``lock`` detects a later overwrite."""

    slot: int
    seq: int  # 1-based write number of this frame in its ring
    lock: int
    frame_id: int
    nbytes: int
    width: int
    height: int
    source_width: int = 0  # the frame's size before scaling for display (0: not scaled/known)
    source_height: int = 0
    quality: int = 0  # the encoder's quality knob that produced it (encoded rings)
    keyframe: bool = False  # decodes on its own (encoded rings)
    pattern_id: int = 0  # the test pattern's embedded frame id (display rings; 0: not the pattern)
    stamps: tuple[int, ...] = field(default=(0,) * N_STAMPS)
    pixel_format: PixelFormat = PixelFormat.BGR24  # raw rings: the picture's layout

    def stamp(self, ts: Ts) -> int:
        return self.stamps[ts]


def _round_up(n: int, to: int) -> int:
    return (n + to - 1) // to * to


def _eventfd() -> int:
    return os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)


class Ring:
    """A ring in one shared-memory segment plus one eventfd per reader."""

    def __init__(self, shm: Segment, reader_fds: list[int], owned_fds: list[int]) -> None:
        self._shm = shm
        self.name = shm.name
        self._buf = shm.buf
        self.reader_fds = reader_fds
        self._owned_fds = owned_fds
        header = self._buf[:HEADER_BYTES].cast("Q")
        if header[_H_MAGIC] != MAGIC:
            raise RingError(f"{shm.name} is not a ring")
        self.n_slots = int(header[_H_SLOTS])
        self.capacity = int(header[_H_CAPACITY])
        self._stride = _round_up(SLOT_HEADER_BYTES + self.capacity, PAGE)
        self._header = header
        self._data: U8Array = np.frombuffer(self._buf, dtype=np.uint8)

    @classmethod
    def create(
        cls,
        segments: SegmentSet,
        kind: str,
        *,
        n_slots: int,
        capacity: int,
        n_readers: int = 1,
        reader_fds: list[int] | None = None,
    ) -> Ring:
        """A new ring; ``reader_fds`` shares existing eventfds instead of making new ones."""
        if n_slots < 2:
            raise RingError("a ring needs at least 2 slots (the writer never waits)")
        if capacity <= 0:
            raise RingError(f"slot capacity must be positive, got {capacity}")
        stride = _round_up(SLOT_HEADER_BYTES + capacity, PAGE)
        shm = segments.create(kind, HEADER_BYTES + n_slots * stride)
        header = shm.buf[:HEADER_BYTES].cast("Q")
        header[_H_SLOTS] = n_slots
        header[_H_CAPACITY] = capacity
        header[_H_WRITES] = 0
        header[_H_MAGIC] = MAGIC
        header.release()
        owned: list[int] = []
        if reader_fds is None:
            owned = [_eventfd() for _ in range(n_readers)]
            reader_fds = list(owned)
        return cls(shm, reader_fds, owned)

    def slot_header(self, slot: int) -> memoryview:
        off = HEADER_BYTES + slot * self._stride
        return self._buf[off : off + SLOT_HEADER_BYTES].cast("Q")

    def slot_data(self, slot: int) -> U8Array:
        off = HEADER_BYTES + slot * self._stride + SLOT_HEADER_BYTES
        return self._data[off : off + self.capacity]

    @property
    def writes(self) -> int:
        return int(self._header[_H_WRITES])

    def writer(self) -> RingWriter:
        return RingWriter(self)

    def reader(self, index: int = 0) -> RingReader:
        return RingReader(self, self.reader_fds[index])

    def close(self) -> None:
        """Close the eventfds this ring created (the segment belongs to its SegmentSet)."""
        for fd in self._owned_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._owned_fds = []


class RingWriter:
    """The one writer of a ring. ``begin`` -> write into the slot -> ``commit`` (or ``abort``)."""

    def __init__(self, ring: Ring) -> None:
        self.ring = ring
        self._headers = [ring.slot_header(i) for i in range(ring.n_slots)]
        self._data = [ring.slot_data(i) for i in range(ring.n_slots)]
        self._seq = ring.writes
        self._open: int | None = None

    @property
    def seq(self) -> int:
        """Number of frames committed so far."""
        return self._seq

    def begin(self) -> U8Array:
        """Take the next slot (marking it busy for readers); returns its whole data area."""
        if self._open is not None:
            raise RingError("begin() twice without commit() or abort()")
        slot = self._seq % self.ring.n_slots
        header = self._headers[slot]
        header[_S_LOCK] = header[_S_LOCK] + 1  # odd: being written
        self._open = slot
        return self._data[slot]

    def begin_array(self, width: int, height: int, channels: int = 3) -> U8Array:
        """``begin`` as an (height, width, channels) uint8 view."""
        n = width * height * channels
        if n > self.ring.capacity or n <= 0:
            raise RingError(f"{width}x{height}x{channels} does not fit a {self.ring.capacity} slot")
        return self.begin()[:n].reshape(height, width, channels)

    def begin_picture(self, fmt: PixelFormat, width: int, height: int) -> U8Array:
        """``begin`` as a view shaped for a width x height picture in ``fmt``
        (``pixels.raw_shape``); commit it with the same ``pixel_format``."""
        shape, n = _picture_shape(fmt, width, height)
        if n > self.ring.capacity:
            raise RingError(f"{width}x{height} {fmt.name} does not fit a {self.ring.capacity} slot")
        return self.begin()[:n].reshape(shape)

    def commit(
        self,
        *,
        frame_id: int,
        nbytes: int,
        width: int = 0,
        height: int = 0,
        source_width: int = 0,
        source_height: int = 0,
        quality: int = 0,
        keyframe: bool = False,
        pattern_id: int = 0,
        stamps: Mapping[int, int] | None = None,
        pixel_format: PixelFormat = PixelFormat.BGR24,
    ) -> int:
        """Publish the open slot and wake the readers; returns the frame's seq."""
        slot = self._open
        if slot is None:
            raise RingError("commit() without begin()")
        if not 0 <= nbytes <= self.ring.capacity:
            self.abort()
            raise RingError(f"{nbytes} bytes do not fit a {self.ring.capacity}-byte slot")
        header = self._headers[slot]
        self._seq += 1
        header[_S_SEQ] = self._seq
        header[_S_FRAME] = frame_id & 0xFFFFFFFFFFFFFFFF
        header[_S_NBYTES] = nbytes
        header[_S_WIDTH] = width
        header[_S_HEIGHT] = height
        header[_S_SOURCE_WIDTH] = source_width
        header[_S_SOURCE_HEIGHT] = source_height
        header[_S_QUALITY] = quality
        header[_S_KEYFRAME] = int(keyframe)
        header[_S_PATTERN_ID] = pattern_id
        header[_S_PIXEL_FORMAT] = int(pixel_format)
        for i in range(N_STAMPS):
            header[_S_STAMPS + i] = 0
        if stamps:
            for ts, value in stamps.items():
                header[_S_STAMPS + ts] = value
        header[_S_LOCK] = header[_S_LOCK] + 1  # even: stable
        self.ring._header[_H_WRITES] = self._seq
        self._open = None
        for fd in self.ring.reader_fds:
            with contextlib.suppress(BlockingIOError):
                os.eventfd_write(fd, 1)
        return self._seq

    def abort(self) -> None:
        """Give the open slot back unpublished (its old frame, if any, is now invalid)."""
        slot = self._open
        if slot is None:
            return
        header = self._headers[slot]
        header[_S_LOCK] = header[_S_LOCK] + 1
        self._open = None

    def write(
        self,
        data: bytes | memoryview,
        *,
        frame_id: int,
        width: int = 0,
        height: int = 0,
        quality: int = 0,
        keyframe: bool = False,
        stamps: Mapping[int, int] | None = None,
    ) -> int:
        """Copy ``data`` into the next slot and commit it (for small payloads, e.g. JPEG)."""
        n = len(data)
        if n > self.ring.capacity:
            raise RingError(f"{n} bytes do not fit a {self.ring.capacity}-byte slot")
        dst = self.begin()
        dst[:n] = np.frombuffer(data, dtype=np.uint8)
        return self.commit(
            frame_id=frame_id,
            nbytes=n,
            width=width,
            height=height,
            quality=quality,
            keyframe=keyframe,
            stamps=stamps,
        )


class RingReader:
    """One reader of a ring, in one process. Not thread-safe."""

    RETRIES = 4

    def __init__(self, ring: Ring, fd: int) -> None:
        self.ring = ring
        self.fd = fd
        self._headers = [ring.slot_header(i) for i in range(ring.n_slots)]
        self.last_seq = 0
        self.read = 0
        self.dropped = 0
        self.torn = 0

    def wait(self, timeout: float | None) -> bool:
        """Block until the writer signals (or timeout); drains the eventfd."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if ready:
            self.drain()
        return bool(ready)

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self.fd)

    def _descriptor(self, slot: int) -> Descriptor | None:
        header = self._headers[slot]
        lock = header[_S_LOCK]
        if lock & 1:
            return None
        desc = Descriptor(
            slot=slot,
            seq=header[_S_SEQ],
            lock=lock,
            frame_id=header[_S_FRAME],
            nbytes=header[_S_NBYTES],
            width=header[_S_WIDTH],
            height=header[_S_HEIGHT],
            source_width=header[_S_SOURCE_WIDTH],
            source_height=header[_S_SOURCE_HEIGHT],
            quality=header[_S_QUALITY],
            keyframe=bool(header[_S_KEYFRAME]),
            pattern_id=header[_S_PATTERN_ID],
            stamps=tuple(header[_S_STAMPS : _S_STAMPS + N_STAMPS].tolist()),
            pixel_format=_pixel_format(header[_S_PIXEL_FORMAT]),
        )
        if header[_S_LOCK] != lock:
            return None
        return desc

    def peek(self) -> Descriptor | None:
        """The newest committed frame, seen or not (None if none yet or a race persists)."""
        for _ in range(self.RETRIES):
            writes = self.ring.writes
            if writes == 0:
                return None
            desc = self._descriptor((writes - 1) % self.ring.n_slots)
            if desc is not None and desc.seq == writes:
                return desc
        self.torn += 1
        return None

    def latest(self) -> Descriptor | None:
        """The newest frame not seen yet by this reader; frames skipped count as dropped."""
        if self.ring.writes == self.last_seq:
            return None
        desc = self.peek()
        if desc is None or desc.seq <= self.last_seq:
            return None
        self.dropped += desc.seq - self.last_seq - 1
        self.last_seq = desc.seq
        self.read += 1
        return desc

    def next(self) -> Descriptor | None:
        """The oldest frame not seen yet that is still in the ring (for readers that must see
        every frame in order: an inter-frame decoder). Frames already overwritten count as
        dropped; the caller learns of them from ``dropped`` growing."""
        writes = self.ring.writes
        if writes == self.last_seq:
            return None
        seq = max(self.last_seq + 1, writes - self.ring.n_slots + 1)
        for _ in range(self.RETRIES):
            desc = self._descriptor((seq - 1) % self.ring.n_slots)
            if desc is not None and desc.seq == seq:
                self.dropped += seq - self.last_seq - 1
                self.last_seq = seq
                self.read += 1
                return desc
            # Overwritten meanwhile (the writer lapped us): move on to what is still there.
            seq = max(seq, self.ring.writes - self.ring.n_slots + 1)
        self.torn += 1
        return None

    def view(self, desc: Descriptor) -> U8Array:
        """The frame's bytes, in place. Check ``valid(desc)`` after using them."""
        return self.ring.slot_data(desc.slot)[: desc.nbytes]

    def array(self, desc: Descriptor, channels: int = 3) -> U8Array:
        """The frame as a (height, width, channels) view in place."""
        n = desc.width * desc.height * channels
        if n > desc.nbytes or n == 0:
            raise RingError(f"descriptor {desc.width}x{desc.height} does not match {desc.nbytes}")
        return self.ring.slot_data(desc.slot)[:n].reshape(desc.height, desc.width, channels)

    def picture(self, desc: Descriptor) -> U8Array:
        """A raw ring's frame as a view in place, shaped for its ``pixel_format``
        (``pixels.raw_shape``). RingError if the descriptor does not describe such a picture."""
        shape, n = _picture_shape(desc.pixel_format, desc.width, desc.height)
        if n > desc.nbytes:
            raise RingError(f"descriptor {desc.width}x{desc.height} does not match {desc.nbytes}")
        return self.ring.slot_data(desc.slot)[:n].reshape(shape)

    def valid(self, desc: Descriptor) -> bool:
        """True if the writer has not touched the frame's slot since ``desc`` was read."""
        ok = bool(self._headers[desc.slot][_S_LOCK] == desc.lock)
        if not ok:
            self.torn += 1
        return ok

    def copy_bytes(self, desc: Descriptor) -> bytes | None:
        """A copy of the frame's bytes, or None if it was overwritten while copying."""
        data = self.view(desc).tobytes()
        return data if self.valid(desc) else None
