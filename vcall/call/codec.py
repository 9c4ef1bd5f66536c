"""Call-control codec: bytes <-> typed messages, with no I/O.

Classic call-control messages (``CALLING``, ``CALL_ACCEPTED``, ...) have **no terminator**: a
classic client writes one message per ``send()``. :class:`MessageReader` therefore finds message
boundaries in a byte stream by three rules, and guarantees that split, glued and CR/LF-ended input
all decode to the same messages:

1. a CR or LF ends a message (vcall terminates every extension-mode message with LF);
2. the start of another known verb ends the message before it (glued messages);
3. otherwise a message is complete once no byte has arrived for ``gap`` seconds, or at EOF.

The buffer is bounded (``max_size``); time is passed in. Garbage from a peer raises
:class:`PeerProtocolError` (the bad bytes are consumed, so the reader can go on); building a
message that vcall must not send raises :class:`LocalProtocolError`.

Some classic callees answer with a bare word (``DENY``, ``BUSY``, any case) instead of
``CALL_DENIED`` / ``CALL_BUSY``: decoded as those messages (:data:`_BARE_WORDS`).

The extension tokens (docs/protocol.md 4.1) are ``V2435 <ssrc>`` and, optionally, the video
codec token ``codecs=<NAME>[,<NAME>...]``: encoded strictly (:func:`validate_codecs`), parsed
liberally (a malformed codec token counts as absent, names are upper-cased, unknown tokens are
ignored). An absent token means ``("JPEG",)``, what every vcall peer supports.

On a TLS call-control connection (docs/protocol.md 4.1, issue 14) each side adds
``srtp=<key>``: its SRTP master key and salt for the media it sends (30 bytes, base64url without
padding: 40 characters; RFC 3711, AES_CM_128_HMAC_SHA1_80). Parsed liberally (a malformed token
counts as absent); :class:`~vcall.call.transport.ControlConnection` refuses to send it in clear.

Optional features of the extension (docs/protocol.md 4.1, "Peer media state") are announced in
``features=<name>[,<name>...]``: the caller's offer in CALLING, the callee's subset in
CALL_ACCEPTED (only when the CALLING had the token, so an older vcall caller gets exactly the
answer it knows). Parsed liberally as ``codecs=`` (a malformed token counts as absent). The one
feature today is :data:`FEATURE_MEDIA_STATE`: ``CALL_MEDIA <nick> audio=on|muted
video=on|paused``, a peer's word that it muted its microphone or paused its video
(:class:`MediaState`), sent only when both sides announced it. Its parser is liberal too:
unknown keys and values, repeated keys and tokens past :data:`MAX_STATE_TOKENS` are counted in
``MediaState.ignored`` and otherwise ignored.
"""

from __future__ import annotations

import base64
import binascii
import enum
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.errors import LocalProtocolError, RemoteProtocolError
from vcall import EXTENSION_VERSION

logger = logging.getLogger(__name__)

MAX_MESSAGE_SIZE = 1024
DEFAULT_GAP = 0.05  # s of silence after which an unterminated classic message is complete
MAX_NICK_LEN = 64
SSRC_RE = re.compile(r"^[0-9a-fA-F]{8}$")
# Video codec names in the extension's ``codecs=`` token: registry names, upper case on the wire.
CODECS_KEY = "codecs="
CODEC_NAME_RE = re.compile(r"[A-Z0-9]{1,16}", re.ASCII)
_CODEC_INPUT_RE = re.compile(r"[A-Za-z0-9]{1,16}", re.ASCII)  # before upper-casing (liberal)
MAX_CODECS = 8
# What every vcall peer supports, what an absent ``codecs=`` token means (vcall before codec
# negotiation sent JPEG only) and the codec of every classic (V0) call.
FALLBACK_CODEC = "JPEG"
SRTP_KEY = "srtp="
SRTP_KEY_LEN = 30  # bytes: AES-128 master key (16) + master salt (14), RFC 3711 8.2
_SRTP_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{40}", re.ASCII)
FEATURES_KEY = "features="
FEATURE_NAME_RE = re.compile(r"[a-z0-9-]{1,24}", re.ASCII)
MAX_FEATURES = 8
FEATURE_MEDIA_STATE = "media-state"  # CALL_MEDIA (docs/protocol.md 4.1, "Peer media state")
LOCAL_FEATURES: tuple[str, ...] = (FEATURE_MEDIA_STATE,)  # what this vcall offers
MAX_STATE_TOKENS = 8  # CALL_MEDIA fields read; more are counted in MediaState.ignored


