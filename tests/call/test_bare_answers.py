"""Fault 2 of issue 15: a classic callee that answers a bare word (``DENY``, ``BUSY``) or
anything else, and closes, ends the call at once with what was said, not after the answer
timeout. Real ``vcall agent`` callers against a raw-socket classic callee; plus the codec's
reading of the bare words."""

from __future__ import annotations

import contextlib
import socket
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.call.agents import AgentFactory, RawListener, recv_until_quiet, register_raw
from vcall.call.codec import CallBusy, CallDenied, PeerProtocolError, decode, encode

CTRL = ("--no-media",)
ANSWER_TIMEOUT_S = 20.0  # what the caller would wait for without the fix


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"DENY", CallDenied("")),
        (b"deny", CallDenied("")),
        (b"DENIED bob", CallDenied("bob")),
        (b"Reject", CallDenied("")),
        (b"BUSY", CallBusy("")),
        (b"busy\r\n", CallBusy("")),
    ],
)
def test_bare_words_read_as_denied_or_busy(raw: bytes, message: object) -> None:
    assert decode(raw) == message


def test_bare_words_are_never_sent() -> None:
    assert encode(CallDenied("alice")) == b"CALL_DENIED alice"
    assert encode(CallBusy()) == b"CALL_BUSY"


@given(st.binary(max_size=64))
def test_decode_raises_only_peer_protocol_error(raw: bytes) -> None:
    with contextlib.suppress(PeerProtocolError):  # anything else fails the test
        decode(raw)


def answer_and_close(listener: RawListener, reply: bytes) -> None:
    def callee(conn: socket.socket) -> None:
        listener.received.append(recv_until_quiet(conn, quiet=0.2, total=2.0))
        conn.sendall(reply)
        conn.close()

    listener.on_accept = callee


@pytest.mark.parametrize(
    ("reply", "reason", "said"),
    [
        (b"DENY", "peer_denied", "denied"),
        (b"BUSY", "busy", "busy"),
        (b"deny\n", "peer_denied", "denied"),
        (b"NOPE, not now", "failed", "'NOPE,'"),
    ],
)
def test_a_reply_then_eof_ends_the_call_at_once(
    agents: AgentFactory, reply: bytes, reason: str, said: str
) -> None:
    listener = RawListener()
    answer_and_close(listener, reply)
    try:
        register_raw(agents.server, "mino", listener.port, ["V0"])
        alice = agents(
            "alice", *CTRL, "--answer-timeout", str(ANSWER_TIMEOUT_S), "--ring-timeout", "15"
        )
        start = time.monotonic()
        alice.send("call mino")
        ended = alice.wait("ended", timeout=ANSWER_TIMEOUT_S / 2)
        took = time.monotonic() - start
        assert ended["reason"] == reason, ended
        assert said in ended["detail"], ended
        # At once: long before the answer timeout the caller would otherwise wait out.
        assert took < ANSWER_TIMEOUT_S / 2, took
        assert not alice.has("started")
        assert listener.received and listener.received[0].startswith(b"CALLING alice ")
    finally:
        listener.close()


def test_eof_without_a_reply_still_waits_for_a_fresh_connection(agents: AgentFactory) -> None:
    """The minority dialect (close, then answer on a fresh connection) is unaffected: EOF with
    nothing said does not end the call; the answer timeout does."""
    listener = RawListener()
    answer_and_close(listener, b"")
    try:
        register_raw(agents.server, "mino", listener.port, ["V0"])
        alice = agents("alice", *CTRL, "--answer-timeout", "2")
        alice.send("call mino")
        ended = alice.wait("ended", timeout=10)
        assert ended["reason"] == "answer_timeout", ended
    finally:
        listener.close()
