"""Shared pytest set-up. Fixtures live in tests/fixtures/, one module per area."""

pytest_plugins = [
    "tests.fixtures.discovery",
    "tests.fixtures.leaks",
    "tests.fixtures.xvfb",
]