class PeerProtocolError(RemoteProtocolError):
    """The peer sent bytes that are not a valid call-control message."""


class LocalMessageError(LocalProtocolError):
    """vcall itself tried to build a message it must not send (a bug or bad user input)."""


class Verb(enum.StrEnum):
    CALLING = "CALLING"
    CALL_ACCEPTED = "CALL_ACCEPTED"
    CALL_DENIED = "CALL_DENIED"
    CALL_BUSY = "CALL_BUSY"
    CALL_HOLD = "CALL_HOLD"
    CALL_RESUME = "CALL_RESUME"
    CALL_END = "CALL_END"
    CALL_ALIVE = "CALL_ALIVE"  # extension only (V2435): heartbeat
    CALL_MEDIA = "CALL_MEDIA"  # extension only, feature "media-state": peer mute / video pause


class AudioState(enum.StrEnum):
    """``audio=`` in CALL_MEDIA: the sender's microphone."""

    ON = "on"
    MUTED = "muted"


class VideoState(enum.StrEnum):
    """``video=`` in CALL_MEDIA: the sender's own video (a hold is CALL_HOLD, not this)."""

    ON = "on"
    PAUSED = "paused"


# Longest first, so that a verb that is a prefix of another never wins by accident.
_VERBS_BY_LEN = sorted((v.value.encode() for v in Verb), key=len, reverse=True)
_VERB_RE = re.compile(b"|".join(re.escape(v) for v in _VERBS_BY_LEN))
_WS = b" \t\r\n\x00"


@dataclass(frozen=True, slots=True)
class Extension:
    """vcall's extension tokens in CALLING / CALL_ACCEPTED.

    ``V2435 <ssrc as 8 hex digits> [codecs=<names>] [features=<names>] [srtp=<key>]``.
    ``codecs`` is the caller's offer in preference order (CALLING) or the callee's choice,
    exactly one name (CALL_ACCEPTED); None means the token is absent (an older vcall peer),
    which stands for ``(FALLBACK_CODEC,)``. ``features``: the optional features offered
    (CALLING) or agreed (CALL_ACCEPTED); None: the token is absent (none).
    """

    ssrc: int
    codecs: tuple[str, ...] | None = None
    srtp_key: bytes | None = None  # our SRTP master key + salt (TLS connections only)
    features: tuple[str, ...] | None = None

    def __repr__(self) -> str:  # never log the key
        key = "" if self.srtp_key is None else ", srtp_key=<secret>"
        features = "" if self.features is None else f", features={self.features!r}"
        return f"Extension(ssrc={self.ssrc:#010x}, codecs={self.codecs!r}{features}{key})"

    @property
    def offered(self) -> tuple[str, ...]:
        """The codecs the token names, or JPEG alone when it is absent."""
        return (FALLBACK_CODEC,) if self.codecs is None else self.codecs

    def tokens(self) -> list[str]:
        tokens = [EXTENSION_VERSION, f"{self.ssrc:08x}"]
        if self.codecs is not None:
            tokens.append(CODECS_KEY + ",".join(self.codecs))
        if self.features is not None:
            tokens.append(FEATURES_KEY + ",".join(self.features))
        if self.srtp_key is not None:
            tokens.append(SRTP_KEY + base64.urlsafe_b64encode(self.srtp_key).decode().rstrip("="))
        return tokens


