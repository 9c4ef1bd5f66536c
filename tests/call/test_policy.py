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
    MINORITY_EOF_GRACE,
    EofAction,
    belongs_to_call,
    on_control_eof,
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
