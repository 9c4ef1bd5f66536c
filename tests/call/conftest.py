"""Fixtures for call-control tests: agents against a real discovery server process.

One server process per test module (started with the discovery fixture's own helper): agents
re-register their nicks with the same passwords, and every test waits for its agents'
registration before calling, so a record left by an earlier test never matters.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.call.agents import AgentFactory
from tests.fixtures.discovery import DiscoveryProcess, start_discovery_process


@pytest.fixture(scope="module")
def call_discovery(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DiscoveryProcess]:
    server = start_discovery_process(tmp_path_factory.mktemp("discovery"))
    try:
        yield server
    finally:
        code = server.stop()
        assert code == 0, f"discovery server exited with {code}:\n{server.log()}"


@pytest.fixture
def agents(call_discovery: DiscoveryProcess) -> Iterator[AgentFactory]:
    factory = AgentFactory(call_discovery.address)
    try:
        yield factory
    finally:
        factory.stop_all()
    # No agent may have logged a traceback (an unhandled error in a loop, a callback, a task).
    for agent in factory.agents:
        assert b"Traceback" not in agent.stderr, agent.stderr.decode(errors="replace")[-3000:]
