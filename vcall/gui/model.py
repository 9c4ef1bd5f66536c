"""What the client shows, as one value: which screen, which call phase, which message.

:func:`reduce` folds worker events (:mod:`vcall.gui.events`) into a new :class:`UiModel`; the
widgets only render it. Pure: ``now`` (``time.monotonic()``) is passed in, so the whole user
journey's screen logic is tested without a display.

The peer's video is watched from the statistics (``StatsUpdate``: the display stage's time since
the last frame shown): :func:`no_video_notice` says "No video from bob for 4 s" once the video
that should flow (in call, held by neither side) has not for ``NO_VIDEO_AFTER_S``.

A vcall peer says when it mutes or pauses its video (``PeerMedia``): :func:`peer_notice` then
says "bob paused their video" instead of a silent frozen picture, and :func:`peer_mark` /
:func:`self_mark` give the small "muted" marks over each picture. These words go through the
i18n helper (:func:`vcall.gui.i18n._`).

A peer that went silent (``LinkState``: no heartbeat, the call layer's "reconnecting") gets a
banner over its video, :func:`reconnect_banner`: "Reconnecting to bob… 12 s", counting the
silence, until it is heard again or the call ends.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass

from vcall.call.policy import DEFAULT_CODECS
from vcall.gui import events as ev
from vcall.gui.i18n import _
from vcall.gui.logic import codec_label, format_duration

NO_VIDEO_AFTER_S = 3.0  # a gap in the peer's video this long is worth a word on screen


class Screen(enum.Enum):
    LOGIN = "login"
    MAIN = "main"
    CALL = "call"


class Phase(enum.Enum):
    IDLE = "idle"
    DIALING = "dialing"  # we called, the peer has not answered yet
    RINGING = "ringing"  # the peer calls us, the dialog is up
    CONNECTED = "connected"


@dataclass(frozen=True, slots=True)
class UiModel:
    screen: Screen = Screen.LOGIN
    phase: Phase = Phase.IDLE
    nick: str = ""
    server: tuple[str, int] | None = None
    peer: str = ""
    mode: str = ""
    codec: str = ""  # the call's negotiated video codec
    protection: str = ""  # what protects the call, as call control says it
    connected_at: float | None = None
    ring_deadline: float | None = None
    hold_local: bool = False
    hold_remote: bool = False
    sending: bool = True
    muted: bool = False  # the microphone, in this call
    peer_muted: bool = False  # the peer said it muted its microphone (vcall peers only)
    peer_paused: bool = False  # the peer said it paused its video
    reconnecting_since: float | None = None  # the peer's silence began (call "reconnecting")
    preset: str = "medium"
    source: str = "pattern"
    codec_preference: tuple[str, ...] = DEFAULT_CODECS  # for the calls to come (the selector)
    message: str = ""
    message_error: bool = False
    # The peer's video: when its last frame was shown (None: none yet in this call), and since
    # when it should flow (the call connected, or a hold ended); time.monotonic() values.
    peer_video_at: float | None = None
    video_expected_at: float | None = None

    @property
    def in_call(self) -> bool:
        return self.phase is not Phase.IDLE


def reduce(model: UiModel, event: ev.Event, now: float) -> UiModel:
    """The model after ``event``."""
    rep = dataclasses.replace
    match event:
        case ev.LoggedIn(nick=nick, server=server):
            return rep(
                model,
                screen=Screen.MAIN,
                nick=nick,
                server=server,
                message=f"Registered as {nick}.",
                message_error=False,
            )
        case ev.LoginFailed(message=message):
            return rep(model, screen=Screen.LOGIN, message=message, message_error=True)
        case ev.LoggedOut():
            return UiModel(
                preset=model.preset,
                source=model.source,
                codec_preference=model.codec_preference,
                message="Logged out.",
            )
        case ev.Notice(message=message, error=error):
            return rep(model, message=message, message_error=error)
        case ev.Dialing(peer=peer):
            return rep(
                model,
                phase=Phase.DIALING,
                peer=peer,
                screen=Screen.CALL,
                message="",  # the status line says it
                message_error=False,
                hold_local=False,
                hold_remote=False,
                sending=True,
                muted=False,
                peer_muted=False,
                peer_paused=False,
                reconnecting_since=None,
            )
        case ev.Ringing(peer=peer, timeout=timeout):
            return rep(
                model,
                phase=Phase.RINGING,
                peer=peer,
                ring_deadline=now + timeout,
                message=f"{peer} is calling.",
                message_error=False,
            )
        case ev.Connected(peer=peer, mode=mode, codec=codec, protection=protection):
            return rep(
                model,
                phase=Phase.CONNECTED,
                peer=peer,
                mode=mode,
                codec=codec,
                protection=protection,
                screen=Screen.CALL,
                connected_at=now,
                ring_deadline=None,
                hold_local=False,
                hold_remote=False,
                peer_muted=False,
                peer_paused=False,
                reconnecting_since=None,
                message="",  # the status line says it
                message_error=False,
                peer_video_at=None,
                video_expected_at=now,
            )
        case ev.HoldState(local=local, remote=remote):
            held, was_held = local or remote, model.hold_local or model.hold_remote
            # Video stops while held: after the hold, a gap counts from its end.
            expected = now if was_held and not held else model.video_expected_at
            return rep(model, hold_local=local, hold_remote=remote, video_expected_at=expected)
        case ev.StatsUpdate(stats=stats, at=at) if model.phase is Phase.CONNECTED:
            since_ms = stats.freezes.since_last_frame_ms
            if since_ms is None:  # no frame shown yet in this call
                return model
            # The stage measures at its last snapshot, a little before ``at``: the gap it
            # reports can only be short, and a clock step between processes never makes it < 0.
            return rep(model, peer_video_at=at - max(0.0, since_ms) / 1000)
        case ev.Ended(message=message, error=error):
            return rep(
                model,
                phase=Phase.IDLE,
                screen=Screen.MAIN,
                peer="",
                mode="",
                codec="",
                connected_at=None,
                ring_deadline=None,
                hold_local=False,
                hold_remote=False,
                sending=True,
                muted=False,
                peer_muted=False,
                peer_paused=False,
                reconnecting_since=None,
                message=message,
                message_error=error,
                peer_video_at=None,
                video_expected_at=None,
            )
        case ev.SendingChanged(enabled=enabled):
            return rep(model, sending=enabled)
        case ev.MutedChanged(muted=muted):
            return rep(model, muted=muted)
        case ev.PeerMedia(muted=muted, paused=paused):
            # The peer's own pause stops its video: a gap counts from when it resumes.
            expected = now if model.peer_paused and not paused else model.video_expected_at
            return rep(model, peer_muted=muted, peer_paused=paused, video_expected_at=expected)
        case ev.MissedBusy(peer=peer):
            return rep(model, message=busy_missed_words(peer), message_error=False)
        case ev.LinkState(reconnecting=reconnecting, silence_s=silence):
            since = now - max(0.0, silence) if reconnecting else None
            return rep(model, reconnecting_since=since)
        case ev.PresetChanged(name=name):
            return rep(model, preset=name)
        case ev.SourceChanged(spec=spec):
            return rep(model, source=spec)
        case ev.CodecPreferenceChanged(codecs=codecs):
            # A call already begun keeps its codec: say so while there is one.
            later = " (applies to the next call)" if model.in_call else ""
            return rep(
                model,
                codec_preference=codecs,
                message=f"Video codec for calls: {codec_label(codecs)}{later}.",
                message_error=False,
            )
        case _:
            return model


def window_title(base: str, model: UiModel) -> str:
    """The window's title: who we are and the call state ("vcall — alice — in call with bob")."""
    parts = [base]
    if model.screen is not Screen.LOGIN and model.nick:
        parts.append(model.nick)
    match model.phase:
        case Phase.DIALING:
            parts.append(f"calling {model.peer}")
        case Phase.RINGING:
            parts.append(f"{model.peer} is calling")
        case Phase.CONNECTED:
            held = " (on hold)" if model.hold_local or model.hold_remote else ""
            parts.append(f"in call with {model.peer}{held}")
        case _:
            pass
    return " — ".join(parts)