@dataclass(frozen=True, slots=True)
class Calling:
    nick: str
    udp_port: int
    ext: Extension | None = None


@dataclass(frozen=True, slots=True)
class CallAccepted:
    nick: str
    udp_port: int
    ext: Extension | None = None


@dataclass(frozen=True, slots=True)
class CallDenied:
    nick: str = ""


@dataclass(frozen=True, slots=True)
class CallBusy:
    nick: str = ""  # vcall sends it bare; accepts "CALL_BUSY <nick>"


@dataclass(frozen=True, slots=True)
class CallHold:
    nick: str = ""


@dataclass(frozen=True, slots=True)
class CallResume:
    nick: str = ""


@dataclass(frozen=True, slots=True)
class CallEnd:
    nick: str = ""


@dataclass(frozen=True, slots=True)
class CallAlive:
    """Extension heartbeat; only ever sent to a peer that negotiated V2435."""

    nick: str = ""


@dataclass(frozen=True, slots=True)
class MediaState:
    """Extension feature "media-state": what the sender withholds (docs/protocol.md 4.1).

    ``CALL_MEDIA <nick> audio=on|muted video=on|paused``. None: the field was absent or its
    value unknown (then counted in ``ignored``, as are unknown keys, repeated keys and fields
    past MAX_STATE_TOKENS); a receiver keeps what it knew for that field.
    """

    nick: str = ""
    audio: AudioState | None = None
    video: VideoState | None = None
    ignored: int = 0  # received fields not understood; always 0 for one we build


Message = (
    Calling
    | CallAccepted
    | CallDenied
    | CallBusy
    | CallHold
    | CallResume
    | CallEnd
    | CallAlive
    | MediaState
)

_NICK_ONLY: dict[Verb, type[CallDenied | CallBusy | CallHold | CallResume | CallEnd | CallAlive]]
_NICK_ONLY = {
    Verb.CALL_DENIED: CallDenied,
    Verb.CALL_BUSY: CallBusy,
    Verb.CALL_HOLD: CallHold,
    Verb.CALL_RESUME: CallResume,
    Verb.CALL_END: CallEnd,
    Verb.CALL_ALIVE: CallAlive,
}
_VERB_OF: dict[type, Verb] = {cls: verb for verb, cls in _NICK_ONLY.items()}
_VERB_OF[Calling] = Verb.CALLING
_VERB_OF[CallAccepted] = Verb.CALL_ACCEPTED
_VERB_OF[MediaState] = Verb.CALL_MEDIA


def is_extension_only(msg: Message) -> bool:
    """True for messages a classic (V0-only) peer must never receive."""
    if isinstance(msg, CallAlive | MediaState):
        return True
    return isinstance(msg, Calling | CallAccepted) and msg.ext is not None


def validate_nick(nick: str) -> str:
    """Check that vcall may put ``nick`` on the wire; raise LocalProtocolError if not."""
    if not nick or len(nick) > MAX_NICK_LEN:
        raise LocalMessageError(f"nick must be 1-{MAX_NICK_LEN} characters: {nick!r}")
    if not nick.isascii() or not nick.isprintable() or any(c in nick for c in " #"):
        raise LocalMessageError(f"nick must be printable ASCII without space or '#': {nick!r}")
    if _VERB_RE.search(nick.encode()):
        raise LocalMessageError(f"nick must not contain a call-control verb: {nick!r}")
    return nick


def validate_codecs(names: Sequence[str]) -> tuple[str, ...]:
    """Check a codec list vcall may put on the wire (or use as its preference); raise
    LocalProtocolError if not: 1-MAX_CODECS distinct names of 1-16 characters ``[A-Z0-9]``."""
    if isinstance(names, str):  # "JPEG" would read as ("J", "P", "E", "G")
        raise LocalMessageError(f"codecs must be a sequence of names, not a string: {names!r}")
    codecs = tuple(names)
    if not 1 <= len(codecs) <= MAX_CODECS:
        raise LocalMessageError(f"1-{MAX_CODECS} codec names needed, got {len(codecs)}")
    for name in codecs:
        if not isinstance(name, str) or not CODEC_NAME_RE.fullmatch(name):
            raise LocalMessageError(f"codec name must be 1-16 characters [A-Z0-9]: {name!r}")
    if len(set(codecs)) != len(codecs):
        raise LocalMessageError(f"codec names repeat: {codecs!r}")
    return codecs


