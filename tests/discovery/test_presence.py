"""Presence (issue 15): the VCALL_PRESENCE / VCALL_OFFLINE grammar, the directory's rule, and
the real server process on SQLite and on a shared Redis (two instances)."""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.discovery.redis_server import RedisProcess
from tests.fixtures.discovery import DiscoveryProcess, start_discovery_process
from vcall.discovery.client import DiscoveryClient, RequestRejected, WrongPassword
from vcall.discovery.codec import (
    INCOMPLETE,
    Offline,
    OfflineAck,
    Presence,
    PresenceEntry,
    PresenceList,
    PresenceQuery,
    Verb,
    format_reply,
    format_request,
    parse_reply,
    parse_request,
)
from vcall.discovery.directory import Directory, age, presence
from vcall.discovery.store import ScryptParams, StoredUser, hash_password
from vcall.gui.events import UserRow
from vcall.gui.presence import Registration, list_rows, refresh, say_goodbye

pytestmark = pytest.mark.usefixtures("no_leaks")

CRED = hash_password("pw", ScryptParams(n=1 << 10))
FLAGS = ["--scrypt-n", "1024", "--gap-timeout", "0.05", "--no-tls"]

nicks = st.from_regex(r"[A-Za-z0-9_.-]{1,32}", fullmatch=True)
ips = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str)
presence_entries = st.builds(
    PresenceEntry,
    nicks,
    ips,
    st.integers(1, 65535),
    st.integers(0, 2**33).map(float),
    st.integers(0, 10**9),
    st.sampled_from(list(Presence)),
)

# --- grammar --------------------------------------------------------------------------------


def test_golden_bytes() -> None:
    assert format_request(PresenceQuery()) == b"VCALL_PRESENCE"
    assert format_request(Offline("alice", "pw")) == b"VCALL_OFFLINE alice pw"
    assert parse_request(b"VCALL_OFFLINE alice pw\r\n", final=True) == Offline("alice", "pw")
    assert parse_request(b"VCALL_OFFLINE alice", final=False) is INCOMPLETE
    assert parse_request(b"VCALL_PRESENCE", final=True) == PresenceQuery()
    entries = (
        PresenceEntry("alice", "10.0.0.1", 4000, 1700000000.7, 12, Presence.ONLINE),
        PresenceEntry("bob", "::1", 5000, 1700000001.0, 4000, Presence.UNKNOWN),
    )
    raw = format_reply(PresenceList(entries))
    assert raw == (
        b"OK VCALL_PRESENCE 2 alice 10.0.0.1 4000 1700000000 12 online#"
        b"bob ::1 5000 1700000001 4000 unknown#"
    )
    assert format_reply(PresenceList(())) == b"OK VCALL_PRESENCE 0"
    assert format_reply(OfflineAck("alice")) == b"OK VCALL_OFFLINE alice"
    assert parse_reply(b"OK VCALL_OFFLINE alice", Verb.VCALL_OFFLINE, final=True) == OfflineAck(
        "alice"
    )


@given(st.lists(presence_entries, max_size=20), st.data())
def test_presence_list_round_trip_over_any_split(
    entries: list[PresenceEntry], data: st.DataObject
) -> None:
    raw = format_reply(PresenceList(tuple(entries)))
    parsed = parse_reply(raw, Verb.VCALL_PRESENCE, final=False)
    assert isinstance(parsed, PresenceList)
    assert [(e.nick, e.ip, e.port, int(e.ts), e.age, e.presence) for e in parsed.entries] == [
        (e.nick, e.ip, e.port, int(e.ts), e.age, e.presence) for e in entries
    ]
    if entries:  # any prefix that ends mid-list is incomplete, never a shorter list
        cut = data.draw(st.integers(1, len(raw) - 1))
        assert parse_reply(raw[:cut], Verb.VCALL_PRESENCE, final=False) is INCOMPLETE


