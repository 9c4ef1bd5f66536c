"""Every test under tests/pipeline runs inside ``no_leaks`` (tests/fixtures/leaks.py): no
/dev/shm/vcall_* segment and no child process may outlive a pipeline test. ``segments`` (a
SegmentSet, closed after the test) and ``make_ctx(name)`` (a StageContext for a stage run in
the test's own process) serve the stage tests."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pipeline.ipc.shm import SegmentSet
from pipeline.stages.base import StageContext
from pipeline.stats import StatsChannel


@pytest.fixture(autouse=True)
def _pipeline_leak_check(no_leaks: None) -> Iterator[None]:
    yield


@pytest.fixture
def segments() -> Iterator[SegmentSet]:
    seg = SegmentSet()
    yield seg
    seg.close()


@pytest.fixture
def make_ctx(segments: SegmentSet) -> Iterator[Callable[[str], StageContext]]:
    pipes: list[Any] = []

    def make(name: str) -> StageContext:
        reader, writer = multiprocessing.Pipe(duplex=False)
        pipes.extend((reader, writer))
        return StageContext(
            name=name,
            controller_pid=0,
            watchdog_fd=-1,
            control=reader,
            stats=StatsChannel.create(segments, name),
        )

    yield make
    for conn in pipes:
        conn.close()
