"""Several ``vcall-discovery`` processes on one real Redis: the directory is one directory."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.discovery.redis_server import RedisProcess
from tests.fixtures.discovery import DiscoveryProcess, start_discovery_process
from vcall.discovery.client import DiscoveryClient, DiscoveryError, UserRecord

pytestmark = pytest.mark.usefixtures("no_leaks")

FAST = ["--scrypt-n", "1024", "--gap-timeout", "0.05", "--stats-interval", "0.5"]


def ask(address: tuple[str, int], data: bytes, timeout: float = 10.0) -> bytes:
    """One request on a fresh connection; the first reply."""
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(data)
        return sock.recv(65536)


class Instances:
    def __init__(self, tmp_path: Path, redis: RedisProcess) -> None:
        self.tmp_path = tmp_path
        self.redis = redis
        self.procs: list[DiscoveryProcess] = []

    def start(self, name: str, *extra: str) -> DiscoveryProcess:
        args = [*FAST, "--store", self.redis.url, *extra]
        proc = start_discovery_process(self.tmp_path, args, name=name)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        # Every one is stopped before any failure is reported (0 too for one the test killed).
        codes = [(proc.stop(), proc) for proc in self.procs]
        for code, proc in codes:
            assert code == 0, proc.log()


@pytest.fixture
def instances(tmp_path: Path, redis_server: RedisProcess) -> Iterator[Instances]:
    group = Instances(tmp_path, redis_server)
    try:
        yield group
    finally:
        group.stop_all()


def wait_for(address: tuple[str, int], request: bytes, expected: bytes, timeout: float) -> float:
    """Poll until ``request`` gets ``expected``; seconds it took."""
    start = time.monotonic()
    with socket.create_connection(address, timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            sock.sendall(request)
            if sock.recv(65536) == expected:
                return time.monotonic() - start
            assert time.monotonic() - start < timeout, f"{request!r} never got {expected!r}"
            time.sleep(0.001)


def test_register_on_one_instance_answers_on_the_other(instances: Instances) -> None:
    a, b = instances.start("a"), instances.start("b")
    delays = []
    with DiscoveryClient(*a.address) as client:
        for i in range(20):
            client.register(f"u{i}", "10.0.0.1", 1000 + i, "pw", ["V0"])
            delays.append(
                wait_for(b.address, f"QUERY u{i}".encode(),
                         f"OK USER_FOUND u{i} 10.0.0.1 {1000 + i} V0".encode(), 5.0)
            )  # fmt: skip
    delays.sort()
    print(f"propagation a -> b: p50 {delays[10] * 1000:.1f} ms, max {delays[-1] * 1000:.1f} ms")
    # The list is the same list on both instances.
    assert ask(a.address, b"LIST_USERS").count(b"#") == 20
    assert ask(b.address, b"LIST_USERS").count(b"#") == 20
    # An update on b, with the password, reaches a; a wrong password on b changes nothing.
    with DiscoveryClient(*b.address) as client:
        client.register("u0", "10.0.0.2", 2000, "pw", ["V0", "V1"])
    wait_for(a.address, b"QUERY u0", b"OK USER_FOUND u0 10.0.0.2 2000 V0#V1", 5.0)
    assert ask(b.address, b"REGISTER u0 10.6.6.6 6666 bad V0") == b"NOK WRONG_PASS"
    time.sleep(0.2)
    for proc in (a, b):
        assert ask(proc.address, b"QUERY u0") == b"OK USER_FOUND u0 10.0.0.2 2000 V0#V1"


def test_concurrent_first_registrations_exactly_one_wins(instances: Instances) -> None:
    # Every loser is a failed password from 127.0.0.1: keep the shared throttle out of it.
    extra = ("--throttle-failures", "1000")
    a, b = instances.start("a", *extra), instances.start("b", *extra)
    for i in range(10):
        nick = f"race{i}"
        replies: dict[str, bytes] = {}

        def register(
            proc: DiscoveryProcess, request: bytes, pw: str, out: dict[str, bytes]
        ) -> None:
            out[pw] = ask(proc.address, request)

        threads = [
            threading.Thread(target=register, args=(proc, req.encode(), pw, replies))
            for proc, req, pw in (
                (a, f"REGISTER {nick} 10.0.0.1 1111 pa V0", "pa"),
                (b, f"REGISTER {nick} 10.0.0.1 2222 pb V0", "pb"),
            )
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        outcomes = sorted(r.split(b" ")[1] for r in replies.values())
        assert outcomes == [b"WELCOME", b"WRONG_PASS"], replies
        winner_port = 1111 if replies["pa"].startswith(b"OK") else 2222
        expected = f"OK USER_FOUND {nick} 10.0.0.1 {winner_port} V0".encode()
        for proc in (a, b):
            wait_for(proc.address, f"QUERY {nick}".encode(), expected, 5.0)
            # The loser's password does not open the record; the winner's does.
            loser, winner = ("pb", "pa") if winner_port == 1111 else ("pa", "pb")
            req = f"REGISTER {nick} 10.0.0.1 1 {loser} V0".encode()
            assert ask(proc.address, req) == b"NOK WRONG_PASS"
            req = f"REGISTER {nick} 10.0.0.1 {winner_port} {winner} V0".encode()
            assert ask(proc.address, req).startswith(b"OK WELCOME")


def test_shared_throttle_over_the_wire(instances: Instances) -> None:
    extra = ("--throttle-failures", "4", "--throttle-lockout", "60")
    a, b = instances.start("a", *extra), instances.start("b", *extra)
    assert ask(a.address, b"REGISTER tom 10.0.0.1 1 right V0").startswith(b"OK WELCOME")
    # Two wrong guesses on each instance: four in all, and the nick is locked everywhere.
    for proc in (a, b, a, b):
        assert ask(proc.address, b"REGISTER tom 10.0.0.1 1 wrong V0") == b"NOK WRONG_PASS"
    for proc in (a, b):
        assert ask(proc.address, b"REGISTER tom 10.0.0.9 9 right V0") == b"NOK WRONG_PASS"
        assert ask(proc.address, b"QUERY tom") == b"OK USER_FOUND tom 10.0.0.1 1 V0"


def test_killing_an_instance_loses_no_acknowledged_registration(instances: Instances) -> None:
    a, b = instances.start("a"), instances.start("b")
    acknowledged: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with DiscoveryClient(*a.address, timeout=2.0) as client:
            i = 0
            while not stop.is_set():
                try:
                    client.register(f"k{i}", "10.0.0.1", 1 + i % 60000, "pw", ["V0"])
                except DiscoveryError:
                    return  # the instance died under us: this one was not acknowledged
                acknowledged.append(f"k{i}")
                i += 1

    thread = threading.Thread(target=load)
    thread.start()
    deadline = time.monotonic() + 10
    while len(acknowledged) < 30 and time.monotonic() < deadline:
        time.sleep(0.01)
    a.kill()  # SIGKILL in the middle of the stream of registrations
    stop.set()
    thread.join(10)
    assert len(acknowledged) >= 30
    c = instances.start("c")  # a new instance loads everything from Redis
    for proc in (b, c):
        with DiscoveryClient(*proc.address) as client:
            listed = {e.nick for e in client.list_users()}
            assert set(acknowledged) <= listed
            for nick in acknowledged[-3:]:
                assert client.query(nick).nick == nick


def test_redis_down_queries_answered_registrations_refused(instances: Instances) -> None:
    a = instances.start("a")
    with DiscoveryClient(*a.address) as client:
        client.register("cached", "10.0.0.5", 5000, "pw", ["V0"])
    instances.redis.kill()
    # Queries are answered from the cache, at once.
    assert ask(a.address, b"QUERY cached") == b"OK USER_FOUND cached 10.0.0.5 5000 V0"
    assert ask(a.address, b"LIST_USERS").startswith(b"OK USERS_LIST 1 cached 10.0.0.5 5000 ")
    # A registration gets a clear refusal within the store's timeout, never a hang.
    start = time.monotonic()
    assert ask(a.address, b"REGISTER new 10.0.0.6 6000 pw V0") == b"NOK SERVICE_UNAVAILABLE"
    assert ask(a.address, b"REGISTER cached 10.0.0.6 6000 pw V0") == b"NOK SERVICE_UNAVAILABLE"
    assert time.monotonic() - start < 10
    assert "unreachable" in a.log() and "refusing registrations" in a.log()
    # Back: the instance resubscribes, reloads and accepts registrations again.
    instances.redis.start()
    deadline = time.monotonic() + 15
    while "subscribed again after an outage" not in a.log():
        assert time.monotonic() < deadline, a.log()
        time.sleep(0.1)
    assert ask(a.address, b"REGISTER new 10.0.0.6 6000 pw V0").startswith(b"OK WELCOME new ")
    assert ask(a.address, b"QUERY cached") == b"OK USER_FOUND cached 10.0.0.5 5000 V0"
    assert "Traceback" not in a.log()


def test_a_client_error_names_the_refusal(instances: Instances) -> None:
    a = instances.start("a")
    instances.redis.kill()
    with DiscoveryClient(*a.address) as client, pytest.raises(DiscoveryError) as info:
        client.register("x", "10.0.0.1", 1, "pw", ["V0"])
    assert type(info.value).__name__ == "ServiceUnavailable"
    assert "SERVICE_UNAVAILABLE" in str(info.value)


def test_instance_cannot_start_without_redis(tmp_path: Path) -> None:
    from tests.fixtures.discovery import free_port

    proc = DiscoveryProcess(
        tmp_path / "x.sqlite3", extra_args=["--store", f"redis://127.0.0.1:{free_port()}/0"]
    )
    with pytest.raises(RuntimeError, match="exited with 1"):
        proc.start()
    assert "cannot serve" in proc.log() and "Traceback" not in proc.log()


@pytest.mark.parametrize("spec", ["mongodb://x/y", "redis://127.0.0.1:notaport/0", "sqlite:"])
def test_a_bad_store_spec_is_a_clear_error(tmp_path: Path, spec: str) -> None:
    proc = DiscoveryProcess(tmp_path / "x.sqlite3", extra_args=["--store", spec])
    with pytest.raises(RuntimeError, match="exited with 1"):
        proc.start()
    assert "cannot serve" in proc.log() and "Traceback" not in proc.log()


def test_records_stay_valid_user_records(instances: Instances) -> None:
    a = instances.start("a")
    with DiscoveryClient(*a.address) as client:
        client.register("v6", "2001:db8::1", 65535, "pw", ["V0", "V2435"])
        assert client.query("v6") == UserRecord("v6", "2001:db8::1", 65535, ("V0", "V2435"))


def test_records_changed_behind_the_servers_back(instances: Instances) -> None:
    from tests.discovery.redis_server import command

    a = instances.start("a")
    port = instances.redis.port
    for nick in ("gone", "moved"):
        assert ask(a.address, f"REGISTER {nick} 10.0.0.1 1 pw V0".encode()).startswith(b"OK")
    # Removed by hand: the cache still knows it; the right password restores it, a wrong
    # one does not.
    command(port, "DEL", "vcall:user:gone")
    assert ask(a.address, b"REGISTER gone 10.0.0.2 2 bad V0") == b"NOK WRONG_PASS"
    assert ask(a.address, b"REGISTER gone 10.0.0.2 2 pw V0").startswith(b"OK WELCOME gone")
    assert command(port, "HGET", "vcall:user:gone", "port") == b"$1\r\n2\r\n"
    # Its credential replaced by hand: the cached one no longer opens it.
    assert command(port, "HSET", "vcall:user:moved", "digest", "x" * 32) == b":0\r\n"
    assert ask(a.address, b"REGISTER moved 10.0.0.3 3 pw V0") == b"NOK WRONG_PASS"
    assert command(port, "HGET", "vcall:user:moved", "port") == b"$1\r\n1\r\n"


def test_redis_holds_no_password(instances: Instances) -> None:
    from tests.discovery.test_store import forms_of

    secret = "Walrus-Pelican-91-unique"
    a = instances.start("a")
    with DiscoveryClient(*a.address) as client:
        client.register("sec", "10.0.0.1", 1, secret, ["V0"])
    from tests.discovery.redis_server import command

    assert command(instances.redis.port, "SAVE") == b"+OK\r\n"  # an RDB too, beside the AOF
    files = [p for p in instances.redis.dir.rglob("*") if p.is_file() and p.name != "redis.log"]
    blob = b"".join(p.read_bytes() for p in files)
    assert b"sec" in blob  # the right files
    for form in forms_of(secret):
        assert form not in blob
