"""Nicks are unique ignoring case (issue 15): directory, both stores, the real server process."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.discovery.redis_server import RedisProcess, command
from tests.fixtures.discovery import DiscoveryProcess, start_discovery_process
from vcall.discovery.backend import open_store
from vcall.discovery.codec import fold_nick, valid_nick
from vcall.discovery.directory import Directory
from vcall.discovery.store import Credential, ScryptParams, Store, StoredUser, hash_password
from vcall.discovery.throttle import ThrottlePolicy

pytestmark = pytest.mark.usefixtures("no_leaks")

FAST = ScryptParams(n=1 << 10)
CRED = hash_password("pw", FAST)
OTHER = hash_password("other", FAST)
POLICY = ThrottlePolicy()
SERVER_FLAGS = ["--scrypt-n", "1024", "--gap-timeout", "0.05", "--no-tls"]


def user(nick: str, port: int = 4000, ts: float = 1.5, cred: Credential = CRED) -> StoredUser:
    return StoredUser(nick, "10.0.0.1", port, ("V0",), ts, cred)


class Sink:
    def changed(self, user: StoredUser) -> None:
        pass

    def reloaded(self, users: list[StoredUser]) -> None:
        pass


# --- pure -----------------------------------------------------------------------------------


@given(st.from_regex(r"[A-Za-z0-9_.-]{1,32}", fullmatch=True))
def test_fold_nick_is_ascii_lower_and_keeps_validity(nick: str) -> None:
    folded = fold_nick(nick)
    assert folded == nick.lower() and valid_nick(folded)
    assert fold_nick(folded) == folded


def test_fold_nick_leaves_non_ascii_alone() -> None:
    # Only ASCII letters fold: "İ".lower() would add a combining dot (two code points).
    assert fold_nick("İK") == "İk"


def test_directory_finds_any_spelling_and_keeps_the_stored_one() -> None:
    directory = Directory([user("alice")])
    for spelling in ("alice", "Alice", "ALICE"):
        found = directory.get(spelling)
        assert found is not None and found.nick == "alice"
        assert directory.query_reply(spelling) == b"OK USER_FOUND alice 10.0.0.1 4000 V0"
    assert directory.get("bob") is None
    assert directory.query_reply("Bob") == b"NOK USER_UNKNOWN"


def test_directory_with_two_legacy_spellings() -> None:
    # A file written before the rule: each spelling keeps its account; any other spelling
    # reaches the one first by code point ("Bob" < "bob"), whatever the load order.
    for order in (["bob", "Bob"], ["Bob", "bob"]):
        directory = Directory([user(n, port=5000 + i) for i, n in enumerate(order)])
        assert len(directory) == 2
        exact_bob = directory.get("bob")
        assert exact_bob is not None and exact_bob.nick == "bob"
        exact_cap = directory.get("Bob")
        assert exact_cap is not None and exact_cap.nick == "Bob"
        other = directory.get("BOB")
        assert other is not None and other.nick == "Bob"
        assert directory.list_reply().startswith(b"OK USERS_LIST 2 ")


# --- stores ---------------------------------------------------------------------------------


def test_sqlite_refuses_a_case_variant_and_loads_legacy_files(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite3"
    store = Store(path)
    try:
        assert store.insert(user("alice"))
        assert not store.insert(user("Alice", port=4001, cred=OTHER))
        assert not store.insert(user("ALICE", port=4002))
        found = store.get("ALICE")
        assert found is not None and (found.nick, found.port) == ("alice", 4000)
        assert [u.nick for u in store.load_all()] == ["alice"]
    finally:
        store.close()
    # A file from before the rule holding two spellings (written behind the store's back).
    legacy = sqlite3.connect(path)
    legacy.execute("INSERT INTO users SELECT 'Alice', ip, 4005, protocols, 9.0, salt, "
                   "scrypt_n, scrypt_r, scrypt_p, digest, fingerprint, 0 FROM users")  # fmt: skip
    legacy.commit()
    legacy.close()
    again = Store(path)
    try:
        assert sorted(u.nick for u in again.load_all()) == ["Alice", "alice"]
        by_case = again.get("ALICE")
        assert by_case is not None and by_case.nick == "Alice"  # "Alice" < "alice"
        exact = again.get("alice")
        assert exact is not None and exact.port == 4000
    finally:
        again.close()


def test_redis_refuses_a_case_variant_and_indexes_legacy_records(
    redis_server: RedisProcess,
) -> None:
    async def main() -> None:
        store = open_store(redis_server.url, POLICY, 60)
        await store.start(Sink())
        try:
            assert await store.create(user("alice"))
            assert not await store.create(user("Alice", port=4001, cred=OTHER))
            found = await store.fetch("ALICE")
            assert found is not None and (found.nick, found.port) == ("alice", 4000)
            assert await store.fetch("bob") is None
            # Records from before the rule: two spellings, and no folded key for them.
            assert await store.create(user("bob", port=5000))
            assert await store.create(user("Carol", port=6000))
        finally:
            await store.close()
        port = redis_server.port
        command(port, "DEL", "vcall:nick:bob", "vcall:nick:carol")
        command(port, "RENAME", "vcall:user:Carol", "vcall:user:Bob")
        command(port, "ZREM", "vcall:users", "Carol")
        command(port, "ZADD", "vcall:users", "2", "Bob")
        again = open_store(redis_server.url, POLICY, 60)
        users = await again.start(Sink())
        try:
            assert sorted(u.nick for u in users) == ["Bob", "alice", "bob"]
            assert command(port, "GET", "vcall:nick:bob") == b"$3\r\nBob\r\n"
            by_case = await again.fetch("BOB")
            assert by_case is not None and (by_case.nick, by_case.port) == ("Bob", 6000)
            exact = await again.fetch("bob")
            assert exact is not None and exact.port == 5000
            assert not await again.create(user("BoB"))
        finally:
            await again.close()

    asyncio.run(main())


# --- the real server process ----------------------------------------------------------------


def exchange(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    return sock.recv(65536)


def check_server(server: DiscoveryProcess) -> None:
    with socket.create_connection(server.address, timeout=10) as sock:
        first = exchange(sock, b"REGISTER alice 127.0.0.1 4000 pw V0")
        assert first.startswith(b"OK WELCOME alice ")
        again = exchange(sock, b"REGISTER Alice 127.0.0.2 4001 pw V0#V2435")
        assert again.startswith(b"OK WELCOME alice "), again  # her account, her spelling
        assert exchange(sock, b"REGISTER ALICE 127.0.0.3 4002 nope V0") == b"NOK WRONG_PASS"
        assert exchange(sock, b"QUERY ALICE") == b"OK USER_FOUND alice 127.0.0.2 4001 V0#V2435"
        listing = exchange(sock, b"LIST_USERS")
        assert listing.startswith(b"OK USERS_LIST 1 alice 127.0.0.2 4001 "), listing
        assert exchange(sock, b"QUIT") == b"BYE"


def test_server_with_sqlite(tmp_path: Path) -> None:
    server = start_discovery_process(tmp_path, SERVER_FLAGS)
    try:
        check_server(server)
        server.restart()  # the account and its spelling persist
        with socket.create_connection(server.address, timeout=10) as sock:
            assert exchange(sock, b"QUERY aLiCe").startswith(b"OK USER_FOUND alice ")
    finally:
        assert server.stop() == 0, server.log()


def test_server_with_redis(tmp_path: Path, redis_server: RedisProcess) -> None:
    server = start_discovery_process(tmp_path, [*SERVER_FLAGS, "--store", redis_server.url])
    try:
        check_server(server)
    finally:
        assert server.stop() == 0, server.log()