@given(st.binary(max_size=200), st.booleans())
def test_the_new_verbs_survive_any_bytes(tail: bytes, final: bool) -> None:
    for verb in (b"VCALL_OFFLINE ", b"VCALL_PRESENCE", b"VCALL_OFFLINE alice "):
        result = parse_request(verb + tail, final=final)
        if isinstance(result, Offline):
            assert format_request(result) == (verb + tail).rstrip(b" \r\n")


# --- the directory's rule -------------------------------------------------------------------


def test_presence_rule() -> None:
    now = 10_000.0
    vcall = StoredUser("v", "10.0.0.1", 1, ("V0", "V2435"), now - 30, CRED)
    classic = StoredUser("c", "10.0.0.1", 1, ("V0",), now - 30, CRED)
    assert presence(vcall, now, 60) is Presence.ONLINE
    assert presence(vcall, now, 20) is Presence.OFFLINE  # not refreshed within the window
    gone = StoredUser("v", "10.0.0.1", 1, ("V0", "V2435"), now - 1, CRED, logged_out=True)
    assert presence(gone, now, 60) is Presence.OFFLINE
    assert presence(classic, now, 60) is Presence.UNKNOWN
    assert presence(classic, now, 1) is Presence.UNKNOWN
    directory = Directory([vcall, classic])
    reply = directory.presence_reply(now, 60)
    assert reply == b"OK VCALL_PRESENCE 2 v 10.0.0.1 1 9970 30 online#c 10.0.0.1 1 9970 30 unknown#"
    assert directory.presence_reply(now + 0.5, 60) is reply  # the same second: cached
    directory.put(gone)
    assert b"v 10.0.0.1 1 9999 1 offline#" in directory.presence_reply(now + 0.5, 60)


@given(
    st.lists(
        st.tuples(nicks, ips, st.integers(1, 65535), st.floats(0, 2e9), st.booleans()),
        max_size=12,
        unique_by=lambda t: t[0].lower(),
    ),
    st.floats(0, 2e9),
    st.floats(1, 1e4),
)
def test_the_directory_reply_is_the_codec_format(
    rows: list[tuple[str, str, int, float, bool]], now: float, window: float
) -> None:
    users = [
        StoredUser(n, ip, port, ("V0", "V2435") if out else ("V0",), ts, CRED, logged_out=out)
        for n, ip, port, ts, out in rows
    ]
    entries = [
        PresenceEntry(u.nick, u.ip, u.port, u.ts, age(u, now), presence(u, now, window))
        for u in users
    ]
    assert Directory(users).presence_reply(now, window) == format_reply(PresenceList(entries))


# --- the real server ------------------------------------------------------------------------