def protection_words(protection: str, peer: str) -> str:
    """What protects the call, for the status line: a lock when encrypted and verified."""
    if protection.startswith("srtp+tls, verified"):
        return f"encrypted, {peer}'s key matches the directory"
    if protection.startswith("tls, verified"):
        return "call control encrypted, media not"
    if protection.startswith("none: classic"):
        return "not encrypted: classic peer"
    if protection.startswith("none"):
        return "not encrypted"
    return ""


def status_line(model: UiModel, now: float) -> str:
    """The call screen's status bar: state, peer, duration, hold, pause, media ("RTP H264
    medium")."""
    match model.phase:
        case Phase.IDLE:
            return "Not in a call"
        case Phase.DIALING:
            return f"Calling {model.peer}…"
        case Phase.RINGING:
            left = 0.0 if model.ring_deadline is None else max(0.0, model.ring_deadline - now)
            return f"{model.peer} is calling ({left:.0f} s)"
        case Phase.CONNECTED:
            start = now if model.connected_at is None else model.connected_at
            parts = [f"In call with {model.peer}", format_duration(now - start)]
            if model.hold_local and model.hold_remote:
                parts.append("on hold (both)")
            elif model.hold_local:
                parts.append("on hold")
            elif model.hold_remote:
                parts.append(f"held by {model.peer}")
            if not model.sending:
                parts.append("sending paused")
            if model.muted:
                parts.append("muted")
            lock = protection_words(model.protection, model.peer)
            if lock:
                parts.append(lock)
            media = (model.mode.upper(), model.codec, model.preset)
            parts.append(" ".join(word for word in media if word))
            return " · ".join(parts)


