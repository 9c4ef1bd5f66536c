"""The vcall key extension of the discovery grammar (codec.py): the fingerprint token in
<protocols>, VCALL_TLS, and their properties on arbitrary bytes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from vcall.discovery.codec import (
    INCOMPLETE,
    Nok,
    NokCode,
    Register,
    Rejected,
    TlsPort,
    TlsPortQuery,
    UserRecord,
    Verb,
    format_reply,
    format_request,
    parse_reply,
    parse_request,
)

FP = "sha256:" + "ab" * 32


def test_register_with_key_round_trips() -> None:
    req = Register("alice", "127.0.0.1", 5000, "pw", ("V0", "V2435"), FP)
    raw = format_request(req)
    assert raw == f"REGISTER alice 127.0.0.1 5000 pw V0#V2435#{FP}".encode()
    assert parse_request(raw, final=False) == req
    classic = Register("alice", "127.0.0.1", 5000, "pw", ("V0", "V2435"))
    assert format_request(classic) == b"REGISTER alice 127.0.0.1 5000 pw V0#V2435"


def test_partial_key_token_waits_and_bad_one_is_rejected() -> None:
    full = f"REGISTER alice 127.0.0.1 5000 pw V0#{FP}".encode()
    for cut in range(len(b"REGISTER alice 127.0.0.1 5000 pw V0#"), len(full)):
        assert parse_request(full[:cut], final=False) is INCOMPLETE, full[:cut]
    bad = b"REGISTER alice 127.0.0.1 5000 pw V0#sha256:" + b"AB" * 32
    assert isinstance(parse_request(bad, final=False), Rejected)
    assert isinstance(parse_request(b"REGISTER a 1.2.3.4 5 pw V0#sha256:ab", final=True), Rejected)
    # Only the last token may be a key, and only one.
    twice = f"REGISTER a 1.2.3.4 5 pw V0#{FP}#{FP}".encode()
    assert isinstance(parse_request(twice, final=True), Rejected)
    first = f"REGISTER a 1.2.3.4 5 pw {FP}#V0".encode()
    assert isinstance(parse_request(first, final=True), Rejected)
    alone = f"REGISTER a 1.2.3.4 5 pw {FP}".encode()
    assert isinstance(parse_request(alone, final=True), Rejected)


def test_user_found_with_and_without_key() -> None:
    keyed = UserRecord("bob", "10.0.0.2", 6000, ("V0", "V2435"), FP)
    raw = format_reply(keyed)
    assert raw == f"OK USER_FOUND bob 10.0.0.2 6000 V0#V2435#{FP}".encode()
    assert parse_reply(raw, Verb.QUERY, final=True) == keyed
    classic = parse_reply(b"OK USER_FOUND bob 10.0.0.2 6000 V0#V2435", Verb.QUERY, final=True)
    assert classic == UserRecord("bob", "10.0.0.2", 6000, ("V0", "V2435"), None)


def test_vcall_tls_both_ways() -> None:
    assert format_request(TlsPortQuery()) == b"VCALL_TLS"
    assert parse_request(b"VCALL_TLS", final=False) == TlsPortQuery()
    assert format_reply(TlsPort(8001)) == b"OK VCALL_TLS 8001"
    assert parse_reply(b"OK VCALL_TLS 8001", Verb.VCALL_TLS, final=True) == TlsPort(8001)
    # A classic server's answer.
    assert parse_reply(b"NOK UNKNOWN_COMMAND", Verb.VCALL_TLS, final=True) == Nok(
        NokCode.UNKNOWN_COMMAND
    )


fingerprints = st.text("0123456789abcdef", min_size=64, max_size=64).map(lambda h: "sha256:" + h)


@given(
    st.sampled_from(["alice", "b.o-b_9"]),
    st.lists(st.integers(0, 10**9 - 1).map(lambda n: f"V{n}"), min_size=1, max_size=31),
    st.none() | fingerprints,
)
def test_register_round_trip_property(nick: str, protocols: list[str], fp: str | None) -> None:
    req = Register(nick, "::1", 1, "p@ss", tuple(protocols), fp)
    assert parse_request(format_request(req), final=True) == req
    record = UserRecord(nick, "::1", 1, tuple(protocols), fp)
    assert parse_reply(format_reply(record), Verb.QUERY, final=True) == record


@given(st.binary(max_size=300), st.booleans())
def test_requests_with_key_tokens_never_raise(tail: bytes, final: bool) -> None:
    parse_request(b"REGISTER a 1.2.3.4 5 pw V0#sha256:" + tail, final=final)
