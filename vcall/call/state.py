"""The call state machine: one explicit transition table, no I/O.

Every user action and every network event of a call passes through :meth:`CallStateMachine.
handle`. An event that the table does not allow in the current state raises
:class:`IllegalTransitionError` and leaves the state unchanged: never a silent change. The caller
decides whose fault that is (a local misuse is reported to the user; an unexpected message from
the peer is logged and dropped).
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)


class CallState(enum.StrEnum):
    IDLE = "idle"
    OUTGOING = "outgoing"  # we sent (or are sending) CALLING and wait for the answer
    RINGING = "ringing"  # an incoming CALLING waits for the user
    IN_CALL = "in_call"
    HELD_LOCAL = "held_local"  # we hold
    HELD_REMOTE = "held_remote"  # the peer holds
    HELD_BOTH = "held_both"
    ENDED = "ended"  # the last call ended; ``reason`` says why. A new call may start from here.


class CallInput(enum.StrEnum):
    # user actions
    DIAL = "dial"
    ACCEPT = "accept"
    DENY = "deny"
    HOLD = "hold"
    RESUME = "resume"
    HANGUP = "hangup"
    # messages from the peer
    PEER_CALLING = "peer_calling"
    PEER_ACCEPTED = "peer_accepted"
    PEER_DENIED = "peer_denied"
    PEER_BUSY = "peer_busy"
    PEER_HOLD = "peer_hold"
    PEER_RESUME = "peer_resume"
    PEER_END = "peer_end"
    # failures and timers
    FAILED = "failed"  # lookup, connect or set-up failure before the call started
    ANSWER_TIMEOUT = "answer_timeout"
    RING_TIMEOUT = "ring_timeout"
    CONNECTION_LOST = "connection_lost"
    HEARTBEAT_TIMEOUT = "heartbeat_timeout"
    IDENTITY_MISMATCH = "identity_mismatch"  # the callee's key is not the directory's


class EndReason(enum.StrEnum):
    """Why a call ended; part of the CallEnded event."""

    HANGUP = "hangup"  # we hung up (or cancelled our outgoing call)
    PEER_HANGUP = "peer_hangup"  # CALL_END from the peer
    DENIED = "denied"  # we denied the incoming call
    PEER_DENIED = "peer_denied"
    BUSY = "busy"  # the callee answered CALL_BUSY
    RING_TIMEOUT = "ring_timeout"  # nobody answered our ringing; we denied
    ANSWER_TIMEOUT = "answer_timeout"  # the callee did not answer in time
    FAILED = "failed"  # lookup / connect / set-up failure; the detail says which
    CONNECTION_LOST = "connection_lost"  # EOF or reset on the control connection
    HEARTBEAT_TIMEOUT = "heartbeat_timeout"  # extension peer silent for too long
    # The callee's TLS key is not the one the directory has for its nick (issue 14): the call
    # ends before ringing; the detail names both fingerprints.
    IDENTITY_MISMATCH = "identity_mismatch"


_S = CallState
_I = CallInput
_ACTIVE = (_S.IN_CALL, _S.HELD_LOCAL, _S.HELD_REMOTE, _S.HELD_BOTH)

# (state, input) -> new state. Anything absent is illegal.
TRANSITIONS: dict[tuple[CallState, CallInput], CallState] = {
    (_S.IDLE, _I.DIAL): _S.OUTGOING,
    (_S.ENDED, _I.DIAL): _S.OUTGOING,
    (_S.IDLE, _I.PEER_CALLING): _S.RINGING,
    (_S.ENDED, _I.PEER_CALLING): _S.RINGING,
    (_S.OUTGOING, _I.PEER_ACCEPTED): _S.IN_CALL,
    (_S.RINGING, _I.ACCEPT): _S.IN_CALL,
    (_S.IN_CALL, _I.HOLD): _S.HELD_LOCAL,
    (_S.IN_CALL, _I.PEER_HOLD): _S.HELD_REMOTE,
    (_S.HELD_LOCAL, _I.RESUME): _S.IN_CALL,
    (_S.HELD_LOCAL, _I.PEER_HOLD): _S.HELD_BOTH,
    (_S.HELD_REMOTE, _I.PEER_RESUME): _S.IN_CALL,
    (_S.HELD_REMOTE, _I.HOLD): _S.HELD_BOTH,
    (_S.HELD_BOTH, _I.RESUME): _S.HELD_REMOTE,
    (_S.HELD_BOTH, _I.PEER_RESUME): _S.HELD_LOCAL,
}
for _inp in (
    _I.HANGUP,
    _I.PEER_DENIED,
    _I.PEER_BUSY,
    _I.PEER_END,
    _I.FAILED,
    _I.ANSWER_TIMEOUT,
    _I.CONNECTION_LOST,
    _I.IDENTITY_MISMATCH,
):
    TRANSITIONS[(_S.OUTGOING, _inp)] = _S.ENDED
for _inp in (_I.DENY, _I.HANGUP, _I.PEER_END, _I.RING_TIMEOUT, _I.CONNECTION_LOST, _I.FAILED):
    TRANSITIONS[(_S.RINGING, _inp)] = _S.ENDED
for _st in _ACTIVE:
    for _inp in (_I.HANGUP, _I.PEER_END, _I.CONNECTION_LOST, _I.HEARTBEAT_TIMEOUT, _I.FAILED):
        TRANSITIONS[(_st, _inp)] = _S.ENDED

# The reason recorded when an input ends the call.
END_REASONS: dict[CallInput, EndReason] = {
    _I.HANGUP: EndReason.HANGUP,
    _I.DENY: EndReason.DENIED,
    _I.PEER_END: EndReason.PEER_HANGUP,
    _I.PEER_DENIED: EndReason.PEER_DENIED,
    _I.PEER_BUSY: EndReason.BUSY,
    _I.FAILED: EndReason.FAILED,
    _I.ANSWER_TIMEOUT: EndReason.ANSWER_TIMEOUT,
    _I.RING_TIMEOUT: EndReason.RING_TIMEOUT,
    _I.CONNECTION_LOST: EndReason.CONNECTION_LOST,
    _I.HEARTBEAT_TIMEOUT: EndReason.HEARTBEAT_TIMEOUT,
    _I.IDENTITY_MISMATCH: EndReason.IDENTITY_MISMATCH,
}

ACTIVE_STATES = frozenset(_ACTIVE)
BUSY_STATES = frozenset((_S.OUTGOING, _S.RINGING, *_ACTIVE))  # another CALLING gets CALL_BUSY


class IllegalTransitionError(Exception):
    """The table has no transition for this input in the current state."""

    def __init__(self, state: CallState, inp: CallInput) -> None:
        super().__init__(f"{inp.value} is not allowed in state {state.value}")
        self.state = state
        self.input = inp


@dataclass(frozen=True, slots=True)
class Transition:
    old: CallState
    new: CallState
    input: CallInput
    reason: EndReason | None  # set when the transition ends the call


def hold_flags(state: CallState) -> tuple[bool, bool]:
    """(held by us, held by the peer)."""
    return (
        state in (_S.HELD_LOCAL, _S.HELD_BOTH),
        state in (_S.HELD_REMOTE, _S.HELD_BOTH),
    )


def video_flows(state: CallState) -> bool:
    """Video flows only while in a call that neither side holds."""
    return state is _S.IN_CALL


class CallStateMachine:
    """Holds the current state; changes it only through the table."""

    def __init__(self) -> None:
        self._state = CallState.IDLE
        self.reason: EndReason | None = None

    @property
    def state(self) -> CallState:
        return self._state

    def allowed(self, inp: CallInput) -> bool:
        return (self._state, inp) in TRANSITIONS

    def handle(self, inp: CallInput) -> Transition:
        """Apply ``inp``; raise IllegalTransitionError (state unchanged) if the table forbids it."""
        new = TRANSITIONS.get((self._state, inp))
        if new is None:
            raise IllegalTransitionError(self._state, inp)
        old = self._state
        reason = END_REASONS.get(inp) if new is CallState.ENDED else None
        self._set_state(new, reason)
        return Transition(old, new, inp, reason)

    def _set_state(self, new: CallState, reason: EndReason | None) -> None:
        logger.info(
            "call state %s -> %s%s",
            self._state.value,
            new.value,
            f" ({reason.value})" if reason else "",
        )
        self._state = new
        self.reason = reason if new is CallState.ENDED else None
