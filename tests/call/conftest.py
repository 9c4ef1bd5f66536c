"""Fixtures for call-control tests: agents against a real discovery server process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.call.agents import AgentFactory
from tests.fixtures.discovery import DiscoveryProcess


@pytest.fixture
def agents(discovery_server: DiscoveryProcess) -> Iterator[AgentFactory]:
    factory = AgentFactory(discovery_server.address)
    try:
        yield factory
    finally:
        factory.stop_all()
