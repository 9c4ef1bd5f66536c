"""Discovery protocol codec: bytes <-> typed messages, with no I/O.

The classic "Redes II práctica 3" discovery grammar has no line terminator: one message is one
``send()``. This module is the only place that knows the grammar; the server, the client and
the tests share it.

Guarantees:

* ``format_request`` / ``format_reply`` produce the classic bytes exactly: single spaces, no
  terminator, no trailing space. They raise :class:`LocalProtocolError` (a ``ValueError``) when
  asked to send something the grammar cannot carry.
* ``parse_request`` never raises: any bytes give a request, a rejection with its precise reply
  code, :data:`INCOMPLETE` (more bytes may still complete it) or :data:`EMPTY` (only
  whitespace). It is strict: nicks ``[A-Za-z0-9_.-]{1,32}``, an IP address, a port 1-65535,
  protocols ``V<digits>`` joined by ``#``.
* ``parse_reply`` is lax (it must survive records from servers that validated nothing: nicks
  containing ``#``, ports such as ``8000.0``) and raises only :class:`RemoteProtocolError` on
  garbage, or returns :data:`INCOMPLETE`.
"""

from __future__ import annotations

import enum
import ipaddress
import math
import re
from dataclasses import dataclass
from typing import Final

from pipeline.errors import LocalProtocolError, RemoteProtocolError
from vcall.discovery.session import token_prefix, valid_token

MAX_NICK_LEN: Final = 32
MAX_PASSWORD_LEN: Final = 128
MAX_PROTOCOLS: Final = 32

_NICK_RE: Final = re.compile(r"[A-Za-z0-9_.-]{1,32}", re.ASCII)
_PROTOCOL_RE: Final = re.compile(r"V[0-9]{1,9}", re.ASCII)
_PROTOCOLS_RE: Final = re.compile(r"V[0-9]{1,9}(?:#V[0-9]{1,9}){0,31}", re.ASCII)
# A protocols field that more bytes could still turn into a valid one ("V0#", "V0#V").
_PROTOCOLS_PREFIX_RE: Final = re.compile(r"(?:V[0-9]{1,9}#){1,31}V?|V", re.ASCII)
_PORT_RE: Final = re.compile(r"[0-9]{1,5}", re.ASCII)
# vcall extension (docs/protocol.md section 1): the installation's key fingerprint travels as
# the last token of <protocols>, "sha256:" + 64 lowercase hex digits (vcall/identity.py).
FINGERPRINT_TAG: Final = "sha256:"
_FINGERPRINT_RE: Final = re.compile(r"sha256:[0-9a-f]{64}", re.ASCII)
# A token that more bytes could still turn into a fingerprint ("s", "sha2", "sha256:0a").
_FINGERPRINT_PREFIX_RE: Final = re.compile(
    r"s(?:h(?:a(?:2(?:5(?:6(?::[0-9a-f]{0,63})?)?)?)?)?)?", re.ASCII
)
# str.isdigit() accepts "²" and "٣", which int() then refuses: match ASCII digits instead.
_COUNT_RE: Final = re.compile(r"[0-9]{1,9}", re.ASCII)
_TRAILER: Final = b" \r\n"
_ASCII_LOWER: Final = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class GrammarError(LocalProtocolError):
    """We were asked to send something the grammar cannot carry (our own misuse)."""


class ReplyError(RemoteProtocolError):
    """The server sent bytes that are not a valid reply (its fault, not ours)."""


