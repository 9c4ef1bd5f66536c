"""Presence for the client (issue 15): keep the registration fresh, keep the list fresh, say
goodbye. Off the Tk thread: one :class:`PresenceKeeper` thread per login, and the worker
thread for :func:`say_goodbye`.

The protocol (docs/protocol.md section 1, vcall extensions):

* **Keep-alive: a session token** (:class:`KeepAlive`), every :data:`REFRESH_INTERVAL` (60 s):
  ``VCALL_SESSION <nick> <password>`` once (one scrypt check on the server) gives a token and
  its lifetime; each keep-alive is then ``VCALL_HERE <nick> <token>`` (no scrypt). A refused
  token (expired, replaced, or a server that lost it) falls back to a REGISTER with the login's
  fields and a new session; a server without sessions (NOK UNKNOWN_COMMAND: a classic one, or
  an older vcall) gets a re-REGISTER every time, as before.
* **The list: ``VCALL_PRESENCE``** every :data:`LIST_INTERVAL` (3 s) up to
  :data:`LIST_SCALE_USERS` users, then longer in proportion to the list (:func:`list_interval`,
  at most :data:`MAX_LIST_INTERVAL`), so that a big directory does not cost every client (and
  the server) a big reply every 3 s; paused while a call is on or the window is iconified or
  withdrawn (:meth:`PresenceKeeper.pause`), and taken again at once when due. Each user comes
  with its age (seconds since the server last heard from it, by the server's clock) and
  ``online`` / ``offline`` / ``unknown`` (classic clients). A classic server answers NOK
  UNKNOWN_COMMAND: ``LIST_USERS`` then, with presence unknown.
* **Goodbye: ``VCALL_OFFLINE <nick> <token-or-password>``** on log-out and quit (the server
  shows the user offline until its next REGISTER); a client that dies without it drops to
  offline once its registration is older than the server's window (``--presence-ttl``, 180 s).

Guarantees: the keeper's thread never touches Tk (it hands :class:`~vcall.gui.events.UsersListed`
to the worker's thread-safe ``emit``); every network call has a deadline
(:data:`PRESENCE_TIMEOUT`); a failure is logged and counted (:attr:`PresenceKeeper.failures`),
never raised into the worker; :meth:`PresenceKeeper.stop` joins the thread.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from vcall.gui import events as ev

logger = logging.getLogger(__name__)

LIST_INTERVAL: Final = 3.0  # s between two user lists while logged in (small directories)
LIST_SCALE_USERS: Final = 1000  # users up to which lists come every LIST_INTERVAL
MAX_LIST_INTERVAL: Final = 60.0  # s: the longest wait between two lists
REFRESH_INTERVAL: Final = 60.0  # s between two keep-alives (server window: 180 s)
SESSION_MARGIN: Final = 2 * REFRESH_INTERVAL  # s before its expiry a token is renewed
PRESENCE_TIMEOUT: Final = 3.0  # s for one presence request (list, refresh or goodbye)

Lister = Callable[[tuple[str, int]], list[ev.UserRow]]


@dataclass(frozen=True, slots=True)
class Registration:
    """What the login registered, to register it again (and to say goodbye)."""

    server: tuple[str, int]
    nick: str
    password: str
    ip: str
    port: int
    protocols: tuple[str, ...]
    fingerprint: str | None


def registration_of(
    manager: Any, nick: str, password: str, server: tuple[str, int]
) -> Registration | None:
    """The registration a started :class:`~vcall.call.manager.CallManager` made; None for a
    manager that did not say (the worker's tests use stand-ins)."""
    ip = getattr(manager, "registered_ip", None)
    port = getattr(manager, "registered_port", None)
    protocols = getattr(manager, "protocols", None)
    if not isinstance(ip, str) or not ip or not isinstance(port, int) or port <= 0:
        return None
    if not isinstance(protocols, Sequence) or not all(isinstance(p, str) for p in protocols):
        return None
    identity = getattr(manager, "identity", None)
    fingerprint = getattr(identity, "fingerprint", None)
    fp = fingerprint if isinstance(fingerprint, str) else None
    return Registration(server, nick, password, ip, port, tuple(protocols), fp)


def list_rows(server: tuple[str, int]) -> list[ev.UserRow]:
    """Every user of ``server`` with presence (``VCALL_PRESENCE``), or without it from a
    classic server (``LIST_USERS``). Blocking; raises the client's DiscoveryError."""
    from vcall.discovery.client import DiscoveryClient, RequestRejected  # noqa: PLC0415
    from vcall.discovery.codec import Presence  # noqa: PLC0415

    with DiscoveryClient(*server, timeout=PRESENCE_TIMEOUT) as client:
        try:
            entries = client.presence()
        except RequestRejected:  # a classic server: NOK UNKNOWN_COMMAND
            return [ev.UserRow(u.nick, u.ip, u.port) for u in client.list_users()]
    online = {Presence.ONLINE: True, Presence.OFFLINE: False, Presence.UNKNOWN: None}
    return [ev.UserRow(e.nick, e.ip, e.port, online[e.presence], float(e.age)) for e in entries]


def list_interval(users: int, base: float = LIST_INTERVAL) -> float:
    """Seconds until the next list after one of ``users`` entries: ``base`` up to
    :data:`LIST_SCALE_USERS` users, then in proportion (10,000 users: 30 s), at most
    :data:`MAX_LIST_INTERVAL` (never below ``base``). vcall's own rule (issue 15): the reply
    grows by ~45 bytes per user, so the bytes per second each client asks for stay bounded."""
    scaled = base * max(0, users) / LIST_SCALE_USERS
    return max(base, min(MAX_LIST_INTERVAL, scaled))


class _CancelledError(Exception):
    """The keep-alive was cancelled (log-out) between two of its requests."""


class KeepAlive:
    """The keep-alive of one login (see the module docstring); call it with the login's
    :class:`Registration` every :data:`REFRESH_INTERVAL`. Blocking (one connection, every
    request within :data:`PRESENCE_TIMEOUT`); used from the keeper's thread only. Raises the
    client's DiscoveryError when the server cannot be reached or refuses the login itself."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.token: str | None = None  # the live session's token (also used for the goodbye)
        self._renew_at = 0.0  # by ``clock``: a new session from then on
        self.classic = False  # the server has no sessions: re-REGISTER each time
        self.heres = 0  # keep-alives sent as VCALL_HERE
        self.sessions = 0  # sessions opened (one scrypt check each on the server)
        self.registers = 0  # keep-alives or fall-backs sent as REGISTER
        # Set at log-out: no request starts after it, so no late REGISTER or session can land
        # after the goodbye and show the user online again.
        self.cancelled = threading.Event()

    def _check(self) -> None:
        if self.cancelled.is_set():
            raise _CancelledError

    def __call__(self, registration: Registration) -> None:
        try:
            self._keep_alive(registration)
        except _CancelledError:
            logger.debug("keep-alive cancelled: logging out")

    def _keep_alive(self, registration: Registration) -> None:
        from vcall.discovery.client import (  # noqa: PLC0415
            DiscoveryClient,
            RequestRejected,
            ServiceUnavailable,
            UserUnknown,
            WrongPassword,
        )

        r = registration
        self._check()
        with DiscoveryClient(*r.server, timeout=PRESENCE_TIMEOUT) as client:
            if self.classic:
                self._register(client, r)
                return
            if self.token is not None and self._clock() < self._renew_at:
                try:
                    client.here(r.nick, self.token)
                    self.heres += 1
                    return
                except ServiceUnavailable:
                    raise  # the server's store is down: the same token, next time
                except (WrongPassword, UserUnknown) as exc:
                    # Expired, replaced by another login, or lost by the server: log in again
                    # (a REGISTER also restores the address and ends a logged-out state).
                    logger.info("keep-alive token refused (%s): registering again", exc)
                    self.token = None
                    self._register(client, r)
                except RequestRejected:  # another server now: let VCALL_SESSION find out
                    self.token = None
            try:
                self._check()
                granted = client.open_session(r.nick, r.password)
            except ServiceUnavailable:
                raise
            except UserUnknown:  # the account is gone from the server: register it again
                self._register(client, r)
                granted = client.open_session(r.nick, r.password)
            except RequestRejected:  # NOK UNKNOWN_COMMAND: no sessions on this server
                logger.info("%s:%d has no keep-alive sessions: re-REGISTER", *r.server)
                self.classic = True
                self._register(client, r)
                return
            self.token = granted.token
            # Renewed SESSION_MARGIN before it expires (halfway for short-lived ones).
            self._renew_at = self._clock() + granted.ttl - min(SESSION_MARGIN, granted.ttl / 2)
            self.sessions += 1

    def _register(self, client: Any, r: Registration) -> None:
        self._check()
        client.register(r.nick, r.ip, r.port, r.password, r.protocols, fingerprint=r.fingerprint)
        self.registers += 1


def refresh(registration: Registration) -> None:
    """REGISTER again with the login's fields (the keep-alive). Blocking; raises the
    client's DiscoveryError."""
    from vcall.discovery.client import DiscoveryClient  # noqa: PLC0415

    r = registration
    with DiscoveryClient(*r.server, timeout=PRESENCE_TIMEOUT) as client:
        client.register(r.nick, r.ip, r.port, r.password, r.protocols, fingerprint=r.fingerprint)


def say_goodbye(registration: Registration, token: str | None = None) -> bool:
    """``VCALL_OFFLINE`` for this login, with the keep-alive ``token`` when there is one (no
    scrypt check on the server), else or if refused with the password; True if the server
    took it. Never raises: a classic server (no such verb), a server that is down or a slow
    one (after :data:`PRESENCE_TIMEOUT`) only costs a log line."""
    from vcall.discovery.client import DiscoveryClient, DiscoveryError, WrongPassword  # noqa: PLC0415

    r = registration
    try:
        with DiscoveryClient(*r.server, timeout=PRESENCE_TIMEOUT) as client:
            try:
                if token is None:
                    raise WrongPassword("no token")
                client.offline(r.nick, token)
            except WrongPassword:
                client.offline(r.nick, r.password)
    except (DiscoveryError, ValueError, OSError) as exc:
        logger.info("could not tell %s:%d that %s left: %s", *r.server, r.nick, exc)
        return False
    logger.info("told %s:%d that %s left", *r.server, r.nick)
    return True


def status_text(online: bool | None) -> str:
    """The user list's status column: "online", "offline" or "unknown" (classic clients,
    classic servers), in the user's language."""
    from vcall.gui.i18n import _  # noqa: PLC0415

    if online is None:
        return _("unknown")
    return _("online") if online else _("offline")


def seen_text(age: float | None) -> str:
    """How long ago the server last heard from a user: "just now", "42 s ago", "5 min ago",
    "3 h ago", "2 days ago"; "unknown" for None."""
    from vcall.gui.i18n import _  # noqa: PLC0415

    if age is None or not math.isfinite(age) or age < 0:
        return _("unknown")
    if age < 5:
        return _("just now")
    if age < 60:
        return _("{n} s ago").format(n=int(age))
    if age < 3600:
        return _("{n} min ago").format(n=int(age // 60))
    if age < 86400:
        return _("{n} h ago").format(n=int(age // 3600))
    return _("{n} days ago").format(n=int(age // 86400))


class PresenceKeeper:
    """One thread per login: lists users every ``list_interval`` s, longer for big lists
    (:func:`list_interval`; each list goes to ``emit`` as UsersListed) unless paused
    (:meth:`pause`) and, with a ``registration``, keeps it alive every ``refresh_interval`` s
    (``refresher``, by default a :class:`KeepAlive`; never paused)."""

    def __init__(
        self,
        server: tuple[str, int],
        registration: Registration | None,
        emit: Callable[[ev.Event], None],
        *,
        lister: Lister = list_rows,
        refresher: Callable[[Registration], None] | None = None,
        list_interval: float = LIST_INTERVAL,
        refresh_interval: float = REFRESH_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        paused: frozenset[str] = frozenset(),
    ) -> None:
        """``paused``: the reasons to pause the list from the start (see :meth:`pause`)."""
        self._server = server
        self._registration = registration
        self._emit = emit
        self._lister = lister
        self.keepalive: KeepAlive | None = None  # the default refresher, for its token
        if refresher is None:
            self.keepalive = refresher = KeepAlive(clock)
        self._refresher = refresher
        self._base_interval = list_interval
        self.list_interval = list_interval  # s until the next list (grows with the list)
        self._refresh_interval = refresh_interval
        self._clock = clock
        self._pause_lock = threading.Lock()
        self._paused = set(paused)
        self._wake = threading.Event()  # stop, or a pause reason went away
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vcall-presence", daemon=True)
        self.failures = 0  # lists and refreshes that failed (each logged)
        self.lists = 0  # lists handed to emit

    def start(self) -> None:
        self._thread.start()

    @property
    def token(self) -> str | None:
        """The keep-alive session's token (for the goodbye), if any."""
        return self.keepalive.token if self.keepalive is not None else None

    @property
    def paused(self) -> bool:
        with self._pause_lock:
            return bool(self._paused)

    def pause(self, reason: str, paused: bool) -> None:
        """Pause the list for ``reason`` ("call", "hidden", ...) or end that reason; the list
        runs while no reason is left (at once if one is due). Any thread; never blocks on I/O."""
        with self._pause_lock:
            if paused:
                self._paused.add(reason)
            else:
                self._paused.discard(reason)
        self._wake.set()

    def stop(self, timeout: float = PRESENCE_TIMEOUT + 2.0) -> None:
        """Stop and join (a request under way ends within its deadline; no new one starts)."""
        if self.keepalive is not None:
            self.keepalive.cancelled.set()
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("presence thread did not stop within %.1f s", timeout)

    def _run(self) -> None:
        now = self._clock()
        last_list = now  # the login has just listed once
        next_refresh = now + self._refresh_interval
        while not self._stop.is_set():
            next_list = last_list + self.list_interval
            due = next_refresh if self.paused else min(next_list, next_refresh)
            self._wake.wait(max(0.0, due - self._clock()))
            self._wake.clear()
            if self._stop.is_set():
                break
            now = self._clock()
            if now >= next_refresh:
                next_refresh = now + self._refresh_interval
                self._attempt("refresh", self._refresh_once)
            if now >= next_list and not self.paused and not self._stop.is_set():
                last_list = self._clock()
                self._attempt("list", self._list_once)

    def _refresh_once(self) -> None:
        if self._registration is not None:
            self._refresher(self._registration)

    def _list_once(self) -> None:
        users = self._lister(self._server)
        self.list_interval = list_interval(len(users), self._base_interval)
        if not self._stop.is_set():  # logged out meanwhile: this list is stale
            self._emit(ev.UsersListed(tuple(users)))
            self.lists += 1

    def _attempt(self, what: str, action: Callable[[], None]) -> None:
        try:
            action()
        except Exception as exc:  # a bad list or refresh must not end the keeper
            self.failures += 1
            logger.info("presence %s at %s:%d failed: %r", what, *self._server, exc)
