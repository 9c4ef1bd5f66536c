"""What crosses loopback between a vcall client and the discovery server (issue 14): a raw
packet socket (root) sees no password, nick or discovery verb on the way to the TLS port; the
same sniffer does see them from a plain client (the control that proves it sees anything)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.fixtures.discovery import start_discovery_process
from tests.security.sniffer import LoopbackSniffer
from vcall.discovery.client import DiscoveryClient
from vcall.discovery.tls import PinStore
from vcall.identity import load_or_create_identity

# Every process a test starts is gone when it ends.
pytestmark = [
    pytest.mark.usefixtures("no_leaks"),
    pytest.mark.skipif(
        os.geteuid() != 0, reason="a raw packet socket needs root (the tests run as root)"
    ),
]

NICK, PASSWORD = "zebra42quiet", "s3cr3t-Pw_9"


def settle(sniffer: LoopbackSniffer) -> None:
    time.sleep(0.3)  # the last segments and ACKs reach the capture
    sniffer.stop()


def test_no_password_nick_or_verb_in_clear_to_the_tls_port(tmp_path: Path) -> None:
    server = start_discovery_process(tmp_path)
    try:
        fp = load_or_create_identity(tmp_path / "me").fingerprint
        with DiscoveryClient(*server.address, pins=PinStore(tmp_path / "pins.json")) as probe:
            probe.list_users()  # learn the TLS port (the capture below starts from scratch)
        pin = PinStore(tmp_path / "pins.json").get(*server.address)
        assert pin is not None
        with LoopbackSniffer({server.port, pin.tls_port}) as sniffer:
            with DiscoveryClient(*server.address, pins=PinStore(tmp_path / "fresh.json")) as client:
                client.register(NICK, "127.0.0.1", 5000, PASSWORD, ["V0", "V2435"], fingerprint=fp)
                assert client.query(NICK).fingerprint == fp
                assert [e.nick for e in client.list_users()] == [NICK]
                assert client.secure
            settle(sniffer)
        tls_bytes = sum(len(p) for p in sniffer.payloads)
        assert tls_bytes > 1000, "the sniffer saw no traffic: it cannot vouch for anything"
        assert sniffer.dropped == 0
        secrets = [PASSWORD.encode(), NICK.encode(), fp.removeprefix("sha256:").encode()]
        verbs = [b"REGISTER", b"QUERY", b"USER_FOUND", b"LIST_USERS", b"WELCOME"]
        for needle in secrets + verbs:
            assert not sniffer.seen(needle), f"{needle!r} crossed the wire in clear"
        # The only clear text: which port speaks TLS (no secret, no name).
        assert sniffer.seen(b"VCALL_TLS")

        # Control: the same sniffer sees a plain client's password and nick.
        with LoopbackSniffer({server.port}) as control:
            with DiscoveryClient(*server.address, plain=True) as client:
                client.register("yak77plain", "127.0.0.1", 5001, "plainPw_1", ["V0"])
            settle(control)
        assert control.seen(b"REGISTER yak77plain 127.0.0.1 5001 plainPw_1 V0")
    finally:
        assert server.stop() == 0, server.log()