def ask(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    return sock.recv(65536)


def states(address: tuple[str, int]) -> dict[str, Presence]:
    with DiscoveryClient(*address, plain=True) as client:
        return {e.nick: e.presence for e in client.presence()}


def test_server_presence_and_offline(tmp_path: Path) -> None:
    server = start_discovery_process(tmp_path, [*FLAGS, "--presence-ttl", "1.5"])
    try:
        with socket.create_connection(server.address, timeout=10) as sock:
            assert ask(sock, b"REGISTER alice 127.0.0.1 4000 pw V0#V2435").startswith(b"OK")
            assert ask(sock, b"REGISTER carl 127.0.0.1 4001 pw V0").startswith(b"OK")  # classic
            assert ask(sock, b"VCALL_OFFLINE alice nope") == b"NOK WRONG_PASS"
            assert ask(sock, b"VCALL_OFFLINE nobody pw") == b"NOK USER_UNKNOWN"
        assert states(server.address) == {"alice": Presence.ONLINE, "carl": Presence.UNKNOWN}
        with DiscoveryClient(*server.address, plain=True) as client:
            assert client.offline("ALICE", "pw") == "alice"
            with pytest.raises(WrongPassword):
                client.offline("carl", "bad")
            # The classic list is unchanged: alice stays listed, as the protocol allows.
            assert [u.nick for u in client.list_users()] == ["carl", "alice"]
        assert states(server.address)["alice"] is Presence.OFFLINE
        # The GUI's keep-alive and goodbye (vcall/gui/presence.py), for real.
        reg = Registration(server.address, "alice", "pw", "127.0.0.1", 4000, ("V0", "V2435"), None)
        refresh(reg)
        assert states(server.address)["alice"] is Presence.ONLINE
        server.restart()  # a goodbye persists (SQLite)
        assert say_goodbye(reg)
        assert not say_goodbye(dataclasses.replace(reg, password="wrong"))  # logged, no raise
        server.restart()
        assert states(server.address)["alice"] is Presence.OFFLINE
        with DiscoveryClient(*server.address, plain=True) as client:
            client.register("alice", "127.0.0.1", 4000, "pw", ["V0", "V2435"])
        time.sleep(1.6)  # no refresh within --presence-ttl: offline
        assert states(server.address)["alice"] is Presence.OFFLINE
    finally:
        assert server.stop() == 0, server.log()


def test_a_goodbye_reaches_every_instance(tmp_path: Path, redis_server: RedisProcess) -> None:
    procs: list[DiscoveryProcess] = []
    try:
        for name in ("a", "b"):
            args = [*FLAGS, "--store", redis_server.url]
            procs.append(start_discovery_process(tmp_path, args, name=name))
        a, b = procs
        with DiscoveryClient(*a.address, plain=True) as client:
            client.register("dora", "127.0.0.1", 4000, "pw", ["V0", "V2435"])
        deadline = time.monotonic() + 5
        while states(b.address).get("dora") is not Presence.ONLINE:
            assert time.monotonic() < deadline, "b never saw dora"
            time.sleep(0.05)
        with DiscoveryClient(*a.address, plain=True) as client:
            client.offline("dora", "pw")
        while states(b.address).get("dora") is not Presence.OFFLINE:
            assert time.monotonic() < deadline + 5, "b never saw dora leave"
            time.sleep(0.05)
    finally:
        codes = [(p.stop(), p) for p in procs]
        for code, proc in codes:
            assert code == 0, proc.log()


def test_a_classic_server_rejects_the_extension() -> None:
    """A classic server answers NOK UNKNOWN_COMMAND: the client raises RequestRejected, and
    the GUI's lister falls back to LIST_USERS (presence unknown). A minimal classic server on
    a real socket."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        for _ in range(2):  # the client, then the GUI's lister
            conn, _ = listener.accept()
            with conn:
                while request := conn.recv(1024):
                    if request.startswith(b"LIST_USERS"):
                        conn.sendall(b"OK USERS_LIST 1 carl 10.0.0.9 4000 1700000000#")
                    elif request.startswith(b"QUIT"):
                        conn.sendall(b"BYE")
                    else:
                        conn.sendall(b"NOK UNKNOWN_COMMAND")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with (
            DiscoveryClient("127.0.0.1", port, plain=True) as client,
            pytest.raises(RequestRejected),
        ):
            client.presence()
        assert list_rows(("127.0.0.1", port)) == [UserRow("carl", "10.0.0.9", 4000, None, None)]
    finally:
        thread.join(5)
        listener.close()


def test_cli_presence_and_offline(
    discovery_cli: Callable[..., int], capsys: pytest.CaptureFixture[str]
) -> None:
    vcall = discovery_cli

    assert vcall("register", "Eve", "--ip", "10.0.0.5", "--port", "4000", "--password", "pw",
                 "--protocols", "V0#V2435") == 0  # fmt: skip
    capsys.readouterr()
    assert vcall("--json", "presence") == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert (entry["nick"], entry["presence"], entry["port"]) == ("Eve", "online", 4000)
    assert vcall("offline", "eve", "--password", "nope") == 1
    assert "WrongPassword" in capsys.readouterr().err
    assert vcall("offline", "EVE", "--password", "pw") == 0
    assert capsys.readouterr().out.strip() == "Eve is now offline"
    assert vcall("presence") == 0
    assert capsys.readouterr().out.split()[:2] == ["Eve", "offline"]
