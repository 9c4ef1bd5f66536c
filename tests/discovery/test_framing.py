"""The sans-IO request framer: splits, glue, timers and limits, with time passed in."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vcall.discovery.codec import ListUsers, NokCode, Query, Quit, Rejected
from vcall.discovery.framing import Drop, DropReason, Event, Limits, RequestFramer

LIMITS = Limits(max_size=256, gap=0.5, request_timeout=5.0, idle_timeout=60.0, max_errors=3)


def events(framer: RequestFramer, now: float) -> list[Event]:
    out = []
    while (event := framer.next_event(now)) is not None:
        out.append(event)
    return out


def feed_all(chunks: list[bytes], limits: Limits = LIMITS) -> list[Event]:
    """Feed chunks back to back (no gap), then let the gap expire; collect all events."""
    framer = RequestFramer(limits, now=0.0)
    out: list[Event] = []
    now = 0.0
    for chunk in chunks:
        now += 0.001
        framer.receive_data(chunk, now)
        out += events(framer, now)
    now += limits.gap
    while (event := framer.poll(now)) is not None:
        out.append(event)
        out += events(framer, now)
    return out


def test_one_message_per_read() -> None:
    assert feed_all([b"QUERY alice"]) == [Query("alice")]


def test_a_message_split_over_reads() -> None:
    raw = b"QUERY alice"
    for cut in range(1, len(raw)):
        # "QUERY ali" + "ce" is a complete QUERY for "ali": the classic grammar cannot tell,
        # so only cuts that leave an incomplete first part must reassemble.
        result = feed_all([raw[:cut], raw[cut:]])
        assert result[-1] == Query("alice") or result[0] == Query(raw[6:cut].decode()), cut


def test_a_register_split_anywhere_reassembles() -> None:
    raw = b"REGISTER alice 10.0.0.1 8000 pw V0#V1"
    stable = raw.rindex(b" ")  # the protocols field may end at any '#'-free cut
    for cut in range(1, stable + 1):
        result = feed_all([raw[:cut], raw[cut:]])
        assert len(result) == 1, (cut, result)


def test_newline_terminated_messages_glued_together() -> None:
    assert feed_all([b"QUERY a\r\nQUERY b\r\nLIST_USERS\nQU", b"IT"]) == [
        Query("a"),
        Query("b"),
        ListUsers(),
        Quit(),
    ]


def test_an_unfinished_message_is_judged_after_the_gap() -> None:
    framer = RequestFramer(LIMITS, now=0.0)
    framer.receive_data(b"QUERY", 0.0)
    assert framer.next_event(0.1) is None
    assert framer.poll(0.4) is None
    event = framer.poll(0.5)
    assert isinstance(event, Rejected) and event.code == NokCode.SYNTAX_ERROR
    assert not framer.pending


def test_overlong_request_is_rejected_and_dropped() -> None:
    framer = RequestFramer(LIMITS, now=0.0)
    framer.receive_data(b"REGISTER " + b"a" * 300, 0.0)
    event = framer.next_event(0.0)
    assert isinstance(event, Drop) and event.reason == DropReason.TOO_LONG
    assert event.reply is not None and event.reply.code == NokCode.SYNTAX_ERROR
    assert framer.next_event(1.0) is None


def test_slowloris_trickle_is_dropped() -> None:
    framer = RequestFramer(LIMITS, now=0.0)
    now = 0.0
    dropped = None
    for byte in b"REGISTER alice 10.0.0.1 8000 pw V0#V1#V2#V3#V4#V5":
        now += 0.3  # always within the gap: the message never ends by quiet
        framer.receive_data(bytes([byte]), now)
        assert framer.next_event(now) is None
        dropped = framer.poll(now)
        if dropped is not None:
            break
    assert isinstance(dropped, Drop) and dropped.reason == DropReason.SLOW
    assert now <= 0.3 + LIMITS.request_timeout + 0.3  # first byte + timeout + one step


def test_one_byte_every_few_seconds_is_dropped_after_max_errors() -> None:
    framer = RequestFramer(LIMITS, now=0.0)
    got: list[Event] = []
    for i in range(10):
        now = 2.0 * (i + 1)
        framer.receive_data(b"X", now)
        got += events(framer, now)
        if framer.closed:
            break
    assert [type(e) for e in got] == [Rejected, Rejected, Drop]
    assert isinstance(got[-1], Drop) and got[-1].reason == DropReason.ERRORS


def test_a_good_request_resets_the_error_count() -> None:
    chunks = [b"X\n", b"X\n", b"QUIT\n", b"X\n", b"X\n"]
    assert [type(e) for e in feed_all(chunks)] == [Rejected, Rejected, Quit, Rejected, Rejected]


def test_idle_connection_is_dropped() -> None:
    framer = RequestFramer(LIMITS, now=0.0)
    assert framer.poll(59.0) is None
    framer.touch(30.0)
    assert framer.poll(89.0) is None
    event = framer.poll(90.0)
    assert isinstance(event, Drop) and event.reason == DropReason.IDLE


chunked = st.lists(st.binary(min_size=1, max_size=40), max_size=12)


@settings(max_examples=300)
@given(chunked)
def test_any_bytes_any_split_end_in_events_never_a_stall(chunks: list[bytes]) -> None:
    framer = RequestFramer(LIMITS, now=0.0)
    now = 0.0
    for chunk in chunks:
        now += 0.01
        framer.receive_data(chunk, now)
        events(framer, now)
    # After the gap, polling settles everything: nothing is left waiting.
    now += LIMITS.gap
    for _ in range(1000):
        if framer.poll(now) is None:
            events(framer, now)
            if framer.poll(now) is None:
                break
    assert framer.closed or not framer.pending


@given(st.lists(st.sampled_from([b"QUERY bob", b"LIST_USERS", b"QUIT", b"X"]), max_size=8))
def test_newline_framing_is_exact(messages: list[bytes]) -> None:
    got = feed_all([b"".join(m + b"\r\n" for m in messages)], Limits(max_errors=100))
    assert len(got) == len(messages)


def test_a_poll_at_exactly_the_gap_judges_the_message() -> None:
    """Found by the property test above: after chunks at 0.01 s steps, ``now - last_rx`` at
    last_rx + gap rounded to just below the gap and the message waited forever."""
    framer = RequestFramer(LIMITS, now=0.0)
    now = 0.0
    for chunk in [b"\x00", b"\xc2", b"\x80\xc2", b"\x80\xc2"] * 2:
        now += 0.01
        framer.receive_data(chunk, now)
        events(framer, now)
    assert framer.pending
    judged = framer.poll(now + LIMITS.gap)  # the third bad request in a row: a drop
    assert isinstance(judged, Drop) and judged.reason == DropReason.ERRORS
    assert not framer.pending