def validate_features(names: Sequence[str]) -> tuple[str, ...]:
    """Check a feature list vcall may put on the wire; raise LocalProtocolError if not:
    1-MAX_FEATURES distinct names of 1-24 characters ``[a-z0-9-]``."""
    if isinstance(names, str):
        raise LocalMessageError(f"features must be a sequence of names, not a string: {names!r}")
    features = tuple(names)
    if not 1 <= len(features) <= MAX_FEATURES or len(set(features)) != len(features):
        raise LocalMessageError(f"1-{MAX_FEATURES} distinct feature names needed: {features!r}")
    for name in features:
        if not isinstance(name, str) or not FEATURE_NAME_RE.fullmatch(name):
            raise LocalMessageError(f"feature name must be 1-24 characters [a-z0-9-]: {name!r}")
    return features


def encode(msg: Message, *, terminated: bool = False) -> bytes:
    """Serialise strictly: single spaces, no trailing space; LF only if ``terminated``.

    ``terminated`` is for extension mode (both peers speak V2435); classic messages carry no
    terminator because classic clients compare whole messages byte for byte.
    """
    verb = _VERB_OF[type(msg)]
    fields: list[str] = [verb.value]
    if isinstance(msg, Calling | CallAccepted):
        fields.append(validate_nick(msg.nick))
        if not 1 <= msg.udp_port <= 65535:
            raise LocalMessageError(f"UDP port out of range: {msg.udp_port}")
        fields.append(str(msg.udp_port))
        if msg.ext is not None:
            if not 0 <= msg.ext.ssrc <= 0xFFFFFFFF:
                raise LocalMessageError(f"SSRC out of range: {msg.ext.ssrc}")
            if msg.ext.codecs is not None:
                validate_codecs(msg.ext.codecs)
                if isinstance(msg, CallAccepted) and len(msg.ext.codecs) != 1:
                    raise LocalMessageError(f"CALL_ACCEPTED names one codec: {msg.ext.codecs!r}")
            if msg.ext.srtp_key is not None and len(msg.ext.srtp_key) != SRTP_KEY_LEN:
                raise LocalMessageError(f"an SRTP key is {SRTP_KEY_LEN} bytes")
            if msg.ext.features is not None:
                validate_features(msg.ext.features)
            fields.extend(msg.ext.tokens())
    elif isinstance(msg, MediaState):
        fields.append(validate_nick(msg.nick))
        if msg.audio is None and msg.video is None:
            raise LocalMessageError("CALL_MEDIA says at least one of audio= and video=")
        if msg.audio is not None:
            fields.append(f"audio={AudioState(msg.audio).value}")
        if msg.video is not None:
            fields.append(f"video={VideoState(msg.video).value}")
    elif msg.nick:
        fields.append(validate_nick(msg.nick))
    elif not isinstance(msg, CallBusy):
        raise LocalMessageError(f"{verb.value} needs the sender's nick")
    return " ".join(fields).encode("ascii") + (b"\n" if terminated else b"")


def _parse_port(token: str) -> int:
    # Accept liberally: "5000", and "5000.0" written by clients that stored ports as floats.
    try:
        value = float(token) if "." in token else int(token)
    except ValueError:
        raise PeerProtocolError(f"bad UDP port {token[:20]!r}") from None
    # Range first: int() of an infinite float ("1.0e999") would raise OverflowError.
    if not 1 <= value <= 65535 or value != int(value):
        raise PeerProtocolError(f"UDP port out of range {token[:20]!r}")
    return int(value)


