"""`vcall discovery` subcommands, EmbeddedServer, and throttling without scrypt work."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

import vcall.discovery.server as server_module
from tests.fixtures.discovery import DiscoveryProcess
from vcall.discovery.cli import server_arg
from vcall.discovery.client import DiscoveryClient, WrongPassword
from vcall.discovery.embedded import EmbeddedServer
from vcall.discovery.server import ServerConfig
from vcall.discovery.store import Credential, ScryptParams
from vcall.discovery.throttle import ThrottlePolicy

# Every server process and load generator a test starts is gone when it ends.
pytestmark = pytest.mark.usefixtures("no_leaks")


def vcall(
    *args: str, server: DiscoveryProcess, password_env: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "VCALL_PASSWORD"}
    if password_env is not None:
        env["VCALL_PASSWORD"] = password_env
    return subprocess.run(
        [sys.executable, "-m", "vcall", "discovery", "--server", f"127.0.0.1:{server.port}", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        stdin=subprocess.DEVNULL,
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


def test_cli_register_takes_the_password_from_the_environment(
    discovery_server: DiscoveryProcess,
) -> None:
    register = ("register", "eve", "--ip", "10.0.0.5", "--port", "9000")
    done = vcall(*register, server=discovery_server, password_env="secret")
    assert done.returncode == 0, done.stderr
    done = vcall(*register, server=discovery_server, password_env="other")
    assert done.returncode == 1 and "WrongPassword" in done.stderr  # the variable was used
    done = vcall(*register, "--password", "secret", server=discovery_server, password_env="x")
    assert done.returncode == 0, done.stderr  # the flag wins over the variable


@pytest.mark.parametrize(
    ("text", "expected"),
    [("h:1", ("h", 1)), ("[::1]:8000", ("::1", 8000)), ("example.org", ("example.org", 8000)),
     ("1.2.3.4:65535", ("1.2.3.4", 65535)), ("h:0", None), ("h:65536", None), ("h:x", None),
     (":8000", None), ("", None), ("[::1", None)],
)  # fmt: skip
def test_server_argument(text: str, expected: tuple[str, int] | None) -> None:
    # One parser for `vcall discovery --server` and `vcall agent --server`.
    if expected is None:
        with pytest.raises(argparse.ArgumentTypeError):
            server_arg(text)
    else:
        assert server_arg(text) == expected


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


THROTTLED = ServerConfig(
    throttle=ThrottlePolicy(max_failures=3, window=60, lockout=60),
    scrypt=ScryptParams(n=1 << 10),
)


@pytest.fixture
def verified(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The passwords the server checks with scrypt (``verify_password`` calls), in order."""
    calls: list[str] = []
    real = server_module.verify_password

    def counting(password: str, credential: Credential) -> bool:
        calls.append(password)
        return real(password, credential)

    monkeypatch.setattr(server_module, "verify_password", counting)
    return calls


def test_throttled_attempts_do_no_scrypt_work(verified: list[str]) -> None:
    calls, config = verified, THROTTLED
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


def test_queued_wrong_passwords_cannot_bypass_the_throttle(verified: list[str]) -> None:
    calls, config = verified, THROTTLED
    with EmbeddedServer(config=config) as server:
        assert server.address is not None
        with DiscoveryClient(*server.address) as client:
            client.register("lee", "10.0.0.1", 1000, "right", ["V0"])
        barrier = threading.Barrier(12)
        refused: list[bool] = []

        def guess(i: int) -> None:
            assert server.address is not None
            with DiscoveryClient(*server.address) as c:
                c.list_users()
                barrier.wait()
                with pytest.raises(WrongPassword):
                    c.register("lee", "10.0.0.1", 1000, f"guess{i}", ["V0"])
                refused.append(True)

        threads = [threading.Thread(target=guess, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert len(refused) == 12
    assert len(calls) == 3  # the other nine were refused without scrypt work


def test_a_register_flood_from_one_address_leaves_room_for_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lock = threading.Lock()
    running: dict[str, int] = {"flood": 0, "other": 0}
    peak = {"flood": 0}
    other_started_while_flooding = threading.Event()
    real = server_module.hash_password

    def slow_hash(password: str, params: ScryptParams) -> Credential:
        kind = "flood" if password.startswith("flood") else "other"
        with lock:
            running[kind] += 1
            peak["flood"] = max(peak["flood"], running["flood"])
            if kind == "other" and running["flood"]:
                other_started_while_flooding.set()
        time.sleep(0.2)
        with lock:
            running[kind] -= 1
        return real(password, params)

    monkeypatch.setattr(server_module, "hash_password", slow_hash)
    config = ServerConfig(hash_workers=4, scrypt=ScryptParams(n=1 << 10))
    with EmbeddedServer(config=config) as server:
        assert server.address is not None
        address = server.address

        def register(nick: str, password: str, source: str) -> None:
            sock = socket.create_connection(address, timeout=10, source_address=(source, 0))
            with sock:
                sock.sendall(f"REGISTER {nick} 10.0.0.1 1000 {password} V0".encode())
                assert sock.recv(100).startswith(b"OK WELCOME")

        flood = [
            threading.Thread(target=register, args=(f"f{i}", f"flood{i}", "127.0.0.1"))
            for i in range(8)
        ]
        for t in flood:
            t.start()
        time.sleep(0.1)
        register("victim", "other", "127.0.0.2")
        for t in flood:
            t.join(30)
    assert peak["flood"] == 2  # one address never holds more than two scrypt slots
    assert other_started_while_flooding.is_set()  # the other address did not queue behind it
