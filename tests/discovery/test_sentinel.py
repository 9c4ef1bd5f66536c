"""Redis Sentinel: the primary is killed, a replica is promoted, the discovery store follows."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.discovery.redis_server import RedisProcess, SentinelProcess, command
from tests.fixtures.discovery import DiscoveryProcess, start_discovery_process
from vcall.discovery.client import DiscoveryClient, DiscoveryError, UserRecord

pytestmark = pytest.mark.usefixtures("no_leaks")

FAST = ["--scrypt-n", "1024", "--gap-timeout", "0.05"]


class Topology:
    def __init__(self, tmp_path: Path) -> None:
        self.primary = RedisProcess(tmp_path / "primary")
        self.replica = RedisProcess(tmp_path / "replica")
        self.sentinel: SentinelProcess | None = None
        self.discovery: DiscoveryProcess | None = None
        self.tmp_path = tmp_path

    def start(self) -> None:
        self.primary.start()
        self.replica.extra = ["--replicaof", "127.0.0.1", str(self.primary.port)]
        self.replica.start()
        self.sentinel = SentinelProcess(self.tmp_path / "sentinel", self.primary.port)
        self.sentinel.start()
        deadline = time.monotonic() + 20
        while not (
            b"master_link_status:up" in command(self.replica.port, "INFO", "replication")
            and command(self.sentinel.port, "SENTINEL", "REPLICAS", "vcall").startswith(b"*1")
        ):
            assert time.monotonic() < deadline, "the replica or the sentinel is not ready"
            time.sleep(0.1)
        url = f"redis-sentinel://127.0.0.1:{self.sentinel.port}/vcall/0"
        self.discovery = start_discovery_process(self.tmp_path, [*FAST, "--store", url])

    def stop(self) -> None:
        code = self.discovery.stop() if self.discovery is not None else 0
        for proc in (self.sentinel, self.replica, self.primary):
            if proc is not None:
                proc.stop()
        assert code == 0


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[Topology]:
    topo = Topology(tmp_path)
    try:
        topo.start()
        yield topo
    finally:
        topo.stop()


def test_killing_the_primary_fails_over_and_the_store_follows(topology: Topology) -> None:
    proc = topology.discovery
    assert proc is not None
    with DiscoveryClient(*proc.address) as client:
        for i in range(10):
            client.register(f"s{i}", "10.0.0.1", 100 + i, "pw", ["V0"])
    # Acknowledged writes are on the replica before the crash (WAIT: what a deployment that
    # must not lose them would do; see docs/deploy.md).
    assert command(topology.primary.port, "WAIT", "1", "2000") == b":1\r\n"
    topology.primary.kill()
    start = time.monotonic()
    # Queries are answered from the cache throughout.
    with DiscoveryClient(*proc.address) as client:
        assert client.query("s3") == UserRecord("s3", "10.0.0.1", 103, ("V0",))
    # Registrations come back once the Sentinel promoted the replica.
    deadline = start + 30
    while True:
        try:
            with DiscoveryClient(*proc.address) as client:
                client.register("after", "10.0.0.2", 200, "pw", ["V0"])
            break
        except DiscoveryError:
            assert time.monotonic() < deadline, proc.log()
            time.sleep(0.2)
    print(f"registrations refused for {time.monotonic() - start:.1f} s during the failover")
    # The old records are on the new primary: a wrong password is still refused.
    assert command(topology.replica.port, "ROLE").startswith(b"*3\r\n$6\r\nmaster")
    with DiscoveryClient(*proc.address) as client:
        assert client.query("after").port == 200
        assert client.register("s0", "10.0.0.9", 900, "pw", ["V0"]) > 0
    assert b"NOK WRONG_PASS" in _raw(proc, b"REGISTER s1 10.0.0.9 900 bad V0")
    assert "Traceback" not in proc.log()


def _raw(proc: DiscoveryProcess, data: bytes) -> bytes:
    import socket

    with socket.create_connection(proc.address, timeout=5) as sock:
        sock.sendall(data)
        return sock.recv(4096)
