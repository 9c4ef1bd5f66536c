"""Synchronous discovery client, on the same sans-IO codec as the server.

Blocking calls for worker threads and command-line tools (never the Tk thread). One
connection is kept open and reused (the classic majority behaviour); if the server closed it
meanwhile (idle timeout, restart), the request is retried once on a fresh connection.

Errors are typed: :class:`WrongPassword`, :class:`UserUnknown`, :class:`ServerUnreachable`
(names host:port), :class:`DiscoveryTimeout`, :class:`ProtocolError` (garbage from the server),
:class:`RequestRejected` (the server answered NOK SYNTAX_ERROR / UNKNOWN_COMMAND, or
:class:`ServiceUnavailable` for NOK SERVICE_UNAVAILABLE); all derive
from :class:`DiscoveryError`. Invalid arguments (our own misuse) raise ``ValueError`` before
anything is sent.

Failover: a :class:`ServerGroup` lists several servers (``a:8000,b:8000``, :func:`parse_servers`);
a client of a group tries them in order, starting from the one that answered last, and moves to
the next when one cannot be reached, does not answer within ``failover_after`` seconds (1.5 by
default) or answers ``NOK SERVICE_UNAVAILABLE``; an answer (even a NOK) ends the search.
Retrying a REGISTER elsewhere is safe: with the same password it only refreshes the record.
:func:`use_servers` registers a group process-wide, so that every ``DiscoveryClient(host,
port)`` made for one of its members (the call manager makes one per operation) fails over too.

TLS (issue 14): with a pin store (``pins=``, or process-wide with
:func:`vcall.discovery.tls.use_tls`) the client asks the plain port for the server's TLS port
(``VCALL_TLS``), talks to it over TLS 1.3 and pins the server's key on first use (tls.py);
a changed key, or a pinned server that stops offering TLS, is :class:`ServerIdentityChanged`
naming both fingerprints. A server without TLS that was never pinned (a classic server) is used
in clear. ``secure`` and ``server_fingerprint`` say what the last connection was.

Replies are reassembled across reads: ``OK USERS_LIST`` is read until its ``n`` entries are
counted; records from lax servers (nicks with ``#``, ports such as ``8000.0``) are accepted.
"""

from __future__ import annotations

import dataclasses
import logging
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Final

from pipeline.errors import RemoteProtocolError
from vcall.discovery.codec import (
    Here,
    HereAck,
    ListUsers,
    Marker,
    Nok,
    NokCode,
    Offline,
    OfflineAck,
    PresenceEntry,
    PresenceList,
    PresenceQuery,
    Query,
    Quit,
    Register,
    Reply,
    Request,
    SessionGranted,
    SessionOpen,
    TlsPort,
    TlsPortQuery,
    UserEntry,
    UserRecord,
    UsersList,
    Verb,
    Welcome,
    format_request,
    parse_reply,
)
from vcall.discovery.tls import Pin, PinStore, PinStoreError, client_context, default_pin_store
from vcall.identity import fingerprint_of_cert

__all__ = [
    "DiscoveryClient",
    "DiscoveryError",
    "DiscoveryTimeout",
    "ProtocolError",
    "RequestRejected",
    "ServerGroup",
    "ServerIdentityChanged",
    "ServerUnreachable",
    "ServiceUnavailable",
    "UserEntry",
    "UserRecord",
    "UserUnknown",
    "WrongPassword",
    "parse_servers",
    "use_servers",
]

logger = logging.getLogger(__name__)

MAX_REPLY: Final = 16 << 20  # a USERS_LIST of ~200,000 users
# A reply that parses but might continue (a list ending on an entry boundary with fewer
# entries than announced) is taken as final after this much quiet.
REPLY_GAP: Final = 0.2
FAILOVER_AFTER: Final = 1.5  # s one server of a group gets before the next is tried
MAX_SERVERS: Final = 16


class DiscoveryError(Exception):
    """Base of every discovery failure."""


class WrongPassword(DiscoveryError):  # noqa: N818 (names fixed by the contract)
    """NOK WRONG_PASS: the nick belongs to someone else (or we are throttled)."""


class UserUnknown(DiscoveryError):  # noqa: N818 (names fixed by the contract)
    """NOK USER_UNKNOWN."""


class ServerUnreachable(DiscoveryError):  # noqa: N818 (names fixed by the contract)
    """Cannot connect to the server, or it closed the connection before replying."""


class DiscoveryTimeout(DiscoveryError):  # noqa: N818 (names fixed by the contract)
    """The server did not answer in time."""


