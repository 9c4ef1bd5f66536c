"""Keep-alive sessions (vcall extension, docs/protocol.md section 1.2): tokens and their digests.
Pure; no I/O.

A vcall client proves its password once (``VCALL_SESSION``, one scrypt check) and gets a random
token; its keep-alives (``VCALL_HERE``) then carry the token instead of the password, so they
cost the server a hash and a lookup, not a scrypt. The server keeps only the SHA-256 digest of
the token, in the store (so every instance sharing it accepts the token), with an expiry.

A token is :data:`TOKEN_BYTES` (16: 128 bits) from :mod:`secrets` (the OS's CSPRNG), written
as 32 lowercase hex digits. A plain SHA-256 digest suffices to store it: a 128-bit random
secret cannot be guessed from its digest, so a slow hash (needed for low-entropy passwords,
RFC 7914) would only cost CPU. The comparison is constant-time (``hmac.compare_digest``).

Guarantees: :func:`valid_token` accepts exactly ``[0-9a-f]{32}``; :func:`token_matches` raises
nothing, whatever the inputs, and never matches a digest that is not one of a valid token.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Final

TOKEN_BYTES: Final = 16  # 128 bits
TOKEN_CHARS: Final = 2 * TOKEN_BYTES
DIGEST_BYTES: Final = 32  # SHA-256
# s a session lives: the client opens a new one (one scrypt) when it expires, so 50,000
# clients cost ~1 scrypt/s (docs/deploy.md), and a leaked token is worthless after this.
DEFAULT_SESSION_TTL: Final = 12 * 3600.0

_TOKEN_RE: Final = re.compile(r"[0-9a-f]{32}", re.ASCII)
_TOKEN_PREFIX_RE: Final = re.compile(r"[0-9a-f]{0,31}", re.ASCII)


def new_token() -> str:
    """A fresh random token: 32 lowercase hex digits (128 bits from :mod:`secrets`)."""
    return secrets.token_hex(TOKEN_BYTES)


def valid_token(text: str) -> bool:
    """``text`` has a token's shape: exactly 32 lowercase hex digits."""
    return _TOKEN_RE.fullmatch(text) is not None


def token_prefix(text: str) -> bool:
    """``text`` could still become a token with more characters (for the framer)."""
    return _TOKEN_PREFIX_RE.fullmatch(text) is not None


def token_digest(token: str) -> bytes:
    """What the store keeps of ``token``: its SHA-256 digest (32 bytes)."""
    return hashlib.sha256(token.encode("ascii", "replace")).digest()


def token_matches(token: str, digest: bytes | None) -> bool:
    """``token`` is the one whose digest the store holds; constant-time in the digest
    comparison (``hmac.compare_digest``). False for a malformed token or a missing digest."""
    if digest is None or len(digest) != DIGEST_BYTES or not valid_token(token):
        return False
    return hmac.compare_digest(token_digest(token), digest)