class Verb(enum.StrEnum):
    REGISTER = "REGISTER"
    QUERY = "QUERY"
    LIST_USERS = "LIST_USERS"
    QUIT = "QUIT"
    # vcall's own (docs/protocol.md section 1): "which port speaks TLS?" -> OK VCALL_TLS <port>.
    # A classic server answers NOK UNKNOWN_COMMAND, which the client reads as "no TLS".
    VCALL_TLS = "VCALL_TLS"
    # vcall's own presence (issue 15, docs/protocol.md section 1): who is online, and "I am
    # leaving". Only vcall clients send them; a classic server answers NOK UNKNOWN_COMMAND.
    VCALL_PRESENCE = "VCALL_PRESENCE"
    VCALL_OFFLINE = "VCALL_OFFLINE"
    # vcall's cheap keep-alive (docs/protocol.md section 1.2): one scrypt check buys a token,
    # and each keep-alive then carries the token instead of the password.
    VCALL_SESSION = "VCALL_SESSION"
    VCALL_HERE = "VCALL_HERE"


# Number of space-separated fields of each request, verb included.
_FIELD_COUNT: Final[dict[str, int]] = {
    Verb.REGISTER: 6,
    Verb.QUERY: 2,
    Verb.LIST_USERS: 1,
    Verb.QUIT: 1,
    Verb.VCALL_TLS: 1,
    Verb.VCALL_PRESENCE: 1,
    Verb.VCALL_OFFLINE: 3,
    Verb.VCALL_SESSION: 3,
    Verb.VCALL_HERE: 3,
}


class NokCode(enum.StrEnum):
    WRONG_PASS = "WRONG_PASS"
    USER_UNKNOWN = "USER_UNKNOWN"
    SYNTAX_ERROR = "SYNTAX_ERROR"
    UNKNOWN_COMMAND = "UNKNOWN_COMMAND"
    # vcall's own: the shared store behind this server is unreachable, so it cannot accept a
    # registration now (queries are still answered). Not in the classic grammar; classic
    # clients read it as a failed REGISTER, which it is.
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"


# --- requests -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Register:
    """``REGISTER``; ``fingerprint`` is vcall's key token (None from classic clients)."""

    nick: str
    ip: str
    port: int
    password: str
    protocols: tuple[str, ...]
    fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class Query:
    nick: str


@dataclass(frozen=True, slots=True)
class ListUsers:
    pass


@dataclass(frozen=True, slots=True)
class Quit:
    pass


@dataclass(frozen=True, slots=True)
class TlsPortQuery:
    """vcall's ``VCALL_TLS``: asks the plain port which port speaks TLS."""


@dataclass(frozen=True, slots=True)
class PresenceQuery:
    """vcall's ``VCALL_PRESENCE``: every user with the server's view of their presence."""


@dataclass(frozen=True, slots=True)
class Offline:
    """vcall's ``VCALL_OFFLINE <nick> <password>``: the user logs out (or quits). The
    password field may hold the user's session token instead (session.py)."""

    nick: str
    password: str


@dataclass(frozen=True, slots=True)
class SessionOpen:
    """vcall's ``VCALL_SESSION <nick> <password>``: prove the password once, get a token."""

    nick: str
    password: str


@dataclass(frozen=True, slots=True)
class Here:
    """vcall's ``VCALL_HERE <nick> <token>``: the keep-alive; ``token``: 32 lowercase hex."""

    nick: str
    token: str


