"""In-memory directory of registered users with pre-formatted replies. Pure; no I/O.

QUERY and LIST_USERS are answered from here without touching SQLite or formatting anything:
each user's ``OK USER_FOUND`` reply is kept as bytes, and the ``OK USERS_LIST`` reply is built
once and rebuilt only after a change. The server writes every change through to the store
before it updates the directory; with a shared store, every instance's directory is a cache
that the store's change notifications keep up to date (``put``, or ``reset`` after an outage).
"""

from __future__ import annotations

from vcall.discovery.codec import (
    Nok,
    NokCode,
    UserEntry,
    UserRecord,
    format_reply,
    format_users_list,
)
from vcall.discovery.store import StoredUser

USER_UNKNOWN_REPLY = format_reply(Nok(NokCode.USER_UNKNOWN))


class Directory:
    def __init__(self, users: list[StoredUser] | None = None) -> None:
        self._users: dict[str, StoredUser] = {}
        self._query_replies: dict[str, bytes] = {}
        # The same replies for vcall clients on the TLS port: with the key token, if any.
        self._secure_replies: dict[str, bytes] = {}
        self._list_reply: bytes | None = None
        self.reset(users or [])

    def reset(self, users: list[StoredUser]) -> None:
        """Forget everything and hold ``users`` (oldest registration first)."""
        self._users.clear()
        self._query_replies.clear()
        self._secure_replies.clear()
        self._list_reply = None
        for user in users:
            self.put(user)

    def __len__(self) -> int:
        return len(self._users)

    def get(self, nick: str) -> StoredUser | None:
        return self._users.get(nick)

    def put(self, user: StoredUser) -> None:
        # Re-inserting moves the nick to the end: the list is in order of last registration.
        self._users.pop(user.nick, None)
        self._users[user.nick] = user
        record = UserRecord(user.nick, user.ip, user.port, user.protocols)
        self._query_replies[user.nick] = classic = format_reply(record)
        if user.fingerprint is None:
            self._secure_replies[user.nick] = classic
        else:
            keyed = UserRecord(user.nick, user.ip, user.port, user.protocols, user.fingerprint)
            self._secure_replies[user.nick] = format_reply(keyed)
        self._list_reply = None

    def query_reply(self, nick: str, *, secure: bool = False) -> bytes:
        """``OK USER_FOUND`` bytes; with ``secure`` (a TLS-port client) the key token is added
        to ``<protocols>`` (vcall extension, docs/protocol.md section 1); never on the plain
        port, so classic clients see exactly the classic reply."""
        replies = self._secure_replies if secure else self._query_replies
        return replies.get(nick, USER_UNKNOWN_REPLY)

    def list_reply(self) -> bytes:
        if self._list_reply is None:
            entries = [UserEntry(u.nick, u.ip, u.port, u.ts) for u in self._users.values()]
            self._list_reply = format_users_list(entries).encode()
        return self._list_reply
