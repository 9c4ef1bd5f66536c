"""Messages between the Tk thread and the client worker.

Commands go from Tk callbacks to the worker (:mod:`vcall.gui.worker`); events come back. Events
are the GUI's own vocabulary: the worker translates call-manager events and discovery errors
into them, so widgets and the pure model depend on nothing below the GUI. Media statistics are
the one value passed through as is (:class:`StatsUpdate` carries the pipeline's frozen
``MediaStats``), imported for type checking only.
All are frozen, slotted dataclasses; none holds a Tk object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the type only: at run time this module stays free of the pipeline
    from pipeline.stats import MediaStats

# ---------------------------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class Login:
    nick: str
    password: str
    server: tuple[str, int]


@dataclass(frozen=True, slots=True)
class Logout:
    pass


@dataclass(frozen=True, slots=True)
class Refresh:
    pass


@dataclass(frozen=True, slots=True)
class Dial:
    nick: str


@dataclass(frozen=True, slots=True)
class Accept:
    pass


@dataclass(frozen=True, slots=True)
class Deny:
    pass


@dataclass(frozen=True, slots=True)
class Hold:
    pass


@dataclass(frozen=True, slots=True)
class Resume:
    pass


@dataclass(frozen=True, slots=True)
class Hangup:
    pass


@dataclass(frozen=True, slots=True)
class SetSending:
    enabled: bool


@dataclass(frozen=True, slots=True)
class SetMuted:
    """M: mute or unmute the microphone in this call (the call session decides what is sent)."""

    muted: bool


@dataclass(frozen=True, slots=True)
class SetVolume:
    """The speaker volume of calls, 0.0..1.5 (the call screen's slider; ``[audio] volume``)."""

    volume: float


@dataclass(frozen=True, slots=True)
class SetPreset:
    name: str


@dataclass(frozen=True, slots=True)
class SetSource:
    spec: str


@dataclass(frozen=True, slots=True)
class SetDisplaySize:
    peer: tuple[int, int]
    self_view: tuple[int, int]


@dataclass(frozen=True, slots=True)
class SetCodecPreference:
    """The video codec preference (best first, e.g. ``("JPEG",)``) for the calls that begin
    from now on; a call already begun keeps its codec. Remembered for the next start."""

    codecs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SaveSdp:
    """Write the SDP of the RTP stream we send (for ffplay / GStreamer) to ``path``."""

    path: str


@dataclass(frozen=True, slots=True)
class ListAudioDevices:
    """List the PortAudio devices afresh (a headset plugged in since the last time counts),
    off the Tk and worker threads. Answered by :class:`AudioDevicesListed`."""


@dataclass(frozen=True, slots=True)
class SetAudioDevices:
    """The microphone and speaker chosen in the Settings window: "device" (system default),
    "device:NAME" or "off" each. They apply from the next call (and ring) on, and are
    remembered; the flags and config file still win (:func:`vcall.config.start_audio`)."""

    audio_in: str
    audio_out: str


@dataclass(frozen=True, slots=True)
class Shutdown:
    pass


Command = (
    Login
    | Logout
    | Refresh
    | Dial
    | Accept
    | Deny
    | Hold
    | Resume
    | Hangup
    | SetSending
    | SetMuted
    | SetVolume
    | SetPreset
    | SetSource
    | SetDisplaySize
    | SetCodecPreference
    | SaveSdp
    | ListAudioDevices
    | SetAudioDevices
    | Shutdown
)

# ------------------------------------------------------------------------------------ events


@dataclass(frozen=True, slots=True)
class UserRow:
    """One user of the list. ``online``: seen within the presence window (True), logged out or
    not seen for longer (False), or unknown (None: a classic server); ``seen_age``: seconds
    since the server last heard from the user (None: unknown). See vcall/gui/presence.py."""

    nick: str
    ip: str
    port: int
    online: bool | None = None
    seen_age: float | None = None


@dataclass(frozen=True, slots=True)
class LoggedIn:
    nick: str
    server: tuple[str, int]


@dataclass(frozen=True, slots=True)
class LoginFailed:
    message: str


@dataclass(frozen=True, slots=True)
class NickCaseDiffers:
    """The nick typed at login reaches an account spelled differently only in case ("Alice"
    typed, "alice" registered): nothing was sent yet; the login screen asks (issue 15)."""

    typed: str
    account: str


@dataclass(frozen=True, slots=True)
class LoggedOut:
    pass


@dataclass(frozen=True, slots=True)
class UsersListed:
    users: tuple[UserRow, ...]


@dataclass(frozen=True, slots=True)
class Notice:
    """A message for the user; ``error`` ones are shown prominently."""

    message: str
    error: bool = False


@dataclass(frozen=True, slots=True)
class Ringing:
    """An incoming call is ringing; ``timeout`` seconds until it is denied automatically."""

    peer: str
    timeout: float


@dataclass(frozen=True, slots=True)
class Dialing:
    peer: str


@dataclass(frozen=True, slots=True)
class Connected:
    peer: str
    mode: str
    codec: str = ""  # the negotiated video codec ("H264", "JPEG"); "" when unknown
    protection: str = ""  # vcall.call.secure.protection_label: "srtp+tls, verified", ...


@dataclass(frozen=True, slots=True)
class HoldState:
    local: bool
    remote: bool


@dataclass(frozen=True, slots=True)
class Ended:
    """The call (or the attempt) is over; ``message`` says why in the user's words, ``reason``
    in call control's (a :class:`vcall.call.state.EndReason` value; "failed" for a call that
    could not be set up), for the call history."""

    message: str
    error: bool = False
    reason: str = ""


@dataclass(frozen=True, slots=True)
class MediaAttached:
    """The call's media session exists; the Tk side reads frames from it (non-blocking)."""

    session: Any  # pipeline.session.MediaSession; Any keeps this module free of the pipeline
    notify_fd: int


@dataclass(frozen=True, slots=True)
class MediaDetached:
    pass


@dataclass(frozen=True, slots=True)
class SendingChanged:
    enabled: bool


@dataclass(frozen=True, slots=True)
class MutedChanged:
    muted: bool


@dataclass(frozen=True, slots=True)
class PeerMedia:
    """The peer muted its microphone or paused its video, or took that back (only a vcall peer
    says so: docs/protocol.md 4.1, "Peer media state")."""

    muted: bool
    paused: bool


@dataclass(frozen=True, slots=True)
class MissedBusy:
    """``peer`` called while we were busy and was answered busy (its nick checked against the
    directory): for the history and a word to the user."""

    peer: str


@dataclass(frozen=True, slots=True)
class LinkState:
    """The peer went silent (``reconnecting``: the call goes on for its grace) or was heard
    again; ``silence_s``: how long it had been silent."""

    reconnecting: bool
    silence_s: float


@dataclass(frozen=True, slots=True)
class PresetChanged:
    name: str


@dataclass(frozen=True, slots=True)
class SourceChanged:
    spec: str


@dataclass(frozen=True, slots=True)
class CodecPreferenceChanged:
    """The worker took a new video codec preference (it applies from the next call on)."""

    codecs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AudioDevicesListed:
    """PortAudio's devices by name: those that capture, those that play; ``error``: why there
    is no list (no PortAudio, it failed), "" otherwise."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    error: str = ""


@dataclass(frozen=True, slots=True)
class AudioDevicesChanged:
    """The worker took (and remembered) a microphone / speaker choice (SetAudioDevices)."""

    audio_in: str
    audio_out: str


@dataclass(frozen=True, slots=True)
class StatsUpdate:
    stats: MediaStats  # a frozen value: safe to hand from the worker thread to Tk
    at: float  # time.monotonic() when sampled


@dataclass(frozen=True, slots=True)
class WorkerStopped:
    pass


Event = (
    LoggedIn
    | LoginFailed
    | NickCaseDiffers
    | LoggedOut
    | UsersListed
    | Notice
    | Ringing
    | Dialing
    | Connected
    | HoldState
    | Ended
    | MediaAttached
    | MediaDetached
    | SendingChanged
    | MutedChanged
    | PeerMedia
    | LinkState
    | MissedBusy
    | PresetChanged
    | SourceChanged
    | CodecPreferenceChanged
    | AudioDevicesListed
    | AudioDevicesChanged
    | StatsUpdate
    | WorkerStopped
)