def _parse_codecs(tokens: list[str]) -> tuple[str, ...] | None:
    """The first ``codecs=`` token's names, upper-cased; None if absent or malformed.

    Liberal: the key in any case, names in any case, repeated names kept once. Malformed (an
    empty name, a name over 16 characters or outside ``[A-Za-z0-9]``, more than MAX_CODECS
    names): the token counts as absent, so the call falls back to JPEG rather than failing.
    """
    for token in tokens:
        if token[: len(CODECS_KEY)].lower() != CODECS_KEY:
            continue
        names = token[len(CODECS_KEY) :].split(",")
        if len(names) > MAX_CODECS or not all(_CODEC_INPUT_RE.fullmatch(n) for n in names):
            return None
        return tuple(dict.fromkeys(n.upper() for n in names))
    return None


def _parse_srtp(tokens: list[str]) -> bytes | None:
    """The first ``srtp=`` token's key (30 bytes); None if absent or malformed."""
    for token in tokens:
        if token[: len(SRTP_KEY)].lower() != SRTP_KEY:
            continue
        value = token[len(SRTP_KEY) :]
        if not _SRTP_TOKEN_RE.fullmatch(value):
            return None
        try:
            key = base64.urlsafe_b64decode(value + "==")
        except (binascii.Error, ValueError):
            return None
        return key if len(key) == SRTP_KEY_LEN else None
    return None


def _parse_features(tokens: list[str]) -> tuple[str, ...] | None:
    """The first ``features=`` token's names, lower-cased; None if absent or malformed (as
    :func:`_parse_codecs`: more than MAX_FEATURES names, an empty one or a bad character)."""
    for token in tokens:
        if token[: len(FEATURES_KEY)].lower() != FEATURES_KEY:
            continue
        names = token[len(FEATURES_KEY) :].lower().split(",")
        if len(names) > MAX_FEATURES or not all(FEATURE_NAME_RE.fullmatch(n) for n in names):
            return None
        return tuple(dict.fromkeys(names))
    return None


def _parse_media_state(tokens: list[str]) -> MediaState:
    """``CALL_MEDIA`` after the verb: ``[<nick>] key=value...`` (see :class:`MediaState`)."""
    nick = ""
    if tokens and "=" not in tokens[0]:
        nick, tokens = tokens[0], tokens[1:]
    ignored = max(0, len(tokens) - MAX_STATE_TOKENS)
    audio: AudioState | None = None
    video: VideoState | None = None
    seen: set[str] = set()
    for token in tokens[:MAX_STATE_TOKENS]:
        key, _, value = token.lower().partition("=")
        if key in seen:
            ignored += 1  # a repeated key: the first one counts
            continue
        seen.add(key)
        if key == "audio" and value in AudioState.__members__.values():
            audio = AudioState(value)
        elif key == "video" and value in VideoState.__members__.values():
            video = VideoState(value)
        else:
            ignored += 1
    return MediaState(nick, audio, video, ignored)


def _parse_ext(tokens: list[str]) -> Extension | None:
    # Unknown extras (other clients' "V1 ..." extensions) are ignored: the call stays classic.
    # Tokens after the SSRC other than codecs= are ignored too (room for later additions).
    if len(tokens) >= 2 and tokens[0] == EXTENSION_VERSION and SSRC_RE.match(tokens[1]):
        rest = tokens[2:]
        return Extension(
            int(tokens[1], 16), _parse_codecs(rest), _parse_srtp(rest), _parse_features(rest)
        )
    return None


# Bare answer words some classic callees send instead of CALL_DENIED / CALL_BUSY (seen in a
# public client of the family), in any case; read as the verb they stand for, never sent.
_BARE_WORDS = {
    "DENY": Verb.CALL_DENIED,
    "DENIED": Verb.CALL_DENIED,
    "REJECT": Verb.CALL_DENIED,
    "REJECTED": Verb.CALL_DENIED,
    "BUSY": Verb.CALL_BUSY,
}


