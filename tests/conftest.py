"""Shared pytest set-up. Fixtures live in tests/fixtures/, one module per area."""

from __future__ import annotations

import os
import shutil
import tempfile

pytest_plugins = [
    "tests.fixtures.discovery",
    "tests.fixtures.leaks",
    "tests.fixtures.xvfb",
]

# The suite never touches the user's own configuration and data (identities, pinned server
# keys, remembered state, the local directory): every process it starts, and this one, sees a
# private XDG home made here and removed when the run ends. A pinned key left by one run (a
# lab server's, which is new every time) would otherwise be refused by the next.
_HOME = tempfile.mkdtemp(prefix="vcall-tests-home-")
for _name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
    os.environ[_name] = os.path.join(_HOME, _name.lower())


def pytest_unconfigure() -> None:
    shutil.rmtree(_HOME, ignore_errors=True)
