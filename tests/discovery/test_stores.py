"""The store contract (backend.py), the same tests on SQLite and on a real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.discovery.redis_server import RedisProcess, command
from vcall.discovery.backend import (
    SqliteUserStore,
    StoreSpecError,
    StoreUnavailable,
    UserStore,
    open_store,
)
from vcall.discovery.redis_store import RedisUserStore, parse_sentinel_url
from vcall.discovery.store import ScryptParams, StoredUser, hash_password
from vcall.discovery.throttle import ThrottlePolicy

pytestmark = pytest.mark.usefixtures("no_leaks")

FAST = ScryptParams(n=1 << 10)
CRED = hash_password("pw", FAST)
OTHER = hash_password("other", FAST)
POLICY = ThrottlePolicy(max_failures=3, window=10.0, lockout=1.0)


class Sink:
    def __init__(self) -> None:
        self.changed_users: list[StoredUser] = []
        self.reloads: list[list[StoredUser]] = []

    def changed(self, user: StoredUser) -> None:
        self.changed_users.append(user)

    def reloaded(self, users: list[StoredUser]) -> None:
        self.reloads.append(users)


def user(nick: str, port: int = 4000, ts: float = 1.5, cred: Any = CRED) -> StoredUser:
    return StoredUser(nick, "10.0.0.1", port, ("V0", "V2435"), ts, cred)


@pytest.fixture(params=["sqlite", "redis"])
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:{tmp_path / 'd.sqlite3'}"
    else:
        redis: RedisProcess = request.getfixturevalue("redis_server")
        yield redis.url


def run(spec: str, body: Callable[[UserStore, Sink], Awaitable[None]], ttl: float = 60) -> None:
    async def main() -> None:
        store = open_store(spec, POLICY, ttl)
        sink = Sink()
        await store.start(sink)
        try:
            await body(store, sink)
        finally:
            await store.close()

    asyncio.run(main())


def test_open_store_picks_by_spec(tmp_path: Path) -> None:
    assert isinstance(open_store(str(tmp_path / "x"), POLICY), SqliteUserStore)
    assert isinstance(open_store(f"sqlite:{tmp_path / 'x'}", POLICY), SqliteUserStore)
    assert isinstance(open_store("redis://127.0.0.1:1/0", POLICY), RedisUserStore)
    with pytest.raises(StoreSpecError):
        open_store("mongodb://x", POLICY)
    with pytest.raises(StoreSpecError):
        open_store("sqlite:", POLICY)


def test_sentinel_url() -> None:
    spec = parse_sentinel_url("redis-sentinel://a:26379,[::1]:26380/vcall/2")
    assert spec.sentinels == (("a", 26379), ("::1", 26380))
    assert (spec.service, spec.db) == ("vcall", 2)
    for bad in ("redis-sentinel://a/vcall", "redis-sentinel://a:1", "redis-sentinel://a:x/s"):
        with pytest.raises(StoreSpecError):
            parse_sentinel_url(bad)


@given(st.text(max_size=80))
def test_sentinel_url_parser_raises_only_spec_errors(text: str) -> None:
    try:
        spec = parse_sentinel_url("redis-sentinel://" + text)
    except StoreSpecError:
        return
    assert spec.sentinels and spec.service and spec.db >= 0


def test_create_is_first_come_and_update_needs_the_credential(spec: str) -> None:
    async def body(store: UserStore, sink: Sink) -> None:
        assert await store.fetch("alice") is None
        assert await store.create(user("alice"))
        assert not await store.create(user("alice", port=5000, cred=OTHER))
        assert await store.fetch("alice") == user("alice")
        # An update with another credential changes nothing (SQLite: one owner, no check).
        if isinstance(store, RedisUserStore):
            assert not await store.update(user("alice", port=6000, cred=OTHER))
            assert await store.fetch("alice") == user("alice")
        assert await store.update(user("alice", port=7000, ts=2.5))
        assert await store.fetch("alice") == user("alice", port=7000, ts=2.5)

    run(spec, body)


def test_records_survive_a_reopen_in_registration_order(spec: str) -> None:
    async def body(store: UserStore, sink: Sink) -> None:
        await store.create(user("b", ts=2.0))
        await store.create(user("a", ts=1.0))
        await store.create(user("c", ts=3.0))
        await store.update(user("a", ts=4.0))

    run(spec, body)

    async def reopen() -> list[StoredUser]:
        store = open_store(spec, POLICY)
        try:
            return await store.start(Sink())
        finally:
            await store.close()

    users = asyncio.run(reopen())
    assert [u.nick for u in users] == ["b", "c", "a"]
    assert users[-1] == user("a", ts=4.0)


def test_concurrent_creations_one_winner(spec: str) -> None:
    async def body(store: UserStore, sink: Sink) -> None:
        if isinstance(store, RedisUserStore):  # two instances, one store
            other = open_store(spec, POLICY)
            await other.start(Sink())
        else:
            other = store  # SQLite: one process owns the file
        try:
            for i in range(20):
                results = await asyncio.gather(
                    store.create(user(f"n{i}", port=1000)),
                    other.create(user(f"n{i}", port=2000, cred=OTHER)),
                )
                assert sorted(results) == [False, True], results
                stored = await store.fetch(f"n{i}")
                assert stored is not None
                winner = 1000 if results[0] else 2000
                assert stored.port == winner
        finally:
            if other is not store:
                await other.close()

    run(spec, body)


def test_presence_expires_in_the_store(spec: str) -> None:
    async def body(store: UserStore, sink: Sink) -> None:
        await store.create(user("p", ts=time.time()))
        assert await store.online("p")
        assert not await store.online("nobody")
        await asyncio.sleep(0.6)
        assert not await store.online("p")

    run(spec, body, ttl=0.3)


def test_throttle_locks_and_expires(spec: str) -> None:
    async def body(store: UserStore, sink: Sink) -> None:
        keys = ("nick:t", "addr:10.0.0.9")
        for _ in range(2):
            await store.throttle.failure(keys)
            assert not await store.throttle.blocked(keys)
        await store.throttle.failure(keys)
        assert await store.throttle.blocked(keys)
        assert await store.throttle.blocked(("nick:other", "addr:10.0.0.9"))
        assert not await store.throttle.blocked(("nick:u", "addr:10.0.0.8"))
        await asyncio.sleep(1.2)  # lockout 1 s
        assert not await store.throttle.blocked(keys)
        await store.throttle.failure(keys)
        await store.throttle.success(keys)  # a success forgets the failures
        await store.throttle.failure(keys)
        await store.throttle.failure(keys)
        assert not await store.throttle.blocked(keys)

    run(spec, body)


def test_redis_throttle_is_shared_by_instances(redis_server: RedisProcess) -> None:
    async def main() -> None:
        stores = [open_store(redis_server.url, POLICY) for _ in range(3)]
        for s in stores:
            await s.start(Sink())
        try:
            keys = ("nick:victim",)
            for s in stores:  # one failure on each instance: 3 in all
                await s.throttle.failure(keys)
            assert all([await s.throttle.blocked(keys) for s in stores])
        finally:
            for s in stores:
                await s.close()

    asyncio.run(main())


def test_redis_changes_reach_every_instance(redis_server: RedisProcess) -> None:
    async def main() -> None:
        a, b = open_store(redis_server.url, POLICY), open_store(redis_server.url, POLICY)
        sink_a, sink_b = Sink(), Sink()
        await a.start(sink_a)
        await b.start(sink_b)
        try:
            await a.create(user("x"))
            await b.update(user("x", port=5000))
            deadline = time.monotonic() + 5
            while len(sink_a.changed_users) < 2 or len(sink_b.changed_users) < 2:
                assert time.monotonic() < deadline, (sink_a.changed_users, sink_b.changed_users)
                await asyncio.sleep(0.01)
            # Both instances, the writer included, end on the latest record (each message is
            # followed by a fresh read, so the first one may already see the update).
            for sink in (sink_a, sink_b):
                assert [u.port for u in sink.changed_users] in ([4000, 5000], [5000, 5000])
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


def test_redis_records_are_validated_on_the_way_back(redis_server: RedisProcess) -> None:
    port = redis_server.port
    # A record written by someone else: an N that would make scrypt take 16 GiB.
    fields = {"ip": "10.0.0.1", "port": "1", "protocols": "V0", "ts": "1", "salt": "s" * 16,
              "n": str(1 << 24), "r": "8", "p": "1", "digest": "d" * 32}  # fmt: skip
    assert command(port, "HSET", "vcall:user:evil", *sum(fields.items(), ())) == b":9\r\n"
    command(port, "ZADD", "vcall:users", "1", "evil")
    command(port, "ZADD", "vcall:users", "2", "ghost")  # listed, no record
    # Oversized: a field of 1 MB (never read: the fetch script refuses it in Redis), and a
    # hash of 100 fields.
    command(port, "HSET", "vcall:user:big", *sum(fields.items(), ()), "ip", "1" * 1_000_000)
    command(port, "HSET", "vcall:user:wide", *sum(fields.items(), ()),
            *[f"f{i}" for i in range(200)])  # fmt: skip
    command(port, "ZADD", "vcall:users", "3", "big", "4", "wide")

    async def body(store: UserStore, sink: Sink) -> None:
        assert isinstance(store, RedisUserStore)
        before = store.bad_records
        for nick in ("evil", "big", "wide"):
            with pytest.raises(StoreUnavailable):
                await store.fetch(nick)
        assert store.bad_records == before + 3
        assert await store.fetch("ghost") is None

    async def main() -> None:
        store = open_store(redis_server.url, POLICY)
        users = await store.start(Sink())
        try:
            assert users == []  # skipped, counted, not served
            assert isinstance(store, RedisUserStore) and store.bad_records == 3
            await body(store, Sink())
        finally:
            await store.close()

    asyncio.run(main())


def test_redis_down_is_an_error_within_the_timeout(redis_server: RedisProcess) -> None:
    async def main() -> None:
        store = open_store(redis_server.url, POLICY)
        await store.start(Sink())
        try:
            await store.create(user("y"))
            redis_server.kill()
            for call in (
                store.fetch("y"),
                store.create(user("z")),
                store.update(user("y")),
                store.throttle.blocked(("nick:y",)),
                store.online("y"),
            ):
                start = time.monotonic()
                with pytest.raises(StoreUnavailable):
                    await call
                assert time.monotonic() - start < 5.0
        finally:
            await store.close()

    asyncio.run(main())


def test_redis_unreachable_at_start(tmp_path: Path) -> None:
    from tests.fixtures.discovery import free_port

    async def main() -> None:
        store = open_store(f"redis://127.0.0.1:{free_port()}/0", POLICY)
        try:
            with pytest.raises(StoreUnavailable):
                await store.start(Sink())
        finally:
            await store.close()

    asyncio.run(main())
