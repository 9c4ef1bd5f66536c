"""Ring semantics: newest wins, drops counted, torn reads detected, sizes; across real processes."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.ipc.ring import (
    HEADER_BYTES,
    N_STAMPS,
    PAGE,
    SLOT_HEADER_BYTES,
    Ring,
    RingError,
    Ts,
)
from pipeline.ipc.shm import SegmentSet

pytestmark = pytest.mark.usefixtures("no_leaks")


@pytest.fixture
def segments() -> Iterator[SegmentSet]:
    seg = SegmentSet()
    yield seg
    seg.close()


def make(segments: SegmentSet, n_slots: int = 3, capacity: int = 64, readers: int = 1) -> Ring:
    return Ring.create(segments, "t", n_slots=n_slots, capacity=capacity, n_readers=readers)


def test_first_read_before_any_write_is_none(segments: SegmentSet) -> None:
    ring = make(segments)
    reader = ring.reader()
    assert reader.latest() is None
    assert reader.peek() is None
    assert not reader.wait(0)
    ring.close()


def test_reader_gets_what_was_written_with_stamps(segments: SegmentSet) -> None:
    ring = make(segments)
    writer, reader = ring.writer(), ring.reader()
    seq = writer.write(
        b"hello", frame_id=7, width=2, height=3, quality=70, keyframe=True, stamps={Ts.CAPTURE: 11}
    )
    assert seq == 1
    assert reader.wait(1.0)
    desc = reader.latest()
    assert desc is not None
    assert desc.keyframe and (desc.source_width, desc.pattern_id) == (0, 0)
    assert (desc.seq, desc.frame_id, desc.nbytes, desc.width, desc.height, desc.quality) == (
        1,
        7,
        5,
        2,
        3,
        70,
    )
    assert desc.stamp(Ts.CAPTURE) == 11
    assert desc.stamp(Ts.ENCODED) == 0
    assert len(desc.stamps) == N_STAMPS
    assert reader.view(desc).tobytes() == b"hello"
    assert reader.valid(desc)
    assert reader.latest() is None  # already seen
    ring.close()


def test_newest_wins_and_skipped_frames_count_as_dropped(segments: SegmentSet) -> None:
    ring = make(segments, n_slots=3)
    writer, reader = ring.writer(), ring.reader()
    for i in range(10):  # the writer never waits, even with nobody reading
        writer.write(bytes([i]), frame_id=i)
    desc = reader.latest()
    assert desc is not None
    assert desc.frame_id == 9
    assert reader.view(desc).tobytes() == b"\x09"
    assert reader.dropped == 9
    writer.write(b"x", frame_id=10)
    writer.write(b"y", frame_id=11)
    desc = reader.latest()
    assert desc is not None
    assert desc.frame_id == 11
    assert reader.dropped == 10
    assert reader.read == 2
    ring.close()


def test_overwritten_slot_is_detected_as_torn(segments: SegmentSet) -> None:
    ring = make(segments, n_slots=2)
    writer, reader = ring.writer(), ring.reader()
    writer.write(b"a" * 8, frame_id=1)
    desc = reader.latest()
    assert desc is not None
    view = reader.view(desc)
    writer.write(b"b" * 8, frame_id=2)
    assert reader.valid(desc)  # slot 1 written, ours (slot 0) untouched
    writer.begin()  # the writer is now inside our slot
    assert bytes(view) == b"a" * 8
    assert not reader.valid(desc)
    assert reader.copy_bytes(desc) is None
    assert reader.torn == 2
    writer.abort()
    ring.close()


def test_abort_invalidates_the_old_frame_and_publishes_nothing(segments: SegmentSet) -> None:
    ring = make(segments, n_slots=2)
    writer, reader = ring.writer(), ring.reader()
    writer.write(b"a", frame_id=1)
    writer.write(b"b", frame_id=2)
    first = reader.peek()
    assert first is not None
    assert first.frame_id == 2
    writer.begin()  # slot 0 (frame 1)
    writer.abort()
    assert ring.writes == 2
    desc = reader.latest()
    assert desc is not None
    assert desc.frame_id == 2


def test_begin_array_is_a_view_into_the_slot(segments: SegmentSet) -> None:
    ring = make(segments, capacity=4 * 3 * 3)
    writer, reader = ring.writer(), ring.reader()
    arr = writer.begin_array(4, 3)
    arr[:] = np.arange(36, dtype=np.uint8).reshape(3, 4, 3)
    writer.commit(frame_id=1, nbytes=arr.nbytes, width=4, height=3)
    desc = reader.latest()
    assert desc is not None
    out = reader.array(desc)
    assert out.shape == (3, 4, 3)
    assert np.array_equal(out, np.arange(36, dtype=np.uint8).reshape(3, 4, 3))
    ring.close()


def test_misuse_raises_ring_error(segments: SegmentSet) -> None:
    ring = make(segments, capacity=16)
    writer = ring.writer()
    with pytest.raises(RingError):
        writer.write(b"x" * 17, frame_id=1)
    with pytest.raises(RingError):
        writer.begin_array(4, 4)
    with pytest.raises(RingError):
        writer.commit(frame_id=1, nbytes=1)
    writer.begin()
    with pytest.raises(RingError):
        writer.begin()
    with pytest.raises(RingError):
        writer.commit(frame_id=1, nbytes=17)
    with pytest.raises(RingError):
        Ring.create(segments, "one", n_slots=1, capacity=8)
    ring.close()


def test_segment_size_is_header_plus_page_aligned_slots(segments: SegmentSet) -> None:
    ring = make(segments, n_slots=3, capacity=5000)
    stride = ((SLOT_HEADER_BYTES + 5000 + PAGE - 1) // PAGE) * PAGE
    size = os.stat(f"/dev/shm/{ring.name}").st_size
    assert size >= HEADER_BYTES + 3 * stride
    assert ring.capacity == 5000
    assert ring.n_slots == 3
    ring.close()


def test_each_reader_has_its_own_wakeup_and_drop_count(segments: SegmentSet) -> None:
    ring = make(segments, readers=2)
    writer = ring.writer()
    a, b = ring.reader(0), ring.reader(1)
    writer.write(b"1", frame_id=1)
    assert a.wait(1.0)
    assert b.wait(1.0)
    assert a.latest() is not None
    writer.write(b"2", frame_id=2)
    desc = b.latest()
    assert desc is not None
    assert desc.frame_id == 2
    assert b.dropped == 1
    assert a.dropped == 0
    ring.close()


def _writer_proc(ring: Ring, frames: int, size: int) -> None:
    writer = ring.writer()
    for i in range(1, frames + 1):
        buf = writer.begin()
        buf[:size] = i % 256  # every byte of frame i is i % 256
        writer.commit(frame_id=i, nbytes=size, stamps={Ts.CAPTURED: time.monotonic_ns()})


def test_concurrent_writer_never_yields_a_torn_frame(segments: SegmentSet) -> None:
    """A writer process hammers a 2-slot ring; every frame the reader accepts is uniform."""
    size = 256 * 1024
    ring = make(segments, n_slots=2, capacity=size)
    reader = ring.reader()
    proc = multiprocessing.get_context("fork").Process(target=_writer_proc, args=(ring, 3000, size))
    proc.start()
    accepted = 0
    last_id = 0
    try:
        while proc.is_alive() or ring.writes > reader.last_seq:
            reader.wait(0.05)
            desc = reader.latest()
            if desc is None:
                continue
            data = reader.view(desc)
            lo, hi = int(data.min()), int(data.max())
            if not reader.valid(desc):
                continue
            assert lo == hi == desc.frame_id % 256
            assert desc.frame_id > last_id
            last_id = desc.frame_id
            accepted += 1
    finally:
        proc.join(10)
    assert proc.exitcode == 0
    assert accepted > 0
    assert last_id == 3000
    assert accepted <= reader.read
    assert reader.dropped + reader.read == 3000
    ring.close()


@settings(max_examples=60, deadline=None)
@given(
    n_slots=st.integers(2, 5),
    ops=st.lists(st.one_of(st.integers(1, 7), st.just(0)), min_size=1, max_size=40),
)
def test_ring_matches_a_newest_wins_model(n_slots: int, ops: list[int]) -> None:
    """Op n > 0: write n frames; op 0: read. The reader always gets the newest frame, and
    every frame it skipped is counted as dropped, whatever the slot count."""
    segments = SegmentSet()
    try:
        ring = Ring.create(segments, "m", n_slots=n_slots, capacity=16)
        writer, reader = ring.writer(), ring.reader()
        written = last_read = dropped = 0
        for op in ops:
            if op:
                for _ in range(op):
                    written += 1
                    writer.write(written.to_bytes(8, "big"), frame_id=written)
                continue
            desc = reader.latest()
            if written == last_read:
                assert desc is None
                continue
            assert desc is not None
            assert desc.frame_id == desc.seq == written
            assert int.from_bytes(reader.view(desc).tobytes(), "big") == written
            dropped += written - last_read - 1
            last_read = written
            assert reader.dropped == dropped
            assert reader.valid(desc)
        ring.close()
    finally:
        segments.close()
