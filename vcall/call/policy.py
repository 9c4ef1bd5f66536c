"""The dialect rules of call control as pure functions (no I/O, time passed in).

These are the decisions where classic clients disagree (docs/protocol.md, section 2): what an
EOF on the control connection means, which new connections belong to the current call, and how
a message is framed for a given peer; and the video codec negotiation between two vcall peers
(docs/protocol.md 4.1): which codec the callee chooses, and what the caller makes of its answer.
:mod:`vcall.call.session` applies them; the tests check them case by case.

Codec names here are only names (upper-case registry names of ``pipeline.codecs.registry``):
call control never imports the registry, so a control-only peer never loads the pipeline.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from vcall.call.codec import (
    FALLBACK_CODEC,
    CallBusy,
    Calling,
    LocalMessageError,
    Message,
    is_extension_only,
)
from vcall.call.state import ACTIVE_STATES, CallState

MINORITY_EOF_GRACE = 1.0  # s after CALL_ACCEPTED in which a classic peer's EOF is tolerated
# vcall's video codec preference when the user names none (CallManager's default ``codecs``).
DEFAULT_CODECS: tuple[str, ...] = ("H264", FALLBACK_CODEC)


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


# -- video codec negotiation (docs/protocol.md 4.1) ------------------------------------------


def choose_codec(offer: Sequence[str], local: Sequence[str]) -> str:
    """The callee's choice: the first codec of its own preference ``local`` that the caller's
    ``offer`` contains; JPEG when they have none in common (every vcall peer supports it)."""
    offered = set(offer)
    return next((name for name in local if name in offered), FALLBACK_CODEC)


def accepted_codec(answer: Sequence[str], offer: Sequence[str]) -> str | None:
    """The caller's reading of CALL_ACCEPTED's ``codecs=`` (``answer``; absent is JPEG).

    Valid answers name exactly one codec, one of ``offer`` or JPEG (the callee's fallback when
    nothing is common). Anything else is the peer's protocol error: None, and the caller falls
    back to JPEG (the call goes on; the session logs a warning).
    """
    if len(answer) != 1:
        return None
    name = answer[0]
    return name if name in offer or name == FALLBACK_CODEC else None


def local_codecs(choice: str | None) -> tuple[str, ...]:
    """The local preference for a user's choice (``--codec``, ``[media] codec``): that codec
    alone, or the default list when there is none. Raises LocalProtocolError for a bad name."""
    if choice is None:
        return DEFAULT_CODECS
    return (parse_codec_choice(choice),)


def parse_codec_choice(text: str) -> str:
    """A codec the user names, in any case: one of DEFAULT_CODECS, upper-cased.

    Raises LocalProtocolError (a ValueError) naming the choices otherwise.
    """
    name = text.strip().upper()
    if name not in DEFAULT_CODECS:
        known = ", ".join(n.lower() for n in DEFAULT_CODECS)
        raise LocalMessageError(f"unknown codec {text!r}; one of {known}")
    return name
