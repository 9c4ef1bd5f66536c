"""Fixtures of the impairment lab tests (tests/lab, marker ``lab``).

``make_lab(profile=CLEAN, seed=0, **options)`` builds a :class:`benchmarks.netlab.lab.Lab` and
closes it at teardown, whatever the test did (closing asserts that nothing was left); ``lab``
is one clean lab; ``lab_machine`` only checks the machine. All three skip the test, saying
exactly why, when the machine cannot run the lab (not root, or no ``ip``/``tc``): the only
reason a lab test may be skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from benchmarks.netlab.lab import Lab, LabError, unavailable_reason
from benchmarks.netlab.profiles import CLEAN, Profile

LabFactory = Callable[..., Lab]


@pytest.fixture
def lab_machine() -> None:
    """Skips the test, saying why, when this machine cannot run the lab."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture
def make_lab(lab_machine: None) -> Iterator[LabFactory]:
    labs: list[Lab] = []

    def make(profile: Profile = CLEAN, seed: int = 0, **options: Any) -> Lab:
        lab = Lab(profile, seed=seed, **options)
        labs.append(lab)
        return lab

    yield make
    problems = []
    for lab in labs:
        try:
            lab.close()
        except LabError as exc:
            problems.append(str(exc))
    assert not problems, problems


@pytest.fixture
def lab(make_lab: LabFactory) -> Lab:
    return make_lab()
