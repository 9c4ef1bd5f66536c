"""Issue 14 with real processes: vcall-to-vcall calls over TLS with SRTP, forged callers and
forged media refused and counted, a raw packet sniffer on loopback (tests run as root)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.call.agents import AgentFactory, recv_until_quiet, register_raw
from vcall.call import transport
from vcall.call.codec import Calling, Extension, decode
from vcall.discovery.client import DiscoveryClient
from vcall.discovery.tls import PinStore
from vcall.identity import load_or_create_identity

MEDIA = ("--preset", "low", "--source", "pattern")
CTRL = ("--no-media",)
ETH_P_ALL = 0x0003
VERBS = (b"CALLING", b"CALL_ACCEPTED", b"CALL_ALIVE", b"CALL_END", b"CALL_HOLD", b"CALL_DENIED")
START_CODE = b"\x00\x00\x00\x01"
JPEG_SOI = b"\xff\xd8\xff"


@dataclass
class Sniffed:
    udp: list[tuple[int, bytes]] = field(default_factory=list)  # (destination port, payload)
    tcp: list[tuple[int, int, bytes]] = field(default_factory=list)  # (sport, dport, payload)


class LoopbackSniffer:
    """A raw AF_PACKET socket on ``lo``: every IPv4 UDP/TCP payload, until ``stop``."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.bind(("lo", 0))
        self.sock.settimeout(0.2)
        self.seen = Sniffed()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame, addr = self.sock.recvfrom(70000)
            except TimeoutError:
                continue
            except OSError:
                return
            if addr[2] == socket.PACKET_OUTGOING:
                continue  # loopback shows each packet twice: keep the incoming copy
            self._parse(frame[14:])  # lo has a (zeroed) Ethernet header

    def _parse(self, ip: bytes) -> None:
        if len(ip) < 20 or ip[0] >> 4 != 4:
            return
        ihl = (ip[0] & 0x0F) * 4
        proto = ip[9]
        body = ip[ihl:]
        if proto == socket.IPPROTO_UDP and len(body) >= 8:
            dport = struct.unpack_from("!H", body, 2)[0]
            self.seen.udp.append((dport, body[8:]))
        elif proto == socket.IPPROTO_TCP and len(body) >= 20:
            sport, dport = struct.unpack_from("!HH", body)
            offset = (body[12] >> 4) * 4
            if len(body) > offset:
                self.seen.tcp.append((sport, dport, body[offset:]))

    def stop(self) -> Sniffed:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        return self.seen


@pytest.fixture
def sniffer() -> Iterator[LoopbackSniffer]:
    s = LoopbackSniffer()
    try:
        yield s
    finally:
        s.stop()


def rtp_payload(datagram: bytes) -> bytes | None:
    """The payload of a plain RTP packet (RFC 3550 5.1), or None if it is not RTP/video."""
    if len(datagram) < 12 or datagram[0] >> 6 != 2 or 72 <= (datagram[1] & 0x7F) <= 76:
        return None  # not version 2, or RTCP
    at = 12 + 4 * (datagram[0] & 0x0F)
    if datagram[0] & 0x10 and len(datagram) >= at + 4:
        at += 4 + 4 * struct.unpack_from("!H", datagram, at + 2)[0]
    return datagram[at:] if len(datagram) > at else None


def plausible_nal(payload: bytes) -> bool:
    """Does the payload start with an H.264 NAL header as vcall sends (RFC 6184 5.3)?"""
    return payload[0] & 0x80 == 0 and payload[0] & 0x1F in (1, 5, 6, 7, 8, 24, 28)


