"""Directories on the local network: mDNS / DNS-SD (RFC 6762, RFC 6763) with ``zeroconf``.

A discovery server advertises itself as an instance of ``_vcall-dir._tcp.local.``: the SRV
record carries the plain (classic) port, the A record the address, and the TXT record
(RFC 6763 section 6) ``txtvers=1`` and ``tls=<port>`` when it listens with TLS (issue 14).
The client browses that type and lists what it finds in the login screen's server choice
(issue 15).

* :class:`Advertiser`: one advertisement, registered on a thread of its own (probing takes
  about 1.5 s, RFC 6762 section 8.1, and must not delay the server's start) and withdrawn with
  a goodbye on :meth:`Advertiser.close`. Where it is announced follows where the server
  listens: a loopback server only on loopback (other programs of this machine), a server on
  one address on that interface, one on ``0.0.0.0`` on every interface with each IPv4 address
  of the machine but loopback. IPv4 only.
* :class:`DirectoryBrowser`: browses on every interface (loopback included) from zeroconf's
  own threads; :meth:`DirectoryBrowser.found` is a snapshot, safe from any thread (the Tk
  thread polls it; it never waits on the network).
* :func:`directory_from` turns a resolved service into a :class:`FoundDirectory`; what another
  host announces is peer input: it raises nothing and returns None for anything unusable.

Guarantees: nothing here raises into the server or the GUI: a failure to advertise or to
browse (no multicast, port 5353 refused) is logged once and counted (``failures``); names
are at most 63 bytes (RFC 6763 section 4.1.1); close() returns within a few seconds.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

import ifaddr
from zeroconf import (
    InterfaceChoice,
    IPVersion,
    ServiceBrowser,
    ServiceInfo,
    ServiceStateChange,
    Zeroconf,
)

logger = logging.getLogger(__name__)

SERVICE_TYPE: Final = "_vcall-dir._tcp.local."
TXT_VERSION: Final = b"1"
MAX_INSTANCE: Final = 63  # bytes of an instance name (RFC 6763 section 4.1.1)
# To resolve one service found while browsing. An answer on a LAN takes milliseconds; this also
# bounds how long close() (on the client's exit) can wait for a handler still resolving.
RESOLVE_TIMEOUT_MS: Final = 1000
MAX_FOUND: Final = 32  # directories kept; any host can announce thousands (the rest: ignored)
JOIN_TIMEOUT: Final = 5.0  # s to wait for the advertising thread on close
Interfaces = list[str] | InterfaceChoice  # zeroconf's interface choice, as vcall uses it


@dataclass(frozen=True, slots=True)
class FoundDirectory:
    """A directory announced on the network: instance ``name``, where its plain port answers
    (``host``, ``port``) and its TLS port (None: not announced)."""

    name: str
    host: str
    port: int
    tls_port: int | None

    @property
    def address(self) -> str:
        """``HOST:PORT`` as the server field takes it (``[V6]:PORT`` for IPv6)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def label(self) -> str:
        return f"{self.name} — {self.address}"


def default_name(port: int) -> str:
    """``vcall directory on <host name>`` (plus the port when it is not 8000)."""
    text = f"vcall directory on {socket.gethostname()}"
    return text if port == 8000 else f"{text}:{port}"


def instance_name(name: str) -> str:
    """``name`` made a valid DNS-SD instance label: no control characters or dots, at most
    :data:`MAX_INSTANCE` bytes of UTF-8 (cut at a character boundary)."""
    clean = _printable(name).strip() or "vcall directory"
    data = clean.encode("utf-8")[:MAX_INSTANCE]
    return data.decode("utf-8", "ignore").strip() or "vcall directory"


def _printable(text: str) -> str:
    """Dots (label separators) and anything not printable (control characters, unassigned
    code points, lone surrogates) become spaces."""
    return "".join(c if c.isprintable() and c != "." else " " for c in text)


def _port(raw: object) -> int | None:
    if not isinstance(raw, bytes) or not raw.isascii() or not raw.isdigit() or len(raw) > 5:
        return None
    value = int(raw)
    return value if 1 <= value <= 65535 else None


def directory_from(
    name: str, addresses: list[str], port: object, properties: Mapping[bytes, bytes | None]
) -> FoundDirectory | None:
    """A resolved ``_vcall-dir._tcp`` service -> :class:`FoundDirectory`, or None when it
    has no usable IPv4 address or port. Never raises (peer input)."""
    if not isinstance(port, int) or not 1 <= port <= 65535:
        return None
    host = None
    for text in addresses:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            continue
        if ip.version == 4:
            host = str(ip)
            break
    if host is None:
        return None
    label = name.removesuffix("." + SERVICE_TYPE) if name.endswith(SERVICE_TYPE) else name
    label = _printable(label)[:MAX_INSTANCE].strip() or host
    return FoundDirectory(label, host, port, _port(properties.get(b"tls")))


def _interfaces_and_addresses(host: str) -> tuple[Interfaces, list[str]]:
    """Where to announce a server listening on ``host``: (interfaces, addresses); no
    addresses: nothing to announce (an IPv6-only listener)."""
    if host in ("", "0.0.0.0", "::"):
        addresses = [
            str(ip.ip)
            for adapter in ifaddr.get_adapters()
            for ip in adapter.ips
            if isinstance(ip.ip, str) and not ipaddress.ip_address(ip.ip).is_loopback
        ]
        return InterfaceChoice.All, addresses
    try:
        ip = ipaddress.ip_address("127.0.0.1" if host == "localhost" else host)
    except ValueError:
        return InterfaceChoice.All, []  # a host name: its address is not ours to guess
    if ip.is_loopback:
        return ["127.0.0.1"], ["127.0.0.1"]
    if ip.version != 4:
        return InterfaceChoice.All, []
    return [str(ip)], [str(ip)]


