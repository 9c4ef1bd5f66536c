"""TLS between vcall peers on the call-control port: the preface, the contexts, the checks.

API::

    PREFACE = b"VCALL-TLS/1"              # first bytes of a TLS call-control connection
    MAX_PREFACE = 4096                    # bytes: the caller's preface line, LF included
    PREFACE_TIMEOUT = 5.0                 # s for the preface, the answer and the handshake
    def preface_line(identity) -> bytes   # b"VCALL-TLS/1 <base64 DER certificate>\\n"
    def parse_preface(line: bytes) -> bytes          # the certificate DER; PeerProtocolError
    def is_preface_start(data: bytes) -> bool | None # True/False, None: too short to tell
    def client_context(identity) -> ssl.SSLContext   # caller: our certificate, TLS 1.3
    def server_context(identity, peer_der: bytes) -> ssl.SSLContext  # callee: requires peer_der
    def protection_label(*, tls: bool, srtp: bool, verified: bool, classic: bool) -> str
    def caller_refusal(*, nick, conn_ip, conn_fingerprint, record_ip, record_fingerprint)
        -> str | None                      # why a CALLING must be refused; None: it may ring

The exchange (docs/protocol.md 4.1, "Encrypted call control"): a caller that found a key
fingerprint in the callee's directory record opens TCP to the callee's registered port and
writes one line, ``VCALL-TLS/1 <its certificate, DER, base64>``; the callee answers
``VCALL-TLS/1 OK\\n`` and both run a TLS 1.3 handshake on the same connection (the callee as
server). Each side presents its installation's certificate (vcall/identity.py):

- the caller checks that the callee's certificate key matches the fingerprint in the directory
  (``fingerprint_of_cert``; TLS proves the callee holds that key, RFC 8446 4.4.3);
- the callee trusts, for this handshake only, exactly the certificate the preface named
  (OpenSSL's partial-chain rule: a self-signed leaf in the trust store is an anchor), so TLS
  proves the caller holds its key; after CALLING it checks that key against the directory's
  fingerprint for the nick CALLING claims.

Why a preface: Python's ``ssl`` offers no certificate callback, so a server cannot accept "any
self-signed client certificate, checked later"; naming it first lets standard TLS client
authentication do the proof. Classic messages never start with ``V`` (they start with a verb,
``CALL...``, or a bare answer word), so the first bytes tell the two apart.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import ssl

from vcall.call.codec import PeerProtocolError
from vcall.identity import Identity

PREFACE = b"VCALL-TLS/1"
PREFACE_OK = PREFACE + b" OK\n"
MAX_PREFACE = 4096
PREFACE_TIMEOUT = 5.0


def preface_line(identity: Identity) -> bytes:
    """The caller's first line: ``VCALL-TLS/1 <base64 DER certificate>\\n``."""
    der = ssl.PEM_cert_to_DER_cert(identity.cert_pem.decode("ascii"))
    return PREFACE + b" " + base64.b64encode(der) + b"\n"


def is_preface_start(data: bytes) -> bool | None:
    """Whether the first bytes of a connection start a TLS preface; None: too few to tell."""
    n = min(len(data), len(PREFACE))
    if data[:n] != PREFACE[:n]:
        return False
    return True if len(data) > len(PREFACE) else None


def parse_preface(line: bytes) -> bytes:
    """The certificate DER named by a preface line; PeerProtocolError if it is malformed."""
    parts = line.strip().split(b" ")
    if len(parts) != 2 or parts[0] != PREFACE or len(line) > MAX_PREFACE:
        raise PeerProtocolError("malformed TLS preface")
    try:
        der = base64.b64decode(parts[1], validate=True)
        ssl.DER_cert_to_PEM_cert(der)
    except (binascii.Error, ValueError):
        raise PeerProtocolError("TLS preface does not carry a certificate") from None
    if not der:
        raise PeerProtocolError("TLS preface does not carry a certificate")
    return der


def _base(purpose: int, identity: Identity) -> ssl.SSLContext:
    ctx = ssl.SSLContext(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(identity.cert_path, identity.key_path)
    return ctx


def client_context(identity: Identity) -> ssl.SSLContext:
    """The caller's context: presents ``identity``; the callee's key is checked against the
    directory's fingerprint after the handshake (no CA, no host name: RFC 7250's model)."""
    ctx = _base(ssl.PROTOCOL_TLS_CLIENT, identity)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the certificate is still sent and read (getpeercert)
    return ctx


def server_context(identity: Identity, peer_der: bytes) -> ssl.SSLContext:
    """The callee's context for one connection: requires the client certificate ``peer_der``
    named in the preface (ssl.SSLError at the handshake otherwise). ValueError / ssl.SSLError
    if ``peer_der`` is not a usable certificate."""
    ctx = _base(ssl.PROTOCOL_TLS_SERVER, identity)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    ctx.load_verify_locations(cadata=peer_der)
    return ctx


def protection_label(*, tls: bool, srtp: bool, verified: bool, classic: bool) -> str:
    """What protects a call, in words for the user (events, stats, the GUI)."""
    if tls and srtp and verified:
        return "srtp+tls, verified"
    if tls and verified:
        return "tls, verified (media not encrypted)"
    if classic:
        return "none: classic peer"
    return "none: peer has no key in the directory"


def _canonical_ip(text: str) -> str:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return text
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def caller_refusal(
    *,
    nick: str,
    conn_ip: str,
    conn_fingerprint: str | None,
    record_ip: str | None,
    record_fingerprint: str | None,
) -> str | None:
    """Why a CALLING claiming ``nick`` must be refused, in words; None: it may ring.

    ``conn_*`` describe the connection (``conn_fingerprint``: the key the caller proved over
    TLS, None without TLS); ``record_*`` the directory's entry for ``nick`` (``record_ip``
    None: no such user, or the directory could not be asked). The rules (issue 14,
    docs/protocol.md 4.1):

    - no directory entry: refused (a caller must be someone the directory knows);
    - over TLS: the proven key must be the directory's key for ``nick`` (an address does not
      matter: the key is the identity);
    - in clear, when the directory has a key for ``nick``: a downgrade attempt, refused;
    - in clear (a classic caller): the connection must come from ``nick``'s registered address.
    """
    if record_ip is None:
        return f"{nick!r} is not in the directory"
    if conn_fingerprint is not None:
        if record_fingerprint is None:
            return f"{nick!r} has no key in the directory, but the caller presented one"
        if conn_fingerprint != record_fingerprint:
            return (
                f"the caller's key {conn_fingerprint} is not {nick!r}'s key in the directory "
                f"({record_fingerprint})"
            )
        return None
    if record_fingerprint is not None:
        return f"a call in clear claiming {nick!r}, whose directory entry has a key (downgrade)"
    if _canonical_ip(conn_ip) != _canonical_ip(record_ip):
        return f"{nick!r} is registered from {record_ip}, but the call came from {conn_ip}"
    return None
