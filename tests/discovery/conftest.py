"""Fixtures of the discovery tests: real Redis servers, always stopped (even on failure).

``redis_module`` is one ``redis-server`` per test module (the golden and property suites run
against it); ``redis_server`` is a fresh one per test (tests that kill or stop it). Both skip
the test with a clear message when ``redis-server`` is not installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.discovery.redis_server import RedisProcess


@pytest.fixture(scope="module")
def redis_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    redis = RedisProcess(tmp_path_factory.mktemp("redis"))
    try:
        redis.start()
        yield redis
    finally:
        redis.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisProcess]:
    redis = RedisProcess(tmp_path / "redis")
    try:
        redis.start()
        yield redis
    finally:
        redis.stop()
