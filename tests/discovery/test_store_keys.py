"""Key fingerprints (issue 14) in both stores: SQLite and a real Redis, and through two
vcall-discovery instances sharing that Redis."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.discovery.redis_server import RedisProcess, command
from tests.fixtures.discovery import start_discovery_process
from vcall.discovery.backend import StoreUnavailable, UserStore, open_store
from vcall.discovery.client import DiscoveryClient
from vcall.discovery.records import RecordError, decode_user, encode_user
from vcall.discovery.redis_store import RedisUserStore
from vcall.discovery.store import ScryptParams, StoredUser, hash_password
from vcall.discovery.throttle import ThrottlePolicy
from vcall.discovery.tls import PinStore

pytestmark = pytest.mark.usefixtures("no_leaks")

CRED = hash_password("pw", ScryptParams(n=1 << 10))
FP = "sha256:" + "0f" * 32
FP2 = "sha256:" + "e1" * 32


class Sink:
    def __init__(self) -> None:
        self.changed_users: list[StoredUser] = []

    def changed(self, user: StoredUser) -> None:
        self.changed_users.append(user)

    def reloaded(self, users: list[StoredUser]) -> None:
        pass


def user(nick: str, fingerprint: str | None) -> StoredUser:
    return StoredUser(nick, "10.0.0.1", 4000, ("V0", "V2435"), 1.5, CRED, fingerprint)


@pytest.fixture(params=["sqlite", "redis"])
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:{tmp_path / 'd.sqlite3'}"
    else:
        redis: RedisProcess = request.getfixturevalue("redis_server")
        yield redis.url


def run(spec: str, body: Callable[[UserStore], Awaitable[None]]) -> None:
    async def main() -> None:
        store = open_store(spec, ThrottlePolicy(), 60)
        await store.start(Sink())
        try:
            await body(store)
        finally:
            await store.close()

    asyncio.run(main())


def test_fingerprint_is_stored_changed_cleared_and_reloaded(spec: str) -> None:
    async def body(store: UserStore) -> None:
        assert await store.create(user("alice", FP))
        assert await store.create(user("bob", None))
        assert (await store.fetch("alice")).fingerprint == FP  # type: ignore[union-attr]
        assert (await store.fetch("bob")).fingerprint is None  # type: ignore[union-attr]
        assert await store.update(user("alice", FP2))
        assert (await store.fetch("alice")).fingerprint == FP2  # type: ignore[union-attr]
        assert await store.update(user("bob", FP))
        assert await store.update(user("alice", None))
        assert (await store.fetch("alice")).fingerprint is None  # type: ignore[union-attr]

    run(spec, body)

    async def reopened(store: UserStore) -> None:
        users = {u.nick: u.fingerprint for u in await store.start(Sink())}
        assert users == {"alice": None, "bob": FP}

    async def main() -> None:
        store = open_store(spec, ThrottlePolicy(), 60)
        try:
            await reopened(store)
        finally:
            await store.close()

    asyncio.run(main())


def test_redis_record_of_an_older_version_has_no_key(redis_server: RedisProcess) -> None:
    async def body(store: UserStore) -> None:
        assert await store.create(user("old", FP))
        command(redis_server.port, "HDEL", "vcall:user:old", "fp")
        assert (await store.fetch("old")).fingerprint is None  # type: ignore[union-attr]
        command(redis_server.port, "HSET", "vcall:user:old", "fp", "sha256:XYZ")
        assert isinstance(store, RedisUserStore)
        bad_before = store.bad_records
        with pytest.raises(StoreUnavailable, match="invalid record"):
            await store.fetch("old")  # never served: counted as a bad record
        assert store.bad_records == bad_before + 1

    run(redis_server.url, body)


@given(st.binary(max_size=100))
def test_decode_user_with_any_fp_bytes_raises_only_record_error(raw: bytes) -> None:
    fields = encode_user(user("alice", None))
    fields[b"fp"] = raw
    try:
        decoded = decode_user("alice", fields)
    except RecordError:
        return
    assert decoded == dataclasses.replace(user("alice", None), fingerprint=raw.decode() or None)


def test_two_instances_on_one_redis_share_keys(redis_server: RedisProcess, tmp_path: Path) -> None:
    store = ["--store", redis_server.url, "--identity-dir", str(tmp_path / "server-key")]
    a = start_discovery_process(tmp_path, store, name="a")
    try:
        b = start_discovery_process(tmp_path, store, name="b")
        try:
            pins = PinStore(tmp_path / "pins.json")
            with DiscoveryClient(*a.address, pins=pins) as client:
                client.register("alice", "127.0.0.1", 5000, "pw", ["V0"], fingerprint=FP)
                assert client.secure
            with DiscoveryClient(*b.address, pins=pins) as client:
                client.list_users()
                assert client.secure
                for _ in range(50):  # b's cache follows a's write through the channel
                    if client.query("alice").fingerprint == FP:
                        break
                    asyncio.run(asyncio.sleep(0.05))
                assert client.query("alice").fingerprint == FP
        finally:
            assert b.stop() == 0, b.log()
    finally:
        assert a.stop() == 0, a.log()
