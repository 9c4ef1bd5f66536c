"""vcall against raw-socket classic peers: the minority dialect (a fresh connection per message)
and the majority one, checking byte for byte that a classic peer never receives anything of
vcall's extension (no tokens, no LF, no CALL_ALIVE) nor two messages glued together."""

from __future__ import annotations

import re
import socket
import time

from tests.call.agents import (
    AgentFactory,
    RawListener,
    recv_until_quiet,
    register_raw,
    send_fresh,
)

CTRL = ("--no-media",)


def test_listener_minority_dialect_fresh_connection_per_message(agents: AgentFactory) -> None:
    listener = RawListener()  # mino's own call-control port, for bob's messages to it
    try:
        register_raw(agents.server, "mino", listener.port, ["V0"])
        bob = agents("bob", *CTRL, "--auto-answer")
        port = bob.registered()["port"]
        # CALLING, read the reply, close at once (EOF right after CALL_ACCEPTED).
        reply = send_fresh(port, b"CALLING mino 40000", read_reply=True)
        assert re.fullmatch(rb"CALL_ACCEPTED bob \d+", reply), reply  # classic form exactly
        started = bob.wait("started")
        assert started["mode"] == "v0" and started["peer_rx_port"] == 40000
        time.sleep(1.5)
        assert not bob.has("ended"), "EOF right after CALL_ACCEPTED must be tolerated"
        send_fresh(port, b"CALL_HOLD mino")
        bob.wait("hold", local=False, remote=True)
        send_fresh(port, b"\xff\xfe garbage\r\n")  # ignored, the call goes on
        send_fresh(port, b"CALL_RESUME mino\r\n")
        bob.wait("hold", local=False, remote=False)
        bob.send("hold")  # the reply direction: a fresh connection to mino's registered port
        listener.wait_for(b"CALL_HOLD bob")
        send_fresh(port, b"CALL_END mino")
        assert bob.wait("ended")["reason"] == "peer_hangup"
    finally:
        listener.close()


def test_minority_callee_answers_on_a_fresh_connection(agents: AgentFactory) -> None:
    listener = RawListener()
    alice_port: list[int] = []

    def minority_callee(conn: socket.socket) -> None:
        listener.on_accept = None  # later connections: just collect
        listener.received.append(recv_until_quiet(conn))
        conn.close()  # no reply on this connection...
        time.sleep(0.2)  # ...but on a fresh one to the caller's registered port
        send_fresh(alice_port[0], b"CALL_ACCEPTED mino 40002")

    listener.on_accept = minority_callee
    try:
        register_raw(agents.server, "mino", listener.port, ["V0"])
        alice = agents("alice", *CTRL)
        alice_port.append(alice.registered()["port"])
        alice.send("call mino")
        started = alice.wait("started")
        assert started["mode"] == "v0" and started["peer_rx_port"] == 40002
        assert re.fullmatch(rb"CALLING alice \d+", listener.received[0])
        alice.send("hangup")
        listener.wait_for(b"CALL_END alice")
        assert alice.wait("ended")["reason"] == "hangup"
    finally:
        listener.close()


def test_classic_callee_gets_strict_classic_bytes_only(agents: AgentFactory) -> None:
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(10)
    try:
        register_raw(agents.server, "classic", srv.getsockname()[1], ["V0"])
        alice = agents("alice", *CTRL, "--call", "classic")
        conn, _ = srv.accept()
        with conn:
            calling = recv_until_quiet(conn)
            assert re.fullmatch(rb"CALLING alice \d+", calling), calling  # 3 tokens, no LF
            conn.sendall(b"CALL_ACCEPTED classic 40000")
            assert alice.wait("started")["mode"] == "v0"
            assert recv_until_quiet(conn, quiet=1.5, total=1.5) == b""  # no heartbeat
            conn.sendall(b"CALL_HOLD classic")
            alice.wait("hold", local=False, remote=True)
            alice.send("hold")
            conn.settimeout(5)
            assert conn.recv(100) == b"CALL_HOLD alice"
            alice.send("resume")
            alice.send("hangup")  # two commands at once: never glued on the wire
            assert conn.recv(100) == b"CALL_RESUME alice"
            assert conn.recv(100) == b"CALL_END alice"
            assert conn.recv(100) == b""  # then the connection closes
        assert alice.wait("ended")["reason"] == "hangup"
    finally:
        srv.close()


