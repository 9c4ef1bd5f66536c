"""vcall/identity.py: the installation's key pair, certificate and fingerprint, on real files,
checked against OpenSSL's own reading of the certificate and used in a real TLS handshake."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import socket
import ssl
import stat
import subprocess
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given
from hypothesis import strategies as st

from vcall.identity import (
    IdentityError,
    fingerprint_of_cert,
    is_fingerprint,
    load_or_create_identity,
)


def test_created_once_then_loaded(tmp_path: Path) -> None:
    first = load_or_create_identity(tmp_path / "id")
    again = load_or_create_identity(tmp_path / "id")
    assert first == again
    assert is_fingerprint(first.fingerprint)
    assert stat.S_IMODE(first.key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "id").stat().st_mode) == 0o700
    cert = x509.load_pem_x509_certificate(first.cert_pem)
    assert cert.subject.rfc4514_string() == "CN=vcall"
    assert first.cert_path.read_bytes() == first.cert_pem
    assert first.key_path.read_bytes() == first.key_pem
    other = load_or_create_identity(tmp_path / "other")
    assert other.fingerprint != first.fingerprint


def test_fingerprint_is_sha256_of_the_spki_as_openssl_reads_it(tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    ident = load_or_create_identity(tmp_path)
    pub_pem = subprocess.run(
        [openssl, "x509", "-pubkey", "-noout", "-in", str(ident.cert_path)],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    spki_der = subprocess.run(
        [openssl, "pkey", "-pubin", "-outform", "DER"],
        input=pub_pem, check=True, capture_output=True,
    ).stdout  # fmt: skip
    assert ident.fingerprint == "sha256:" + hashlib.sha256(spki_der).hexdigest()
    der = x509.load_pem_x509_certificate(ident.cert_pem).public_bytes(Encoding.DER)
    assert fingerprint_of_cert(der) == ident.fingerprint


def test_loosened_key_file_is_tightened(tmp_path: Path) -> None:
    ident = load_or_create_identity(tmp_path)
    ident.key_path.chmod(0o644)
    load_or_create_identity(tmp_path)
    assert stat.S_IMODE(ident.key_path.stat().st_mode) == 0o600


def test_unusable_files_are_an_error_and_never_overwritten(tmp_path: Path) -> None:
    ident = load_or_create_identity(tmp_path / "a")
    ident.key_path.write_bytes(b"not a key")
    with pytest.raises(IdentityError):
        load_or_create_identity(tmp_path / "a")
    assert ident.key_path.read_bytes() == b"not a key"
    # A certificate that belongs to another key.
    other = load_or_create_identity(tmp_path / "b")
    ident.key_path.write_bytes(other.key_pem)
    with pytest.raises(IdentityError, match="does not belong"):
        load_or_create_identity(tmp_path / "a")
    # Only one of the two files.
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "cert.pem").write_bytes(other.cert_pem)
    with pytest.raises(IdentityError):
        load_or_create_identity(tmp_path / "c")


def test_load_cert_chain_and_a_real_handshake(tmp_path: Path) -> None:
    """The files work in ssl.SSLContext, and a peer computes the same fingerprint from DER."""
    ident = load_or_create_identity(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(ident.cert_path, ident.key_path)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"ok")
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client_ctx.check_hostname = False
        client_ctx.verify_mode = ssl.CERT_NONE
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            client_ctx.wrap_socket(raw) as tls,
        ):
            assert tls.recv(2) == b"ok"
            der = tls.getpeercert(binary_form=True)
            assert der is not None
            assert fingerprint_of_cert(der) == ident.fingerprint
    finally:
        thread.join(5)
        listener.close()
    assert not errors


@given(st.binary(max_size=2048))
def test_fingerprint_of_garbage_raises_value_error_only(data: bytes) -> None:
    with contextlib.suppress(ValueError):
        fingerprint_of_cert(data)


@given(st.text(max_size=80))
def test_is_fingerprint_accepts_only_the_exact_form(text: str) -> None:
    ok = is_fingerprint(text)
    hexpart = text.removeprefix("sha256:")
    assert ok == (
        text.startswith("sha256:")
        and len(hexpart) == 64
        and all(c in "0123456789abcdef" for c in hexpart)
    )