class ProtocolError(DiscoveryError):
    """The server sent something that is not a valid reply."""


class RequestRejected(DiscoveryError):  # noqa: N818 (names fixed by the contract)
    """NOK SYNTAX_ERROR or NOK UNKNOWN_COMMAND: the server refused our request's form."""


class ServiceUnavailable(RequestRejected):
    """NOK SERVICE_UNAVAILABLE: the server's shared store is down; try again later."""


class ServerIdentityChanged(DiscoveryError):  # noqa: N818 (reads as the condition)
    """The server's TLS key is not the pinned one, or a pinned server no longer offers TLS,
    or the pin file is unusable. Never retried elsewhere, never a prompt (tls.py)."""


class _Closed(Exception):  # noqa: N818 (internal signal, not an error)
    """The connection was closed before any reply byte arrived (worth one retry)."""


Server = tuple[str, int]


def parse_servers(text: str, default_port: int = 8000) -> tuple[Server, ...]:
    """``a:8000,b,[::1]:8001`` -> ((host, port), ...) in order, duplicates dropped.

    Raises ValueError (vcall.config.ConfigError) naming the bad entry; at most MAX_SERVERS.
    """
    from vcall.config import ConfigError, parse_server  # noqa: PLC0415 (no cycle at import)

    servers: list[Server] = []
    for item in text.split(","):
        server = parse_server(item, default_port)
        if server not in servers:
            servers.append(server)
    if len(servers) > MAX_SERVERS:
        raise ConfigError(f"at most {MAX_SERVERS} discovery servers, got {len(servers)}")
    return tuple(servers)


class ServerGroup:
    """Servers tried in order, the one that answered last first. Thread-safe."""

    def __init__(self, servers: Iterable[Server], failover_after: float = FAILOVER_AFTER) -> None:
        self.servers = tuple(dict.fromkeys(servers))
        if not self.servers:
            raise ValueError("a server group needs at least one server")
        self.failover_after = failover_after
        self._preferred = 0
        self._lock = threading.Lock()

    def order(self) -> list[Server]:
        with self._lock:
            first = self._preferred
        return [*self.servers[first:], *self.servers[:first]]

    def answered(self, server: Server) -> None:
        with self._lock:
            if server in self.servers:
                self._preferred = self.servers.index(server)

    @property
    def current(self) -> Server:
        return self.order()[0]


_GROUPS: dict[Server, ServerGroup] = {}
_GROUPS_LOCK = threading.Lock()


def use_servers(servers: Sequence[Server], failover_after: float = FAILOVER_AFTER) -> ServerGroup:
    """Make ``servers`` one failover group for every client of any of them, process-wide.

    Returns the group (its first server is the one to hand to code that takes one address).
    A group of one server removes any group that server belonged to.
    """
    group = ServerGroup(servers, failover_after)
    with _GROUPS_LOCK:
        for server in group.servers:
            if len(group.servers) > 1:
                _GROUPS[server] = group
            else:
                _GROUPS.pop(server, None)
    return group


def group_of(server: Server) -> ServerGroup | None:
    with _GROUPS_LOCK:
        return _GROUPS.get(server)