def no_video_notice(model: UiModel, now: float) -> str:
    """The call screen's word on a stopped peer video ("No video from bob for 4 s"), or "".

    Said while in call, held by neither side, once the peer's video has not been seen for
    ``NO_VIDEO_AFTER_S`` (before its first frame: since the call connected or the hold ended).
    Our own pause does not stop the peer's video, so it does not silence this."""
    if model.phase is not Phase.CONNECTED or model.hold_local or model.hold_remote:
        return ""
    since = model.video_expected_at
    if since is None:
        return ""
    if model.peer_video_at is not None:
        since = max(since, model.peer_video_at)
    gap = now - since
    if gap < NO_VIDEO_AFTER_S:
        return ""
    return f"No video from {model.peer} for {int(gap)} s"


def peer_notice(model: UiModel, now: float) -> str:
    """The words over the peer's picture when its video stopped, or "".

    A hold says who held ("bob put the call on hold"; ours: "On hold"), and otherwise a video
    that should flow and does not says so (:func:`no_video_notice`). The last frame stays on
    screen under the words, so the picture is never silently frozen."""
    if model.phase is not Phase.CONNECTED:
        return ""
    if model.hold_local and model.hold_remote:
        return f"On hold (both you and {model.peer})"
    if model.hold_remote:
        return f"{model.peer} put the call on hold"
    if model.hold_local:
        return "On hold: Ctrl+H resumes"
    if model.peer_paused:
        return _("{peer} paused their video").format(peer=model.peer)
    return no_video_notice(model, now)


def busy_missed_words(peer: str) -> str:
    """What the user is told when ``peer`` called while we were busy."""
    return _("{peer} tried to call you").format(peer=peer)


def busy_missed_detail() -> str:
    """The desktop notification's body under :func:`busy_missed_words`."""
    return _("You were in a call.")


def reconnect_banner(model: UiModel, now: float) -> str:
    """The banner over the peer's video while the call is reconnecting ("Reconnecting to bob…
    12 s": the seconds of silence so far), or ""."""
    if model.phase is not Phase.CONNECTED or model.reconnecting_since is None:
        return ""
    seconds = int(max(0.0, now - model.reconnecting_since))
    return _("Reconnecting to {peer}… {seconds} s").format(peer=model.peer, seconds=seconds)


def peer_mark(model: UiModel) -> str:
    """The small mark over the peer's picture: "bob is muted" while the peer says so, or ""."""
    if model.phase is not Phase.CONNECTED or not model.peer_muted:
        return ""
    return _("{peer} is muted").format(peer=model.peer)


def self_mark(model: UiModel) -> str:
    """The small mark over one's own picture: "Muted (M)" while our microphone is, or ""."""
    if model.phase is not Phase.CONNECTED or not model.muted:
        return ""
    return _("Muted (M)")


def self_notice(model: UiModel) -> str:
    """The words over one's own picture: why the peer does not see it, or ""."""
    if model.phase is not Phase.CONNECTED:
        return ""
    if not model.sending:
        return "Your video is off (V turns it on)"
    if model.hold_local or model.hold_remote:
        return "On hold: not sent"
    return ""
