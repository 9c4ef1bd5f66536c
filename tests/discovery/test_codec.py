"""Golden bytes and property tests of the sans-IO discovery codec."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.errors import LocalProtocolError, RemoteProtocolError
from vcall.discovery.codec import (
    EMPTY,
    INCOMPLETE,
    Bye,
    ListUsers,
    Marker,
    Nok,
    NokCode,
    Query,
    Quit,
    Register,
    Rejected,
    Request,
    UserEntry,
    UserRecord,
    UsersList,
    Verb,
    Welcome,
    format_reply,
    format_request,
    parse_reply,
    parse_request,
)

SYNTAX = NokCode.SYNTAX_ERROR
UNKNOWN = NokCode.UNKNOWN_COMMAND

# --- requests: golden -------------------------------------------------------------------------

GOOD_REQUESTS = [
    (b"REGISTER alice 10.0.0.1 8000 pw V0", Register("alice", "10.0.0.1", 8000, "pw", ("V0",))),
    (
        b"REGISTER a.b_c-9 ::1 65535 p\xc3\xa1ss V0#V2435",
        Register("a.b_c-9", "::1", 65535, "páss", ("V0", "V2435")),
    ),
    (b"REGISTER x 127.0.0.1 1 !@#$% V1", Register("x", "127.0.0.1", 1, "!@#$%", ("V1",))),
    (b"QUERY alice", Query("alice")),
    (b"QUERY " + b"n" * 32, Query("n" * 32)),
    (b"LIST_USERS", ListUsers()),
    (b"QUIT", Quit()),
    # Trailing CR, LF and spaces are tolerated.
    (b"QUERY alice\r\n", Query("alice")),
    (b"QUERY alice\n", Query("alice")),
    (b"LIST_USERS \r\n", ListUsers()),
    (b"QUIT\r", Quit()),
]


@pytest.mark.parametrize(("raw", "expected"), GOOD_REQUESTS)
@pytest.mark.parametrize("final", [True, False])
def test_parse_good_requests(raw: bytes, expected: object, final: bool) -> None:
    assert parse_request(raw, final=final) == expected


BAD_REQUESTS = [
    (b"QUERY", SYNTAX),  # missing nick
    (b"QUERY a b", SYNTAX),
    (b"QUERY a#b", SYNTAX),  # separators in a nick
    (b"QUERY " + b"n" * 33, SYNTAX),
    (b"QUERY al\xffice", SYNTAX),  # not UTF-8
    (b"QUERY j\xc3\xa9", SYNTAX),  # UTF-8 but outside the nick alphabet
    (b"QUERY a\x00b", SYNTAX),
    (b"QUERY  alice", SYNTAX),  # doubled space
    (b" QUERY alice", SYNTAX),
    (b"LIST_USERS now", SYNTAX),
    (b"QUIT now", SYNTAX),
    (b"REGISTER alice 10.0.0.1 8000 pw", SYNTAX),
    (b"REGISTER alice 10.0.0.1 8000 pw V0 extra", SYNTAX),
    (b"REGISTER al#ce 10.0.0.1 8000 pw V0", SYNTAX),
    (b"REGISTER alice 10.0.0 8000 pw V0", SYNTAX),
    (b"REGISTER alice 010.0.0.1 8000 pw V0", SYNTAX),
    (b"REGISTER alice example.org 8000 pw V0", SYNTAX),
    (b"REGISTER alice fe80::1%eth0 8000 pw V0", SYNTAX),
    (b"REGISTER alice 10.0.0.1 0 pw V0", SYNTAX),
    (b"REGISTER alice 10.0.0.1 65536 pw V0", SYNTAX),
    (b"REGISTER alice 10.0.0.1 8000.0 pw V0", SYNTAX),
    (b"REGISTER alice 10.0.0.1 -80 pw V0", SYNTAX),
    (b"REGISTER alice 10.0.0.1 +80 pw V0", SYNTAX),
    (b"REGISTER alice 10.0.0.1 8000 pw V0#", SYNTAX),
    (b"REGISTER alice 10.0.0.1 8000 pw v0", SYNTAX),
    (b"REGISTER alice 10.0.0.1 8000 pw V0##V1", SYNTAX),
    (b"REGISTER alice 10.0.0.1 8000 pw H264", SYNTAX),
    (b"REGISTER alice 10.0.0.1 8000 " + b"p" * 129 + b" V0", SYNTAX),
    (b"REGISTER alice 10.0.0.1 8000 p\tw V0", SYNTAX),
    (b"query alice", UNKNOWN),
    (b"HELLO", UNKNOWN),
    (b"QUER", UNKNOWN),
    (b"CALLING bob 9000", UNKNOWN),
]


@pytest.mark.parametrize(("raw", "code"), BAD_REQUESTS)
def test_parse_bad_requests_when_final(raw: bytes, code: NokCode) -> None:
    result = parse_request(raw, final=True)
    assert isinstance(result, Rejected)
    assert result.code == code


@pytest.mark.parametrize(
    "raw",
    [
        b"QUE",
        b"QUERY",
        b"QUERY ",
        b"REGISTER alice",
        b"REGISTER alice 10.0.0.1 8000 pw",
        b"REGISTER alice 10.0.0.1 8000 pw V0#",
        b"REGISTER alice 10.0.0.1 8000 pw V0#V",
        b"REGISTER alice 10.0.0.1 8000 p\xc3",  # a character cut in two
        b"L",
    ],
)
def test_prefixes_wait_for_more_bytes(raw: bytes) -> None:
    assert parse_request(raw, final=False) is INCOMPLETE
    assert isinstance(parse_request(raw, final=True), Rejected)


@pytest.mark.parametrize(
    "raw", [b"HELLO", b"QUERY a b", b"QUERY a#b", b"QUERY \xff", b"LIST_USERS x"]
)
def test_hopeless_requests_are_rejected_at_once(raw: bytes) -> None:
    assert isinstance(parse_request(raw, final=False), Rejected)


@pytest.mark.parametrize("raw", [b"", b" ", b"\r\n", b"\n", b"  \r"])
def test_whitespace_only_is_empty(raw: bytes) -> None:
    assert parse_request(raw, final=True) is EMPTY


# --- formatting: golden -----------------------------------------------------------------------


def test_format_requests() -> None:
    reg = Register("alice", "10.0.0.1", 8000, "pw", ("V0", "V2435"))
    assert format_request(reg) == b"REGISTER alice 10.0.0.1 8000 pw V0#V2435"
    assert format_request(Query("bob")) == b"QUERY bob"
    assert format_request(ListUsers()) == b"LIST_USERS"
    assert format_request(Quit()) == b"QUIT"


@pytest.mark.parametrize(
    "request_",
    [
        Query("a b"),
        Query(""),
        Register("alice", "10.0.0.1", 8000, "p w", ("V0",)),
        Register("alice", "10.0.0.1", 0, "pw", ("V0",)),
        Register("alice", "host", 8000, "pw", ("V0",)),
        Register("alice", "10.0.0.1", 8000, "pw", ()),
        Register("alice", "10.0.0.1", 8000, "pw", ("V0#V1",)),
    ],
)
def test_format_refuses_what_the_grammar_cannot_carry(request_: Register | Query) -> None:
    with pytest.raises(LocalProtocolError):
        format_request(request_)
    assert issubclass(LocalProtocolError, ValueError)


def test_format_replies() -> None:
    assert format_reply(Welcome("alice", 1700000000.75)) == b"OK WELCOME alice 1700000000"
    assert (
        format_reply(UserRecord("alice", "10.0.0.1", 8000, ("V0", "V2435")))
        == b"OK USER_FOUND alice 10.0.0.1 8000 V0#V2435"
    )
    entries = (
        UserEntry("alice", "10.0.0.1", 8000, 1700000000.0),
        UserEntry("bob", "::1", 9000, 1700000001.9),
    )
    assert (
        format_reply(UsersList(entries))
        == b"OK USERS_LIST 2 alice 10.0.0.1 8000 1700000000#bob ::1 9000 1700000001#"
    )
    assert format_reply(UsersList(())) == b"OK USERS_LIST 0"
    assert format_reply(Bye()) == b"BYE"
    assert format_reply(Nok(NokCode.WRONG_PASS)) == b"NOK WRONG_PASS"
    assert format_reply(Nok(NokCode.USER_UNKNOWN)) == b"NOK USER_UNKNOWN"
    assert format_reply(Nok(NokCode.SYNTAX_ERROR)) == b"NOK SYNTAX_ERROR"
    assert format_reply(Nok(NokCode.UNKNOWN_COMMAND)) == b"NOK UNKNOWN_COMMAND"


# --- replies: lax parsing ---------------------------------------------------------------------


def test_parse_replies() -> None:
    assert parse_reply(b"OK WELCOME alice 1700000000.5", Verb.REGISTER, final=True) == (
        Welcome("alice", 1700000000.5)
    )
    assert parse_reply(b"OK USER_FOUND bob 1.2.3.4 8000.0 V0#V1\r\n", Verb.QUERY, final=True) == (
        UserRecord("bob", "1.2.3.4", 8000, ("V0", "V1"))
    )
    assert parse_reply(b"NOK USER_UNKNOWN", Verb.QUERY, final=False) == Nok(NokCode.USER_UNKNOWN)
    assert parse_reply(b"BYE", Verb.QUIT, final=False) == Bye()
    assert parse_reply(b"OK USERS_LIST 0", Verb.LIST_USERS, final=False) == UsersList(())
    assert parse_reply(b"OK USERS_LIST 0 ", Verb.LIST_USERS, final=False) == UsersList(())


def test_users_list_from_a_lax_server() -> None:
    raw = b"OK USERS_LIST 3 a#b 1.2.3.4 8000.0 1700000000.25#c 5.6.7.8 80 17#d#e ::1 1 18#"
    expected = UsersList(
        (
            UserEntry("a#b", "1.2.3.4", 8000, 1700000000.25),
            UserEntry("c", "5.6.7.8", 80, 17.0),
            UserEntry("d#e", "::1", 1, 18.0),
        )
    )
    assert parse_reply(raw, Verb.LIST_USERS, final=False) == expected
    # Every cut before the end is incomplete, never wrong.
    for cut in range(1, len(raw)):
        result = parse_reply(raw[:cut], Verb.LIST_USERS, final=False)
        assert result is INCOMPLETE or result == expected, cut


def test_users_list_miscounted_by_a_lax_server() -> None:
    raw = b"OK USERS_LIST 5 a 1.2.3.4 80 17#"
    assert parse_reply(raw, Verb.LIST_USERS, final=False) is INCOMPLETE
    result = parse_reply(raw, Verb.LIST_USERS, final=True)
    assert result == UsersList((UserEntry("a", "1.2.3.4", 80, 17.0),))


@pytest.mark.parametrize(
    ("raw", "verb"),
    [
        (b"HELLO", Verb.QUERY),
        (b"OK WELCOME alice 1700000000", Verb.QUERY),
        (b"NOK NOPE", Verb.QUERY),
        (b"OK USER_FOUND bob 1.2.3.4 http V0", Verb.QUERY),
        (b"OK USER_FOUND bob 1.2.3.4 70000 V0", Verb.QUERY),
        (b"OK USERS_LIST x a 1 2 3#", Verb.LIST_USERS),
        (b"OK USERS_LIST 1 a 1.2.3.4 80 17", Verb.LIST_USERS),
        (b"OK WELCOME alice nan", Verb.REGISTER),
        (b"WHAT", Verb.QUIT),
        # Digits that str.isdigit() accepts and int() refuses (issue 15, fault 5).
        ("OK USERS_LIST \u00b2".encode(), Verb.LIST_USERS),
        ("OK USERS_LIST 1\u00b9 a 1.2.3.4 80 17#".encode(), Verb.LIST_USERS),
        ("OK USERS_LIST \u0663 a 1.2.3.4 80 17#".encode(), Verb.LIST_USERS),
        ("OK USER_FOUND bob 1.2.3.4 8\u00b2 V0".encode(), Verb.QUERY),
        ("OK WELCOME alice 17\u00b2".encode(), Verb.REGISTER),
        ("OK USERS_LIST 1 a 1.2.3.4 8\u00b2 17#".encode(), Verb.LIST_USERS),
    ],
)
def test_garbage_replies_raise_remote_errors(raw: bytes, verb: Verb) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_reply(raw, verb, final=True)


# --- properties -------------------------------------------------------------------------------

nicks = st.from_regex(r"[A-Za-z0-9_.-]{1,32}", fullmatch=True)
ips = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str)
ports = st.integers(1, 65535)
passwords = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp", "Co", "Cn", "Cf")),
    min_size=1,
    max_size=128,
).filter(lambda p: p.isprintable() and not any(c.isspace() for c in p))
protocols = st.lists(st.integers(0, 10**9 - 1).map(lambda n: f"V{n}"), min_size=1, max_size=8)
requests = st.one_of(
    st.builds(Register, nicks, ips, ports, passwords, protocols.map(tuple)),
    st.builds(Query, nicks),
    st.just(ListUsers()),
    st.just(Quit()),
)


@given(requests, st.sampled_from([b"", b"\r\n", b"\n", b" ", b"\r"]))
def test_request_round_trip(request_: Register | Query | ListUsers | Quit, trailer: bytes) -> None:
    raw = format_request(request_)
    assert b"  " not in raw and not raw.endswith((b" ", b"\n"))
    assert parse_request(raw + trailer, final=True) == request_


@given(st.binary(max_size=300), st.booleans())
def test_parse_request_never_raises(raw: bytes, final: bool) -> None:
    result = parse_request(raw, final=final)
    if final:
        assert result is not INCOMPLETE
    assert isinstance(result, Marker | Rejected | Request)  # every request type, vcall's too


@given(st.binary(max_size=300), st.sampled_from(list(Verb)), st.booleans())
def test_parse_reply_raises_only_remote_errors(raw: bytes, verb: Verb, final: bool) -> None:
    try:
        result = parse_reply(raw, verb, final=final)
    except RemoteProtocolError:
        return
    if final:
        assert result is not INCOMPLETE


entries = st.builds(UserEntry, nicks, ips, ports, st.integers(0, 2**33).map(float))


@given(st.lists(entries, max_size=30), st.data())
def test_users_list_reassembles_at_any_cut(listed: list[UserEntry], data: st.DataObject) -> None:
    raw = format_reply(UsersList(tuple(listed)))
    expected = UsersList(tuple(listed))
    assert parse_reply(raw, Verb.LIST_USERS, final=False) == expected
    cut = data.draw(st.integers(1, len(raw)))
    partial = parse_reply(raw[:cut], Verb.LIST_USERS, final=False)
    assert partial is INCOMPLETE or partial == expected
