"""What call control needs from a media session, and what it tells it to send.

:class:`MediaLike` is a structural protocol, so that call control depends on the contract in
docs/architecture.md and unit tests can pass a fake. ``PeerEndpoint`` comes from
``pipeline.control``, which imports nothing heavy: a control-only peer (``vcall agent
--no-media``) never loads the media pipeline (``pipeline.session`` is imported by whoever
builds a media factory, not here).

:func:`sending` is the one rule for "are we sending": what the call sends follows from the
call's state and the user's choices for the call (:class:`UserChoices`), nothing else. The
call session is its only caller and the only one to tell the media (docs/architecture.md).

Guarantees: no I/O; :func:`sending` is pure and total over (state, choices).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from pipeline.control import PeerEndpoint
from vcall.call.state import CallState, video_flows


class StatsLike(Protocol):
    """A media statistics snapshot (``pipeline.stats.MediaStats``)."""

    def to_dict(self) -> dict[str, Any]: ...


class MediaLike(Protocol):
    def open(self) -> int: ...

    def connect(self, peer: PeerEndpoint) -> None: ...

    def set_sending(self, enabled: bool) -> None: ...

    def stats(self) -> StatsLike: ...

    def sdp(self) -> str: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class UserChoices:
    """What the user chose to withhold in the current call, whatever the call's state.

    Per call: a new call starts with the defaults.
    """

    paused: bool = False  # the user paused our video
    muted: bool = False  # the user muted the microphone


@dataclass(frozen=True, slots=True)
class Sending:
    """What the call sends now; the media is told only when this changes."""

    video: bool
    audio: bool = False


def sending(state: CallState, choices: UserChoices) -> Sending:
    """What the call sends in ``state`` with the user's ``choices``.

    Video goes out only in a call neither side holds and the user has not paused: a pause
    outlasts a hold, and neither resuming the hold nor un-pausing alone restarts the video.
    Audio, the same with the mute: a video pause does not mute, a mute does not pause.
    """
    flows = video_flows(state)
    return Sending(video=flows and not choices.paused, audio=flows and not choices.muted)