class Advertiser:
    """Announce one directory (see the module docstring); start() returns at once."""

    def __init__(self, name: str, host: str, port: int, tls_port: int | None) -> None:
        self.name = instance_name(name)
        self.host = host
        self.port = port
        self.tls_port = tls_port
        self.failures = 0
        self.registered = threading.Event()  # set once the announcement is out
        self._lock = threading.Lock()
        self._closed = False
        self._zc: Zeroconf | None = None
        self._info: ServiceInfo | None = None
        self._thread = threading.Thread(target=self._run, name="vcall-mdns-advert", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            interfaces, addresses = _interfaces_and_addresses(self.host)
            if not addresses:
                logger.info("mDNS: no IPv4 address to announce for %s", self.host)
                return
            properties: dict[str, str] = {"txtvers": TXT_VERSION.decode()}
            if self.tls_port is not None:
                properties["tls"] = str(self.tls_port)
            server = instance_name(socket.gethostname()).replace(" ", "-") or "vcall"
            info = ServiceInfo(
                SERVICE_TYPE,
                f"{self.name}.{SERVICE_TYPE}",
                port=self.port,
                properties=properties,
                server=f"{server}-vcall-{self.port}.local.",
                parsed_addresses=addresses,
            )
            zc = Zeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
            with self._lock:
                if self._closed:
                    zc.close()
                    return
                self._zc, self._info = zc, info
            # Another directory with this name (another instance on the LAN): "name (2)".
            zc.register_service(info, allow_name_change=True)
            self.name = info.name.removesuffix("." + SERVICE_TYPE)
            self.registered.set()
            logger.info("mDNS: announced %r (%s) on %s", self.name, SERVICE_TYPE, addresses)
        except Exception as exc:  # no multicast, 5353 refused, a closed instance...
            self.failures += 1
            if not self._closed:
                logger.warning("mDNS: cannot announce %r: %s", self.name, exc)

    def close(self) -> None:
        """Withdraw the announcement (a goodbye, TTL 0) and stop; idempotent."""
        with self._lock:
            self._closed = True
            zc, info = self._zc, self._info
            self._zc = self._info = None
        if self._thread.is_alive():
            self._thread.join(JOIN_TIMEOUT)
        if zc is None:
            return
        try:
            if info is not None and self.registered.is_set():
                zc.unregister_service(info)
        except Exception as exc:
            self.failures += 1
            logger.info("mDNS: withdrawing %r failed: %s", self.name, exc)
        finally:
            zc.close()


class DirectoryBrowser:
    """Browse ``_vcall-dir._tcp.local.``; :meth:`found` is the current set (thread-safe).
    ``on_change`` (optional) is called from zeroconf's thread after each change."""

    def __init__(
        self,
        *,
        interfaces: list[str] | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self._interfaces = interfaces
        self._on_change = on_change
        self._lock = threading.Lock()
        self._found: dict[str, FoundDirectory] = {}
        self._zc: Zeroconf | None = None
        self._browser: ServiceBrowser | None = None
        self._closed = False
        self.failures = 0  # browsing could not start, or a service failed to resolve
        self.ignored = 0  # unusable (no IPv4 address, bad port) or beyond MAX_FOUND
        self._thread = threading.Thread(target=self._start, name="vcall-mdns-browse", daemon=True)

    def start(self) -> None:
        """Begin browsing (socket set-up on a thread of its own); returns at once."""
        self._thread.start()

    def found(self) -> list[FoundDirectory]:
        with self._lock:
            return sorted(self._found.values(), key=lambda d: (d.name, d.host, d.port))

    def _start(self) -> None:
        try:
            interfaces: Interfaces = (
                self._interfaces if self._interfaces is not None else InterfaceChoice.All
            )
            zc = Zeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
            with self._lock:
                if self._closed:
                    zc.close()
                    return
                self._zc = zc
                self._browser = ServiceBrowser(zc, SERVICE_TYPE, handlers=[self._changed])
        except Exception as exc:
            self.failures += 1
            logger.warning("mDNS: cannot browse for directories: %s", exc)

    def _changed(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        # zeroconf calls handlers by keyword: (zeroconf, service_type, name, state_change).
        try:
            if state_change is ServiceStateChange.Removed:
                with self._lock:
                    self._found.pop(name, None)
            else:
                info = zeroconf.get_service_info(service_type, name, timeout=RESOLVE_TIMEOUT_MS)
                found = None
                if info is not None:
                    found = directory_from(
                        name, info.parsed_addresses(), info.port, info.properties
                    )
                with self._lock:
                    if found is None or (name not in self._found and len(self._found) >= MAX_FOUND):
                        self.ignored += 1
                        self._found.pop(name, None)
                    else:
                        self._found[name] = found
        except Exception as exc:  # garbage from another host must not end browsing
            self.failures += 1
            logger.info("mDNS: ignoring %r: %s", name, exc)
            return
        if self._on_change is not None:
            self._on_change()

    def close(self) -> None:
        """Stop browsing; idempotent."""
        with self._lock:
            self._closed = True
            zc, browser = self._zc, self._browser
            self._zc = self._browser = None
        if self._thread.is_alive():
            self._thread.join(JOIN_TIMEOUT)
            with self._lock:
                zc, browser = zc or self._zc, browser or self._browser
                self._zc = self._browser = None
        try:
            if browser is not None:
                browser.cancel()
        finally:
            if zc is not None:
                zc.close()
