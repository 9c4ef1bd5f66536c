"""Every test under tests/pipeline runs inside ``no_leaks`` (tests/fixtures/leaks.py): no
/dev/shm/vcall_* segment and no child process may outlive a pipeline test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _pipeline_leak_check(no_leaks: None) -> Iterator[None]:
    yield
