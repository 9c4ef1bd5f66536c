"""The dialect rules of call control as pure functions (no I/O, time passed in).

These are the decisions where classic clients disagree (docs/protocol.md, section 2): what an
EOF on the control connection means, which new connections belong to the current call, and how
a message is framed for a given peer. :mod:`vcall.call.session` applies them; the tests check
them case by case.
"""

from __future__ import annotations

import enum

from vcall.call.codec import CallBusy, Calling, Message, is_extension_only
from vcall.call.state import ACTIVE_STATES, CallState

MINORITY_EOF_GRACE = 1.0  # s after CALL_ACCEPTED in which a classic peer's EOF is tolerated


class EofAction(enum.Enum):
    END = "end"  # the call (or the attempt) ends: connection_lost
    WAIT_FOR_FRESH = "wait_for_fresh"  # outgoing: a classic callee may answer on a new connection
    TOLERATE = "tolerate"  # in a call with a minority-dialect peer: go on without the connection


def on_control_eof(
    state: CallState,
    *,
    peer_ext: bool,
    negotiated: bool,
    minority: bool,
    accepted_at: float | None,
    now: float,
) -> EofAction:
    """What EOF (or a reset) on the control connection means in ``state``.

    - Outgoing to a classic callee: some close at once and answer on a fresh connection, so
      keep waiting (the answer timeout still applies). A vcall callee never does that.
    - In a call: a peer known to use fresh connections, or a classic peer closing within
      MINORITY_EOF_GRACE of CALL_ACCEPTED, is tolerated. Otherwise the peer is gone.
    - Ringing: the caller gave up.
    """
    if state is CallState.OUTGOING:
        return EofAction.END if peer_ext else EofAction.WAIT_FOR_FRESH
    if state in ACTIVE_STATES:
        recent = accepted_at is not None and now - accepted_at < MINORITY_EOF_GRACE
        if minority or (recent and not negotiated):
            return EofAction.TOLERATE
    return EofAction.END


def belongs_to_call(msg: Message, *, conn_ip: str, peer_ip: str, peer_nick: str) -> bool:
    """Is ``msg``, the first message on a new connection, the current peer's (minority dialect)?

    Same IP as the peer, and the peer's nick when the message names one (a bare CALL_BUSY names
    nobody; CALLING always opens a new call and is never part of the current one).
    """
    if isinstance(msg, Calling) or not peer_ip or conn_ip != peer_ip:
        return False
    return isinstance(msg, CallBusy) or not msg.nick or msg.nick == peer_nick


def terminated_for(msg: Message, *, peer_ext: bool, negotiated: bool) -> bool:
    """Whether ``msg`` ends with LF (extension framing, docs/protocol.md 4.1).

    Raises ValueError for an extension-only message to a peer that did not advertise V2435:
    nothing extension-only may ever reach a classic peer.
    """
    if is_extension_only(msg) and not peer_ext:
        raise ValueError(f"{type(msg).__name__} with extension content for a classic peer")
    return negotiated or is_extension_only(msg)
