"""Dialect rules (pure): EOF meaning, fresh-connection matching, framing per peer."""

from __future__ import annotations

import pytest

from vcall.call.codec import (
    CallAccepted,
    CallAlive,
    CallBusy,
    CallEnd,
    CallHold,
    Calling,
    Extension,
    Message,
)
from vcall.call.policy import (
    DEFAULT_CODECS,
    MINORITY_EOF_GRACE,
    EofAction,
    accepted_codec,
    belongs_to_call,
    choose_codec,
    local_codecs,
    on_control_eof,
    parse_codec_choice,
    terminated_for,
)
from vcall.call.state import CallState

S = CallState


def eof(state: CallState, **kw: object) -> EofAction:
    args: dict[str, object] = {
        "peer_ext": False, "negotiated": False, "minority": False, "accepted_at": None, "now": 100.0
    }  # fmt: skip
    args.update(kw)
    return on_control_eof(state, **args)  # type: ignore[arg-type]


def test_eof_while_outgoing_waits_only_for_a_classic_callee() -> None:
    assert eof(S.OUTGOING) is EofAction.WAIT_FOR_FRESH
    assert eof(S.OUTGOING, peer_ext=True) is EofAction.END


def test_eof_while_ringing_or_idle_ends() -> None:
    for state in (S.RINGING, S.IDLE, S.ENDED):
        assert eof(state) is EofAction.END
        assert eof(state, minority=True) is EofAction.END


@pytest.mark.parametrize("state", [S.IN_CALL, S.HELD_LOCAL, S.HELD_REMOTE, S.HELD_BOTH])
def test_eof_in_a_call(state: CallState) -> None:
    just = 100.0 - MINORITY_EOF_GRACE / 2
    late = 100.0 - MINORITY_EOF_GRACE
    assert eof(state, accepted_at=just) is EofAction.TOLERATE  # classic, right after accept
    assert eof(state, accepted_at=late) is EofAction.END  # classic, later: the peer is gone
    assert eof(state, accepted_at=just, peer_ext=True, negotiated=True) is EofAction.END
    assert eof(state, accepted_at=late, minority=True) is EofAction.TOLERATE
    assert eof(state) is EofAction.END


@pytest.mark.parametrize(
    ("msg", "ip", "expected"),
    [
        (CallHold("bob"), "10.0.0.2", True),
        (CallHold(""), "10.0.0.2", True),  # no nick: the address decides
        (CallBusy("someone"), "10.0.0.2", True),
        (CallEnd("mallory"), "10.0.0.2", False),  # another user on the same host
        (CallHold("bob"), "10.0.0.3", False),  # another host
        (Calling("bob", 5000), "10.0.0.2", False),  # a CALLING is a new call, never this one
        (CallAccepted("bob", 5000), "10.0.0.2", True),
    ],
)
def test_fresh_connection_matching(msg: Message, ip: str, expected: bool) -> None:
    assert belongs_to_call(msg, conn_ip=ip, peer_ip="10.0.0.2", peer_nick="bob") is expected
    assert not belongs_to_call(msg, conn_ip=ip, peer_ip="", peer_nick="bob")


def test_framing_per_peer() -> None:
    classic = {"peer_ext": False, "negotiated": False}
    assert terminated_for(CallHold("a"), **classic) is False
    assert terminated_for(CallHold("a"), peer_ext=True, negotiated=True) is True
    assert terminated_for(CallEnd("a"), peer_ext=True, negotiated=False) is False  # not yet
    assert terminated_for(Calling("a", 5, Extension(1)), peer_ext=True, negotiated=False)
    for msg in (CallAlive("a"), Calling("a", 5, Extension(1)), CallAccepted("a", 5, Extension(1))):
        with pytest.raises(ValueError):
            terminated_for(msg, **classic)  # never anything extension-only to a classic peer


H264, JPEG = "H264", "JPEG"


@pytest.mark.parametrize(
    ("offer", "local", "chosen"),
    [
        ((H264, JPEG), (H264, JPEG), H264),  # both default
        ((JPEG, H264), (H264, JPEG), H264),  # the callee's preference order wins
        ((H264, JPEG), (JPEG, H264), JPEG),
        ((JPEG,), (H264, JPEG), JPEG),  # caller forces JPEG (or an older peer: no token)
        ((H264, JPEG), (JPEG,), JPEG),  # callee forces JPEG
        ((H264,), (JPEG,), JPEG),  # nothing in common: JPEG
        ((H264,), (H264,), H264),
        ((JPEG,), (H264,), JPEG),  # callee forces H264, caller cannot: JPEG all the same
        (("VP8", "AV1"), (H264, JPEG), JPEG),  # only names we do not know
        (("VP8", H264), (H264, JPEG), H264),
    ],
)
def test_callee_chooses_its_first_preference_the_caller_offers(
    offer: tuple[str, ...], local: tuple[str, ...], chosen: str
) -> None:
    assert choose_codec(offer, local) == chosen
    assert accepted_codec((chosen,), offer) == chosen  # and the caller accepts that choice


@pytest.mark.parametrize(
    ("answer", "offer", "used"),
    [
        ((H264,), (H264, JPEG), H264),
        ((JPEG,), (H264, JPEG), JPEG),
        ((JPEG,), (H264,), JPEG),  # the callee's fallback: always valid
        (("VP8",), (H264, JPEG), None),  # not offered: the peer's error (caller uses JPEG)
        ((H264,), (JPEG,), None),
        ((H264, JPEG), (H264, JPEG), None),  # a choice names one codec
        ((), (H264, JPEG), None),
    ],
)
def test_caller_accepts_only_a_codec_it_offered_or_jpeg(
    answer: tuple[str, ...], offer: tuple[str, ...], used: str | None
) -> None:
    assert accepted_codec(answer, offer) == used


def test_the_users_codec_choice() -> None:
    assert DEFAULT_CODECS == (H264, JPEG)
    assert local_codecs(None) == (H264, JPEG)
    assert local_codecs("h264") == (H264,)
    assert local_codecs(" Jpeg ") == (JPEG,)
    assert parse_codec_choice("H264") == H264
    for bad in ("", "vp8", "h 264", "h264,jpeg"):
        with pytest.raises(ValueError, match="h264, jpeg"):
            parse_codec_choice(bad)
