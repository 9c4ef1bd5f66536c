"""Call events delivered to the CallManager's ``on_event`` callback.

Frozen, slotted dataclasses; each has ``to_json()`` giving one JSON object (one line) whose
``"event"`` field names the event, as printed by ``vcall agent``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any


class _Event:
    __slots__ = ()
    name = "event"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"event": self.name}
        data.update(asdict(self))  # type: ignore[call-overload]
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=False)


@dataclass(frozen=True, slots=True)
class Registered(_Event):
    nick: str
    ip: str
    port: int  # TCP call-control port we registered
    protocols: tuple[str, ...]
    ts: float
    name = "registered"


@dataclass(frozen=True, slots=True)
class IncomingCall(_Event):
    peer: str
    ip: str
    extension: bool  # the CALLING carried vcall's extension tokens
    # What protects the call (vcall.call.secure.protection_label): "srtp+tls, verified" when
    # the caller proved over TLS the key the directory has for its nick; "none: classic peer".
    protection: str = ""
    name = "incoming"


@dataclass(frozen=True, slots=True)
class Outgoing(_Event):
    peer: str
    ip: str
    port: int
    extension: bool  # the callee advertises vcall's extension, so CALLING carries the tokens
    name = "outgoing"


@dataclass(frozen=True, slots=True)
class CallStarted(_Event):
    peer: str
    mode: str  # a pipeline.control.MediaMode value: "v0" (classic) or "rtp" (both speak V2435)
    codec: str  # the negotiated video codec (a registry name: "H264", "JPEG"); V0: always JPEG
    peer_ip: str
    local_rx_port: int  # the UDP port we declared
    peer_rx_port: int  # the UDP port the peer declared
    media: bool  # False: no media pipeline; local_rx_port is a placeholder socket that discards
    role: str  # "caller" | "callee"
    protection: str = ""  # as IncomingCall.protection, for the call as it started
    name = "started"


@dataclass(frozen=True, slots=True)
class HoldChanged(_Event):
    local: bool  # held by us
    remote: bool  # held by the peer
    name = "hold"


@dataclass(frozen=True, slots=True)
class MuteChanged(_Event):
    """The user muted (or unmuted) the microphone in this call; a mute outlasts a hold and is
    not a video pause. Emitted only when the choice changes; a new call starts unmuted."""

    muted: bool
    name = "mute"


@dataclass(frozen=True, slots=True)
class PauseChanged(_Event):
    """The user paused (or un-paused) our video in this call; a pause outlasts a hold.

    Emitted only when the choice changes; a new call starts un-paused without an event.
    """

    paused: bool
    name = "pause"


@dataclass(frozen=True, slots=True)
class PeerMediaChanged(_Event):
    """The peer muted or unmuted its microphone, or paused or resumed its video, as its
    CALL_MEDIA said (docs/protocol.md 4.1, "Peer media state"; only between vcall peers that
    both announce the feature). Emitted only on a change; a call starts with neither."""

    peer: str
    muted: bool
    paused: bool
    name = "peer_media"


@dataclass(frozen=True, slots=True)
class MissedWhileBusy(_Event):
    """Someone called while we were in a call (or ringing, or calling) and got CALL_BUSY.

    Emitted only once the directory confirmed the caller's nick (the same check as a call
    that rings, vcall/call/secure.py): a stranger cannot put a name in our history."""

    peer: str
    ip: str
    name = "missed_busy"


@dataclass(frozen=True, slots=True)
class LinkChanged(_Event):
    """The peer went silent (no heartbeat for the heartbeat timeout: the call is
    "reconnecting", not over) or was heard again. Emitted on each change; the call ends with
    ``heartbeat_timeout`` only when the silence outlasts the grace."""

    peer: str
    reconnecting: bool
    silence_s: float  # how long the peer had been silent (when back: the whole silence)
    name = "link"


@dataclass(frozen=True, slots=True)
class CallEnded(_Event):
    peer: str
    reason: str  # an EndReason value
    detail: str = ""
    name = "ended"


@dataclass(frozen=True, slots=True)
class StateChanged(_Event):
    old: str
    new: str
    name = "state"


CallEvent = (
    Registered
    | IncomingCall
    | Outgoing
    | CallStarted
    | HoldChanged
    | PauseChanged
    | MuteChanged
    | PeerMediaChanged
    | MissedWhileBusy
    | LinkChanged
    | CallEnded
    | StateChanged
)
