"""The cheap keep-alive (issue 15 presence, issue 13 sizing): VCALL_SESSION / VCALL_HERE and
VCALL_OFFLINE with a token. Grammar and tokens (pure, property-tested), the store contract on
SQLite and a real Redis, the real server process (SQLite, and two instances on one Redis),
and the GUI's KeepAlive against a real server and a classic one."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.presence import bench_keepalive
from pipeline.errors import RemoteProtocolError
from tests.discovery.redis_server import RedisProcess
from tests.fixtures.discovery import DiscoveryProcess, start_discovery_process
from vcall.discovery.backend import open_store
from vcall.discovery.client import DiscoveryClient, WrongPassword
from vcall.discovery.codec import (
    INCOMPLETE,
    Here,
    HereAck,
    Nok,
    NokCode,
    Offline,
    Presence,
    Rejected,
    SessionGranted,
    SessionOpen,
    Verb,
    format_reply,
    format_request,
    parse_reply,
    parse_request,
)
from vcall.discovery.session import (
    new_token,
    token_digest,
    token_matches,
    token_prefix,
    valid_token,
)
from vcall.discovery.store import ScryptParams, StoredUser, hash_password
from vcall.discovery.throttle import ThrottlePolicy
from vcall.gui.presence import KeepAlive, Registration, say_goodbye

pytestmark = pytest.mark.usefixtures("no_leaks")

FLAGS = ["--scrypt-n", "1024", "--gap-timeout", "0.05", "--no-tls"]
TOKEN = "0123456789abcdef0123456789abcdef"

# --- grammar and tokens ---------------------------------------------------------------------


def test_golden_bytes() -> None:
    assert format_request(SessionOpen("alice", "pw")) == b"VCALL_SESSION alice pw"
    assert format_request(Here("alice", TOKEN)) == b"VCALL_HERE alice " + TOKEN.encode()
    assert format_reply(SessionGranted(TOKEN, 43200)) == b"OK VCALL_SESSION %s 43200" % (
        TOKEN.encode()
    )
    assert format_reply(HereAck()) == b"OK VCALL_HERE"
    assert parse_request(b"VCALL_SESSION alice pw\r\n", final=True) == SessionOpen("alice", "pw")
    assert parse_request(b"VCALL_HERE alice " + TOKEN.encode(), final=False) == Here("alice", TOKEN)
    # A token cut by the network waits; a bad one is a syntax error, never a guess.
    assert parse_request(b"VCALL_HERE alice 0123abc", final=False) is INCOMPLETE
    for bad in (b"0123abc", TOKEN.upper().encode(), TOKEN.encode() + b"0", b"xyz"):
        result = parse_request(b"VCALL_HERE alice " + bad, final=True)
        assert result == Rejected(NokCode.SYNTAX_ERROR, "invalid session token")
    assert parse_reply(b"OK VCALL_HERE", Verb.VCALL_HERE, final=False) == HereAck()
    raw = b"OK VCALL_SESSION " + TOKEN.encode() + b" 60"
    assert parse_reply(raw, Verb.VCALL_SESSION, final=False) == SessionGranted(TOKEN, 60)
    assert parse_reply(raw[:30], Verb.VCALL_SESSION, final=False) is INCOMPLETE
    assert parse_reply(b"NOK WRONG_PASS", Verb.VCALL_HERE, final=True) == Nok(NokCode.WRONG_PASS)
    with pytest.raises(ValueError):
        format_request(Here("alice", "not-a-token"))


@given(st.binary(max_size=120), st.booleans())
def test_the_new_requests_survive_any_bytes(tail: bytes, final: bool) -> None:
    for verb in (b"VCALL_SESSION ", b"VCALL_HERE ", b"VCALL_HERE alice "):
        result = parse_request(verb + tail, final=final)
        if isinstance(result, Here | SessionOpen | Offline):
            assert format_request(result) == (verb + tail).rstrip(b" \r\n")


@given(st.binary(max_size=120), st.booleans())
def test_the_new_replies_raise_only_remote_errors(raw: bytes, final: bool) -> None:
    for verb in (Verb.VCALL_SESSION, Verb.VCALL_HERE):
        for data in (raw, b"OK " + verb.encode() + b" " + raw):
            try:
                reply = parse_reply(data, verb, final=final)
            except RemoteProtocolError:
                continue
            if isinstance(reply, SessionGranted):
                assert valid_token(reply.token) and reply.ttl >= 0


@given(st.text(max_size=40), st.binary(max_size=40))
def test_token_matching_takes_anything(token: str, digest: bytes) -> None:
    assert token_matches(token, digest) is (valid_token(token) and token_digest(token) == digest)


def test_tokens() -> None:
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100 and all(valid_token(t) for t in tokens)
    token = tokens.pop()
    assert token_matches(token, token_digest(token))
    assert not token_matches(tokens.pop(), token_digest(token))
    assert not token_matches(token, None) and not token_matches(token, b"short")
    assert token_prefix("") and token_prefix(token[:31]) and not token_prefix(token)


# --- the store contract ---------------------------------------------------------------------


class Sink:
    def __init__(self) -> None:
        self.changed_users: list[StoredUser] = []

    def changed(self, user: StoredUser) -> None:
        self.changed_users.append(user)

    def reloaded(self, users: list[StoredUser]) -> None:
        pass


@pytest.fixture(params=["sqlite", "redis"])
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'd.sqlite3'}"
    redis: RedisProcess = request.getfixturevalue("redis_server")
    return redis.url


def test_store_sessions_and_touch(spec: str) -> None:
    cred = hash_password("pw", ScryptParams(n=1 << 10))

    async def main() -> None:
        store = open_store(spec, ThrottlePolicy(), 60)
        sink = Sink()
        await store.start(sink)
        try:
            assert await store.create(StoredUser("ann", "10.0.0.1", 4000, ("V0",), 1.0, cred))
            assert await store.session_digest("ann") is None
            await store.put_session("ann", token_digest(TOKEN), 60)
            assert await store.session_digest("ann") == token_digest(TOKEN)
            await store.put_session("ann", b"\x01" * 32, 60)  # a new session replaces it
            assert await store.session_digest("ann") == b"\x01" * 32
            await store.drop_session("ann")
            assert await store.session_digest("ann") is None
            await store.put_session("ann", b"\x02" * 32, 0.2)
            await asyncio.sleep(0.3)
            assert await store.session_digest("ann") is None  # expired
            assert await store.touch("ann", 5.0)
            assert not await store.touch("nobody", 5.0)
            fetched = await store.fetch("ann")
            assert fetched is not None and fetched.ts == 5.0 and fetched.ip == "10.0.0.1"
            # A session left behind by an account removed by hand dies with the new account
            # of that nick: the old owner's token must not speak for the new owner.
            await store.put_session("zed", token_digest(TOKEN), 60)
            assert await store.create(StoredUser("zed", "10.0.0.2", 4000, ("V0",), 1.0, cred))
            assert await store.session_digest("zed") is None
            if spec.startswith("redis"):  # every instance hears of it
                deadline = time.monotonic() + 5
                while not any(u.ts == 5.0 for u in sink.changed_users):
                    assert time.monotonic() < deadline, "no change notification"
                    await asyncio.sleep(0.02)
        finally:
            await store.close()

    asyncio.run(main())


# --- the real server ------------------------------------------------------------------------


def ask(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data + b"\n")
    return sock.recv(65536)


def states(address: tuple[str, int]) -> dict[str, tuple[Presence, int]]:
    with DiscoveryClient(*address, plain=True) as client:
        return {e.nick: (e.presence, e.age) for e in client.presence()}


def test_server_sessions_on_sqlite(tmp_path: Path) -> None:
    server = start_discovery_process(tmp_path, [*FLAGS, "--presence-ttl", "1.2"])
    try:
        with socket.create_connection(server.address, timeout=10) as sock:
            assert ask(sock, b"REGISTER alice 127.0.0.1 4000 pw V0#V2435").startswith(b"OK")
            assert ask(sock, b"VCALL_SESSION alice nope") == b"NOK WRONG_PASS"
            assert ask(sock, b"VCALL_SESSION nobody pw") == b"NOK USER_UNKNOWN"
            reply = ask(sock, b"VCALL_SESSION ALICE pw").split(b" ")
            assert reply[:2] == [b"OK", b"VCALL_SESSION"] and reply[3] == b"43200"
            token = reply[2]
            assert valid_token(token.decode())
            assert ask(sock, b"VCALL_HERE alice " + token) == b"OK VCALL_HERE"
            assert ask(sock, b"VCALL_HERE alice " + TOKEN.encode()) == b"NOK WRONG_PASS"
            assert ask(sock, b"VCALL_HERE bob " + token) == b"NOK USER_UNKNOWN"
            assert ask(sock, b"VCALL_HERE alice zz") == b"NOK SYNTAX_ERROR"
            # Keep-alives keep alice online past the presence window (1.2 s).
            for _ in range(3):
                time.sleep(0.6)
                assert ask(sock, b"VCALL_HERE alice " + token) == b"OK VCALL_HERE"
            assert states(server.address)["alice"] == (Presence.ONLINE, 0)
        assert server.stop() == 0
        # Every refusal has a named counter, logged (here at the stop).
        assert "1 x VCALL_HERE: wrong or expired token" in server.log()
        assert "1 x VCALL_HERE: unknown user" in server.log()
        server.start()  # the session is in the store: it outlives the process
        with DiscoveryClient(*server.address, plain=True) as client:
            client.here("alice", token.decode())
            assert client.offline("alice", token.decode()) == "alice"  # the token, no scrypt
            with pytest.raises(WrongPassword):  # the goodbye ended the session
                client.here("alice", token.decode())
        assert states(server.address)["alice"][0] is Presence.OFFLINE
    finally:
        assert server.stop() == 0, server.log()
    assert "1 x VCALL_HERE: wrong or expired token" in server.log()


def test_a_session_works_on_every_instance(tmp_path: Path, redis_server: RedisProcess) -> None:
    procs: list[DiscoveryProcess] = []
    try:
        for name in ("a", "b"):
            args = [*FLAGS, "--store", redis_server.url, "--presence-ttl", "1.2"]
            procs.append(start_discovery_process(tmp_path, args, name=name))
        a, b = procs
        with DiscoveryClient(*a.address, plain=True) as client:
            client.register("dora", "127.0.0.1", 4000, "pw", ["V0", "V2435"])
            token = client.open_session("dora", "pw").token
        time.sleep(1.0)
        with DiscoveryClient(*b.address, plain=True) as client:
            client.here("DORA", token)  # accepted by the other instance
        time.sleep(0.5)  # older than the window since the REGISTER, not since the keep-alive
        deadline = time.monotonic() + 5
        while states(a.address)["dora"] != (Presence.ONLINE, 0):
            assert time.monotonic() < deadline, "a never heard of b's keep-alive"
            time.sleep(0.05)
        with DiscoveryClient(*b.address, plain=True) as client:
            client.offline("dora", token)
        with DiscoveryClient(*a.address, plain=True) as client, pytest.raises(WrongPassword):
            client.here("dora", token)  # the session ended everywhere
    finally:
        codes = [(p.stop(), p) for p in procs]
        for code, proc in codes:
            assert code == 0, proc.log()


# --- the GUI's keep-alive -------------------------------------------------------------------


def test_keepalive_uses_a_token_and_falls_back(tmp_path: Path) -> None:
    server = start_discovery_process(tmp_path, [*FLAGS, "--session-ttl", "4"])
    try:
        reg = Registration(server.address, "eve", "pw", "127.0.0.1", 4000, ("V0", "V2435"), None)
        now = [100.0]
        keepalive = KeepAlive(clock=lambda: now[0])
        keepalive(reg)  # not registered yet: the session finds no account, registers, retries
        assert (keepalive.sessions, keepalive.registers, keepalive.heres) == (1, 1, 0)
        keepalive(reg)
        keepalive(reg)
        assert (keepalive.sessions, keepalive.registers, keepalive.heres) == (1, 1, 2)
        now[0] += 2.5  # past halfway through the 4 s session: a new one, no REGISTER
        keepalive(reg)
        assert (keepalive.sessions, keepalive.registers, keepalive.heres) == (2, 1, 2)
        # Logged out elsewhere with the password: the session ends; the next keep-alive
        # registers again (online again) and opens a new session.
        assert say_goodbye(reg)
        assert states(server.address)["eve"][0] is Presence.OFFLINE
        keepalive(reg)
        assert (keepalive.sessions, keepalive.registers) == (3, 2)
        assert states(server.address)["eve"][0] is Presence.ONLINE
        assert keepalive.token is not None and say_goodbye(reg, keepalive.token)
        assert states(server.address)["eve"][0] is Presence.OFFLINE
        # Logging out cancels the keep-alive: a call still due afterwards sends nothing, so
        # no late REGISTER shows the user online after the goodbye.
        keepalive.cancelled.set()
        keepalive.token = None  # as if the session had expired: this would REGISTER
        keepalive(reg)
        assert (keepalive.sessions, keepalive.registers) == (3, 2)
        assert states(server.address)["eve"][0] is Presence.OFFLINE
    finally:
        assert server.stop() == 0, server.log()


def test_keepalive_against_a_classic_server() -> None:
    """A classic server answers NOK UNKNOWN_COMMAND to VCALL_SESSION: the keep-alive is a
    re-REGISTER, every time (a minimal classic server on a real socket)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    seen: list[bytes] = []

    def serve() -> None:
        for _ in range(2):
            conn, _ = listener.accept()
            with conn:
                while request := conn.recv(1024):
                    seen.append(request.split(b" ")[0])
                    if request.startswith(b"REGISTER"):
                        conn.sendall(b"OK WELCOME eve 1700000000")
                    elif request.startswith(b"QUIT"):
                        conn.sendall(b"BYE")
                    else:
                        conn.sendall(b"NOK UNKNOWN_COMMAND")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        reg = Registration(("127.0.0.1", port), "eve", "pw", "127.0.0.1", 4000, ("V0",), None)
        keepalive = KeepAlive()
        keepalive(reg)
        keepalive(reg)
        assert keepalive.classic and keepalive.token is None
        assert (keepalive.sessions, keepalive.registers) == (0, 2)
    finally:
        thread.join(5)
        listener.close()
    # (VCALL_TLS first when an earlier test left a pin store installed: classic, no TLS)
    verbs = [v for v in seen if v != b"VCALL_TLS"]
    assert verbs == [b"VCALL_SESSION", b"REGISTER", b"QUIT", b"REGISTER", b"QUIT"]


