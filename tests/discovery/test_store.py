"""Store, scrypt hashes, throttle and directory: the pure and blocking parts."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from vcall.discovery.directory import Directory
from vcall.discovery.store import (
    ScryptParams,
    Store,
    StoredUser,
    default_db_path,
    hash_password,
    verify_password,
)
from vcall.discovery.throttle import FailureThrottle, ThrottlePolicy

FAST = ScryptParams(n=1 << 10)


def test_hash_and_verify() -> None:
    cred = hash_password("correct horse", FAST)
    assert (cred.n, cred.r, cred.p) == (1 << 10, 8, 1)
    assert len(cred.salt) == 16 and len(cred.digest) == 32
    assert verify_password("correct horse", cred)
    assert not verify_password("correct hors", cred)
    assert not verify_password("", cred)
    # Per-user salt: the same password never gives the same digest.
    assert hash_password("correct horse", FAST).digest != cred.digest


def test_verify_uses_the_stored_parameters() -> None:
    old = hash_password("pw", ScryptParams(n=1 << 8, r=4, p=2))
    assert verify_password("pw", old)


def test_store_persists_and_holds_no_password(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite3"
    password = "Hunter2-unique-secret"
    store = Store(path)
    user = StoredUser("eve", "10.1.2.3", 4000, ("V0", "V2435"), 1.5, hash_password(password, FAST))
    store.upsert(user)
    store.close()
    again = Store(path)
    assert again.load_all() == [user]
    again.close()
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    for form in forms_of(password):
        assert form not in blob


def forms_of(password: str) -> list[bytes]:
    raw = password.encode()
    return [
        raw,
        raw.hex().encode(),
        raw.hex().upper().encode(),
        base64.b64encode(raw),
        base64.b64encode(raw).rstrip(b"="),
        hashlib.sha256(raw).hexdigest().encode(),
        password.encode("utf-16-le"),
    ]


def test_default_db_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_db_path() == tmp_path / "vcall" / "discovery.sqlite3"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_db_path() == tmp_path / ".local" / "share" / "vcall" / "discovery.sqlite3"


def test_throttle_locks_after_repeated_failures_then_unlocks() -> None:
    throttle = FailureThrottle(ThrottlePolicy(max_failures=3, window=10.0, lockout=5.0))
    keys = ("nick:a", "addr:1.2.3.4")
    for t in (0.0, 1.0):
        throttle.failure(keys, t)
        assert not throttle.blocked(keys, t)
    throttle.failure(keys, 2.0)
    assert throttle.blocked(keys, 2.0)
    assert throttle.blocked(("nick:other", "addr:1.2.3.4"), 3.0)  # the address is locked
    assert throttle.blocked(("nick:a", "addr:5.6.7.8"), 3.0)  # and so is the nick
    assert not throttle.blocked(("nick:b", "addr:5.6.7.8"), 3.0)
    assert not throttle.blocked(keys, 7.0)


def test_throttle_forgets_old_failures_and_successes() -> None:
    throttle = FailureThrottle(ThrottlePolicy(max_failures=2, window=10.0, lockout=5.0))
    throttle.failure(("k",), 0.0)
    throttle.failure(("k",), 20.0)  # the first fell out of the window
    assert not throttle.blocked(("k",), 20.0)
    throttle.success(("k",))
    throttle.failure(("k",), 21.0)
    assert not throttle.blocked(("k",), 21.0)


def test_throttle_memory_is_bounded() -> None:
    throttle = FailureThrottle(ThrottlePolicy(max_failures=5, max_keys=100))
    for i in range(1000):
        throttle.failure((f"addr:{i}",), 0.0)
    assert len(throttle._failures) <= 100


def test_directory_caches_and_invalidates_replies() -> None:
    cred = hash_password("x", FAST)
    directory = Directory([StoredUser("a", "1.1.1.1", 1, ("V0",), 10.0, cred)])
    assert directory.query_reply("a") == b"OK USER_FOUND a 1.1.1.1 1 V0"
    assert directory.query_reply("zz") == b"NOK USER_UNKNOWN"
    first = directory.list_reply()
    assert first == b"OK USERS_LIST 1 a 1.1.1.1 1 10#"
    assert directory.list_reply() is first  # cached, not rebuilt
    directory.put(StoredUser("b", "2.2.2.2", 2, ("V0",), 11.0, cred))
    directory.put(StoredUser("a", "3.3.3.3", 3, ("V0",), 12.0, cred))
    assert directory.list_reply() == b"OK USERS_LIST 2 b 2.2.2.2 2 11#a 3.3.3.3 3 12#"
    assert directory.query_reply("a") == b"OK USER_FOUND a 3.3.3.3 3 V0"
