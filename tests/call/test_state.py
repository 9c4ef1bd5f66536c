"""The call state machine: every (state, input) pair, allowed or not, against the table."""

from __future__ import annotations

import itertools
import logging

import pytest

from vcall.call.state import (
    END_REASONS,
    TRANSITIONS,
    CallInput,
    CallState,
    CallStateMachine,
    EndReason,
    IllegalTransitionError,
    hold_flags,
    video_flows,
)

S, In = CallState, CallInput

# The table written out by hand, independently of state.py, so that a wrong edit there fails.
EXPECTED = {
    (S.IDLE, In.DIAL): S.OUTGOING, (S.ENDED, In.DIAL): S.OUTGOING,
    (S.IDLE, In.PEER_CALLING): S.RINGING, (S.ENDED, In.PEER_CALLING): S.RINGING,
    (S.OUTGOING, In.PEER_ACCEPTED): S.IN_CALL,
    (S.OUTGOING, In.HANGUP): S.ENDED, (S.OUTGOING, In.PEER_DENIED): S.ENDED,
    (S.OUTGOING, In.PEER_BUSY): S.ENDED, (S.OUTGOING, In.PEER_END): S.ENDED,
    (S.OUTGOING, In.FAILED): S.ENDED, (S.OUTGOING, In.ANSWER_TIMEOUT): S.ENDED,
    (S.OUTGOING, In.CONNECTION_LOST): S.ENDED, (S.OUTGOING, In.IDENTITY_MISMATCH): S.ENDED,
    (S.RINGING, In.ACCEPT): S.IN_CALL,
    (S.RINGING, In.DENY): S.ENDED, (S.RINGING, In.HANGUP): S.ENDED,
    (S.RINGING, In.PEER_END): S.ENDED,
    (S.RINGING, In.RING_TIMEOUT): S.ENDED, (S.RINGING, In.CONNECTION_LOST): S.ENDED,
    (S.RINGING, In.FAILED): S.ENDED,
    (S.IN_CALL, In.HOLD): S.HELD_LOCAL, (S.IN_CALL, In.PEER_HOLD): S.HELD_REMOTE,
    (S.HELD_LOCAL, In.RESUME): S.IN_CALL, (S.HELD_LOCAL, In.PEER_HOLD): S.HELD_BOTH,
    (S.HELD_REMOTE, In.PEER_RESUME): S.IN_CALL, (S.HELD_REMOTE, In.HOLD): S.HELD_BOTH,
    (S.HELD_BOTH, In.RESUME): S.HELD_REMOTE, (S.HELD_BOTH, In.PEER_RESUME): S.HELD_LOCAL,
}  # fmt: skip
for _s in (S.IN_CALL, S.HELD_LOCAL, S.HELD_REMOTE, S.HELD_BOTH):
    for _i in (In.HANGUP, In.PEER_END, In.CONNECTION_LOST, In.HEARTBEAT_TIMEOUT, In.FAILED):
        EXPECTED[(_s, _i)] = S.ENDED

ALL_PAIRS = list(itertools.product(CallState, CallInput))


def machine_in(state: CallState) -> CallStateMachine:
    sm = CallStateMachine()
    sm._state = state  # test set-up only: put the machine in the state under test
    return sm


def test_table_is_exactly_the_expected_one() -> None:
    assert TRANSITIONS == EXPECTED


@pytest.mark.parametrize(("state", "inp"), ALL_PAIRS, ids=lambda v: str(v.value))
def test_every_pair(state: CallState, inp: CallInput, caplog: pytest.LogCaptureFixture) -> None:
    sm = machine_in(state)
    expected = EXPECTED.get((state, inp))
    if expected is None:
        assert not sm.allowed(inp)
        with pytest.raises(IllegalTransitionError) as info:
            sm.handle(inp)
        assert sm.state is state  # never a silent change
        assert info.value.state is state and info.value.input is inp
        return
    assert sm.allowed(inp)
    with caplog.at_level(logging.INFO, logger="vcall.call.state"):
        t = sm.handle(inp)
    assert (t.old, t.new, t.input) == (state, expected, inp)
    assert sm.state is expected
    assert f"{state.value} -> {expected.value}" in caplog.text
    if expected is S.ENDED:
        assert t.reason is END_REASONS[inp] and sm.reason is t.reason
    else:
        assert t.reason is None and sm.reason is None


def test_a_whole_call_with_hold_from_both_sides() -> None:
    sm = CallStateMachine()
    path = [
        In.DIAL,
        In.PEER_ACCEPTED,
        In.HOLD,
        In.PEER_HOLD,
        In.RESUME,
        In.PEER_RESUME,
        In.PEER_END,
    ]
    states = [sm.handle(i).new for i in path]
    assert states == [S.OUTGOING, S.IN_CALL, S.HELD_LOCAL, S.HELD_BOTH, S.HELD_REMOTE,
                      S.IN_CALL, S.ENDED]  # fmt: skip
    assert sm.reason is EndReason.PEER_HANGUP
    assert sm.handle(In.PEER_CALLING).new is S.RINGING  # a new call after the end
    assert sm.reason is None


def test_hold_flags_and_video() -> None:
    assert hold_flags(S.IN_CALL) == (False, False) and video_flows(S.IN_CALL)
    assert hold_flags(S.HELD_LOCAL) == (True, False) and not video_flows(S.HELD_LOCAL)
    assert hold_flags(S.HELD_REMOTE) == (False, True) and not video_flows(S.HELD_REMOTE)
    assert hold_flags(S.HELD_BOTH) == (True, True) and not video_flows(S.HELD_BOTH)
    assert not video_flows(S.RINGING) and not video_flows(S.ENDED)
