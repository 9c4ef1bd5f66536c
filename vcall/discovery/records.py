"""A user record as a flat field map (the shape a Redis hash holds), both ways. Pure; no I/O.

A shared store is written by other processes, other versions and, after an incident, by hand:
what comes back from it is peer input. :func:`decode_user` checks every field against the same
rules the server applies to a REGISTER (codec.py: nick, ip, port 1-65535, protocols) and bounds
the scrypt parameters, so that a corrupted record can neither crash the server nor make one
password check allocate gigabytes (RFC 7914 section 2: scrypt memory is 128 * r * N bytes).

Guarantees:

* ``decode_user(encode_user(u)) == u`` for every valid user whose ts is finite and not negative;
* ``decode_user`` raises nothing but :class:`RecordError` (a ``RemoteProtocolError``), whatever
  the bytes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Final

from pipeline.errors import RemoteProtocolError
from vcall.discovery.codec import (
    valid_fingerprint,
    valid_ip,
    valid_nick,
    valid_port,
    valid_protocols,
)
from vcall.discovery.store import HASH_BYTES, Credential, StoredUser

MIN_SALT: Final = 8
MAX_SALT: Final = 64
MAX_SCRYPT_N: Final = 1 << 20  # 1 GiB at r=8: well above any cost we choose
MAX_SCRYPT_R: Final = 32
MAX_SCRYPT_P: Final = 16
MAX_FIELD: Final = 512  # bytes of one text field: a protocols field of 32 x "V999999999"

_INT_RE: Final = re.compile(rb"[0-9]{1,10}", re.ASCII)
# What repr() gives for a non-negative finite float ("1764467214.5467598", "1e-07").
_FLOAT_RE: Final = re.compile(rb"[0-9]{1,17}(?:\.[0-9]{1,17})?(?:e[+-][0-9]{1,3})?", re.ASCII)

# "fp": the key fingerprint (vcall extension, issue 14); empty or absent (older records) = none.
# "out": "1" once the user logged out (VCALL_OFFLINE, issue 15); "0" or absent = not.
FIELDS: Final = (
    b"ip", b"port", b"protocols", b"ts", b"salt", b"n", b"r", b"p", b"digest", b"fp", b"out",
)  # fmt: skip


class RecordError(RemoteProtocolError):
    """A record read back from the store breaks the rules (the store's fault, not ours)."""


def encode_user(user: StoredUser) -> dict[bytes, bytes]:
    """The record as field -> value bytes (text fields ASCII, salt and digest raw)."""
    c = user.credential
    return {
        b"ip": user.ip.encode("ascii"),
        b"port": str(user.port).encode(),
        b"protocols": "#".join(user.protocols).encode("ascii"),
        b"ts": repr(float(user.ts)).encode(),
        b"salt": c.salt,
        b"n": str(c.n).encode(),
        b"r": str(c.r).encode(),
        b"p": str(c.p).encode(),
        b"digest": c.digest,
        # Always written (empty = none), so that an update also clears a fingerprint.
        b"fp": (user.fingerprint or "").encode("ascii"),
        b"out": b"1" if user.logged_out else b"0",
    }


def decode_user(nick: str | bytes, fields: Mapping[bytes, bytes]) -> StoredUser:
    """Validate and build a :class:`StoredUser`; raises :class:`RecordError` on any violation."""
    nick_text = _text(nick if isinstance(nick, bytes) else nick.encode("utf-8", "replace"))
    if not valid_nick(nick_text):
        raise RecordError(f"bad nick {nick_text[:40]!r}")
    ip = _text(_field(fields, b"ip"))
    if not valid_ip(ip):
        raise RecordError(f"{nick_text}: bad ip {ip[:40]!r}")
    port = _int(fields, b"port", 1, 65535)
    if not valid_port(port):  # pragma: no cover (bounded above)
        raise RecordError(f"{nick_text}: bad port")
    protocols = tuple(_text(_field(fields, b"protocols")).split("#"))
    if not valid_protocols(protocols):
        raise RecordError(f"{nick_text}: bad protocols")
    ts = _float(fields, b"ts")
    salt = _field(fields, b"salt")
    digest = _field(fields, b"digest")
    if not MIN_SALT <= len(salt) <= MAX_SALT or len(digest) != HASH_BYTES:
        raise RecordError(f"{nick_text}: bad credential sizes")
    n = _int(fields, b"n", 2, MAX_SCRYPT_N)
    if n & (n - 1):
        raise RecordError(f"{nick_text}: scrypt N is not a power of two")  # RFC 7914 section 2
    r = _int(fields, b"r", 1, MAX_SCRYPT_R)
    p = _int(fields, b"p", 1, MAX_SCRYPT_P)
    credential = Credential(bytes(salt), n, r, p, bytes(digest))
    fp_raw = fields.get(b"fp", b"")
    if not isinstance(fp_raw, bytes):
        raise RecordError(f"{nick_text}: bad fingerprint field")
    fingerprint = _text(fp_raw) or None
    if fingerprint is not None and not valid_fingerprint(fingerprint):
        raise RecordError(f"{nick_text}: bad fingerprint {fingerprint[:40]!r}")
    out = fields.get(b"out", b"0")
    if out not in (b"0", b"1"):
        raise RecordError(f"{nick_text}: bad logged-out flag")
    return StoredUser(nick_text, ip, port, protocols, ts, credential, fingerprint, out == b"1")


def _field(fields: Mapping[bytes, bytes], name: bytes) -> bytes:
    value = fields.get(name)
    if not isinstance(value, bytes):
        raise RecordError(f"field {name.decode()} missing")
    if len(value) > MAX_FIELD:
        raise RecordError(f"field {name.decode()} over {MAX_FIELD} bytes")
    return value


def _text(raw: bytes) -> str:
    if len(raw) > MAX_FIELD or not raw.isascii():
        raise RecordError(f"not a short ASCII field: {raw[:40]!r}")
    return raw.decode("ascii")


def _int(fields: Mapping[bytes, bytes], name: bytes, low: int, high: int) -> int:
    raw = _field(fields, name)
    if _INT_RE.fullmatch(raw) is None:
        raise RecordError(f"field {name.decode()}: not a number {raw[:20]!r}")
    value = int(raw)
    if not low <= value <= high:
        raise RecordError(f"field {name.decode()}: {value} outside {low}..{high}")
    return value


def _float(fields: Mapping[bytes, bytes], name: bytes) -> float:
    raw = _field(fields, name)
    if _FLOAT_RE.fullmatch(raw) is None:
        raise RecordError(f"field {name.decode()}: not a timestamp {raw[:20]!r}")
    value = float(raw)
    if not math.isfinite(value):  # "9e999" matches the pattern
        raise RecordError(f"field {name.decode()}: not finite")
    return value
