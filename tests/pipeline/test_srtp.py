"""SRTP/SRTCP protection (pipeline/transport/srtp.py) alone and at a real DatagramEdge."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import LocalProtocolError, RemoteProtocolError
from pipeline.transport.edge import DatagramEdge, ReplayError
from pipeline.transport.srtp import (
    AUTH_TAG_LEN,
    MASTER_KEY_LEN,
    SrtpProtection,
    new_master_key,
)

SOI = b"\xff\xd8"


def rtp(seq: int, payload: bytes = SOI + b"jpeg" * 40, ssrc: int = 0x1234, pt: int = 26) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, seq * 3000, ssrc) + payload


def rtcp_rr(ssrc: int = 0x1234) -> bytes:
    # RR with no report blocks (RFC 3550 6.4.2): V=2, RC=0, PT=201, length=1
    return struct.pack("!BBHI", 0x80, 201, 1, ssrc)


def pair(rtcp: bool = False) -> tuple[SrtpProtection, SrtpProtection]:
    key = new_master_key()
    return SrtpProtection(tx_key=key, rx_key=None, rtcp=rtcp), SrtpProtection(
        tx_key=None, rx_key=key, rtcp=rtcp
    )


def test_roundtrip_hides_payload_and_adds_tag() -> None:
    tx, rx = pair()
    for seq in range(5):
        plain = rtp(seq)
        wire = tx.protect(plain)
        assert len(wire) == len(plain) + AUTH_TAG_LEN
        assert wire[:12] == plain[:12]  # the header stays readable (RFC 3711 3.1)
        assert SOI not in wire[12:] and b"jpeg" not in wire
        assert rx.unprotect(wire) == plain


def test_rtcp_roundtrip_both_directions() -> None:
    a_key, b_key = new_master_key(), new_master_key()
    a = SrtpProtection(tx_key=a_key, rx_key=b_key, rtcp=True)
    b = SrtpProtection(tx_key=b_key, rx_key=a_key, rtcp=True)
    assert b.unprotect(a.protect(rtcp_rr(1))) == rtcp_rr(1)
    assert a.unprotect(b.protect(rtcp_rr(2))) == rtcp_rr(2)
    # SRTP and SRTCP of one key are different contexts: an SRTCP packet is not SRTP.
    srtp_rx = SrtpProtection(tx_key=None, rx_key=a_key)
    with pytest.raises(RemoteProtocolError):
        srtp_rx.unprotect(a.protect(rtcp_rr(3)) + b"\x00" * 4)


def test_replay_is_refused_as_a_replay() -> None:
    tx, rx = pair()
    wire = tx.protect(rtp(1))
    rx.unprotect(wire)
    with pytest.raises(ReplayError):
        rx.unprotect(wire)
    # reordering within the window is fine
    later, earlier = tx.protect(rtp(3)), tx.protect(rtp(2))
    assert rx.unprotect(later) == rtp(3)
    assert rx.unprotect(earlier) == rtp(2)


def test_srtcp_replay_is_refused() -> None:
    tx, rx = pair(rtcp=True)
    wire = tx.protect(rtcp_rr())
    rx.unprotect(wire)
    with pytest.raises(ReplayError):
        rx.unprotect(wire)


def test_index_far_behind_the_window_is_a_replay() -> None:
    tx, rx = pair()
    old = tx.protect(rtp(0))
    for seq in range(1, 1100):
        rx.unprotect(tx.protect(rtp(seq)))
    with pytest.raises(ReplayError):
        rx.unprotect(old)


@pytest.mark.parametrize("position", [0, 1, 5, 12, 40, -1, -AUTH_TAG_LEN])
def test_a_flipped_bit_anywhere_is_refused(position: int) -> None:
    tx, rx = pair()
    wire = bytearray(tx.protect(rtp(7)))
    wire[position] ^= 0x01
    with pytest.raises(RemoteProtocolError) as info:
        rx.unprotect(bytes(wire))
    assert not isinstance(info.value, ReplayError)


def test_wrong_key_and_plain_rtp_are_refused() -> None:
    tx, _ = pair()
    _, other_rx = pair()
    with pytest.raises(RemoteProtocolError):
        other_rx.unprotect(tx.protect(rtp(1)))
    with pytest.raises(RemoteProtocolError):
        other_rx.unprotect(rtp(2))  # an injected clear packet


def test_directions_without_a_key_refuse() -> None:
    tx, rx = pair()
    with pytest.raises(LocalProtocolError):
        rx.protect(rtp(1))
    with pytest.raises(RemoteProtocolError):
        tx.unprotect(tx.protect(rtp(1)))


def test_bad_arguments_are_local_errors() -> None:
    with pytest.raises(LocalProtocolError):
        SrtpProtection(tx_key=b"short", rx_key=None)
    with pytest.raises(LocalProtocolError):
        SrtpProtection(tx_key=None, rx_key=new_master_key(), replay_window=10)
    tx, _ = pair()
    with pytest.raises(LocalProtocolError):
        tx.protect(b"\x80" * 5)
    with pytest.raises(LocalProtocolError):
        tx.protect(rtp(1, b"x" * 1500))
    assert len(new_master_key()) == MASTER_KEY_LEN
    assert new_master_key() != new_master_key()


@settings(deadline=None)  # a loaded 2-core box: no per-example deadline
@given(st.binary(max_size=2000), st.booleans())
def test_unprotect_survives_arbitrary_bytes(data: bytes, rtcp: bool) -> None:
    _, rx = pair(rtcp)
    with pytest.raises(RemoteProtocolError):
        rx.unprotect(data)


@settings(deadline=None)
@given(st.binary(min_size=0, max_size=1300), st.integers(0, 0xFFFF), st.integers(0, 2**32 - 1))
def test_roundtrip_property(payload: bytes, seq: int, ssrc: int) -> None:
    tx, rx = pair()
    plain = rtp(seq, payload, ssrc)
    assert rx.unprotect(tx.protect(plain)) == plain


@settings(deadline=None)
@given(st.binary(min_size=1, max_size=200), st.integers(0, 10_000))
def test_any_tampering_is_refused(garbage: bytes, where: int) -> None:
    tx, rx = pair()
    wire = bytearray(tx.protect(rtp(9)))
    at = where % len(wire)
    changed = wire[:at] + garbage + wire[at + len(garbage) :]
    if bytes(changed) == bytes(wire):
        return
    with pytest.raises(RemoteProtocolError):
        rx.unprotect(bytes(changed))


@pytest.fixture
def sockets() -> Iterator[tuple[socket.socket, socket.socket, socket.socket]]:
    made = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    try:
        for s in made:
            s.bind(("127.0.0.1", 0))
        yield made[0], made[1], made[2]
    finally:
        for s in made:
            s.close()


def _drain(edge: DatagramEdge) -> list[bytes]:
    import select

    out: list[bytes] = []
    while select.select([edge.fileno()], [], [], 0.5)[0]:
        got = edge.receive()
        if got is None:
            if not select.select([edge.fileno()], [], [], 0.05)[0]:
                break
            continue
        out.append(got[0])
    return out


def test_edge_drops_and_counts_forged_replayed_and_flipped(
    sockets: tuple[socket.socket, socket.socket, socket.socket],
) -> None:
    send_sock, recv_sock, attacker = sockets
    key = new_master_key()
    sender = DatagramEdge(send_sock, protection=SrtpProtection(tx_key=key, rx_key=None))
    receiver = DatagramEdge(recv_sock, protection=SrtpProtection(tx_key=None, rx_key=key))
    port = recv_sock.getsockname()[1]
    sender.connect("127.0.0.1", port)
    receiver.connect("127.0.0.1", None)
    for seq in range(10):
        sender.send(rtp(seq))
    got = _drain(receiver)
    assert got == [rtp(seq) for seq in range(10)]
    # What an attacker on the path can do: replay, flip a bit, inject clear RTP, forge.
    tx_copy = SrtpProtection(tx_key=key, rx_key=None)
    replay = tx_copy.protect(rtp(3))  # identical to the packet already delivered
    attacker.sendto(replay, ("127.0.0.1", port))
    flipped = bytearray(tx_copy.protect(rtp(20)))
    flipped[30] ^= 0x80
    attacker.sendto(bytes(flipped), ("127.0.0.1", port))
    attacker.sendto(rtp(21), ("127.0.0.1", port))
    forged = SrtpProtection(tx_key=new_master_key(), rx_key=None).protect(rtp(22))
    attacker.sendto(forged, ("127.0.0.1", port))
    assert _drain(receiver) == []
    stats = receiver.stats
    assert stats.received == 10
    assert stats.unprotect_failed == 4
    assert stats.unprotect_replayed == 1