def decode(raw: bytes) -> Message:
    """Parse one message (without framing). Tolerates surrounding whitespace and runs of spaces."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PeerProtocolError(f"message is not UTF-8: {raw[:40]!r}") from None
    tokens = text.split()
    if not tokens:
        raise PeerProtocolError("empty message")
    try:
        verb = Verb(tokens[0])
    except ValueError:
        bare = _BARE_WORDS.get(tokens[0].upper())
        if bare is None:
            raise PeerProtocolError(f"unknown verb {tokens[0][:40]!r}") from None
        verb = bare  # a classic client's bare answer word: liberal in what we accept
    if verb in (Verb.CALLING, Verb.CALL_ACCEPTED):
        if len(tokens) < 3:
            raise PeerProtocolError(f"{verb.value} needs a nick and a UDP port: {text[:80]!r}")
        port = _parse_port(tokens[2])
        ext = _parse_ext(tokens[3:])
        if verb is Verb.CALLING:
            return Calling(tokens[1], port, ext)
        return CallAccepted(tokens[1], port, ext)
    if verb is Verb.CALL_MEDIA:
        return _parse_media_state(tokens[1:])
    # Nick is optional on input (bare CALL_BUSY is the norm; be liberal with the others).
    return _NICK_ONLY[verb](tokens[1] if len(tokens) > 1 else "")


class MessageReader:
    """Bounded framing of a call-control byte stream; see the module docstring for the rules."""

    def __init__(self, *, max_size: int = MAX_MESSAGE_SIZE, gap: float = DEFAULT_GAP) -> None:
        self._buf = bytearray()
        self._max_size = max_size
        self._gap = gap
        self._last_data = 0.0
        self._eof = False

    @property
    def eof(self) -> bool:
        """EOF was fed and every buffered byte has been consumed."""
        return self._eof and not self._buf.strip(_WS)

    def feed(self, data: bytes, now: float) -> None:
        """Add bytes received at ``now``; ``b""`` means EOF."""
        if not data:
            self._eof = True
            return
        self._buf += data
        self._last_data = now

    def deadline(self) -> float | None:
        """When a pending unterminated message becomes complete by the gap rule (or None)."""
        if self._buf.strip(_WS) and not self._eof:
            return self._last_data + self._gap
        return None

    def next_message(self, now: float) -> Message | None:
        """The next complete message, or None if more bytes (or time) are needed.

        Raises PeerProtocolError for garbage (consumed, so calling again continues after it),
        including a pending message longer than ``max_size`` (the buffer is then discarded).
        """
        start = 0
        while start < len(self._buf) and self._buf[start] in _WS:
            start += 1
        del self._buf[:start]
        if not self._buf:
            return None
        end = self._boundary()
        if end is None:
            if len(self._buf) > self._max_size:
                size = len(self._buf)
                self._buf.clear()
                raise PeerProtocolError(f"message longer than {self._max_size} bytes ({size})")
            if not self._eof and now - self._last_data < self._gap:
                return None
            end = len(self._buf)
        raw = bytes(self._buf[:end])
        del self._buf[:end]
        if len(raw) > self._max_size:
            raise PeerProtocolError(f"message longer than {self._max_size} bytes ({len(raw)})")
        return decode(raw)

    def _boundary(self) -> int | None:
        """End of the first message if a terminator or the next verb shows it; else None."""
        limit = min(len(self._buf), self._max_size + 1)
        window = bytes(self._buf[:limit])
        ends = [i for i in (window.find(b"\r"), window.find(b"\n")) if i >= 0]
        first = _VERB_RE.match(window)
        # The next verb, searched after the leading one so that "CALL_BUSYCALL_END x" splits.
        nxt = _VERB_RE.search(window, first.end() if first else 1)
        if nxt is not None:
            ends.append(nxt.start())
        return min(ends) if ends else None
