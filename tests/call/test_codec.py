"""Call-control codec: golden bytes, liberal parsing, framing of split/glued input, properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import LocalProtocolError
from vcall.call.codec import (
    CODEC_NAME_RE,
    MAX_CODECS,
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
    validate_codecs,
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


CODEC_GOLDEN: list[tuple[Message, bytes]] = [
    (
        Calling("alice", 40002, Extension(0x1A2B3C4D, ("H264", "JPEG"))),
        b"CALLING alice 40002 V2435 1a2b3c4d codecs=H264,JPEG\n",
    ),
    (
        CallAccepted("bob", 40006, Extension(0x0BADF00D, ("H264",))),
        b"CALL_ACCEPTED bob 40006 V2435 0badf00d codecs=H264\n",
    ),
    (Calling("a", 1, Extension(0, ("JPEG",))), b"CALLING a 1 V2435 00000000 codecs=JPEG\n"),
    (
        Calling("a", 1, Extension(1, (*(f"C{i}" for i in range(7)), "X" * 16))),
        b"CALLING a 1 V2435 00000001 codecs=C0,C1,C2,C3,C4,C5,C6," + b"X" * 16 + b"\n",
    ),
    # No token: what vcall sent before codec negotiation (and still sends to such a peer).
    (CallAccepted("bob", 7, Extension(1)), b"CALL_ACCEPTED bob 7 V2435 00000001\n"),
]


@pytest.mark.parametrize(("msg", "wire"), CODEC_GOLDEN)
def test_codec_token_golden_bytes_round_trip(msg: Message, wire: bytes) -> None:
    assert encode(msg, terminated=True) == wire
    assert decode(wire) == msg
    assert is_extension_only(msg)


def test_an_absent_codec_token_offers_jpeg_alone() -> None:
    assert Extension(1).offered == ("JPEG",)
    assert Extension(1, ("H264", "JPEG")).offered == ("H264", "JPEG")


@pytest.mark.parametrize(
    ("tail", "codecs"),
    [
        (b"codecs=h264,Jpeg", ("H264", "JPEG")),  # names upper-cased
        (b"CODECS=H264", ("H264",)),  # key in any case
        (b"future=1 codecs=H264,JPEG more", ("H264", "JPEG")),  # unknown tokens around it
        (b"codecs=JPEG codecs=H264", ("JPEG",)),  # only the first codecs= token counts
        (b"codecs=H264,H264,JPEG", ("H264", "JPEG")),  # a repeated name once
        (b"codecs=VP8", ("VP8",)),  # unknown to us, but well formed: the policy decides
        (b"codecs=" + b",".join([b"A"] * 8), ("A",)),
        # malformed: as if absent (None stands for JPEG)
        (b"codecs=", None),
        (b"codecs=H264,", None),
        (b"codecs=,H264", None),
        (b"codecs=H264,,JPEG", None),
        (b"codecs=H.264", None),
        (b"codecs=H264 JPEG", ("H264",)),  # a space ends the token; JPEG is an unknown token
        (b"codecs=" + b"X" * 17, None),
        (b"codecs=" + b",".join(b"C%d" % i for i in range(9)), None),  # more than 8
        (b"codecs=H\xc3\xa9", None),  # non-ASCII letter
        (b"codecs=\xef\xac\x81", None),  # a ligature that upper-cases to "FI"
        (b"codecs", None),
        (b"codec=H264", None),
        (b"", None),
    ],
)
def test_codec_token_parsing_is_liberal(tail: bytes, codecs: tuple[str, ...] | None) -> None:
    for verb, cls in ((b"CALLING", Calling), (b"CALL_ACCEPTED", CallAccepted)):
        msg = decode(verb + b" alice 5000 V2435 0000abcd " + tail + b"\n")
        assert msg == cls("alice", 5000, Extension(0xABCD, codecs))


def test_a_codec_token_without_the_extension_is_ignored() -> None:
    assert decode(b"CALLING alice 5000 codecs=H264") == Calling("alice", 5000)
    assert decode(b"CALLING alice 5000 V2435 xyz codecs=H264") == Calling("alice", 5000)


@pytest.mark.parametrize(
    "codecs",
    [(), ("h264",), ("",), ("H.264",), ("X" * 17,), ("H264", "H264"),
     tuple(f"C{i}" for i in range(MAX_CODECS + 1)), ("H264", 5), "JPEG", ("JPEG ",), ("É",)],
)  # fmt: skip
def test_bad_codec_names_are_local_errors(codecs: tuple[str, ...]) -> None:
    with pytest.raises(LocalProtocolError):
        validate_codecs(codecs)
    with pytest.raises(LocalProtocolError):
        encode(Calling("a", 5, Extension(1, codecs)))


def test_call_accepted_names_exactly_one_codec() -> None:
    with pytest.raises(LocalProtocolError, match="one codec"):
        encode(CallAccepted("b", 5, Extension(1, ("H264", "JPEG"))))
    assert validate_codecs(["H264", "JPEG"]) == ("H264", "JPEG")


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


_codec_names = st.from_regex(r"[A-Z0-9]{1,16}", fullmatch=True)
_offers = st.none() | st.lists(_codec_names, min_size=1, max_size=MAX_CODECS, unique=True).map(
    tuple
)
_choices = st.none() | st.tuples(_codec_names)
_ssrcs = st.integers(0, 2**32 - 1)
messages = st.one_of(
    st.builds(Calling, st.sampled_from(["alice", "b0b", "x_y"]), st.integers(1, 65535),
              st.none() | st.builds(Extension, _ssrcs, _offers)),
    st.builds(CallAccepted, st.sampled_from(["bob", "c"]), st.integers(1, 65535),
              st.none() | st.builds(Extension, _ssrcs, _choices)),
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


@settings(max_examples=300, deadline=None)
@given(messages, st.sampled_from([False, True]))
def test_encode_decode_round_trip(msg: Message, terminated: bool) -> None:
    assert decode(encode(msg, terminated=terminated)) == msg


def _assert_valid_fields(msg: Message) -> None:
    if isinstance(msg, Calling | CallAccepted):
        assert isinstance(msg.udp_port, int) and 1 <= msg.udp_port <= 65535
        if msg.ext is not None:
            assert 0 <= msg.ext.ssrc <= 0xFFFFFFFF
            codecs = msg.ext.codecs
            assert codecs is None or 1 <= len(codecs) <= MAX_CODECS
            assert all(CODEC_NAME_RE.fullmatch(name) for name in msg.ext.offered)
            assert len(set(msg.ext.offered)) == len(msg.ext.offered)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from([b"CALLING", b"CALL_ACCEPTED"]), st.binary(max_size=200))
def test_any_bytes_after_the_ssrc_parse_to_valid_codecs_or_a_peer_error(
    verb: bytes, tail: bytes
) -> None:
    for raw in (
        verb + b" a 5 V2435 00000001 " + tail,
        verb + b" a 5 V2435 00000001 codecs=" + tail,
    ):
        try:
            msg = decode(raw)
        except PeerProtocolError:
            continue
        _assert_valid_fields(msg)


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
    st.sampled_from(
        [
            "codecs=H264,JPEG",
            "codecs=h264",
            "CODECS=JPEG",
            "codecs=",
            "codecs=,",
            "codecs=H264,,X",
            "codecs=" + "Y" * 17,
            "codecs=A,B,C,D,E,F,G,H,I",
        ]
    ),
    st.builds(
        lambda names: "codecs=" + ",".join(names),
        st.lists(st.text(st.characters(codec="utf-8"), max_size=4), max_size=10),
    ),
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
    _assert_valid_fields(msg)


def test_an_infinite_port_is_a_peer_error() -> None:
    with pytest.raises(PeerProtocolError):
        decode(b"CALLING alice 1.0e999")
