"""Fixtures of the discovery tests: real Redis servers, always stopped (even on failure).

``redis_module`` is one ``redis-server`` per test module (the golden and property suites run
against it); ``redis_server`` is a fresh one per test (tests that kill or stop it). Both skip
the test with a clear message when ``redis-server`` is not installed. ``discovery_cli`` runs
``vcall discovery --server <the test's discovery_server> ARGS...`` in process and returns its
exit code (output through ``capsys``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.discovery.redis_server import RedisProcess
from tests.fixtures.discovery import DiscoveryProcess
from vcall.discovery import cli


@pytest.fixture
def discovery_cli(discovery_server: DiscoveryProcess) -> Callable[..., int]:
    def run(*argv: str) -> int:
        parser = argparse.ArgumentParser()
        cli.add_arguments(parser)
        return cli.run(parser.parse_args(["--server", f"127.0.0.1:{discovery_server.port}", *argv]))

    return run


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
