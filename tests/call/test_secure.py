"""vcall/call/secure.py and the TLS side of transport.py: the preface, the caller check, the
srtp= token, and real TLS connections on loopback (mutual authentication, wrong keys)."""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vcall.call import secure, transport
from vcall.call.codec import (
    CallAccepted,
    Calling,
    Extension,
    LocalMessageError,
    PeerProtocolError,
    decode,
    encode,
)
from vcall.identity import Identity, load_or_create_identity

FP_A = "sha256:" + "a" * 64
FP_B = "sha256:" + "b" * 64


def refusal(**kw: object) -> str | None:
    args: dict[str, object] = {
        "nick": "alice",
        "conn_ip": "127.0.0.1",
        "conn_fingerprint": None,
        "record_ip": "127.0.0.1",
        "record_fingerprint": None,
    }
    args.update(kw)
    return secure.caller_refusal(**args)  # type: ignore[arg-type]


def test_caller_rules() -> None:
    assert refusal() is None  # a classic caller from its registered address
    assert refusal(conn_ip="::ffff:127.0.0.1") is None
    assert "registered from 10.0.0.1" in (refusal(record_ip="10.0.0.1") or "")
    assert "not in the directory" in (refusal(record_ip=None) or "")
    assert "downgrade" in (refusal(record_fingerprint=FP_A) or "")
    assert refusal(conn_fingerprint=FP_A, record_fingerprint=FP_A, conn_ip="10.1.1.1") is None
    assert FP_B in (refusal(conn_fingerprint=FP_B, record_fingerprint=FP_A) or "")
    assert "no key" in (refusal(conn_fingerprint=FP_A) or "")


def test_protection_labels() -> None:
    label = secure.protection_label
    assert label(tls=True, srtp=True, verified=True, classic=False) == "srtp+tls, verified"
    assert label(tls=False, srtp=False, verified=False, classic=True) == "none: classic peer"
    assert "media not encrypted" in label(tls=True, srtp=False, verified=True, classic=False)


def test_srtp_token_roundtrip_and_liberal_parsing() -> None:
    key = os.urandom(30)
    msg = CallAccepted("bob", 7, Extension(1, ("H264",), key))
    wire = encode(msg, terminated=True)
    assert wire.startswith(b"CALL_ACCEPTED bob 7 V2435 00000001 codecs=H264 srtp=")
    assert decode(wire) == msg
    assert key.hex() not in repr(msg) and "secret" in repr(msg)
    for bad in (b"srtp=", b"srtp=" + b"A" * 39, b"srtp=" + b"!" * 40):
        assert decode(b"CALLING a 5 V2435 00000001 " + bad).ext == Extension(1)  # type: ignore[union-attr]
    with pytest.raises(LocalMessageError):
        encode(Calling("a", 5, Extension(1, None, b"short")))


@settings(deadline=None)
@given(st.binary(max_size=600))
def test_parse_preface_survives_arbitrary_bytes(data: bytes) -> None:
    try:
        der = secure.parse_preface(data)
    except PeerProtocolError:
        return
    assert der


def test_preface_detection() -> None:
    assert secure.is_preface_start(b"") is None
    assert secure.is_preface_start(b"VCALL") is None
    assert secure.is_preface_start(b"VCALL-TLS/1 x") is True
    assert secure.is_preface_start(b"CALLING a 5") is False
    assert secure.is_preface_start(b"\x00VCALL") is False


@pytest.fixture
def ids(tmp_path: Path) -> tuple[Identity, Identity, Identity]:
    return (
        load_or_create_identity(tmp_path / "a"),
        load_or_create_identity(tmp_path / "b"),
        load_or_create_identity(tmp_path / "m"),
    )


async def _serve(
    identity: Identity,
) -> tuple[asyncio.Server, int, list[transport.ControlConnection]]:
    got: list[transport.ControlConnection] = []

    async def handler(conn: transport.ControlConnection) -> None:
        got.append(conn)
        msg = await conn.read_message(3.0)
        if msg is not None:
            await conn.send(msg, terminated=True)  # echo

    server = await transport.listen("127.0.0.1", 0, handler, identity=identity)
    return server, server.sockets[0].getsockname()[1], got


def test_tls_both_ways_and_classic_on_the_same_port(
    ids: tuple[Identity, Identity, Identity],
) -> None:
    a, b, _ = ids

    async def run() -> None:
        server, port, got = await _serve(b)
        try:
            conn = await transport.connect("127.0.0.1", port, 3.0, identity=a)
            assert conn.tls and conn.peer_fingerprint == b.fingerprint
            key = os.urandom(30)
            sent = Calling("alice", 5, Extension(1, ("JPEG",), key))
            await conn.send(sent, terminated=True)
            assert await conn.read_message(3.0) == sent
            await conn.aclose()
            assert got[0].tls and got[0].peer_fingerprint == a.fingerprint
            plain = await transport.connect("127.0.0.1", port, 3.0)
            await plain.send(Calling("alice", 5), terminated=False)
            assert await plain.read_message(3.0) == Calling("alice", 5)
            assert not got[1].tls and got[1].peer_fingerprint is None
            await plain.aclose()
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(run())


def test_a_client_certificate_other_than_the_preface_fails(
    ids: tuple[Identity, Identity, Identity],
) -> None:
    a, b, m = ids

    async def run() -> None:
        server, port, got = await _serve(b)
        before = transport.LISTENER_DROPS["tls_failed"]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(secure.preface_line(a))  # claims a's certificate ...
            await writer.drain()
            assert await reader.readuntil(b"\n") == secure.PREFACE_OK
            await writer.start_tls(secure.client_context(m))  # ... but holds only m's key
            writer.write(b"CALLING alice 5\n")
            await writer.drain()
            with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
                data = await asyncio.wait_for(reader.read(100), 3.0)
                if not data:
                    raise ConnectionError("closed")
            writer.close()
            await asyncio.sleep(0.1)
            assert got == []
            assert transport.LISTENER_DROPS["tls_failed"] == before + 1
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(run())


def test_garbage_preface_is_dropped_and_counted(ids: tuple[Identity, Identity, Identity]) -> None:
    _, b, _ = ids

    async def run() -> None:
        server, port, got = await _serve(b)
        before = transport.LISTENER_DROPS["tls_failed"]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"VCALL-TLS/1 " + base64.b64encode(b"not a certificate") + b"\n")
            await writer.drain()
            assert await asyncio.wait_for(reader.read(100), 3.0) == b""
            writer.close()
            assert got == [] and transport.LISTENER_DROPS["tls_failed"] == before + 1
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(run())


@pytest.mark.parametrize("answer", [b"", b"CALL_DENIED bob", b"VCALL-TLS/1 NO\n"])
def test_a_callee_that_does_not_speak_tls_fails_the_connect(
    ids: tuple[Identity, Identity, Identity], answer: bytes
) -> None:
    a, _, _ = ids

    async def run() -> None:
        async def classic(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readline()
            writer.write(answer)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(classic, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            with pytest.raises(transport.ConnectFailedError) as info:
                await transport.connect("127.0.0.1", port, 3.0, identity=a)
            assert info.value.reason == "tls"
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(run())
