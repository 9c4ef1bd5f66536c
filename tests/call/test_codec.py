"""Call-control codec: golden bytes, liberal parsing, framing of split/glued input, properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import LocalProtocolError
from vcall.call.codec import (
    CallAccepted,
    CallAlive,
    CallBusy,
    CallDenied,
    CallEnd,
    CallHold,
    Calling,
    CallResume,
    Extension,
    Message,
    MessageReader,
    PeerProtocolError,
    decode,
    encode,
    is_extension_only,
)

GOLDEN: list[tuple[Message, bytes]] = [
    (Calling("alice", 5000), b"CALLING alice 5000"),
    (CallAccepted("bob", 5002), b"CALL_ACCEPTED bob 5002"),
    (CallDenied("bob"), b"CALL_DENIED bob"),
    (CallBusy(), b"CALL_BUSY"),
    (CallHold("alice"), b"CALL_HOLD alice"),
    (CallResume("alice"), b"CALL_RESUME alice"),
    (CallEnd("alice"), b"CALL_END alice"),
]


@pytest.mark.parametrize(("msg", "wire"), GOLDEN)
def test_classic_golden_bytes_round_trip(msg: Message, wire: bytes) -> None:
    assert encode(msg) == wire  # no terminator, single spaces
    assert decode(wire) == msg
    assert not is_extension_only(msg)


def test_extension_tokens_and_terminator() -> None:
    msg = Calling("alice", 5000, Extension(0x1A2B3C4D))
    assert encode(msg, terminated=True) == b"CALLING alice 5000 V2435 1a2b3c4d\n"
    assert decode(b"CALLING alice 5000 V2435 1a2b3c4d\n") == msg
    assert is_extension_only(msg)
    assert is_extension_only(CallAlive("a"))
    assert encode(CallAccepted("b", 7, Extension(1))) == b"CALL_ACCEPTED b 7 V2435 00000001"


@pytest.mark.parametrize(
    ("wire", "msg"),
    [
        (b"CALLING alice 5000 V1 whatever", Calling("alice", 5000)),  # foreign extension ignored
        (b"CALLING alice 5000 V2435 xyz", Calling("alice", 5000)),  # malformed token ignored
        (b"CALLING  alice   5000.0 \r\n", Calling("alice", 5000)),
        (b"CALL_BUSY bob", CallBusy("bob")),
        (b"CALL_END", CallEnd("")),
        (b"  CALL_HOLD x\n", CallHold("x")),
    ],
)
def test_liberal_decoding(wire: bytes, msg: Message) -> None:
    assert decode(wire) == msg


@pytest.mark.parametrize(
    "wire",
    [b"", b"HELLO x", b"CALLING alice", b"CALLING a 0", b"CALLING a 70000", b"CALLING a 5.5",
     b"CALL_END \xff\xfe", b"CALLING a port"],
)  # fmt: skip
def test_garbage_is_a_peer_error(wire: bytes) -> None:
    with pytest.raises(PeerProtocolError):
        decode(wire)


@pytest.mark.parametrize(
    "msg",
    [Calling("", 5), Calling("a b", 5), Calling("a#b", 5), Calling("a", 0), Calling("a", 70000),
     CallEnd(""), CallHold("x\n"), Calling("xCALL_ENDx", 5), Calling("a", 5, Extension(1 << 32))],
)  # fmt: skip
def test_bad_outgoing_message_is_a_local_error(msg: Message) -> None:
    with pytest.raises(LocalProtocolError):
        encode(msg)


def _drain(reader: MessageReader, now: float) -> list[Message]:
    out = []
    while (msg := reader.next_message(now)) is not None:
        out.append(msg)
    return out


def test_split_message_waits_for_the_gap() -> None:
    r = MessageReader(gap=0.05)
    r.feed(b"CALLING ali", 0.0)
    assert r.next_message(0.01) is None
    r.feed(b"ce 50", 0.02)
    assert r.next_message(0.03) is None
    assert r.deadline() == pytest.approx(0.07)
    r.feed(b"00", 0.04)
    assert r.next_message(0.05) is None
    assert r.next_message(0.1) == Calling("alice", 5000)
    assert r.deadline() is None


def test_glued_and_terminated_messages_split_at_once() -> None:
    r = MessageReader()
    r.feed(b"CALL_HOLD aliceCALL_RESUME alice\r\nCALL_BUSYCALL_END alice\n", 0.0)
    assert _drain(r, 0.0) == [CallHold("alice"), CallResume("alice"), CallBusy(), CallEnd("alice")]


def test_eof_completes_a_pending_message() -> None:
    r = MessageReader()
    r.feed(b"CALL_DENIED bob", 0.0)
    assert r.next_message(0.0) is None
    r.feed(b"", 0.0)
    assert r.next_message(0.0) == CallDenied("bob")
    assert r.eof


def test_garbage_is_consumed_and_reading_goes_on() -> None:
    r = MessageReader()
    r.feed(b"junk junk\nCALL_END a\n", 0.0)
    with pytest.raises(PeerProtocolError):
        r.next_message(0.0)
    assert r.next_message(0.0) == CallEnd("a")


def test_overlong_input_is_bounded() -> None:
    r = MessageReader(max_size=64)
    r.feed(b"CALLING " + b"a" * 100, 0.0)
    with pytest.raises(PeerProtocolError):
        r.next_message(0.0)
    assert r.next_message(10.0) is None  # buffer was discarded


messages = st.one_of(
    st.builds(Calling, st.sampled_from(["alice", "b0b", "x_y"]), st.integers(1, 65535),
              st.none() | st.builds(Extension, st.integers(0, 2**32 - 1))),
    st.builds(CallAccepted, st.sampled_from(["bob", "c"]), st.integers(1, 65535),
              st.none() | st.builds(Extension, st.integers(0, 2**32 - 1))),
    st.builds(CallDenied, st.just("bob")),
    st.just(CallBusy()),
    st.builds(CallHold, st.just("a")),
    st.builds(CallResume, st.just("a")),
    st.builds(CallEnd, st.just("a")),
    st.builds(CallAlive, st.just("a")),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(messages, st.sampled_from([b"", b"\n", b"\r\n"])), min_size=1, max_size=8),
    st.data(),
)
def test_any_split_of_glued_messages_decodes_the_same(
    items: list[tuple[Message, bytes]], data: st.DataObject
) -> None:
    stream = b"".join(encode(m) + end for m, end in items)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    r = MessageReader(gap=0.05)
    out: list[Message] = []
    prev, now = 0, 0.0
    for cut in [*cuts, len(stream)]:
        if cut > prev:  # feed(b"") would mean EOF
            now += 0.01  # chunks of one message arrive quicker than the gap
            r.feed(stream[prev:cut], now)
            out += _drain(r, now)
        prev = cut
    r.feed(b"", 1.0)
    out += _drain(r, 1.0)
    assert out == [m for m, _ in items]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=8), st.floats(0, 10))
def test_arbitrary_bytes_never_crash_the_reader(chunks: list[bytes], step: float) -> None:
    r = MessageReader(max_size=256)
    now = 0.0
    for chunk in [*chunks, b""]:
        r.feed(chunk, now)
        now += step
        for _ in range(len(chunk) + 2):
            try:
                if r.next_message(now) is None:
                    break
            except PeerProtocolError:
                continue
    assert len(r._buf) <= 256 + 300


@given(st.binary(max_size=200))
def test_decode_only_raises_peer_errors(raw: bytes) -> None:
    try:
        msg = decode(raw)
    except PeerProtocolError:
        return
    assert msg is not None


# Tokens near the grammar (numbers in every notation, the extension's tokens), so that the
# property explores what a careless or hostile peer writes, not only random noise.
_number_text = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.from_regex(r"[-+]?[0-9]{0,4}(\.[0-9]{0,3})?([eE][-+]?[0-9]{1,4})?", fullmatch=True),
)
_token = st.one_of(
    _number_text,
    st.sampled_from(["V2435", "V1", "deadbeef", "DEADBEEF", "ffffffff", "0", "a", "#", "inf"]),
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=12),
)


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(["CALLING", "CALL_ACCEPTED", "CALL_END", "CALL_BUSY", "CALL_ALIVE"]),
    st.lists(_token, max_size=6),
)
def test_near_grammar_messages_decode_to_valid_fields_or_a_peer_error(
    verb: str, tokens: list[str]
) -> None:
    raw = " ".join([verb, *tokens]).encode("utf-8", "surrogatepass")
    try:
        msg = decode(raw)
    except PeerProtocolError:
        return
    if isinstance(msg, Calling | CallAccepted):
        assert isinstance(msg.udp_port, int) and 1 <= msg.udp_port <= 65535
        assert msg.ext is None or 0 <= msg.ext.ssrc <= 0xFFFFFFFF


def test_an_infinite_port_is_a_peer_error() -> None:
    with pytest.raises(PeerProtocolError):
        decode(b"CALLING alice 1.0e999")