def test_cli_session_and_here(
    discovery_cli: Callable[..., int], capsys: pytest.CaptureFixture[str]
) -> None:
    vcall = discovery_cli

    assert vcall("register", "Eve", "--ip", "10.0.0.5", "--port", "4000", "--password", "pw",
                 "--protocols", "V0#V2435") == 0  # fmt: skip
    capsys.readouterr()
    assert vcall("--json", "session", "eve", "--password", "pw") == 0
    granted = json.loads(capsys.readouterr().out)
    assert valid_token(granted["token"]) and granted["ttl"] == 43200
    assert vcall("here", "eve", "--token", granted["token"]) == 0
    assert capsys.readouterr().out.strip() == "eve is here"
    assert vcall("here", "eve", "--token", TOKEN) == 1  # not eve's
    assert "WrongPassword" in capsys.readouterr().err
    assert vcall("here", "eve", "--token", "nope") == 2  # not a token at all
    assert vcall("session", "eve", "--password", "bad") == 1


def test_the_keepalive_benchmark_runs(tmp_path: Path) -> None:
    """benchmarks/presence.py's keep-alive part, tiny (its figures are the benchmark's)."""
    row = bench_keepalive(
        f"sqlite:{tmp_path / 'b.sqlite3'}", "sqlite", clients=2, heres=40, registers=4,
        credential=hash_password("pw", ScryptParams(n=1 << 10)), users=4,
    )  # fmt: skip
    assert (row["here_keepalives"], row["register_keepalives"], row["users"]) == (40, 4, 4)
    # CPU time comes in clock ticks (10 ms): 40 keep-alives may cost less than one tick.
    assert row["here_per_s"] > 0 and row["here_cpu_ms"] >= 0 and row["register_cpu_ms"] >= 0
