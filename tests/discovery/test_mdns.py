"""mDNS / DNS-SD announcement and browsing of directories (issue 15), with real zeroconf on
loopback: multicast over ``lo`` works on this machine (the kernel loops multicast back on the
interface chosen with IP_MULTICAST_IF), so no network namespace is needed."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st
from zeroconf import ServiceStateChange

from tests.fixtures.discovery import start_discovery_process
from vcall.discovery.embedded import EmbeddedServer
from vcall.discovery.mdns import (
    MAX_FOUND,
    MAX_INSTANCE,
    SERVICE_TYPE,
    DirectoryBrowser,
    FoundDirectory,
    directory_from,
    instance_name,
)
from vcall.discovery.server import ServerConfig

pytestmark = pytest.mark.usefixtures("no_leaks")


@given(
    st.text(max_size=120),
    st.lists(st.text(max_size=50), max_size=4),
    st.one_of(st.integers(-5, 70000), st.none(), st.text(max_size=5)),
    st.dictionaries(st.binary(max_size=10), st.one_of(st.none(), st.binary(max_size=10))),
)
def test_directory_from_any_announcement_never_raises(
    name: str, addresses: list[str], port: object, properties: dict[bytes, bytes | None]
) -> None:
    found = directory_from(name, addresses, port, properties)
    if found is not None:
        assert isinstance(port, int) and 1 <= port <= 65535 and found.port == port
        assert found.host in addresses and "." not in found.host.replace(".", "", 3)
        assert found.tls_port is None or 1 <= found.tls_port <= 65535
        assert len(found.name.encode()) <= 4 * MAX_INSTANCE


def test_directory_from_golden() -> None:
    name = f"office.{SERVICE_TYPE}"
    found = directory_from(name, ["fe80::1", "192.0.2.7"], 8000, {b"tls": b"8001"})
    assert found == FoundDirectory("office", "192.0.2.7", 8000, 8001)
    assert found.label == "office — 192.0.2.7:8000"
    assert directory_from(name, ["::1"], 8000, {}) is None  # IPv4 only
    assert directory_from(name, ["192.0.2.7"], 0, {}) is None
    bad_tls = directory_from(name, ["192.0.2.7"], 8000, {b"tls": b"\xc2\xb2"})
    assert bad_tls is not None and bad_tls.tls_port is None


@given(st.text(max_size=200))
def test_instance_names_fit_dns_sd(name: str) -> None:
    label = instance_name(name)
    assert 0 < len(label.encode("utf-8")) <= MAX_INSTANCE
    assert "." not in label and label.isprintable()


@pytest.fixture
def browser() -> Iterator[DirectoryBrowser]:
    b = DirectoryBrowser(interfaces=["127.0.0.1"])
    b.start()
    try:
        yield b
    finally:
        b.close()


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


def named(browser: DirectoryBrowser, name: str) -> FoundDirectory | None:
    return next((d for d in browser.found() if d.name == name), None)


def test_vcall_discovery_announces_itself(tmp_path: Path, browser: DirectoryBrowser) -> None:
    name = f"vcall-test-{uuid.uuid4().hex[:8]}"  # other test runs may announce meanwhile
    server = start_discovery_process(
        tmp_path, ["--scrypt-n", "1024", "--mdns", "--mdns-name", name]
    )
    try:
        with socket.create_connection(server.address, timeout=5) as sock:
            sock.sendall(b"VCALL_TLS")
            tls_port = int(sock.recv(64).split()[-1])
        wait_until(lambda: named(browser, name) is not None, 10, "the announcement")
        assert named(browser, name) == FoundDirectory(name, "127.0.0.1", server.port, tls_port)
    finally:
        assert server.stop() == 0, server.log()
    # SIGTERM: the server says goodbye (TTL 0), so it leaves the list at once.
    wait_until(lambda: named(browser, name) is None, 5, "the goodbye")


def test_the_embedded_directory_announces_itself(browser: DirectoryBrowser) -> None:
    name = f"vcall-embedded-{uuid.uuid4().hex[:8]}"
    config = ServerConfig(mdns=True, mdns_name=name)
    with EmbeddedServer("127.0.0.1", 0, config=config, tls_port=None) as server:
        assert server.address is not None
        port = server.address[1]
        wait_until(lambda: named(browser, name) is not None, 10, "the announcement")
        assert named(browser, name) == FoundDirectory(name, "127.0.0.1", port, None)
    wait_until(lambda: named(browser, name) is None, 5, "the goodbye")


class _Flood:
    """Stands in for zeroconf in a unit test of the browser's own bookkeeping: every service
    resolves to a usable directory (a host on the LAN announcing thousands of them)."""

    class _Info:
        port = 8000
        properties: ClassVar[dict[bytes, bytes]] = {b"txtvers": b"1"}

        def parsed_addresses(self) -> list[str]:
            return ["192.0.2.7"]

    def get_service_info(self, _type: str, _name: str, timeout: int = 0) -> _Info:
        return self._Info()


def test_a_flood_of_announcements_is_capped_and_counted() -> None:
    browser = DirectoryBrowser()
    zc: Any = _Flood()
    for i in range(MAX_FOUND + 50):
        browser._changed(zc, SERVICE_TYPE, f"d{i}.{SERVICE_TYPE}", ServiceStateChange.Added)
    assert len(browser.found()) == MAX_FOUND and browser.ignored == 50
    # One of those kept goes away: a new one takes its place.
    browser._changed(zc, SERVICE_TYPE, f"d0.{SERVICE_TYPE}", ServiceStateChange.Removed)
    browser._changed(zc, SERVICE_TYPE, f"new.{SERVICE_TYPE}", ServiceStateChange.Added)
    assert len(browser.found()) == MAX_FOUND and browser.ignored == 50
    browser.close()
