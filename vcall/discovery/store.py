"""Persistent registrations: SQLite, with passwords kept only as scrypt hashes.

Guarantees:

* a password is never stored: only ``hashlib.scrypt`` of it with a per-user random salt, and
  the scrypt parameters next to the hash (so they can be raised later without breaking old
  records); verification compares in constant time (``hmac.compare_digest``);
* hashing and verifying are plain blocking functions: the server runs them in an executor,
  never on its event loop;
* nicks are unique ignoring ASCII case (codec.fold_nick): ``insert`` refuses "Alice" while
  "alice" exists, atomically (one statement); ``get`` finds the exact spelling, else the
  spelling that matches ignoring case and sorts first by code point. Files written before
  that rule may hold several spellings of one nick: they load unchanged (directory.py);
* :class:`Store` is used from one thread at a time (the server's single writer thread); every
  ``upsert`` is committed before it returns, so an acknowledged registration survives a crash.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Final

logger = logging.getLogger(__name__)

SALT_BYTES: Final = 16
HASH_BYTES: Final = 32
# scrypt cost: N=2**14, r=8, p=1 takes 16 MiB and tens of milliseconds; the throttle keeps
# an attacker from turning that into a CPU drain.
DEFAULT_N: Final = 1 << 14
DEFAULT_R: Final = 8
DEFAULT_P: Final = 1


@dataclass(frozen=True, slots=True)
class ScryptParams:
    n: int = DEFAULT_N
    r: int = DEFAULT_R
    p: int = DEFAULT_P


@dataclass(frozen=True, slots=True)
class Credential:
    """What is kept of a password: salt, scrypt parameters and the derived key."""

    salt: bytes
    n: int
    r: int
    p: int
    digest: bytes


@dataclass(frozen=True, slots=True)
class StoredUser:
    nick: str
    ip: str
    port: int
    protocols: tuple[str, ...]
    ts: float
    credential: Credential
    # vcall extension: the installation's key fingerprint ("sha256:<64 hex>", identity.py),
    # None for accounts registered by classic clients.
    fingerprint: str | None = None
    # vcall extension (issue 15): the user said goodbye (VCALL_OFFLINE); cleared by the next
    # REGISTER. Presence is otherwise derived from ``ts`` (docs/protocol.md section 1).
    logged_out: bool = False


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=256 * r * (n + p + 2) + (1 << 20),
        dklen=HASH_BYTES,
    )


def hash_password(password: str, params: ScryptParams = ScryptParams()) -> Credential:
    """Blocking (tens of ms): call it from an executor."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, params.n, params.r, params.p)
    return Credential(salt, params.n, params.r, params.p, digest)


def verify_password(password: str, credential: Credential) -> bool:
    """Blocking (tens of ms): call it from an executor. Constant-time comparison."""
    c = credential
    digest = _scrypt(password, c.salt, c.n, c.r, c.p)
    return hmac.compare_digest(digest, c.digest)


_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS users (
    nick TEXT PRIMARY KEY,
    ip TEXT NOT NULL,
    port INTEGER NOT NULL,
    protocols TEXT NOT NULL,
    ts REAL NOT NULL,
    salt BLOB NOT NULL,
    scrypt_n INTEGER NOT NULL,
    scrypt_r INTEGER NOT NULL,
    scrypt_p INTEGER NOT NULL,
    digest BLOB NOT NULL,
    fingerprint TEXT,
    logged_out INTEGER NOT NULL DEFAULT 0
)
"""
# Files written before issue 14 lack the fingerprint column: added on open (NULL = classic).
_MIGRATE: Final = "ALTER TABLE users ADD COLUMN fingerprint TEXT"
# ... and those written before issue 15 the logged_out column (0 = as before: no goodbye).
_MIGRATE_OUT: Final = "ALTER TABLE users ADD COLUMN logged_out INTEGER NOT NULL DEFAULT 0"
# Lookups ignoring case. Not UNIQUE: older files may hold "bob" and "Bob" (they must load);
# uniqueness of new nicks is insert()'s NOT EXISTS. SQLite's NOCASE folds ASCII only, which
# is all a valid nick holds (codec.fold_nick).
_NOCASE_INDEX: Final = "CREATE INDEX IF NOT EXISTS users_nick_nocase ON users (nick COLLATE NOCASE)"
# Keep-alive sessions (session.py): one per account, only the token's SHA-256 digest, and the
# Unix time it expires at. A new session replaces the account's previous one.
_SESSIONS: Final = """
CREATE TABLE IF NOT EXISTS sessions (
    nick TEXT PRIMARY KEY,
    digest BLOB NOT NULL,
    expires REAL NOT NULL
)
"""


_COLUMNS: Final = (
    "nick, ip, port, protocols, ts, salt, scrypt_n, scrypt_r, scrypt_p, digest, fingerprint, "
    "logged_out"
)
_MARKS: Final = ", ".join("?" * 12)
_Row = tuple[str, str, int, str, float, bytes, int, int, int, bytes, str | None, int]


def _row(user: StoredUser) -> _Row:
    c = user.credential
    protocols = "#".join(user.protocols)
    return (
        user.nick, user.ip, user.port, protocols, user.ts,
        c.salt, c.n, c.r, c.p, c.digest, user.fingerprint, int(user.logged_out),
    )  # fmt: skip


def _user(row: _Row) -> StoredUser:
    nick, ip, port, protocols, ts, salt, n, r, p, digest, fingerprint, out = row
    credential = Credential(bytes(salt), n, r, p, bytes(digest))
    return StoredUser(
        nick, ip, port, tuple(protocols.split("#")), ts, credential, fingerprint, bool(out)
    )


def default_db_path() -> Path:
    """$XDG_DATA_HOME/vcall/discovery.sqlite3, or ~/.local/share/vcall/discovery.sqlite3."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "vcall" / "discovery.sqlite3"