def _stats(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _call(
    agents: AgentFactory, tmp_path: Path, *flags: str, seconds: str = "3"
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any], set[int]]:
    """A 3 s H.264 call alice -> bob: (alice's started, bob's incoming, alice's and bob's final
    stats, both call-control ports)."""
    bob = agents("bob", *MEDIA, *flags, "--auto-answer", "--once",
                 "--stats-json", str(tmp_path / "bob.json"))  # fmt: skip
    alice = agents("alice", *MEDIA, *flags, "--call", "bob", "--seconds", seconds,
                   "--codec", "h264", "--stats-json", str(tmp_path / "alice.json"))  # fmt: skip
    started = alice.wait("started", timeout=30)
    incoming = bob.wait("incoming", timeout=10)
    assert alice.wait("ended", timeout=40)["reason"] == "hangup"
    assert bob.wait("ended", timeout=20)["reason"] == "peer_hangup"
    assert alice.exit_code() == 0 and bob.exit_code() == 0
    ports = {alice.registered()["port"], bob.registered()["port"]}
    return (
        started,
        incoming,
        _stats(tmp_path / "alice.json"),
        _stats(tmp_path / "bob.json"),
        ports,
    )


def test_vcall_call_is_encrypted_and_verified(
    agents: AgentFactory, tmp_path: Path, sniffer: LoopbackSniffer
) -> None:
    started, incoming, alice_stats, bob_stats, control = _call(agents, tmp_path)
    seen = sniffer.stop()
    assert started["protection"] == incoming["protection"] == "srtp+tls, verified"
    assert alice_stats["protection"] == bob_stats["protection"] == "srtp+tls, verified"
    assert started["mode"] == "rtp" and started["codec"] == "H264"
    for stats in (alice_stats, bob_stats):  # the video went through, decrypted
        assert stats["latency_ms"]["capture_to_display"]["count"] > 20, stats
        assert stats["drops"]["unprotect_failed"] == 0
    media_ports = {started["local_rx_port"], started["peer_rx_port"]}
    video = [p for port, p in seen.udp if port in media_ports]
    payloads = [x for x in (rtp_payload(d) for d in video) if x]
    assert len(payloads) > 50, f"sniffed {len(video)} media datagrams"
    assert not any(START_CODE in d or JPEG_SOI in d for d in video)
    nal_like = sum(plausible_nal(p) for p in payloads) / len(payloads)
    assert nal_like < 0.4, f"{nal_like:.0%} of payloads start like NAL units"
    # Only our processes' connections: other test runs share the loopback interface.
    server_port = agents.server[1]
    ours = control | {server_port, server_port + 1}  # discovery: plain and (default) TLS port
    tcp = b"".join(p for s, d, p in seen.tcp if s in ours or d in ours)
    assert any(d == server_port for _, d, _ in seen.tcp), "no discovery traffic seen"
    for secret in (*VERBS, b"pw-alice", b"pw-bob", b"QUERY bob", b"REGISTER alice"):
        assert secret not in tcp, secret
    # the call-control connection: TLS after the preface, no nick, no verb, no key token
    call_control = [p for s, d, p in seen.tcp if s in control or d in control]
    assert any(p.startswith(b"VCALL-TLS/1 ") for p in call_control)
    assert len(b"".join(call_control)) > 1000  # the handshake, CALLING, heartbeats
    for secret in (b"alice", b"bob", b"srtp=", b"V2435"):
        assert secret not in b"".join(call_control), secret


def test_classic_call_is_visible_to_the_sniffer(
    agents: AgentFactory, tmp_path: Path, sniffer: LoopbackSniffer
) -> None:
    """The control experiment: the same sniffer and checks see a call without keys."""
    started, _incoming, alice_stats, bob_stats, control = _call(agents, tmp_path, "--no-identity")
    seen = sniffer.stop()
    assert started["protection"] == "none: peer has no key in the directory"
    assert alice_stats["protection"] == bob_stats["protection"] == started["protection"]
    media_ports = {started["local_rx_port"], started["peer_rx_port"]}
    payloads = [x for x in (rtp_payload(d) for port, d in seen.udp if port in media_ports) if x]
    assert len(payloads) > 50
    assert sum(plausible_nal(p) for p in payloads) / len(payloads) > 0.9
    tcp = b"".join(p for s, d, p in seen.tcp if s in control or d in control)
    assert b"CALLING alice" in tcp and b"CALL_ACCEPTED bob" in tcp


