"""The client's side of the discovery server's TLS port: finding it, and pinning its key.

A vcall discovery server listens twice: the classic plain port (unchanged, for classic clients)
and a TLS port for vcall clients. A client learns the TLS port by asking the plain port
``VCALL_TLS`` (answer ``OK VCALL_TLS <port>``; a classic server answers ``NOK UNKNOWN_COMMAND``:
no TLS). Nothing secret travels in that exchange; the TLS port itself is then trusted on first
use (TOFU, as SSH does with host keys, RFC 4251 section 4.1): the server's key fingerprint
(identity.py) is pinned per server address in ``servers.json`` in the state directory. Later:

* a different key is :class:`ServerIdentityChanged`, naming both fingerprints; never a prompt;
* a pinned server that no longer offers TLS is :class:`ServerIdentityChanged` too (a
  downgrade to the plain port is never taken silently);
* an unpinned server with no TLS (a classic server) is used in clear, as before. That is the
  one weakness of trust on first use: whoever answers the very first contact in its place can
  make a vcall server look classic. A user who got the server's fingerprint out of band (its
  log prints it at start) pins it before the first contact (``vcall discovery --server H:P
  pin sha256:...``, tls_port 0): from then on the rules above hold from the first contact.

The pin file is JSON ``{"host:port": {"fingerprint": "sha256:...", "tls_port": N}}``, mode
0600, at most :data:`MAX_PINS_BYTES`; an unreadable file is an error (it is never silently
replaced, which would forget every pin). It keeps the :data:`MAX_PINS` servers pinned last
(the client's embedded server takes a new port at each start): older pins are forgotten.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from vcall.identity import is_fingerprint

logger = logging.getLogger(__name__)

PINS_NAME: Final = "servers.json"
MAX_PINS_BYTES: Final = 1 << 20
MAX_PINS: Final = 1000


class PinStoreError(Exception):
    """The pin file exists but cannot be read or written (the user's to fix)."""


@dataclass(frozen=True, slots=True)
class Pin:
    """A server's pinned key fingerprint (``sha256:<64 hex>``) and the TLS port it used (0: not
    known yet, for a key the user pinned before the first contact: ``vcall discovery pin``)."""

    fingerprint: str
    tls_port: int


def default_pins_path() -> Path:
    """``servers.json`` beside ``state.json`` (vcall.config.config_dir())."""
    from vcall.config import config_dir  # noqa: PLC0415 (config imports the discovery cli)

    return config_dir() / PINS_NAME


def server_key(host: str, port: int) -> str:
    """The pin's name: the plain address the user configured (``host:port``, IPv6 in [])."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class PinStore:
    """Pinned server keys in one JSON file. Thread-safe within the process."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = default_pins_path() if path is None else Path(path)
        self._lock = threading.Lock()

    def get(self, host: str, port: int) -> Pin | None:
        """The pin of ``host:port``; raises PinStoreError if the file is unreadable."""
        with self._lock:
            return self._read().get(server_key(host, port))

    def pin(self, host: str, port: int, pin: Pin) -> None:
        """Record (or move the TLS port of) a pin. Raises PinStoreError, ValueError."""
        if not is_fingerprint(pin.fingerprint) or not 0 <= pin.tls_port < 65536:
            raise ValueError(f"not a pin: {pin!r}")
        with self._lock:
            pins = self._read()
            key = server_key(host, port)
            pins.pop(key, None)
            pins[key] = pin  # the file keeps the order of last pinning
            while len(pins) > MAX_PINS:  # e.g. many embedded servers on random ports
                oldest = next(iter(pins))
                logger.info("forgetting the oldest pinned server key, of %s", oldest)
                del pins[oldest]
            self._write(pins)

    def _read(self) -> dict[str, Pin]:
        try:
            if self.path.stat().st_size > MAX_PINS_BYTES:
                raise PinStoreError(f"{self.path}: over {MAX_PINS_BYTES} bytes")
            data = json.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, RecursionError) as exc:  # RecursionError: "[[[[..."
            raise PinStoreError(f"unreadable pin file {self.path}: {exc}") from None
        if not isinstance(data, dict):
            raise PinStoreError(f"{self.path}: not a JSON object")
        pins: dict[str, Pin] = {}
        for key, value in data.items():
            if not isinstance(value, dict):
                raise PinStoreError(f"{self.path}: bad entry {key!r}")
            fingerprint, tls_port = value.get("fingerprint"), value.get("tls_port")
            if not isinstance(fingerprint, str) or not is_fingerprint(fingerprint):
                raise PinStoreError(f"{self.path}: bad fingerprint for {key!r}")
            if type(tls_port) is not int or not 0 <= tls_port < 65536:
                raise PinStoreError(f"{self.path}: bad tls_port for {key!r}")
            pins[str(key)] = Pin(fingerprint, tls_port)
        return pins

    def _write(self, pins: dict[str, Pin]) -> None:
        data = {k: {"fingerprint": p.fingerprint, "tls_port": p.tls_port} for k, p in pins.items()}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=1)
            os.replace(tmp, self.path)
        except OSError as exc:
            raise PinStoreError(f"cannot write {self.path}: {exc}") from None


def client_context() -> ssl.SSLContext:
    """TLS 1.3 client context that accepts any certificate: trust comes from the pinned key
    fingerprint, checked right after the handshake (there is no CA and no host name)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


_DEFAULT: PinStore | None = None
_DEFAULT_LOCK = threading.Lock()


def use_tls(pins: PinStore | None) -> None:
    """Make every ``DiscoveryClient`` made without an explicit ``pins`` use TLS with ``pins``
    (the process-wide default; None: plain, the classic behaviour)."""
    global _DEFAULT  # noqa: PLW0603 (one process-wide setting, like client.use_servers)
    with _DEFAULT_LOCK:
        _DEFAULT = pins


def default_pin_store() -> PinStore | None:
    with _DEFAULT_LOCK:
        return _DEFAULT
