"""This installation's key pair and self-signed certificate (issue 14).

One Ed25519 key per installation (or per discovery server, with its own directory), kept as two
PEM files: ``key.pem`` (mode 0600, owner only) and ``cert.pem`` (a self-signed X.509 v3
certificate, CN = "vcall"). Both paths are what :meth:`ssl.SSLContext.load_cert_chain` takes.

The fingerprint that the directory stores and that peers pin is
``"sha256:" + hex(SHA-256(SubjectPublicKeyInfo DER))``: it names the *key*, not the certificate,
so re-issuing the certificate for the same key (a new validity period) keeps the fingerprint
(the same choice as HPKP's ``pin-sha256``, RFC 7469 section 2.4).
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
COMMON_NAME = "vcall"
# Long enough never to expire under a user; the fingerprint (not the validity) is what is trusted.
VALIDITY_DAYS = 100 * 365
FINGERPRINT_PREFIX = "sha256:"
_FINGERPRINT_RE = re.compile(r"sha256:[0-9a-f]{64}")


class IdentityError(Exception):
    """The identity files exist but cannot be used (unreadable, not a key or cert, mismatched)."""


@dataclass(frozen=True, slots=True)
class Identity:
    """A key pair with its self-signed certificate, in memory and on disk.

    ``cert_pem``/``key_pem`` are PEM bytes (the key unencrypted, PKCS#8); ``fingerprint`` is
    ``"sha256:"`` + 64 lowercase hex digits over the certificate's SubjectPublicKeyInfo DER;
    ``cert_path``/``key_path`` are the files (key mode 0600) for ``ssl.SSLContext.load_cert_chain``.
    """

    cert_pem: bytes
    key_pem: bytes
    fingerprint: str
    cert_path: Path
    key_path: Path


def default_identity_dir() -> Path:
    """``<platformdirs user data dir>/vcall/identity`` (e.g. ``~/.local/share/vcall/identity``)."""
    import platformdirs  # noqa: PLC0415 - only needed for the default

    return Path(platformdirs.user_data_dir("vcall")) / "identity"


def is_fingerprint(text: str) -> bool:
    """True if ``text`` has the exact fingerprint form ``sha256:<64 lowercase hex digits>``."""
    return _FINGERPRINT_RE.fullmatch(text) is not None


def fingerprint_of_cert(der_or_pem: bytes) -> str:
    """The fingerprint of a certificate given as DER (e.g. ``SSLSocket.getpeercert(True)``) or PEM.

    Returns ``"sha256:"`` + lowercase hex of SHA-256 over the SubjectPublicKeyInfo DER
    (RFC 5280 section 4.1.2.7). Raises ``ValueError`` if the bytes are not a certificate.
    """
    data = bytes(der_or_pem)
    if data.lstrip().startswith(b"-----BEGIN"):
        cert = x509.load_pem_x509_certificate(data)
    else:
        cert = x509.load_der_x509_certificate(data)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return FINGERPRINT_PREFIX + hashlib.sha256(spki).hexdigest()


def _new_certificate(key: ed25519.Ed25519PrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, COMMON_NAME)])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=VALIDITY_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(COMMON_NAME)]), critical=False)
        # Ed25519 signs the whole message itself: no separate hash (RFC 8410 section 6).
        .sign(key, None)
    )


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, created with mode 0600 (never world-readable)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _load(directory: Path) -> Identity:
    cert_path, key_path = directory / CERT_FILE, directory / KEY_FILE
    try:
        cert_pem = cert_path.read_bytes()
        key_pem = key_path.read_bytes()
        key = serialization.load_pem_private_key(key_pem, password=None)
        cert = x509.load_pem_x509_certificate(cert_pem)
    except (OSError, ValueError, TypeError) as exc:
        raise IdentityError(f"unusable identity in {directory}: {exc}") from exc
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, pub) != cert.public_key().public_bytes(der, pub):
        raise IdentityError(f"{cert_path} does not belong to {key_path}")
    if key_path.stat().st_mode & 0o077:
        os.chmod(key_path, 0o600)  # tighten a key file someone loosened
    return Identity(cert_pem, key_pem, fingerprint_of_cert(cert_pem), cert_path, key_path)


def load_or_create_identity(directory: Path | None = None) -> Identity:
    """Load the identity kept in ``directory``, creating a new Ed25519 one if there is none.

    ``directory`` defaults to :func:`default_identity_dir`; it is created with mode 0700. A new
    identity writes ``key.pem`` (PKCS#8 PEM, unencrypted, mode 0600) before ``cert.pem``, both
    atomically, so a crash never leaves a certificate without its key. Raises
    :class:`IdentityError` if files exist but are unusable (they are never overwritten: a
    silently replaced key would look like an impostor to every peer that pinned it), ``OSError``
    if the directory cannot be written.
    """
    directory = default_identity_dir() if directory is None else Path(directory)
    cert_path, key_path = directory / CERT_FILE, directory / KEY_FILE
    if cert_path.exists() or key_path.exists():
        return _load(directory)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Two first starts at once (two windows of one user) must not mix one's key with the
    # other's certificate: creation holds an exclusive lock, and looks again once it has it.
    lock = os.open(directory / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if cert_path.exists() or key_path.exists():
            return _load(directory)
        return _create(directory, cert_path, key_path)
    finally:
        os.close(lock)  # releases the lock


def _create(directory: Path, cert_path: Path, key_path: Path) -> Identity:
    key = ed25519.Ed25519PrivateKey.generate()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert_pem = _new_certificate(key).public_bytes(serialization.Encoding.PEM)
    _write_private(key_path, key_pem)
    _write_private(cert_path, cert_pem)
    return _load(directory)


__all__ = [
    "Identity",
    "IdentityError",
    "default_identity_dir",
    "fingerprint_of_cert",
    "is_fingerprint",
    "load_or_create_identity",
]
