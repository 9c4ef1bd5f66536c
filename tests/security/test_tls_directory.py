"""The discovery server's TLS port, key fingerprints in the directory and server pinning, on
real ``vcall-discovery`` processes, real TLS sockets and real files (issue 14, part A)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fixtures.discovery import DiscoveryProcess, start_discovery_process
from vcall.config import State, load_state
from vcall.discovery.client import (
    DiscoveryClient,
    ServerIdentityChanged,
    WrongPassword,
)
from vcall.discovery.embedded import EmbeddedServer
from vcall.discovery.store import Store
from vcall.discovery.tls import Pin, PinStore
from vcall.identity import load_or_create_identity

# Every process a test starts is gone when it ends.
pytestmark = pytest.mark.usefixtures("no_leaks")

PROTOCOLS = ("V0", "V2435")


def exchange(address: tuple[str, int], request: bytes) -> bytes:
    """One classic request on a fresh plain connection: the reply as a classic client reads it."""
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(request)
        return sock.recv(65536)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[DiscoveryProcess]:
    proc = start_discovery_process(tmp_path)
    try:
        yield proc
    finally:
        running = proc.proc is not None
        code = proc.stop()
        if running:
            assert code == 0, proc.log()


def keys(tmp_path: Path, name: str) -> str:
    return load_or_create_identity(tmp_path / "ids" / name).fingerprint


def test_tls_port_keys_and_the_classic_port_unchanged(
    server: DiscoveryProcess, tmp_path: Path
) -> None:
    reply = exchange(server.address, b"VCALL_TLS")
    assert reply.startswith(b"OK VCALL_TLS ")
    tls_port = int(reply.split()[2])
    assert tls_port != server.port
    alice = keys(tmp_path, "alice")
    pins = PinStore(tmp_path / "pins.json")
    with DiscoveryClient(*server.address, pins=pins) as client:
        client.register("alice", "127.0.0.1", 5000, "pw-a", PROTOCOLS, fingerprint=alice)
        assert client.secure
        assert client.server_fingerprint is not None
        assert client.query("alice").fingerprint == alice
        assert client.query("alice").protocols == PROTOCOLS
    # The server's key is the one kept next to its database, mode 0600.
    ident_dir = server.db_path.parent / "discovery-identity"
    assert stat.S_IMODE((ident_dir / "key.pem").stat().st_mode) == 0o600
    assert load_or_create_identity(ident_dir).fingerprint == client.server_fingerprint
    pin = pins.get(*server.address)
    assert pin is not None
    assert (pin.fingerprint, pin.tls_port) == (client.server_fingerprint, tls_port)
    # Classic clients on the plain port see the classic bytes, without the key.
    assert (
        exchange(server.address, b"QUERY alice") == b"OK USER_FOUND alice 127.0.0.1 5000 V0#V2435"
    )
    # A classic registration has no key, also over TLS.
    assert exchange(server.address, b"REGISTER bob 127.0.0.2 6000 pw-b V0").startswith(
        b"OK WELCOME bob "
    )
    with DiscoveryClient(*server.address, pins=pins) as client:
        bob = client.query("bob")
        assert (bob.protocols, bob.fingerprint) == (("V0",), None)
        assert client.secure
    # Without TLS (plain=True) the vcall client gets no key either: the plain port never tells.
    with DiscoveryClient(*server.address, plain=True) as client:
        assert client.query("alice").fingerprint is None
        assert not client.secure


def test_a_new_key_needs_the_password_and_is_logged(
    server: DiscoveryProcess, tmp_path: Path
) -> None:
    old, new = keys(tmp_path, "old"), keys(tmp_path, "new")
    pins = PinStore(tmp_path / "pins.json")
    with DiscoveryClient(*server.address, pins=pins) as client:
        client.register("alice", "127.0.0.1", 5000, "pw-a", PROTOCOLS, fingerprint=old)
        with pytest.raises(WrongPassword):
            client.register("alice", "127.0.0.9", 5000, "guess", PROTOCOLS, fingerprint=new)
        record = client.query("alice")
        assert (record.ip, record.fingerprint) == ("127.0.0.1", old)
        client.register("alice", "127.0.0.1", 5001, "pw-a", PROTOCOLS, fingerprint=new)
        assert client.query("alice").fingerprint == new
    assert f"REGISTER alice from 127.0.0.1: key changed from {old} to {new}" in server.log()
    # A classic re-registration (right password, no key) clears the key, and is logged too.
    assert exchange(server.address, b"REGISTER alice 127.0.0.1 5002 pw-a V0").startswith(b"OK")
    with DiscoveryClient(*server.address, pins=pins) as client:
        assert client.query("alice").fingerprint is None
    assert f"key changed from {new} to none" in server.log()


def test_keys_and_server_key_survive_a_restart(server: DiscoveryProcess, tmp_path: Path) -> None:
    alice = keys(tmp_path, "alice")
    pins = PinStore(tmp_path / "pins.json")
    with DiscoveryClient(*server.address, pins=pins) as client:
        client.register("alice", "127.0.0.1", 5000, "pw-a", PROTOCOLS, fingerprint=alice)
        first = client.server_fingerprint
    server.restart()
    with DiscoveryClient(*server.address, pins=pins) as client:
        assert client.query("alice").fingerprint == alice
        assert client.server_fingerprint == first
        assert client.secure


def test_a_changed_server_key_is_an_error_naming_both(
    server: DiscoveryProcess, tmp_path: Path
) -> None:
    pins = PinStore(tmp_path / "pins.json")
    with DiscoveryClient(*server.address, pins=pins) as client:
        client.list_users()
        pinned = client.server_fingerprint
    assert pinned is not None
    server.stop()
    shutil.rmtree(server.db_path.parent / "discovery-identity")
    server.start()  # a new key on the same address: what an impostor would present
    fresh = load_or_create_identity(server.db_path.parent / "discovery-identity").fingerprint
    assert fresh != pinned
    with (
        DiscoveryClient(*server.address, pins=pins) as client,
        pytest.raises(ServerIdentityChanged) as err,
    ):
        client.query("alice")
    assert pinned in str(err.value)
    assert fresh in str(err.value)
    assert pins.get(*server.address).fingerprint == pinned  # type: ignore[union-attr]


def test_a_pinned_server_without_tls_is_refused_an_unpinned_one_is_classic(
    tmp_path: Path,
) -> None:
    alice = keys(tmp_path, "alice")
    pins = PinStore(tmp_path / "pins.json")
    server = start_discovery_process(tmp_path)
    try:
        with DiscoveryClient(*server.address, pins=pins) as client:
            client.list_users()
        server.stop()
        server.extra_args = ["--no-tls"]
        server.start()
        assert exchange(server.address, b"VCALL_TLS") == b"NOK UNKNOWN_COMMAND"
        with (
            DiscoveryClient(*server.address, pins=pins) as client,
            pytest.raises(ServerIdentityChanged, match="no longer offers TLS"),
        ):
            client.query("alice")
        # A server never pinned and without TLS (as a classic server): plain, and the key
        # token is left out of REGISTER (a classic server would refuse it).
        other = PinStore(tmp_path / "other.json")
        with DiscoveryClient(*server.address, pins=other) as client:
            client.register("alice", "127.0.0.1", 5000, "pw-a", PROTOCOLS, fingerprint=alice)
            assert not client.secure
            assert client.query("alice").fingerprint is None
        assert not (tmp_path / "other.json").exists()
    finally:
        assert server.stop() == 0, server.log()


def test_tls_port_flag_and_taken_default(tmp_path: Path) -> None:
    """--tls-port N is that port; the default (port + 1) moves to a free port when taken."""
    blocker = socket.create_server(("127.0.0.1", 0))
    try:
        taken = blocker.getsockname()[1]
        server = DiscoveryProcess(tmp_path / "a.sqlite3", port=taken - 1)
        try:
            server.start()
        except RuntimeError:
            pytest.skip("port below the blocker is in use")  # rare on a shared machine
        try:
            reply = exchange(server.address, b"VCALL_TLS")
            assert reply.startswith(b"OK VCALL_TLS ")
            assert int(reply.split()[2]) != taken
            assert "taking a free port instead" in server.log()
        finally:
            assert server.stop() == 0
        explicit = DiscoveryProcess(tmp_path / "b.sqlite3", extra_args=["--tls-port", str(taken)])
        with pytest.raises(RuntimeError, match="discovery server exited"):
            explicit.start()  # an explicit port that is taken is an error, not a surprise
    finally:
        blocker.close()


def test_embedded_server_speaks_tls_with_its_own_key(tmp_path: Path) -> None:
    with EmbeddedServer(identity_dir=str(tmp_path / "srv")) as server:
        assert server.address is not None
        assert server.tls_port is not None
        assert server.fingerprint == load_or_create_identity(tmp_path / "srv").fingerprint
        with DiscoveryClient(*server.address, pins=PinStore(tmp_path / "p.json")) as client:
            client.list_users()
            assert client.server_fingerprint == server.fingerprint
    with EmbeddedServer(tls_port=None) as server:
        assert server.tls_port is None
        assert server.address is not None
        assert exchange(server.address, b"VCALL_TLS") == b"NOK UNKNOWN_COMMAND"


def test_an_old_database_gains_the_key_column(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE users (nick TEXT PRIMARY KEY, ip TEXT NOT NULL, port INTEGER NOT NULL, "
        "protocols TEXT NOT NULL, ts REAL NOT NULL, salt BLOB NOT NULL, scrypt_n INTEGER NOT "
        "NULL, scrypt_r INTEGER NOT NULL, scrypt_p INTEGER NOT NULL, digest BLOB NOT NULL)"
    )
    db.execute(
        "INSERT INTO users VALUES ('old', '127.0.0.1', 4000, 'V0', 1.0, ?, 16384, 8, 1, ?)",
        (b"s" * 16, b"d" * 32),
    )
    db.commit()
    db.close()
    store = Store(path)
    try:
        (user,) = store.load_all()
        assert (user.nick, user.fingerprint) == ("old", None)
    finally:
        store.close()


def test_cli_over_tls_registers_this_installations_key(
    server: DiscoveryProcess, tmp_path: Path
) -> None:
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"), "VCALL_PASSWORD": "pw"}
    pins = str(tmp_path / "pins.json")

    def vcall(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "vcall", "discovery", "--server",
             f"127.0.0.1:{server.port}", "--tls", "--pins", pins, *args],
            capture_output=True, text=True, timeout=30, env=env, check=False,
        )  # fmt: skip

    done = vcall("register", "carol", "--ip", "127.0.0.1", "--port", "7000", "--key")
    assert done.returncode == 0, done.stderr
    mine = load_or_create_identity(tmp_path / "data" / "vcall" / "identity").fingerprint
    done = vcall("query", "carol")
    assert done.stdout.strip() == f"carol 127.0.0.1 7000 V0 key {mine}", done.stderr
    done = vcall("--json", "query", "carol")
    assert json.loads(done.stdout)["fingerprint"] == mine
    assert PinStore(Path(pins)).get(*server.address) is not None


def test_pin_file_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vcall.discovery import tls

    path = tmp_path / "pins.json"
    store = PinStore(path)
    fp = "sha256:" + "1" * 64
    store.pin("::1", 8000, tls.Pin(fp, 8001))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert store.get("::1", 8000) == tls.Pin(fp, 8001)
    assert store.get("::1", 8001) is None
    with pytest.raises(ValueError):
        store.pin("h", 1, tls.Pin("sha256:short", 2))
    monkeypatch.setattr(tls, "MAX_PINS", 3)
    for port in range(1, 5):
        store.pin("h", port, tls.Pin(fp, 9000))
    assert store.get("::1", 8000) is None  # the oldest went
    assert all(store.get("h", port) for port in range(2, 5))
    bad_files = [
        "not json",
        "[]",
        '{"h:1": {"fingerprint": "x", "tls_port": 1}}',
        f'{{"h:1": {{"fingerprint": "{fp}", "tls_port": true}}}}',
        "[" * 100_000,  # json's recursion limit: RecursionError, not ValueError
    ]
    for bad in bad_files:
        path.write_text(bad)
        with pytest.raises(tls.PinStoreError):
            store.get("h", 1)
    # The state file's reader survives the same nesting (vcall/config.py).
    (tmp_path / "state.json").write_text("[" * 100_000)
    assert load_state(tmp_path / "state.json") == State()
    # An unreadable pin file stops the client (never silently replaced).
    with pytest.raises(ServerIdentityChanged, match="pin"):
        DiscoveryClient("127.0.0.1", 1, pins=store).list_users()


@given(st.binary(max_size=400))
@settings(max_examples=200)
def test_pin_file_of_arbitrary_bytes_raises_only_pin_store_error(data: bytes) -> None:
    from vcall.discovery import tls

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "pins.json"
        path.write_bytes(data)
        with contextlib.suppress(tls.PinStoreError):
            tls.PinStore(path).get("h", 1)


def test_failed_tls_handshakes_are_counted_and_cost_no_connection_slot(tmp_path: Path) -> None:
    server = start_discovery_process(
        tmp_path, ["--tls-handshake-timeout", "0.3", "--stats-interval", "0.5"]
    )
    try:
        tls_port = int(exchange(server.address, b"VCALL_TLS").split()[2])
        for payload in (b"QUERY alice", b"\x16\x03\x01\x00\x05hello", b""):
            with socket.create_connection(("127.0.0.1", tls_port), timeout=5) as sock:
                sock.sendall(payload)
                sock.settimeout(3)
                with contextlib.suppress(OSError):
                    sock.recv(100)  # an alert, or EOF: the server ends it
        # The server still answers on both ports.
        with DiscoveryClient(*server.address, pins=PinStore(tmp_path / "p.json")) as client:
            client.list_users()
            assert client.secure
        deadline = time.monotonic() + 10
        while "TLS handshake failed or timed out" not in server.log():
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.1)
        assert "3 x TLS handshake failed or timed out" in server.log()
    finally:
        assert server.stop() == 0, server.log()


def test_a_key_pinned_before_the_first_contact_closes_the_first_contact(
    tmp_path: Path,
) -> None:
    """Trust on first use cannot protect the first contact; a fingerprint given out of band
    (`vcall discovery pin`) can: the right key is used and its TLS port learnt, a wrong key is
    refused, and so is a server that answers as a classic one (a stripped VCALL_TLS)."""
    server = start_discovery_process(tmp_path)
    pins_file = tmp_path / "pins.json"

    def pin(fingerprint: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "vcall", "discovery", "--server",
             f"127.0.0.1:{server.port}", "--pins", str(pins_file), "pin", fingerprint],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip

    try:
        real = load_or_create_identity(server.db_path.parent / "discovery-identity").fingerprint
        assert pin("sha256:nothex").returncode == 2
        wrong = "sha256:" + "ab" * 32
        done = pin(wrong)
        assert done.returncode == 0, done.stderr
        assert PinStore(pins_file).get(*server.address) == Pin(wrong, 0)
        with (
            DiscoveryClient(*server.address, pins=PinStore(pins_file)) as client,
            pytest.raises(ServerIdentityChanged, match="presented key"),
        ):
            client.list_users()
        assert pin(real).returncode == 0
        with DiscoveryClient(*server.address, pins=PinStore(pins_file)) as client:
            client.list_users()
            assert client.secure and client.server_fingerprint == real
        learnt = PinStore(pins_file).get(*server.address)
        assert learnt is not None and learnt.fingerprint == real and learnt.tls_port > 0
        # The same pin, and the server now answers as a classic one: refused, never in clear.
        assert pin(real).returncode == 0
        server.stop()
        server.extra_args = ["--no-tls"]
        server.start()
        with (
            DiscoveryClient(*server.address, pins=PinStore(pins_file)) as client,
            pytest.raises(ServerIdentityChanged, match="no longer offers TLS"),
        ):
            client.list_users()
    finally:
        assert server.stop() == 0, server.log()
