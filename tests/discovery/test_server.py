"""The real server process on loopback: golden bytes, connection styles, limits, throttle."""

from __future__ import annotations

import base64
import contextlib
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.discovery import DiscoveryProcess, start_discovery_process
from vcall.discovery.client import DiscoveryClient, UserRecord

# Every server process and load generator a test starts is gone when it ends.
pytestmark = pytest.mark.usefixtures("no_leaks")

FAST = ["--scrypt-n", "1024", "--gap-timeout", "0.2"]


def connect(address: tuple[str, int], source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(address, timeout=5, source_address=(source, 0))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def ask(sock: socket.socket, data: bytes, quiet: float = 0.05) -> bytes:
    """Send one request; return everything that arrives until ``quiet`` s without bytes."""
    sock.sendall(data)
    sock.settimeout(5)
    reply = sock.recv(65536)
    sock.settimeout(quiet)
    try:
        while more := sock.recv(65536):
            reply += more
    except TimeoutError:
        pass
    return reply


def admitted(address: tuple[str, int], source: str = "127.0.0.1") -> socket.socket:
    """A connection the server accepted and answers (retrying while a cap is still full)."""
    for _ in range(50):
        sock = connect(address, source)
        try:
            if ask(sock, b"QUERY x") == b"NOK USER_UNKNOWN":
                return sock
        except OSError:
            pass
        sock.close()
        time.sleep(0.1)
    raise AssertionError("never admitted")


def closed_by_server(sock: socket.socket, timeout: float = 5.0) -> bool:
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


@pytest.fixture(scope="module", params=["asyncio", "uvloop", "uvloop+redis"])
def server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[DiscoveryProcess]:
    loop, _, store = request.param.partition("+")
    # Golden cases send many bad requests in a row: allow them.
    args = [*FAST, "--max-errors", "50", "--loop", loop]
    if store == "redis":  # the same suite against the shared store
        redis = request.getfixturevalue("redis_module")
        args += ["--store", redis.url]
    proc = start_discovery_process(tmp_path_factory.mktemp("disc"), args)
    assert f"{loop} loop" in proc.log()
    assert f"(db {redis.url}," in proc.log() if store else "(db " in proc.log()
    yield proc
    assert proc.stop() == 0


# --- golden exchanges -----------------------------------------------------------------------

GOLDEN = [
    (b"REGISTER alice 10.0.0.1 8000 pw V0#V2435", rb"OK WELCOME alice \d+"),
    (b"QUERY alice", rb"OK USER_FOUND alice 10.0.0.1 8000 V0#V2435"),
    (b"QUERY alice\r\n", rb"OK USER_FOUND alice 10.0.0.1 8000 V0#V2435"),
    (b"QUERY alice \r", rb"OK USER_FOUND alice 10.0.0.1 8000 V0#V2435"),
    (b"QUERY nobody", rb"NOK USER_UNKNOWN"),
    (b"LIST_USERS", rb"OK USERS_LIST 1 alice 10.0.0.1 8000 \d+#"),
    (b"LIST_USERS\n", rb"OK USERS_LIST 1 alice 10.0.0.1 8000 \d+#"),
    (b"REGISTER alice 10.0.0.9 9999 wrong V0", rb"NOK WRONG_PASS"),
    (b"QUERY alice", rb"OK USER_FOUND alice 10.0.0.1 8000 V0#V2435"),  # the record unchanged
    (b"REGISTER alice 10.0.0.2 8001 pw V0", rb"OK WELCOME alice \d+"),
    (b"QUERY alice", rb"OK USER_FOUND alice 10.0.0.2 8001 V0"),
    (b"QUERY", rb"NOK SYNTAX_ERROR"),  # judged after the gap
    (b"QUERY a#b", rb"NOK SYNTAX_ERROR"),
    (b"QUERY \xff\xfe", rb"NOK SYNTAX_ERROR"),
    (b"REGISTER bob 10.0.0.1 8000.0 pw V0", rb"NOK SYNTAX_ERROR"),
    (b"REGISTER bob 10.0.0.1 70000 pw V0", rb"NOK SYNTAX_ERROR"),
    (b"REGISTER bob not-an-ip 8000 pw V0", rb"NOK SYNTAX_ERROR"),
    (b"REGISTER bob 10.0.0.1 8000 pw V0 extra", rb"NOK SYNTAX_ERROR"),
    (b"REGISTER bob 10.0.0.1 8000 pw v0", rb"NOK SYNTAX_ERROR"),
    (b"REGISTER b#b 10.0.0.1 8000 pw V0", rb"NOK SYNTAX_ERROR"),
    (b"LIST_USERS all", rb"NOK SYNTAX_ERROR"),
    (b"HELLO", rb"NOK UNKNOWN_COMMAND"),
    (b"list_users", rb"NOK UNKNOWN_COMMAND"),
    (b"QUIT", rb"BYE"),
]


def test_golden_exchanges_on_one_connection(server: DiscoveryProcess) -> None:
    sock = connect(server.address)
    try:
        for request, pattern in GOLDEN:
            reply = ask(sock, request)
            # Byte-exact: no terminator, no trailing space, nothing else in the stream.
            assert re.fullmatch(pattern, reply), (request, reply)
        assert closed_by_server(sock)  # after BYE
    finally:
        sock.close()


def test_one_request_per_connection_styles(server: DiscoveryProcess) -> None:
    # 1. send, read, close (no QUIT)
    with connect(server.address) as s:
        assert ask(s, b"QUERY nobody") == b"NOK USER_UNKNOWN"
    # 2. send, read, QUIT without reading BYE, close
    with connect(server.address) as s:
        assert ask(s, b"LIST_USERS").startswith(b"OK USERS_LIST ")
        s.sendall(b"QUIT")
    # 3. send and half-close at once: the answer still comes, then the server closes
    with connect(server.address) as s:
        s.sendall(b"QUERY nobody")
        s.shutdown(socket.SHUT_WR)
        s.settimeout(5)
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        assert data == b"NOK USER_UNKNOWN"
    # 4. connect and close without a word
    socket.create_connection(server.address, timeout=5).close()
    with connect(server.address) as s:
        assert ask(s, b"QUERY nobody") == b"NOK USER_UNKNOWN"


def test_requests_split_over_writes_and_half_closed_register(server: DiscoveryProcess) -> None:
    with connect(server.address) as s:
        for part in (b"REGIS", b"TER carol 10.9.8.7 ", b"4000 p", b"w V0#", b"V7"):
            s.sendall(part)
            time.sleep(0.03)
        assert ask(s, b"").startswith(b"OK WELCOME carol ")
        assert ask(s, b"QUERY carol") == b"OK USER_FOUND carol 10.9.8.7 4000 V0#V7"
    with connect(server.address) as s:
        s.sendall(b"REGISTER dan 10.9.8.6 4001 pw V0")
        s.shutdown(socket.SHUT_WR)  # the reply needs scrypt work: it must still arrive
        s.settimeout(5)
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        assert data.startswith(b"OK WELCOME dan ")


def test_pipelined_requests_keep_their_order(server: DiscoveryProcess) -> None:
    with connect(server.address) as s:
        s.sendall(b"REGISTER erin 1.2.3.4 5 pw V0\nQUERY erin\nQUERY nobody\n")
        s.settimeout(5)
        data = b""
        while not data.endswith(b"NOK USER_UNKNOWN"):
            data += s.recv(4096)
        assert data.split(b" ", 3)[:3] == [b"OK", b"WELCOME", b"erin"]
        assert data.endswith(b"OK USER_FOUND erin 1.2.3.4 5 V0NOK USER_UNKNOWN")


def test_many_users_list_reassembled_by_the_client(server: DiscoveryProcess) -> None:
    with DiscoveryClient(*server.address) as client:
        for i in range(60):
            client.register(f"user{i:03d}-{'x' * 20}", f"10.0.{i}.1", 1000 + i, "pw", ["V0"])
        names = {e.nick for e in client.list_users()}
    assert {f"user{i:03d}-{'x' * 20}" for i in range(60)} <= names


# --- processes: persistence, signals, the database ------------------------------------------


def test_restart_keeps_registrations_and_db_holds_no_password(tmp_path: Path) -> None:
    secret = "Zebra-Quokka-73-unique"
    proc = start_discovery_process(tmp_path, FAST)
    try:
        with DiscoveryClient(*proc.address) as client:
            client.register("frank", "10.0.0.8", 6000, secret, ["V0"])
        proc.restart()
        with DiscoveryClient(*proc.address) as client:
            assert client.query("frank") == UserRecord("frank", "10.0.0.8", 6000, ("V0",))
    finally:
        assert proc.stop() == 0
    files = [p for p in tmp_path.iterdir() if p.name.startswith(proc.db_path.name)]
    assert files
    blob = b"".join(p.read_bytes() for p in files)
    raw = secret.encode()
    for form in (raw, raw.hex().encode(), base64.b64encode(raw), base64.b64encode(raw)[:16]):
        assert form not in blob
    assert b"frank" in blob  # the test reads the right file


def test_sigint_stops_cleanly(tmp_path: Path) -> None:
    proc = start_discovery_process(tmp_path, FAST)
    assert proc.proc is not None
    with connect(proc.address) as s:
        proc.proc.send_signal(signal.SIGINT)
        assert proc.proc.wait(timeout=5) == 0
        assert closed_by_server(s)
    assert "listening on 127.0.0.1:" in proc.log()
    proc.proc = None


def test_port_zero_logs_the_real_port() -> None:
    p = subprocess.Popen(
        [sys.executable, "-m", "vcall.discovery.server", "--port", "0", "--db", ":memory:"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert p.stderr is not None
        line = p.stderr.readline()
        assert "listening on 127.0.0.1:" in line
        port = int(line.split("listening on 127.0.0.1:")[1].split()[0])
        assert port > 0
        with connect(("127.0.0.1", port)) as s:
            assert ask(s, b"LIST_USERS") == b"OK USERS_LIST 0"
    finally:
        p.terminate()
        assert p.wait(timeout=5) == 0
        assert p.stderr is not None
        p.stderr.close()


# --- limits ---------------------------------------------------------------------------------


def test_connection_caps(tmp_path: Path) -> None:
    proc = start_discovery_process(
        tmp_path, [*FAST, "--max-per-address", "3", "--max-connections", "5"]
    )
    socks: list[socket.socket] = []
    try:
        # The fixture's readiness probe may still count against the cap for a moment.
        socks = [admitted(proc.address) for _ in range(3)]
        extra = connect(proc.address)
        assert closed_by_server(extra)  # fourth from 127.0.0.1: over the per-address cap
        extra.close()
        other = [connect(proc.address, source="127.0.0.2") for _ in range(2)]
        socks += other
        for s in other:
            assert ask(s, b"QUERY x") == b"NOK USER_UNKNOWN"
        over = connect(proc.address, source="127.0.0.3")
        assert closed_by_server(over)  # sixth overall: over the global cap
        over.close()
        socks.pop().close()
        time.sleep(0.2)
        with connect(proc.address, source="127.0.0.3") as s:  # room again
            assert ask(s, b"QUERY x") == b"NOK USER_UNKNOWN"
    finally:
        for s in socks:
            s.close()
        assert proc.stop() == 0


def test_slowloris_is_dropped_and_stalls_nobody(tmp_path: Path) -> None:
    proc = start_discovery_process(
        tmp_path, ["--scrypt-n", "1024", "--gap-timeout", "0.5", "--request-timeout", "1"]
    )
    try:
        slow = connect(proc.address)
        start = time.monotonic()
        dropped = False
        for byte in b"REGISTER mallory 10.0.0.1 8000 pw V0#V1#V2#V3#V4#V5#V6#V7#V8#V9":
            try:
                slow.sendall(bytes([byte]))
            except OSError:
                dropped = True
                break
            with connect(proc.address) as legit:  # others are served meanwhile
                assert ask(legit, b"QUERY x", quiet=0.01) == b"NOK USER_UNKNOWN"
            time.sleep(0.1)
        dropped = dropped or closed_by_server(slow, timeout=3)
        assert dropped
        assert time.monotonic() - start < 10
        slow.close()
    finally:
        assert proc.stop() == 0
    assert "request not completed in time" in proc.log()  # in the drop summary


def test_garbage_trickle_is_dropped_after_max_errors(tmp_path: Path) -> None:
    proc = start_discovery_process(tmp_path, [*FAST, "--max-errors", "3"])
    try:
        with connect(proc.address) as s:
            assert ask(s, b"X\n") == b"NOK UNKNOWN_COMMAND"
            assert ask(s, b"Y\n") == b"NOK UNKNOWN_COMMAND"
            assert ask(s, b"Z\n") == b"NOK UNKNOWN_COMMAND"
            assert closed_by_server(s)
    finally:
        assert proc.stop() == 0


def test_overlong_request_is_refused(tmp_path: Path) -> None:
    proc = start_discovery_process(tmp_path, [*FAST, "--max-request", "100"])
    try:
        with connect(proc.address) as s:
            s.sendall(b"REGISTER " + b"a" * 200)
            s.settimeout(5)
            assert s.recv(100) == b"NOK SYNTAX_ERROR"
            assert closed_by_server(s)
    finally:
        assert proc.stop() == 0


def test_idle_connections_are_dropped_and_the_client_reconnects(tmp_path: Path) -> None:
    proc = start_discovery_process(tmp_path, [*FAST, "--idle-timeout", "0.5"])
    try:
        idle = connect(proc.address)
        assert closed_by_server(idle, timeout=5)
        idle.close()
        with DiscoveryClient(*proc.address) as client:
            client.register("gina", "10.0.0.3", 3000, "pw", ["V0"])
            time.sleep(1.0)  # the server drops our idle connection meanwhile
            assert client.query("gina").port == 3000
    finally:
        assert proc.stop() == 0


def test_throttle_over_the_wire(tmp_path: Path) -> None:
    proc = start_discovery_process(
        tmp_path, [*FAST, "--throttle-failures", "3", "--throttle-lockout", "60"]
    )
    try:
        with connect(proc.address) as s:
            assert ask(s, b"REGISTER hank 10.0.0.1 1 right V0").startswith(b"OK WELCOME")
            for _ in range(3):
                assert ask(s, b"REGISTER hank 10.0.0.1 1 wrong V0") == b"NOK WRONG_PASS"
            # Locked: even the right password is refused, and the record is unchanged.
            assert ask(s, b"REGISTER hank 10.0.0.9 9 right V0") == b"NOK WRONG_PASS"
            assert ask(s, b"QUERY hank") == b"OK USER_FOUND hank 10.0.0.1 1 V0"
            # The address is locked too, for other nicks...
            assert ask(s, b"REGISTER ivy 10.0.0.1 1 pw V0") == b"NOK WRONG_PASS"
        # ...but not another address registering another nick.
        with connect(proc.address, source="127.0.0.2") as s:
            assert ask(s, b"REGISTER ivy 10.0.0.1 1 pw V0").startswith(b"OK WELCOME ivy")
            assert ask(s, b"REGISTER hank 10.0.0.1 1 right V0") == b"NOK WRONG_PASS"
    finally:
        assert proc.stop() == 0


def test_a_peer_that_never_reads_cannot_make_the_server_buffer_replies(tmp_path: Path) -> None:
    import psutil

    # asyncio copies what it buffers (uvloop keeps references to our shared reply bytes, so
    # it would hide a missing back-pressure).
    proc = start_discovery_process(tmp_path, [*FAST, "--loop", "asyncio", "--idle-timeout", "2"])
    try:
        assert proc.proc is not None
        with DiscoveryClient(*proc.address) as client:
            for i in range(300):  # a ~60 KB USERS_LIST reply
                client.register(f"u{i:03d}-{'y' * 26}", f"10.1.{i % 250}.1", 1000 + i, "p", ["V0"])
        server = psutil.Process(proc.proc.pid)
        before = server.memory_info().rss
        flood = connect(proc.address)
        flood.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        flood.settimeout(0.5)
        sent = 0
        with contextlib.suppress(TimeoutError):  # the server stops reading: our send blocks
            for _ in range(4000):  # ~70 MB of replies if the server buffered them all
                flood.sendall(b"LIST_USERS\n")
                sent += 1
        with connect(proc.address) as other:  # everyone else is still served
            assert ask(other, b"QUERY nobody") == b"NOK USER_UNKNOWN"
        time.sleep(1.0)
        growth = server.memory_info().rss - before
        assert growth < 16 * 1024 * 1024, (growth, sent)
        # And a peer that stays stalled for an idle timeout is dropped.
        flood_port = flood.getsockname()[1]

        def flood_open() -> bool:
            return any(c.raddr and c.raddr[1] == flood_port for c in server.net_connections("tcp"))

        deadline = time.monotonic() + 10
        while flood_open() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not flood_open()
        flood.close()
    finally:
        assert proc.stop() == 0
    assert "not reading replies" in proc.log()


def test_periodic_stats_line(tmp_path: Path) -> None:
    proc = start_discovery_process(tmp_path, [*FAST, "--stats-interval", "0.2"])
    try:
        with connect(proc.address) as s:
            for _ in range(5):
                assert ask(s, b"QUERY x", quiet=0.01) == b"NOK USER_UNKNOWN"
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                line = re.search(r"stats: (\d+) connections, \d+ requests/s, loop lag", proc.log())
                if line and line.group(1) == "1":
                    break
                time.sleep(0.1)
            assert line is not None and line.group(1) == "1", proc.log()
    finally:
        assert proc.stop() == 0


def test_ipv6_listener(tmp_path: Path) -> None:
    proc = DiscoveryProcess(tmp_path / "v6.sqlite3", host="::1", extra_args=FAST)
    proc.start()
    try:
        with DiscoveryClient("::1", proc.port) as client:
            client.register("v6user", "2001:db8::7", 4000, "pw", ["V0"])
            assert client.query("v6user") == UserRecord("v6user", "2001:db8::7", 4000, ("V0",))
    finally:
        assert proc.stop() == 0
