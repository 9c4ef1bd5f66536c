"""Loopback tests against the real server process (tests/fixtures/discovery.py)."""

from __future__ import annotations

import socket
import threading

import pytest

from tests.fixtures.discovery import DiscoveryProcess
from vcall.discovery.client import (
    DiscoveryClient,
    ServerUnreachable,
    UserEntry,
    UserRecord,
    UserUnknown,
    WrongPassword,
)
from vcall.discovery.embedded import EmbeddedServer

# Every server process and load generator a test starts is gone when it ends.
pytestmark = pytest.mark.usefixtures("no_leaks")


def exchange(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    return sock.recv(65536)


def test_client_register_query_list(discovery_server: DiscoveryProcess) -> None:
    with DiscoveryClient(*discovery_server.address) as client:
        ts = client.register("alice", "10.0.0.1", 8000, "s3cret", ["V0", "V2435"])
        assert ts > 1_600_000_000
        assert client.query("alice") == UserRecord("alice", "10.0.0.1", 8000, ("V0", "V2435"))
        with pytest.raises(UserUnknown):
            client.query("bob")
        with pytest.raises(WrongPassword):
            client.register("alice", "10.0.0.9", 9000, "guess", ["V0"])
        assert client.query("alice").ip == "10.0.0.1"  # the wrong password changed nothing
        entries = client.list_users()
        assert entries == [UserEntry("alice", "10.0.0.1", 8000, float(int(ts)))]


def test_registrations_survive_restart(discovery_server: DiscoveryProcess) -> None:
    with DiscoveryClient(*discovery_server.address) as client:
        client.register("carol", "192.168.1.5", 7000, "pw", ["V0"])
    discovery_server.restart()
    with DiscoveryClient(*discovery_server.address) as client:
        assert client.query("carol") == UserRecord("carol", "192.168.1.5", 7000, ("V0",))
        with pytest.raises(WrongPassword):
            client.register("carol", "192.168.1.5", 7000, "other", ["V0"])
        client.register("carol", "192.168.1.6", 7001, "pw", ["V0"])
        assert client.query("carol").port == 7001


def test_embedded_server() -> None:
    with EmbeddedServer() as server:
        assert server.address is not None
        with DiscoveryClient(*server.address) as client:
            client.register("dave", "127.0.0.1", 5000, "x", ["V0"])
            assert client.query("dave").port == 5000
    with pytest.raises(ServerUnreachable):
        DiscoveryClient(*server_address_after_stop(), timeout=1).query("dave")


def server_address_after_stop() -> tuple[str, int]:
    with EmbeddedServer() as server:
        assert server.address is not None
        address = server.address
    return address


def test_racing_first_registrations_of_one_nick(discovery_server: DiscoveryProcess) -> None:
    """Four clients register a new nick at once: exactly one password wins."""
    outcomes: dict[str, str] = {}
    barrier = threading.Barrier(4)

    def attempt(password: str) -> None:
        with DiscoveryClient(*discovery_server.address) as client:
            client.list_users()  # connected before the race starts
            barrier.wait()
            try:
                client.register("zed", "10.0.0.1", 1000, password, ["V0"])
                outcomes[password] = "welcome"
            except WrongPassword:
                outcomes[password] = "wrong"

    threads = [threading.Thread(target=attempt, args=(f"pw{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    winners = [p for p, o in outcomes.items() if o == "welcome"]
    assert len(outcomes) == 4
    assert len(winners) == 1, outcomes
    with DiscoveryClient(*discovery_server.address) as client:
        client.register("zed", "10.0.0.2", 1001, winners[0], ["V0"])  # the winner owns it
        assert client.query("zed").ip == "10.0.0.2"