Request = (
    Register | Query | ListUsers | Quit | TlsPortQuery | PresenceQuery | Offline | SessionOpen
    | Here
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Rejected:
    """A request that must be answered with ``NOK <code>``."""

    code: NokCode
    reason: str


class Marker(enum.Enum):
    INCOMPLETE = "incomplete"
    EMPTY = "empty"


INCOMPLETE: Final = Marker.INCOMPLETE
EMPTY: Final = Marker.EMPTY

# --- replies --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserRecord:
    """``OK USER_FOUND``: where a user accepts calls and what it speaks.

    ``fingerprint`` (vcall extension, only on the TLS port) is the user's registered key
    fingerprint, ``"sha256:<64 hex>"``; None for classic accounts and on the plain port.
    """

    nick: str
    ip: str
    port: int
    protocols: tuple[str, ...]
    fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class UserEntry:
    """One entry of ``OK USERS_LIST`` (the registration time, not the protocols)."""

    nick: str
    ip: str
    port: int
    ts: float


@dataclass(frozen=True, slots=True)
class Welcome:
    nick: str
    ts: float


@dataclass(frozen=True, slots=True)
class UsersList:
    entries: tuple[UserEntry, ...]


@dataclass(frozen=True, slots=True)
class Bye:
    pass


@dataclass(frozen=True, slots=True)
class Nok:
    code: NokCode


@dataclass(frozen=True, slots=True)
class TlsPort:
    """``OK VCALL_TLS <port>``: the server's TLS port (vcall extension)."""

    port: int


class Presence(enum.StrEnum):
    """What the server knows of a user's presence (a ``VCALL_PRESENCE`` entry's last field)."""

    ONLINE = "online"  # a vcall client that registered or refreshed within the window
    OFFLINE = "offline"  # a vcall client that logged out, or was not heard from for longer
    UNKNOWN = "unknown"  # a classic client: it never refreshes nor says goodbye


@dataclass(frozen=True, slots=True)
class PresenceEntry:
    """One entry of ``OK VCALL_PRESENCE``: a ``USERS_LIST`` entry plus ``age`` (whole
    seconds since the server last heard from the user, by the server's clock, so that the
    clients' clocks do not matter) and ``presence``."""

    nick: str
    ip: str
    port: int
    ts: float
    age: int
    presence: Presence


@dataclass(frozen=True, slots=True)
class PresenceList:
    entries: tuple[PresenceEntry, ...]


@dataclass(frozen=True, slots=True)
class OfflineAck:
    """``OK VCALL_OFFLINE <nick>``: marked offline until its next REGISTER."""

    nick: str


@dataclass(frozen=True, slots=True)
class SessionGranted:
    """``OK VCALL_SESSION <token> <ttl>``: the token and its lifetime in whole seconds."""

    token: str
    ttl: int


@dataclass(frozen=True, slots=True)
class HereAck:
    """``OK VCALL_HERE``: the user's last-seen time is now."""


Reply = (
    Welcome | UserRecord | UsersList | Bye | Nok | TlsPort | PresenceList | OfflineAck
    | SessionGranted | HereAck
)  # fmt: skip

# --- validation -----------------------------------------------------------------------------


def valid_nick(nick: str) -> bool:
    return _NICK_RE.fullmatch(nick) is not None


def fold_nick(nick: str) -> str:
    """The key under which nicks are unique: ``nick`` in ASCII lower case.

    vcall's rule (docs/protocol.md section 1, not the classic server's, which compared bytes):
    "Alice" and "alice" are one account, shown with the spelling of its first registration.
    Valid nicks are ASCII, so ASCII folding is Unicode case folding for them; other
    characters are left as they are."""
    return nick.translate(_ASCII_LOWER)


def valid_ip(ip: str) -> bool:
    if not ip.isascii() or "%" in ip:
        return False
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        return False
    return True


def valid_port(port: int) -> bool:
    return 1 <= port <= 65535


def valid_password(password: str) -> bool:
    # One token of printable characters: any whitespace would split the field.
    return (
        0 < len(password) <= MAX_PASSWORD_LEN
        and password.isprintable()
        and not any(c.isspace() for c in password)
    )


def valid_protocols(protocols: tuple[str, ...] | list[str]) -> bool:
    return 0 < len(protocols) <= MAX_PROTOCOLS and all(
        _PROTOCOL_RE.fullmatch(p) is not None for p in protocols
    )


def valid_fingerprint(text: str) -> bool:
    """``sha256:`` + 64 lowercase hex digits (vcall/identity.py's fingerprint form)."""
    return _FINGERPRINT_RE.fullmatch(text) is not None


def _protocols_text(protocols: tuple[str, ...], fingerprint: str | None) -> str:
    tokens = (*protocols, fingerprint) if fingerprint is not None else protocols
    return "#".join(tokens)


def format_ts(ts: float) -> str:
    """Registration times go out as integer Unix seconds: both int() and float() parse that."""
    return str(int(ts))


# --- formatting -----------------------------------------------------------------------------


def format_request(request: Request) -> bytes:
    """The classic bytes of a request (no terminator). Raises LocalProtocolError."""
    match request:
        case Register(nick, ip, port, password, protocols, fingerprint):
            _check(valid_nick(nick), f"invalid nick {nick!r}")
            _check(valid_ip(ip), f"invalid ip {ip!r}")
            _check(valid_port(port), f"invalid port {port!r}")
            _check(valid_password(password), "invalid password (1-128 printable, no spaces)")
            _check(valid_protocols(protocols), f"invalid protocols {protocols!r}")
            _check(
                fingerprint is None or valid_fingerprint(fingerprint),
                f"invalid fingerprint {fingerprint!r}",
            )
            text = (
                f"REGISTER {nick} {ip} {port} {password} {_protocols_text(protocols, fingerprint)}"
            )
        case Query(nick):
            _check(valid_nick(nick), f"invalid nick {nick!r}")
            text = f"QUERY {nick}"
        case ListUsers():
            text = "LIST_USERS"
        case Quit():
            text = "QUIT"
        case TlsPortQuery():
            text = Verb.VCALL_TLS
        case PresenceQuery():
            text = Verb.VCALL_PRESENCE
        case Offline(nick, password):
            _check(valid_nick(nick), f"invalid nick {nick!r}")
            _check(valid_password(password), "invalid password (1-128 printable, no spaces)")
            text = f"{Verb.VCALL_OFFLINE} {nick} {password}"
        case SessionOpen(nick, password):
            _check(valid_nick(nick), f"invalid nick {nick!r}")
            _check(valid_password(password), "invalid password (1-128 printable, no spaces)")
            text = f"{Verb.VCALL_SESSION} {nick} {password}"
        case Here(nick, token):
            _check(valid_nick(nick), f"invalid nick {nick!r}")
            _check(valid_token(token), "invalid session token (32 lowercase hex digits)")
            text = f"{Verb.VCALL_HERE} {nick} {token}"
    return text.encode()


def format_reply(reply: Reply) -> bytes:
    """The classic bytes of a reply (no terminator; USERS_LIST entries each end with '#')."""
    match reply:
        case Welcome(nick, ts):
            text = f"OK WELCOME {nick} {format_ts(ts)}"
        case UserRecord(nick, ip, port, protocols, fingerprint):
            text = f"OK USER_FOUND {nick} {ip} {port} {_protocols_text(protocols, fingerprint)}"
        case UsersList(entries):
            text = format_users_list(entries)
        case Bye():
            text = "BYE"
        case Nok(code):
            text = f"NOK {code}"
        case TlsPort(port):
            text = f"OK {Verb.VCALL_TLS} {port}"
        case PresenceList(entries):
            text = format_presence_list(entries)
        case OfflineAck(nick):
            text = f"OK {Verb.VCALL_OFFLINE} {nick}"
        case SessionGranted(token, ttl):
            text = f"OK {Verb.VCALL_SESSION} {token} {ttl}"
        case HereAck():
            text = f"OK {Verb.VCALL_HERE}"
    return text.encode()


def format_users_list(entries: tuple[UserEntry, ...] | list[UserEntry]) -> str:
    body = "".join(f"{e.nick} {e.ip} {e.port} {format_ts(e.ts)}#" for e in entries)
    if not body:
        return "OK USERS_LIST 0"
    return f"OK USERS_LIST {len(entries)} {body}"


def format_presence_list(entries: tuple[PresenceEntry, ...] | list[PresenceEntry]) -> str:
    """``OK VCALL_PRESENCE <n> <nick> <ip> <port> <ts> <age> <presence>#...`` (every entry
    ends with ``#``, as in ``USERS_LIST``)."""
    body = "".join(
        f"{e.nick} {e.ip} {e.port} {format_ts(e.ts)} {e.age} {e.presence}#" for e in entries
    )
    if not body:
        return f"OK {Verb.VCALL_PRESENCE} 0"
    return f"OK {Verb.VCALL_PRESENCE} {len(entries)} {body}"


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise GrammarError(message)


# --- parsing requests (server side, strict) -------------------------------------------------


def parse_request(raw: bytes, *, final: bool) -> Request | Rejected | Marker:
    """Classify one candidate message.

    ``final`` says that no more bytes belong to this message (a newline ended it, the sender
    went quiet, or the connection closed). When it is false, a message that more bytes could
    still complete gives :data:`INCOMPLETE` instead of a rejection.
    """
    stripped = raw.rstrip(_TRAILER)
    if not stripped:
        return EMPTY
    try:
        text = stripped.decode("utf-8")
    except UnicodeDecodeError as exc:
        if not final and exc.end == len(stripped) and exc.reason == "unexpected end of data":
            return INCOMPLETE  # a multi-byte character split across reads
        return Rejected(NokCode.SYNTAX_ERROR, "not UTF-8")
    fields = text.split(" ")
    verb = fields[0]
    expected = _FIELD_COUNT.get(verb)
    if expected is None:
        if not final and len(fields) == 1 and any(v.startswith(verb) for v in _FIELD_COUNT):
            return INCOMPLETE
        if not verb:
            return Rejected(NokCode.SYNTAX_ERROR, "leading space")
        return Rejected(NokCode.UNKNOWN_COMMAND, "unknown verb")
    count = len(fields)
    if count < expected:
        if not final:
            return INCOMPLETE
        return Rejected(NokCode.SYNTAX_ERROR, f"{verb} takes {expected - 1} arguments")
    if count > expected:
        return Rejected(NokCode.SYNTAX_ERROR, f"{verb} takes {expected - 1} arguments")
    if verb == Verb.QUERY:
        if not valid_nick(fields[1]):
            return Rejected(NokCode.SYNTAX_ERROR, "invalid nick")
        return Query(fields[1])
    if verb == Verb.LIST_USERS:
        return ListUsers()
    if verb == Verb.QUIT:
        return Quit()
    if verb == Verb.VCALL_TLS:
        return TlsPortQuery()
    if verb == Verb.VCALL_PRESENCE:
        return PresenceQuery()
    if verb in (Verb.VCALL_OFFLINE, Verb.VCALL_SESSION):
        if not valid_nick(fields[1]):
            return Rejected(NokCode.SYNTAX_ERROR, "invalid nick")
        if not final:
            # The password is the last field and any prefix of it is a valid password: judge
            # it only once the message ended (vcall's client ends these requests with LF), never
            # a fragment of a split read (a wrong-password strike for the user's own request).
            return INCOMPLETE
        if not valid_password(fields[2]):
            return Rejected(NokCode.SYNTAX_ERROR, "invalid password")
        if verb == Verb.VCALL_OFFLINE:
            return Offline(fields[1], fields[2])
        return SessionOpen(fields[1], fields[2])
    if verb == Verb.VCALL_HERE:
        if not valid_nick(fields[1]):
            return Rejected(NokCode.SYNTAX_ERROR, "invalid nick")
        if not valid_token(fields[2]):
            if not final and token_prefix(fields[2]):
                return INCOMPLETE  # "VCALL_HERE alice 0a1b" + the rest of the token
            return Rejected(NokCode.SYNTAX_ERROR, "invalid session token")
        return Here(fields[1], fields[2])
    return _parse_register(fields, final)


def _parse_register(fields: list[str], final: bool) -> Register | Rejected | Marker:
    _, nick, ip, port_text, password, protocols_text = fields
    if not valid_nick(nick):
        return Rejected(NokCode.SYNTAX_ERROR, "invalid nick")
    if not valid_ip(ip):
        return Rejected(NokCode.SYNTAX_ERROR, "invalid ip")
    if _PORT_RE.fullmatch(port_text) is None or not valid_port(int(port_text)):
        return Rejected(NokCode.SYNTAX_ERROR, "invalid port")
    if not valid_password(password):
        return Rejected(NokCode.SYNTAX_ERROR, "invalid password")
    protocols_text, fingerprint = _split_fingerprint(protocols_text)
    if fingerprint is not None and not valid_fingerprint(fingerprint):
        if not final and _FINGERPRINT_PREFIX_RE.fullmatch(fingerprint) is not None:
            return INCOMPLETE
        return Rejected(NokCode.SYNTAX_ERROR, "invalid fingerprint")
    if _PROTOCOLS_RE.fullmatch(protocols_text) is None:
        if (
            not final
            and fingerprint is None
            and _PROTOCOLS_PREFIX_RE.fullmatch(protocols_text) is not None
        ):
            return INCOMPLETE
        return Rejected(NokCode.SYNTAX_ERROR, "invalid protocols")
    protocols = tuple(protocols_text.split("#"))
    return Register(nick, ip, int(port_text), password, protocols, fingerprint)


def _split_fingerprint(protocols_text: str) -> tuple[str, str | None]:
    """``V0#V2435#sha256:..`` -> (``V0#V2435``, ``sha256:..``); the key token is the last one
    and the only one not starting with ``V`` (a partial one is returned as it is)."""
    head, sep, last = protocols_text.rpartition("#")
    if sep and last[:1] == "s":
        return head, last
    return protocols_text, None


# --- parsing replies (client side, lax) -----------------------------------------------------

_NUMBER_HASH_RE: Final = re.compile(r"([0-9][0-9.eE+-]*)#(.*)", re.ASCII | re.DOTALL)


def parse_reply(raw: bytes, expect: Verb, *, final: bool) -> Reply | Marker:
    """Parse the reply to a request of verb ``expect``.

    Returns INCOMPLETE while the bytes may be the start of a longer reply (only meaningful when
    ``final`` is false). Raises RemoteProtocolError on garbage.
    """
    text = _decode_reply(raw)
    if not text:
        if final:
            raise ReplyError("empty reply")
        return INCOMPLETE
    fields = text.split(" ")
    if fields[0] == "NOK":
        if len(fields) < 2:
            return _incomplete_or_raise(final, text)
        try:
            return Nok(NokCode(fields[1]))
        except ValueError:
            if not final and any(c.startswith(fields[1]) for c in NokCode):
                return INCOMPLETE
            raise ReplyError(f"unknown NOK code: {text[:80]!r}") from None
    if expect == Verb.QUIT:
        if text == "BYE":
            return Bye()
        if not final and "BYE".startswith(text):
            return INCOMPLETE
        raise ReplyError(f"expected BYE: {text[:80]!r}")
    if fields[0] != "OK" or len(fields) < 2:
        if not final and "OK".startswith(fields[0]) and len(fields) == 1:
            return INCOMPLETE
        raise ReplyError(f"not a reply: {text[:80]!r}")
    kind = fields[1]
    if expect == Verb.REGISTER and kind == "WELCOME":
        if len(fields) < 4:
            return _incomplete_or_raise(final, text)
        return Welcome(" ".join(fields[2:-1]), _lax_float(fields[-1]))
    if expect == Verb.QUERY and kind == "USER_FOUND":
        if len(fields) < 6:
            return _incomplete_or_raise(final, text)
        # Lax servers let nicks contain anything but a space; the last three fields are fixed.
        nick = " ".join(fields[2:-3])
        tokens = [p for p in fields[-1].split("#") if p]
        keys = [t for t in tokens if valid_fingerprint(t)]
        protocols = tuple(t for t in tokens if not valid_fingerprint(t))
        fingerprint = keys[-1] if keys else None
        return UserRecord(nick, fields[-3], _lax_port(fields[-2]), protocols, fingerprint)
    if expect == Verb.LIST_USERS and kind == "USERS_LIST":
        return _parse_users_list(text, final)
    if expect == Verb.VCALL_TLS and kind == Verb.VCALL_TLS:
        if len(fields) < 3:
            return _incomplete_or_raise(final, text)
        if len(fields) != 3 or _PORT_RE.fullmatch(fields[2]) is None:
            raise ReplyError(f"bad VCALL_TLS reply: {text[:80]!r}")
        port = int(fields[2])
        if not valid_port(port):
            raise ReplyError(f"bad VCALL_TLS port: {text[:80]!r}")
        return TlsPort(port)  # one short write: complete as soon as it parses
    if expect == Verb.VCALL_OFFLINE and kind == Verb.VCALL_OFFLINE:
        if len(fields) < 3:
            return _incomplete_or_raise(final, text)
        if len(fields) != 3:
            raise ReplyError(f"bad VCALL_OFFLINE reply: {text[:80]!r}")
        return OfflineAck(fields[2])
    if expect == Verb.VCALL_PRESENCE and kind == Verb.VCALL_PRESENCE:
        return _parse_presence_list(text, final)
    if expect == Verb.VCALL_HERE and kind == Verb.VCALL_HERE:
        if len(fields) != 2:
            raise ReplyError(f"bad VCALL_HERE reply: {text[:80]!r}")
        return HereAck()
    if expect == Verb.VCALL_SESSION and kind == Verb.VCALL_SESSION:
        return _parse_session(fields, text, final)
    if not final and len(fields) == 2 and _expected_kind(expect).startswith(kind):
        return INCOMPLETE
    raise ReplyError(f"unexpected reply to {expect}: {text[:80]!r}")


def _expected_kind(expect: Verb) -> str:
    kinds = {
        Verb.REGISTER: "WELCOME",
        Verb.QUERY: "USER_FOUND",
        Verb.VCALL_TLS: Verb.VCALL_TLS,
        Verb.VCALL_PRESENCE: Verb.VCALL_PRESENCE,
        Verb.VCALL_OFFLINE: Verb.VCALL_OFFLINE,
        Verb.VCALL_SESSION: Verb.VCALL_SESSION,
        Verb.VCALL_HERE: Verb.VCALL_HERE,
    }
    return kinds.get(expect, "USERS_LIST")


def _decode_reply(raw: bytes) -> str:
    try:
        return raw.strip(_TRAILER).decode("utf-8")
    except UnicodeDecodeError:
        # A lax server may store anything; keep going rather than fail the whole list.
        return raw.strip(_TRAILER).decode("utf-8", errors="replace")


def _incomplete_or_raise(final: bool, text: str) -> Marker:
    if final:
        raise ReplyError(f"truncated reply: {text[:80]!r}")
    return INCOMPLETE


def _parse_session(fields: list[str], text: str, final: bool) -> SessionGranted | Marker:
    """``OK VCALL_SESSION <token> <ttl>``: a 32-hex token and 1-9 digits of seconds."""
    if len(fields) < 4:
        if not final and (len(fields) < 3 or token_prefix(fields[2])):
            return INCOMPLETE
        raise ReplyError(f"truncated VCALL_SESSION reply: {text[:80]!r}")
    if len(fields) != 4 or not valid_token(fields[2]) or _COUNT_RE.fullmatch(fields[3]) is None:
        raise ReplyError(f"bad VCALL_SESSION reply: {text[:80]!r}")
    return SessionGranted(fields[2], int(fields[3]))


def _lax_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ReplyError(f"bad number {text[:40]!r}") from None
    if not math.isfinite(value):
        raise ReplyError(f"bad number {text[:40]!r}")
    return value


def _lax_port(text: str) -> int:
    value = _lax_float(text)  # "8000.0" exists out there
    if value != int(value) or not valid_port(int(value)):
        raise ReplyError(f"bad port {text[:40]!r}")
    return int(value)


def _parse_users_list(text: str, final: bool) -> UsersList | Marker:
    """``OK USERS_LIST <n> <nick> <ip> <port> <ts>#...``; entries may span several reads.

    The reply is complete once ``n`` entries are counted. With fewer (a lax server that
    miscounts, or a list cut at an entry boundary), the caller decides with ``final``.
    """
    fields = text.split(" ", 3)  # OK USERS_LIST <n> <body>
    if len(fields) < 3:
        return _incomplete_or_raise(final, text)
    count_text = fields[2]
    body = fields[3] if len(fields) > 3 else ""
    if _COUNT_RE.fullmatch(count_text) is None:
        raise ReplyError(f"bad USERS_LIST count: {count_text[:20]!r}")
    count = int(count_text)
    entries: list[UserEntry] = []
    tokens = body.split(" ") if body else []
    pos = 0
    nick_carry = ""
    while pos < len(tokens):
        # Tokens: nick ip port "ts#nextnick" ...; a nick may contain '#' (lax servers) but the
        # ts is a number directly followed by '#'.
        nick = nick_carry if nick_carry else tokens[pos]
        if not nick_carry:
            pos += 1
        if pos + 3 > len(tokens):
            break
        ip, port_text, tail = tokens[pos], tokens[pos + 1], tokens[pos + 2]
        match = _NUMBER_HASH_RE.fullmatch(tail)
        if match is None:
            break  # truncated (or garbage: decided below)
        entries.append(UserEntry(nick, ip, _lax_port(port_text), _lax_float(match.group(1))))
        nick_carry = match.group(2)
        pos += 3
        if not nick_carry and pos >= len(tokens):
            break
    complete_tail = text.endswith("#") or count == 0
    if len(entries) >= count and complete_tail:
        return UsersList(tuple(entries))
    if not final:
        return INCOMPLETE
    if complete_tail:
        return UsersList(tuple(entries))  # a lax server's miscount: keep what is there
    raise ReplyError(f"truncated USERS_LIST ({len(entries)}/{count} entries)")


_PRESENCE_ENTRY_RE: Final = re.compile(
    r"([^ #]{1,64}) ([0-9A-Fa-f.:]{1,45}) ([0-9]{1,5}) ([0-9]{1,12}) ([0-9]{1,12}) "
    r"(online|offline|unknown)",
    re.ASCII,
)


def _parse_presence_list(text: str, final: bool) -> PresenceList | Marker:
    """``OK VCALL_PRESENCE <n> <entry>#...``; entries may span several reads. Only vcall
    servers send it, and they validate nicks strictly, so each entry is matched whole: one
    that does not match is garbage (RemoteProtocolError), except a cut-off last one."""
    fields = text.split(" ", 3)  # OK VCALL_PRESENCE <n> <body>
    if len(fields) < 3:
        return _incomplete_or_raise(final, text)
    if _COUNT_RE.fullmatch(fields[2]) is None:
        raise ReplyError(f"bad VCALL_PRESENCE count: {fields[2][:20]!r}")
    count = int(fields[2])
    body = fields[3] if len(fields) > 3 else ""
    if not final and body.count("#") < count:
        return INCOMPLETE  # cheap while a long list arrives: entries are checked once, whole
    pieces = body.split("#")
    complete, tail = pieces[:-1], pieces[-1]  # tail: after the last '#' (empty when complete)
    entries: list[PresenceEntry] = []
    for piece in complete:
        match = _PRESENCE_ENTRY_RE.fullmatch(piece)
        if match is None:
            raise ReplyError(f"bad VCALL_PRESENCE entry: {piece[:80]!r}")
        nick, ip, port, ts, age, presence = match.groups()
        if not valid_port(int(port)):
            raise ReplyError(f"bad port in VCALL_PRESENCE entry: {piece[:80]!r}")
        entries.append(PresenceEntry(nick, ip, int(port), float(ts), int(age), Presence(presence)))
    if len(entries) > count:
        raise ReplyError(f"VCALL_PRESENCE: {len(entries)} entries, {count} announced")
    if len(entries) == count and not tail:
        return PresenceList(tuple(entries))
    if not final:
        return INCOMPLETE
    raise ReplyError(f"truncated VCALL_PRESENCE ({len(entries)}/{count} entries)")
