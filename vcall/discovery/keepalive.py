"""The server's presence requests (vcall extension, docs/protocol.md section 1.2): log-out, and
the cheap keep-alive.

* ``VCALL_SESSION <nick> <password>``: one scrypt check (with REGISTER's failed-password
  throttle); a fresh 128-bit token (session.py) whose SHA-256 digest goes to the store with the
  session's TTL (every instance sharing the store accepts it; a new session replaces the
  account's previous one); the user is seen now. ``OK VCALL_SESSION <token> <ttl>``.
* ``VCALL_HERE <nick> <token>``: the keep-alive. The token's digest is compared in constant
  time with the stored one; no scrypt. The user is seen now (``ts``, written through the store
  to every instance). A wrong or expired token: ``NOK WRONG_PASS`` (counted, "VCALL_HERE:
  wrong or expired token"); an unknown nick: ``NOK USER_UNKNOWN``.
* ``VCALL_OFFLINE <nick> <password-or-token>``: the user is shown offline until its next
  REGISTER; the live session's token is accepted instead of the password (no scrypt), and the
  session ends.

Guarantees: nobody who knows only a nick can mark its user online or offline (a password or
that user's live token is needed); requests of one nick run one at a time (the server's nick
lock), so a keep-alive never undoes a concurrent REGISTER in the cache; a store that cannot be
reached gets ``NOK SERVICE_UNAVAILABLE`` (counted), never a hang.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Final

from vcall.discovery.backend import StoreUnavailable, Throttle, UserStore
from vcall.discovery.codec import (
    Here,
    HereAck,
    Nok,
    NokCode,
    Offline,
    OfflineAck,
    SessionGranted,
    SessionOpen,
    fold_nick,
    format_reply,
)
from vcall.discovery.directory import Directory
from vcall.discovery.session import new_token, token_digest, token_matches, valid_token
from vcall.discovery.store import StoredUser, verify_password

logger = logging.getLogger(__name__)

_WRONG_PASS: Final = format_reply(Nok(NokCode.WRONG_PASS))
_UNAVAILABLE: Final = format_reply(Nok(NokCode.SERVICE_UNAVAILABLE))
_USER_UNKNOWN: Final = format_reply(Nok(NokCode.USER_UNKNOWN))
_HERE_OK: Final = format_reply(HereAck())

Scrypt = Callable[..., Awaitable[Any]]  # (address, func, *args) -> func(*args), in the pool


class KeepAliveDesk:
    """Answers VCALL_SESSION, VCALL_HERE and VCALL_OFFLINE for one server (its event loop)."""

    def __init__(
        self,
        store: UserStore,
        directory: Directory,
        *,
        hold: Callable[[str], AbstractAsyncContextManager[None]],
        scrypt: Scrypt,
        note_drop: Callable[[str], None],
        session_ttl: float,
    ) -> None:
        """``hold(folded_nick)``: the server's per-nick lock; ``scrypt``: runs a password
        check in its pool; ``note_drop``: its named counters; ``session_ttl``: seconds."""
        self._store = store
        self._directory = directory
        self._hold = hold
        self._scrypt = scrypt
        self._note_drop = note_drop
        self._ttl = session_ttl
        self.heres = 0  # keep-alives accepted
        self.sessions = 0  # sessions opened

    @property
    def _throttle(self) -> Throttle:
        return self._store.throttle

    async def session(self, request: SessionOpen, address: str) -> bytes:
        return await self._guarded("VCALL_SESSION", self._session(request, address))

    async def here(self, request: Here, address: str) -> bytes:
        return await self._guarded("VCALL_HERE", self._here(request, address))

    async def offline(self, request: Offline, address: str) -> bytes:
        return await self._guarded("VCALL_OFFLINE", self._offline(request, address))

    async def _guarded(self, verb: str, work: Awaitable[bytes]) -> bytes:
        try:
            return await work
        except StoreUnavailable as exc:
            self._note_drop(f"{verb} refused: store unavailable")
            logger.debug("%s refused: %s", verb, exc)
            return _UNAVAILABLE

    async def _session(self, request: SessionOpen, address: str) -> bytes:
        async with self._hold(fold_nick(request.nick)):
            user = await self._authenticate(request.nick, request.password, address, False)
            if isinstance(user, bytes):
                return user
            token = new_token()
            await self._store.put_session(user.nick, token_digest(token), self._ttl)
            if not await self._seen(user):
                return _USER_UNKNOWN
        self.sessions += 1
        logger.info("VCALL_SESSION %s from %s", user.nick, address)
        return format_reply(SessionGranted(token, int(self._ttl)))

    async def _here(self, request: Here, address: str) -> bytes:
        async with self._hold(fold_nick(request.nick)):
            user = self._directory.get(request.nick)
            if user is None:
                self._note_drop("VCALL_HERE: unknown user")
                return _USER_UNKNOWN
            digest = await self._store.session_digest(user.nick)
            if not token_matches(request.token, digest):
                self._note_drop("VCALL_HERE: wrong or expired token")
                logger.debug("VCALL_HERE %s from %s: wrong or expired token", user.nick, address)
                return _WRONG_PASS
            if not await self._seen(user):
                return _USER_UNKNOWN
        self.heres += 1
        return _HERE_OK

    async def _offline(self, request: Offline, address: str) -> bytes:
        async with self._hold(fold_nick(request.nick)):
            user = await self._authenticate(request.nick, request.password, address, True)
            if isinstance(user, bytes):
                return user
            await self._store.drop_session(user.nick)
            if not user.logged_out:
                gone = dataclasses.replace(user, logged_out=True)
                if not await self._store.update(gone):
                    return _WRONG_PASS  # the credential changed meanwhile (another instance)
                self._directory.put(gone)
        logger.info("VCALL_OFFLINE %s from %s", user.nick, address)
        return format_reply(OfflineAck(user.nick))

    async def _authenticate(
        self, nick: str, secret: str, address: str, token_ok: bool
    ) -> StoredUser | bytes:
        """The account ``nick`` reaches if ``secret`` is its password (or, with ``token_ok``,
        its live session token); else the NOK reply. Passwords go through REGISTER's
        throttle, so nobody can make a user look gone or here by guessing."""
        user = self._directory.get(nick)
        if (
            token_ok
            and user is not None
            and valid_token(secret)
            and token_matches(secret, await self._store.session_digest(user.nick))
        ):
            return user
        keys = (f"nick:{fold_nick(nick)}", f"addr:{address}")
        if await self._throttle.blocked(keys):
            return _WRONG_PASS
        if user is None:
            return _USER_UNKNOWN
        if not await self._scrypt(address, verify_password, secret, user.credential):
            await self._throttle.failure(keys)
            logger.info("%s from %s: wrong password", nick, address)
            return _WRONG_PASS
        await self._throttle.success(keys[:1])
        return user

    async def _seen(self, user: StoredUser) -> bool:
        """The user was heard from now: ``ts`` in the store (every instance) and here."""
        now = time.time()
        if not await self._store.touch(user.nick, now):
            return False
        current = self._directory.get(user.nick) or user
        self._directory.put(dataclasses.replace(current, ts=now))
        return True
