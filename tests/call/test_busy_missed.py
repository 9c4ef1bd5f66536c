"""A busy callee learns that someone tried (issue 15): two real call managers in a call, a third
caller over a real socket gets CALL_BUSY at once, and the callee reports the attempt only once
the directory vouches for the caller's nick and address; every attempt is counted."""

from __future__ import annotations

import socket
import time

import pytest

from tests.call.agents import register_raw
from tests.call.test_manager import Peer, connect
from tests.fixtures.discovery import DiscoveryProcess
from vcall.call.events import MissedWhileBusy

pytestmark = pytest.mark.usefixtures("no_leaks")


def calling(port: int, nick: str) -> bytes:
    """A classic CALLING from ``nick`` to ``port``; the whole reply until the callee closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(f"CALLING {nick} 40020".encode())
        reply = b""
        while chunk := conn.recv(100):
            reply += chunk
    return reply


def test_a_busy_callee_reports_verified_attempts_only(discovery_server: DiscoveryProcess) -> None:
    alice = Peer("alice", discovery_server.address)
    bob = Peer("bob", discovery_server.address)
    try:
        alice.manager.start()
        bob.manager.start()
        connect(alice, bob)
        port = bob.manager.registered_port
        register_raw(discovery_server.address, "carol", 40020, ["V0"])  # at 127.0.0.1
        t0 = time.monotonic()
        assert calling(port, "carol") == b"CALL_BUSY"  # at once, then closed
        busy_in = time.monotonic() - t0
        event = bob.wait(MissedWhileBusy, timeout=10)
        assert event == MissedWhileBusy("carol", "127.0.0.1")
        assert '"event": "missed_busy"' in event.to_json()
        # A nick the directory does not know (or knows at another address) is answered busy
        # just the same, and never reported: nobody can put a name in bob's history.
        assert calling(port, "mallory") == b"CALL_BUSY"
        deadline = time.monotonic() + 10
        while bob.manager.busy_calls["unverified"] < 1:
            assert time.monotonic() < deadline, bob.manager.busy_calls
            time.sleep(0.05)
        assert bob.manager.busy_calls == {"reported": 1, "unverified": 1, "over_cap": 0}
        assert bob.manager.refused == {"tls": 0, "downgrade": 0, "address": 0, "unknown": 0}
        assert [e.peer for e in bob.log if isinstance(e, MissedWhileBusy)] == ["carol"]
        assert bob.manager.state.value == "in_call"  # the call goes on
        alice.manager.hangup()
    finally:
        alice.manager.close()
        bob.manager.close()
    print(f"\nbusy answer in {busy_in * 1000:.0f} ms")