def test_classic_peer_still_gets_a_classic_call(agents: AgentFactory) -> None:
    bob = agents("bob", *CTRL, "--auto-answer", "--classic")
    alice = agents("alice", *CTRL, "--call", "bob", "--seconds", "1")
    started = alice.wait("started", timeout=20)
    assert started["mode"] == "v0" and started["protection"] == "none: classic peer"
    assert bob.wait("incoming")["protection"] == "none: classic peer"
    assert alice.wait("ended", timeout=20)["reason"] == "hangup"


def _tls_calling(port: int, identity_dir: Path, nick: str) -> bytes:
    """A CALLING over TLS with a key of our own (not the directory's for ``nick``)."""
    identity = load_or_create_identity(identity_dir)

    async def run() -> bytes:
        conn = await transport.connect("127.0.0.1", port, 5.0, identity=identity)
        try:
            await conn.send(Calling(nick, 40000, Extension(1, ("JPEG",))), terminated=True)
            msg = await conn.read_message(5.0)
            return b"" if msg is None else repr(msg).encode()
        finally:
            await conn.aclose()

    return asyncio.run(run())


def test_forged_callers_are_refused_before_ringing(
    agents: AgentFactory, tmp_path: Path, sniffer: LoopbackSniffer
) -> None:
    bob = agents("bob", *CTRL, "--auto-answer")
    alice = agents("alice", *CTRL)  # registers alice with her key
    port = bob.registered()["port"]
    alice.registered()
    # 1. a CALLING in clear claiming alice, whose entry has a key: a downgrade
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"CALLING alice 40000")
        assert recv_until_quiet(conn) == b"CALL_DENIED bob"
    # 2. a nick nobody registered
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"CALLING nobody 40000")
        assert recv_until_quiet(conn) == b"CALL_DENIED bob"
    # 3. a classic account registered from another address
    with DiscoveryClient(*agents.server, plain=True) as client:
        client.register("faraway", "10.9.8.7", 40000, "pw-faraway", ["V0"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"CALLING faraway 40000")
        assert recv_until_quiet(conn) == b"CALL_DENIED bob"
    # 4. over TLS, but with a key that is not alice's
    reply = _tls_calling(port, tmp_path / "mallory", "alice")
    assert b"CallDenied" in reply, reply
    time.sleep(0.3)
    assert not bob.has("incoming") and not bob.has("started")
    # ... while alice herself, and a registered classic caller, still get through
    register_raw(agents.server, "near", 40000, ["V0"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"CALLING near 40000")
        assert re.fullmatch(rb"CALL_ACCEPTED bob \d+", recv_until_quiet(conn))
        assert bob.wait("incoming", peer="near")["protection"] == "none: classic peer"
        conn.sendall(b"CALL_END near")
        bob.wait("ended", reason="peer_hangup")
    alice.send("call bob")
    # --no-media on both sides: no media to protect, the control channel is TLS, verified
    incoming = bob.wait("incoming", timeout=10, peer="alice")
    assert incoming["protection"] == "srtp+tls, verified"
    alice.wait("started", timeout=10)
    alice.send("hangup")
    alice.wait("ended")
    assert [e["peer"] for _, e in bob.events if e["event"] == "incoming"] == ["near", "alice"]
    # 5. alice's TLS connection replayed byte for byte: TLS 1.3 gives the server fresh
    # randomness, so the recorded Finished cannot match, and nothing rings
    time.sleep(0.3)
    seen = sniffer.stop()
    starts = [s for s, d, p in seen.tcp if d == port and p.startswith(b"VCALL-TLS/1 ")]
    alice_port = starts[-1]  # mallory's attempt came first
    recorded = [p for s, d, p in seen.tcp if s == alice_port and d == port]
    assert len(recorded) >= 3 and recorded[0].startswith(b"VCALL-TLS/1 ")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(recorded[0])
        assert recv_until_quiet(conn, quiet=0.3) == b"VCALL-TLS/1 OK\n"
        for segment in recorded[1:]:
            with contextlib.suppress(OSError):
                conn.sendall(segment)
        reply = recv_until_quiet(conn, quiet=0.5)
        assert not any(verb in reply for verb in VERBS)
    time.sleep(0.3)
    assert [e["peer"] for _, e in bob.events if e["event"] == "incoming"] == ["near", "alice"]


def test_callee_with_another_key_ends_the_call_before_ringing(
    agents: AgentFactory, tmp_path: Path
) -> None:
    carol = agents("carol", *CTRL, "--auto-answer")
    carol_port = carol.registered()["port"]
    # "dave" is registered with a key nobody at carol's port holds
    other = load_or_create_identity(tmp_path / "dave")
    pins = PinStore(tmp_path / "pins.json")
    with DiscoveryClient(*agents.server, pins=pins) as client:
        client.register(
            "dave", "127.0.0.1", carol_port, "pw-dave", ["V0", "V2435"],
            fingerprint=other.fingerprint,
        )  # fmt: skip
        assert client.query("dave").fingerprint == other.fingerprint
    alice = agents("alice", *CTRL, "--call", "dave")
    ended = alice.wait("ended", timeout=20)
    assert ended["reason"] == "identity_mismatch", ended
    assert other.fingerprint in ended["detail"]
    assert alice.exit_code() == 6
    time.sleep(0.3)
    assert not carol.has("incoming")


def _srtp_to(seen: Sniffed, port: int) -> list[bytes]:
    return [d for p, d in seen.udp if p == port and rtp_payload(d) is not None]


def test_forged_replayed_and_flipped_srtp_are_dropped_and_counted(
    agents: AgentFactory, tmp_path: Path, sniffer: LoopbackSniffer
) -> None:
    bob = agents("bob", *MEDIA, "--auto-answer", "--once",
                 "--stats-json", str(tmp_path / "bob.json"))  # fmt: skip
    alice = agents("alice", *MEDIA, "--call", "bob", "--seconds", "5", "--codec", "h264")
    started = alice.wait("started", timeout=30)
    assert started["protection"] == "srtp+tls, verified"
    bob_port = started["peer_rx_port"]
    time.sleep(1.5)
    captured = _srtp_to(sniffer.seen, bob_port)[:40]
    assert len(captured) >= 20
    injected = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as attacker:
        for datagram in captured[:20]:  # replays (the edge accepts any port of the peer's IP)
            attacker.sendto(datagram, ("127.0.0.1", bob_port))
            injected += 1
        for datagram in captured[20:30]:  # a flipped bit in the payload
            flipped = bytearray(datagram)
            flipped[len(flipped) // 2] ^= 0x04
            attacker.sendto(bytes(flipped), ("127.0.0.1", bob_port))
            injected += 1
        for datagram in captured[30:40]:  # forged: the real header, the sequence far ahead
            forged = bytearray(datagram)
            forged[2:4] = struct.pack("!H", (struct.unpack_from("!H", datagram, 2)[0] + 500))
            attacker.sendto(bytes(forged), ("127.0.0.1", bob_port))
            injected += 1
    assert alice.wait("ended", timeout=30)["reason"] == "hangup"
    assert bob.wait("ended", timeout=20)["reason"] == "peer_hangup"
    assert bob.exit_code(20) == 0
    stats = _stats(tmp_path / "bob.json")
    assert stats["drops"]["unprotect_failed"] >= injected, stats["drops"]
    assert stats["latency_ms"]["capture_to_display"]["count"] > 30


def test_srtp_keys_never_appear_in_clear(agents: AgentFactory) -> None:
    """The key token is refused on a connection without TLS (a local error, not sent)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        async def run() -> None:
            conn = await transport.connect("127.0.0.1", port, 3.0)
            try:
                with pytest.raises(ValueError, match="TLS"):
                    await conn.send(
                        Calling("a", 5, Extension(1, None, os.urandom(30))), terminated=True
                    )
            finally:
                await conn.aclose()

        asyncio.run(run())
        peer, _ = server.accept()
        with peer:
            peer.settimeout(0.3)
            assert recv_until_quiet(peer, quiet=0.3, total=0.6) == b""
    assert decode(b"CALLING a 5 V2435 00000001 srtp=short") == Calling("a", 5, Extension(1))
