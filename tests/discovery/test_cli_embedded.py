"""`vcall discovery` subcommands, EmbeddedServer, and throttling without scrypt work."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

import vcall.discovery.server as server_module
from tests.fixtures.discovery import DiscoveryProcess
from vcall.discovery.client import DiscoveryClient, WrongPassword
from vcall.discovery.embedded import EmbeddedServer
from vcall.discovery.server import ServerConfig
from vcall.discovery.store import Credential, ScryptParams
from vcall.discovery.throttle import ThrottlePolicy


def vcall(*args: str, server: DiscoveryProcess) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vcall", "discovery", "--server", f"127.0.0.1:{server.port}", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_cli_register_query_list(discovery_server: DiscoveryProcess) -> None:
    done = vcall(
        "register", "alice", "--ip", "10.0.0.1", "--port", "8000", "--password", "pw",
        "--protocols", "V0#V2435", server=discovery_server,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("registered alice at ")
    done = vcall("query", "alice", server=discovery_server)
    assert done.stdout.strip() == "alice 10.0.0.1 8000 V0#V2435"
    done = vcall("--json", "list", server=discovery_server)
    (entry,) = json.loads(done.stdout)
    assert entry["nick"] == "alice" and entry["port"] == 8000
    done = vcall("query", "bob", server=discovery_server)
    assert done.returncode == 1 and "UserUnknown" in done.stderr
    done = vcall(
        "register", "alice", "--ip", "10.0.0.1", "--port", "1", "--password", "no",
        server=discovery_server,
    )  # fmt: skip
    assert done.returncode == 1 and "WrongPassword" in done.stderr
    done = vcall("query", "bad nick", server=discovery_server)
    assert done.returncode == 2 and "invalid nick" in done.stderr


def test_cli_names_an_unreachable_server(discovery_server: DiscoveryProcess) -> None:
    discovery_server.stop()
    done = vcall("list", server=discovery_server)
    assert done.returncode == 1
    assert f"127.0.0.1:{discovery_server.port}" in done.stderr


def test_embedded_server_is_idempotent_and_joins_its_thread() -> None:
    before = threading.active_count()
    server = EmbeddedServer()
    address = server.start()
    assert server.start() == address
    with DiscoveryClient(*address) as client:
        assert client.list_users() == []
    server.stop()
    server.stop()
    assert threading.active_count() == before


def test_embedded_server_reports_a_port_in_use() -> None:
    with EmbeddedServer() as first:
        assert first.address is not None
        with pytest.raises(OSError):
            EmbeddedServer(port=first.address[1]).start()


def test_throttled_attempts_do_no_scrypt_work(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = server_module.verify_password

    def counting(password: str, credential: Credential) -> bool:
        calls.append(password)
        return real(password, credential)

    monkeypatch.setattr(server_module, "verify_password", counting)
    config = ServerConfig(
        throttle=ThrottlePolicy(max_failures=3, window=60, lockout=60),
        scrypt=ScryptParams(n=1 << 10),
    )
    with EmbeddedServer(config=config) as server:
        assert server.address is not None
        with DiscoveryClient(*server.address) as client:
            client.register("kim", "10.0.0.1", 1000, "right", ["V0"])
            for _ in range(3):
                with pytest.raises(WrongPassword):
                    client.register("kim", "10.0.0.1", 1000, "wrong", ["V0"])
            assert len(calls) == 3
            for _ in range(20):
                with pytest.raises(WrongPassword):
                    client.register("kim", "10.0.0.1", 1000, "right", ["V0"])
            assert len(calls) == 3  # no scrypt while throttled
            assert client.query("kim").port == 1000
