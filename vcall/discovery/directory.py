"""In-memory directory of registered users with pre-formatted replies. Pure; no I/O.

QUERY and LIST_USERS are answered from here without touching SQLite or formatting anything:
each user's ``OK USER_FOUND`` reply is kept as bytes, and the ``OK USERS_LIST`` reply is built
once and rebuilt only after a change.

Nicks are unique ignoring case (codec.fold_nick): a lookup finds the account of that exact
spelling, else the account whose spelling folds to the same key. A store written before that
rule may hold several spellings of one folded nick (e.g. "bob" and "Bob"): each keeps its own
account and answers to its exact spelling, and any other spelling ("BOB") reaches the one
that sorts first by code point ("Bob"): a rule that needs no history, so it is the same
on every instance and after every restart (store.py and redis_store.py apply it too). The
server writes every change through to the store
before it updates the directory; with a shared store, every instance's directory is a cache
that the store's change notifications keep up to date (``put``, or ``reset`` after an outage).
"""

from __future__ import annotations

import math

from vcall import EXTENSION_VERSION
from vcall.discovery.codec import (
    Nok,
    NokCode,
    Presence,
    UserEntry,
    UserRecord,
    Verb,
    fold_nick,
    format_presence_list,
    format_reply,
    format_ts,
    format_users_list,
)
from vcall.discovery.store import StoredUser

USER_UNKNOWN_REPLY = format_reply(Nok(NokCode.USER_UNKNOWN))


class Directory:
    def __init__(self, users: list[StoredUser] | None = None) -> None:
        self._users: dict[str, StoredUser] = {}
        # fold_nick(nick) -> the spelling of the account that answers to every spelling.
        self._folded: dict[str, str] = {}
        self._query_replies: dict[str, bytes] = {}
        # The same replies for vcall clients on the TLS port: with the key token, if any.
        self._secure_replies: dict[str, bytes] = {}
        self._list_reply: bytes | None = None
        # VCALL_PRESENCE: ages change with time, so the reply is kept for one second.
        self._presence_reply: tuple[int, float, bytes] | None = None  # (second, window, bytes)
        self.reset(users or [])

    def reset(self, users: list[StoredUser]) -> None:
        """Forget everything and hold ``users`` (oldest registration first)."""
        self._users.clear()
        self._folded.clear()
        self._query_replies.clear()
        self._secure_replies.clear()
        self._list_reply = None
        self._presence_reply = None
        for user in users:
            self.put(user)

    def __len__(self) -> int:
        return len(self._users)

    def account_nick(self, nick: str) -> str | None:
        """The stored spelling of the account ``nick`` reaches (exact first, then ignoring
        case), or None."""
        if nick in self._users:
            return nick
        return self._folded.get(fold_nick(nick))

    def get(self, nick: str) -> StoredUser | None:
        """The account ``nick`` reaches, ignoring case (see the module docstring)."""
        account = self.account_nick(nick)
        return None if account is None else self._users[account]

    def put(self, user: StoredUser) -> None:
        # Re-inserting moves the nick to the end: the list is in order of last registration.
        self._users.pop(user.nick, None)
        self._users[user.nick] = user
        key = fold_nick(user.nick)
        current = self._folded.get(key)
        if current is None or user.nick < current:
            self._folded[key] = user.nick
        record = UserRecord(user.nick, user.ip, user.port, user.protocols)
        self._query_replies[user.nick] = classic = format_reply(record)
        if user.fingerprint is None:
            self._secure_replies[user.nick] = classic
        else:
            keyed = UserRecord(user.nick, user.ip, user.port, user.protocols, user.fingerprint)
            self._secure_replies[user.nick] = format_reply(keyed)
        self._list_reply = None
        self._presence_reply = None

    def query_reply(self, nick: str, *, secure: bool = False) -> bytes:
        """``OK USER_FOUND`` bytes; with ``secure`` (a TLS-port client) the key token is added
        to ``<protocols>`` (vcall extension, docs/protocol.md section 1); never on the plain
        port, so classic clients see exactly the classic reply."""
        replies = self._secure_replies if secure else self._query_replies
        account = self.account_nick(nick)
        return USER_UNKNOWN_REPLY if account is None else replies[account]

    def list_reply(self) -> bytes:
        if self._list_reply is None:
            entries = [UserEntry(u.nick, u.ip, u.port, u.ts) for u in self._users.values()]
            self._list_reply = format_users_list(entries).encode()
        return self._list_reply

    def presence_reply(self, now: float, window: float) -> bytes:
        """``OK VCALL_PRESENCE`` bytes (vcall extension, docs/protocol.md section 1) at wall
        time ``now`` (Unix seconds): every user in ``LIST_USERS`` order, with its age and
        :func:`presence`. Rebuilt at most once per second of ``now`` (or after a change)."""
        second = math.floor(now)
        cached = self._presence_reply
        if cached is not None and cached[0] == second and cached[1] == window:
            return cached[2]
        # format_presence_list's bytes (the golden tests hold both to them), without one
        # dataclass per user: this runs on the event loop, for every user, once a second.
        users = self._users.values()
        body = "".join(
            f"{u.nick} {u.ip} {u.port} {format_ts(u.ts)} {age(u, now)} {presence(u, now, window)}#"
            for u in users
        )
        text = f"OK {Verb.VCALL_PRESENCE} {len(users)} {body}" if body else None
        reply = (text or format_presence_list([])).encode()
        self._presence_reply = (second, window, reply)
        return reply


def age(user: StoredUser, now: float) -> int:
    """Whole seconds since ``user`` last registered (0 if its time is ahead of ``now``)."""
    return max(0, math.floor(now - user.ts)) if math.isfinite(user.ts) else 0


def presence(user: StoredUser, now: float, window: float) -> Presence:
    """A vcall client (its protocols name vcall's extension, or it has a key) is online while
    it registered within ``window`` seconds and has not logged out; it refreshes its
    registration well within that (vcall/gui/presence.py). A classic client never refreshes
    nor logs out, so its presence is unknown (its ``ts`` still says when it registered)."""
    vcall_client = EXTENSION_VERSION in user.protocols or user.fingerprint is not None
    if not vcall_client:
        return Presence.UNKNOWN
    if user.logged_out or now - user.ts > window:
        return Presence.OFFLINE
    return Presence.ONLINE