class DiscoveryClient:
    """Blocking client of one discovery server, or of a failover group. Thread-safe (one
    request at a time)."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float = 5.0,
        *,
        group: ServerGroup | None = None,
        pins: PinStore | None = None,
        plain: bool = False,
    ) -> None:
        """``pins``: TLS with these pinned keys (default: tls.use_tls's store, if set);
        ``plain``: the classic plain port only, whatever the default."""
        self.host = host
        self.port = port
        self.timeout = timeout
        self.group = group if group is not None else group_of((host, port))
        self.pins = None if plain else (pins if pins is not None else default_pin_store())
        self.secure = False  # the current connection is TLS with the pinned key
        self.server_fingerprint: str | None = None  # that key's fingerprint
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> DiscoveryClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def _where(self) -> str:
        return f"{self.host}:{self.port}"

    # --- API --------------------------------------------------------------------------------

    def register(
        self,
        nick: str,
        ip: str,
        port: int,
        password: str,
        protocols: Sequence[str],
        *,
        fingerprint: str | None = None,
    ) -> float:
        """Register (or update) ``nick``; returns the server's timestamp.

        ``fingerprint`` (vcall extension, identity.py form) is this installation's key, sent
        as the last ``<protocols>`` token; only ever sent over TLS (without TLS it is left
        out, so that a classic server sees a classic REGISTER)."""
        reply = self._request(Register(nick, ip, port, password, tuple(protocols), fingerprint))
        if isinstance(reply, Welcome):
            return reply.ts
        raise ProtocolError(f"{self._where}: unexpected reply {reply!r}")

    def query(self, nick: str) -> UserRecord:
        """The user's record; ``fingerprint`` is its registered key (None for classic accounts,
        and always None when the server was reached without TLS)."""
        reply = self._request(Query(nick))
        if isinstance(reply, UserRecord):
            return reply
        raise ProtocolError(f"{self._where}: unexpected reply {reply!r}")

    def list_users(self) -> list[UserEntry]:
        reply = self._request(ListUsers())
        if isinstance(reply, UsersList):
            return list(reply.entries)
        raise ProtocolError(f"{self._where}: unexpected reply {reply!r}")

    def presence(self) -> list[PresenceEntry]:
        """Every user with its presence (vcall extension ``VCALL_PRESENCE``, docs/protocol.md
        section 1). A classic server raises :class:`RequestRejected` (NOK UNKNOWN_COMMAND):
        use :meth:`list_users` there."""
        reply = self._request(PresenceQuery())
        if isinstance(reply, PresenceList):
            return list(reply.entries)
        raise ProtocolError(f"{self._where}: unexpected reply {reply!r}")

    def offline(self, nick: str, password: str) -> str:
        """Log ``nick`` out (vcall extension ``VCALL_OFFLINE``): shown offline until its next
        REGISTER. Returns the account's spelling. Raises :class:`WrongPassword`,
        :class:`UserUnknown`, or :class:`RequestRejected` from a classic server."""
        reply = self._request(Offline(nick, password))
        if isinstance(reply, OfflineAck):
            return reply.nick
        raise ProtocolError(f"{self._where}: unexpected reply {reply!r}")

    def open_session(self, nick: str, password: str) -> SessionGranted:
        """A keep-alive token for ``nick`` (vcall extension ``VCALL_SESSION``, docs/protocol.md
        section 1.2): ``token`` (32 hex digits) and ``ttl`` (s it lives). Raises
        :class:`WrongPassword`, :class:`UserUnknown`, or :class:`RequestRejected` from a
        server without sessions (NOK UNKNOWN_COMMAND)."""
        reply = self._request(SessionOpen(nick, password))
        if isinstance(reply, SessionGranted):
            return reply
        raise ProtocolError(f"{self._where}: unexpected reply {reply!r}")

    def here(self, nick: str, token: str) -> None:
        """The keep-alive (``VCALL_HERE``): ``nick`` is seen now. Raises :class:`WrongPassword`
        for a wrong or expired token (open a new session), :class:`UserUnknown`, or
        :class:`RequestRejected` from a server without sessions."""
        reply = self._request(Here(nick, token))
        if not isinstance(reply, HereAck):
            raise ProtocolError(f"{self._where}: unexpected reply {reply!r}")

    def close(self) -> None:
        """Send QUIT if connected (without waiting long for BYE) and close. Idempotent."""
        with self._lock:
            sock, self._sock = self._sock, None
            if sock is None:
                return
            try:
                sock.settimeout(min(self.timeout, 1.0))
                sock.sendall(format_request(Quit()))
                sock.recv(64)  # BYE, or EOF; either is fine
            except OSError:
                pass
            finally:
                sock.close()

    # --- machinery --------------------------------------------------------------------------

    def _request(self, request: Request) -> Reply:
        secure_data = format_request(request)  # ValueError on our own misuse, before any I/O
        if isinstance(request, Offline | SessionOpen):
            # Their last field is the password: the server judges it only once the line ended
            # (codec.parse_request), so end it rather than wait for the server's gap timer.
            secure_data += b"\n"
        data = _Payload(secure_data, secure_data)
        if isinstance(request, Register) and request.fingerprint is not None:
            classic = dataclasses.replace(request, fingerprint=None)
            data = _Payload(format_request(classic), secure_data)
        verb = _VERB[type(request)]
        with self._lock:
            group = self.group
            if group is None or len(group.servers) < 2:
                return self._attempt(data, verb, self.timeout)
            candidates = group.order()
            timeout = min(self.timeout, group.failover_after)
            for i, server in enumerate(candidates):
                if server != (self.host, self.port):
                    self._drop()
                    self.host, self.port = server
                try:
                    reply = self._attempt(data, verb, timeout)
                except (ServerUnreachable, DiscoveryTimeout, ServiceUnavailable) as exc:
                    if i == len(candidates) - 1:
                        raise
                    nxt = candidates[i + 1]
                    logger.info("discovery %s: %s; trying %s:%d", self._where, exc, *nxt)
                    continue
                group.answered(server)
                return reply
            raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(self, data: _Payload, verb: Verb, timeout: float) -> Reply:
        """One request to the current server (retried once on a fresh connection)."""
        deadline = time.monotonic() + timeout  # one deadline for the whole call
        for attempt in (1, 2):
            reused = self._sock is not None
            sock = self._connect(deadline)
            payload = data.secure if self.secure else data.plain
            try:
                reply = self._exchange(sock, payload, verb, deadline)
            except _Closed:
                self._drop()
                if reused and attempt == 1:
                    logger.debug("%s closed our idle connection: reconnecting", self._where)
                    continue
                raise ServerUnreachable(
                    f"{self._where} closed the connection without replying"
                ) from None
            except BaseException:
                self._drop()
                raise
            break
        if isinstance(reply, Nok):
            raise _NOK_ERRORS[reply.code](f"{self._where}: NOK {reply.code}")
        return reply

    def _connect(self, deadline: float) -> socket.socket:
        if self._sock is not None:
            return self._sock
        if self.pins is None:
            self._sock = self._open(self.port, deadline)
            self.secure, self.server_fingerprint = False, None
            return self._sock
        return self._connect_secure(self.pins, deadline)

    def _connect_secure(self, pins: PinStore, deadline: float) -> socket.socket:
        """The TLS connection (tls.py's rules), or the plain one to an unpinned classic
        server. Raises ServerIdentityChanged, ServerUnreachable, DiscoveryTimeout."""
        try:
            pin = pins.get(self.host, self.port)
        except PinStoreError as exc:
            raise ServerIdentityChanged(str(exc)) from None
        if pin is not None and pin.tls_port:  # 0: pinned before any contact, port not known
            try:
                return self._open_tls(pins, pin, pin.tls_port, deadline)
            except ServerUnreachable:
                logger.info(
                    "%s: pinned TLS port %d closed; asking again", self._where, pin.tls_port
                )
        plain = self._open(self.port, deadline)
        try:
            offered = self._ask_tls_port(plain, deadline)
        except BaseException:
            plain.close()
            raise
        if offered is None:
            if pin is not None:
                plain.close()
                raise ServerIdentityChanged(
                    f"{self._where} no longer offers TLS, but its key was pinned as "
                    f"{pin.fingerprint}: refusing to fall back to the plain port"
                )
            logger.info("%s offers no TLS (a classic server): talking in clear", self._where)
            self._sock, self.secure, self.server_fingerprint = plain, False, None
            return plain
        plain.close()
        return self._open_tls(pins, pin, offered, deadline)

    def _ask_tls_port(self, sock: socket.socket, deadline: float) -> int | None:
        try:
            reply = self._exchange(sock, format_request(TlsPortQuery()), Verb.VCALL_TLS, deadline)
        except _Closed:
            raise ServerUnreachable(f"{self._where} closed the connection") from None
        if isinstance(reply, TlsPort):
            return reply.port
        if isinstance(reply, Nok) and reply.code in (NokCode.UNKNOWN_COMMAND, NokCode.SYNTAX_ERROR):
            return None  # a classic server (or a vcall server without TLS)
        raise ProtocolError(f"{self._where}: unexpected reply to VCALL_TLS: {reply!r}")

    def _open_tls(
        self, pins: PinStore, pin: Pin | None, tls_port: int, deadline: float
    ) -> socket.socket:
        raw = self._open(tls_port, deadline)
        where = f"{self.host}:{tls_port}"
        try:
            raw.settimeout(max(0.001, deadline - time.monotonic()))
            sock = client_context().wrap_socket(raw, do_handshake_on_connect=True)
        except TimeoutError:
            raw.close()
            raise DiscoveryTimeout(f"TLS handshake with {where} timed out") from None
        except (ssl.SSLError, OSError) as exc:
            raw.close()
            raise ServerUnreachable(f"TLS handshake with {where} failed: {exc}") from None
        der = sock.getpeercert(binary_form=True)
        offered = fingerprint_of_cert(der) if der else "none"
        if pin is not None and offered != pin.fingerprint:
            sock.close()
            raise ServerIdentityChanged(
                f"{self._where} (TLS port {tls_port}) presented key {offered}, but "
                f"{pin.fingerprint} is pinned for it: refusing to talk to it (if the server "
                f"really got a new key, remove its entry from {pins.path})"
            )
        if pin is None or pin.tls_port != tls_port:
            try:
                pins.pin(self.host, self.port, Pin(offered, tls_port))
            except (PinStoreError, ValueError) as exc:
                sock.close()
                raise ServerIdentityChanged(str(exc)) from None
            if pin is None:
                logger.warning("%s: pinned its TLS key %s (first use)", self._where, offered)
        self._sock, self.secure, self.server_fingerprint = sock, True, offered
        return sock

    def _open(self, port: int, deadline: float) -> socket.socket:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DiscoveryTimeout(f"{self._where} did not answer in {self.timeout} s")
        where = f"{self.host}:{port}"
        try:
            sock = socket.create_connection((self.host, port), timeout=remaining)
        except TimeoutError:
            raise DiscoveryTimeout(f"connecting to {where} timed out") from None
        except OSError as exc:
            raise ServerUnreachable(f"cannot connect to {where}: {exc}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _drop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _exchange(self, sock: socket.socket, data: bytes, verb: Verb, deadline: float) -> Reply:
        try:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            sock.sendall(data)
        except TimeoutError:
            raise DiscoveryTimeout(f"sending to {self._where} timed out") from None
        except OSError:
            raise _Closed from None
        buf = b""
        while True:
            final = False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DiscoveryTimeout(f"{self._where} did not answer in {self.timeout} s")
            try:
                sock.settimeout(remaining)
                chunk = sock.recv(65536)
            except TimeoutError:
                raise DiscoveryTimeout(
                    f"{self._where} did not answer in {self.timeout} s"
                ) from None
            except OSError as exc:
                if not buf:
                    raise _Closed from None
                raise ServerUnreachable(f"{self._where}: {exc}") from None
            if not chunk:
                if not buf:
                    raise _Closed
                final = True  # EOF ends the reply
            buf += chunk
            if len(buf) > MAX_REPLY:
                raise ProtocolError(f"{self._where}: reply over {MAX_REPLY} bytes")
            reply = self._parse(buf, verb, final)
            if not isinstance(reply, Marker):
                return reply
            # Only a USERS_LIST that ends on an entry but counts fewer entries than announced
            # may be complete (a lax server's miscount): accept it after a short quiet. Any
            # other unfinished reply waits for more bytes until the deadline.
            plausible_end = verb == Verb.LIST_USERS and buf.rstrip(b" \r\n").endswith(b"#")
            wait = min(REPLY_GAP, max(0.0, deadline - time.monotonic()))
            if plausible_end and self._quiet(sock, wait):
                reply = self._parse(buf, verb, True)
                if not isinstance(reply, Marker):
                    return reply
                raise ProtocolError(f"{self._where}: incomplete reply")  # pragma: no cover

    def _parse(self, buf: bytes, verb: Verb, final: bool) -> Reply | Marker:
        try:
            return parse_reply(buf, verb, final=final)
        except RemoteProtocolError as exc:
            raise ProtocolError(f"{self._where}: {exc}") from None

    @staticmethod
    def _quiet(sock: socket.socket, wait: float) -> bool:
        """True if nothing more arrives within ``wait`` seconds (peeking, not consuming)."""
        if isinstance(sock, ssl.SSLSocket):  # no MSG_PEEK through TLS: buffered, or readable?
            if sock.pending():
                return False
            try:
                readable, _, _ = select.select([sock], [], [], wait)
            except (OSError, ValueError):
                return True
            return not readable
        try:
            sock.settimeout(wait)
            more = sock.recv(1, socket.MSG_PEEK)
        except OSError:  # timeout, or an error the next recv will report
            return True
        return not more  # EOF: what we have is all there will be


_VERB: Final[dict[type, Verb]] = {
    Register: Verb.REGISTER,
    Query: Verb.QUERY,
    ListUsers: Verb.LIST_USERS,
    Quit: Verb.QUIT,
    TlsPortQuery: Verb.VCALL_TLS,
    PresenceQuery: Verb.VCALL_PRESENCE,
    Offline: Verb.VCALL_OFFLINE,
    SessionOpen: Verb.VCALL_SESSION,
    Here: Verb.VCALL_HERE,
}


@dataclasses.dataclass(frozen=True, slots=True)
class _Payload:
    """A request's bytes for a plain connection and for a TLS one (only REGISTER differs:
    the key token goes only to a TLS port)."""

    plain: bytes
    secure: bytes


_NOK_ERRORS: Final[dict[NokCode, type[DiscoveryError]]] = {
    NokCode.WRONG_PASS: WrongPassword,
    NokCode.USER_UNKNOWN: UserUnknown,
    NokCode.SYNTAX_ERROR: RequestRejected,
    NokCode.UNKNOWN_COMMAND: RequestRejected,
    NokCode.SERVICE_UNAVAILABLE: ServiceUnavailable,
}