def test_classic_caller_busy_and_connection_loss(agents: AgentFactory) -> None:
    bob = agents("bob", *CTRL, "--auto-answer")
    port = bob.registered()["port"]
    register_raw(agents.server, "classic", 40000, ["V0"])  # callers must be in the directory
    register_raw(agents.server, "other", 40004, ["V0"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"CALLING classic 40000 V1 foreign-extension")  # not ours: stays classic
        assert re.fullmatch(rb"CALL_ACCEPTED bob \d+", recv_until_quiet(conn))
        assert bob.wait("incoming")["extension"] is False
        assert bob.wait("started")["mode"] == "v0"
        busy = send_fresh(port, b"CALLING other 40004", read_reply=True)
        assert busy == b"CALL_BUSY"  # bare
        assert recv_until_quiet(conn, quiet=1.5, total=1.5) == b""  # nothing extension-only
        assert not bob.has("ended")
    # a classic peer closing the connection long after CALL_ACCEPTED ends the call
    assert bob.wait("ended")["reason"] == "connection_lost"


def test_listener_survives_garbage_and_slow_senders(agents: AgentFactory) -> None:
    bob = agents("bob", *CTRL, "--auto-answer")
    port = bob.registered()["port"]
    register_raw(agents.server, "slow", 40000, ["V0"])  # callers must be in the directory
    send_fresh(port, b"\x00" * 5000)
    send_fresh(port, b"HELLO")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        for byte in b"CALLING slow 40000":
            conn.send(bytes([byte]))
        assert re.fullmatch(rb"CALL_ACCEPTED bob \d+", recv_until_quiet(conn))
        conn.sendall(b"CALL_END slow")
        assert bob.wait("ended")["reason"] == "peer_hangup"


def test_idle_connection_flood_is_bounded(agents: AgentFactory) -> None:
    bob = agents("bob", *CTRL, "--auto-answer")
    port = bob.registered()["port"]
    idle = [socket.create_connection(("127.0.0.1", port), timeout=3) for _ in range(40)]
    try:
        closed = 0
        for s in idle[32:]:  # over the cap: closed at once, without waiting for a message
            s.settimeout(3)
            closed += s.recv(10) == b""
        assert closed == 8
    finally:
        for s in idle:
            s.close()
    time.sleep(0.3)  # the closed ones release their places
    register_raw(agents.server, "late", 40000, ["V0"])  # callers must be in the directory
    reply = send_fresh(port, b"CALLING late 40000", read_reply=True)
    assert re.fullmatch(rb"CALL_ACCEPTED bob \d+", reply)


def test_classic_callee_closing_right_after_accepting(agents: AgentFactory) -> None:
    listener = RawListener()

    def accept_and_close(conn: socket.socket) -> None:
        listener.on_accept = None  # later connections: just collect
        listener.received.append(recv_until_quiet(conn))
        conn.sendall(b"CALL_ACCEPTED mino 40006")
        conn.close()  # EOF right after CALL_ACCEPTED

    listener.on_accept = accept_and_close
    try:
        register_raw(agents.server, "mino", listener.port, ["V0"])
        alice = agents("alice", *CTRL, "--call", "mino")
        assert alice.wait("started")["mode"] == "v0"
        time.sleep(1.5)
        assert not alice.has("ended"), "EOF right after CALL_ACCEPTED must be tolerated"
        alice.send("hold")  # goes on a fresh connection to mino's registered port
        listener.wait_for(b"CALL_HOLD alice")
        send_fresh(alice.registered()["port"], b"CALL_END mino")
        assert alice.wait("ended")["reason"] == "peer_hangup"
    finally:
        listener.close()