class Store:
    """The users table. Open it in the thread that will use it."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        if self.path != ":memory:":
            # WAL: readers never block, and a commit is one append; NORMAL is durable across
            # a process crash (the server's failure mode), which is what "persist" means here.
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(users)")}
        if "fingerprint" not in columns:
            self._db.execute(_MIGRATE)
        if "logged_out" not in columns:
            self._db.execute(_MIGRATE_OUT)
        self._db.execute(_NOCASE_INDEX)
        self._db.execute(_SESSIONS)

    def load_all(self) -> list[StoredUser]:
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM users ORDER BY ts, nick").fetchall()
        return [_user(row) for row in rows]

    def get(self, nick: str) -> StoredUser | None:
        """The account of ``nick``: its exact spelling, else the first by code point of those
        that match ignoring case (directory.py's rule)."""
        row = self._db.execute(f"SELECT {_COLUMNS} FROM users WHERE nick = ?", (nick,)).fetchone()
        if row is None:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM users WHERE nick = ? COLLATE NOCASE ORDER BY nick LIMIT 1",
                (nick,),
            ).fetchone()
        return None if row is None else _user(row)

    def insert(self, user: StoredUser) -> bool:
        """Add a new nick; False (nothing changed) if it is taken, in any case. A keep-alive
        session left by an earlier account of that nick (removed by hand) ends with it: only
        the new owner's token may speak for the nick."""
        try:
            cursor = self._db.execute(
                f"INSERT INTO users ({_COLUMNS}) SELECT {_MARKS} "
                "WHERE NOT EXISTS (SELECT 1 FROM users WHERE nick = ? COLLATE NOCASE)",
                (*_row(user), user.nick),
            )
        except sqlite3.IntegrityError:
            return False
        if cursor.rowcount != 1:
            return False
        self.drop_session(user.nick)
        return True

    def upsert(self, user: StoredUser) -> None:
        self._db.execute(f"INSERT OR REPLACE INTO users ({_COLUMNS}) VALUES ({_MARKS})", _row(user))

    def touch(self, nick: str, ts: float) -> bool:
        """Set the last-seen time ``ts`` (Unix s) of the account with this exact spelling (a
        keep-alive, session.py); False if there is none."""
        cursor = self._db.execute("UPDATE users SET ts = ? WHERE nick = ?", (ts, nick))
        return cursor.rowcount == 1

    def put_session(self, nick: str, digest: bytes, expires: float) -> None:
        """Replace ``nick``'s session by one with this token digest, expiring at ``expires``."""
        self._db.execute(
            "INSERT OR REPLACE INTO sessions (nick, digest, expires) VALUES (?, ?, ?)",
            (nick, digest, expires),
        )

    def session_digest(self, nick: str, now: float) -> bytes | None:
        """The token digest of ``nick``'s session if it has not expired at ``now``; else None
        (an expired one is deleted)."""
        row = self._db.execute(
            "SELECT digest, expires FROM sessions WHERE nick = ?", (nick,)
        ).fetchone()
        if row is None:
            return None
        if not now < row[1]:
            self.drop_session(nick)
            return None
        return bytes(row[0])

    def drop_session(self, nick: str) -> None:
        self._db.execute("DELETE FROM sessions WHERE nick = ?", (nick,))

    def close(self) -> None:
        self._db.close()
