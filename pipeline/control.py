"""What the controller tells the media pipeline: the media mode, the peer, and the typed control
messages that travel on each stage's control pipe.

API::

    class MediaMode(enum.StrEnum): V0 = "v0"; RTP = "rtp"
    @dataclass(frozen=True, slots=True)
    class PeerEndpoint: ip; rx_port; mode: MediaMode; local_ssrc = 0; peer_ssrc: int | None = None;
                        codec: str = "JPEG"   # the registry name negotiated for this call
    # control messages (frozen, slotted; every one is a ControlMessage):
    Stop, ResetStats, Connect(peer), SetSending(enabled), SetPreset(preset), SetSource(spec),
    SetDisplaySize(peer_box, self_box)

Guarantees: this module imports nothing heavier than the standard library and ``presets``, so
call control may build a ``PeerEndpoint`` without loading the media pipeline. Messages are
values: a stage matches on their class, never on the length of a tuple. ``PeerEndpoint``
travels whole from call control to the stages that need it (send and receive), unpacked
nowhere on the way.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pipeline.presets import Preset


class MediaMode(enum.StrEnum):
    """How video travels in a call (docs/protocol.md sections 3 and 4)."""

    V0 = "v0"  # classic: one UDP datagram per JPEG frame
    RTP = "rtp"  # vcall extension: RTP (RFC 3550) with RTCP, only when both peers speak it


@dataclass(frozen=True, slots=True)
class PeerEndpoint:
    """Where the peer receives, and who it is on the media path.

    ``rx_port`` is the UDP port the peer declared in CALLING / CALL_ACCEPTED. ``local_ssrc`` is
    the SSRC we announced and send with (RTP mode). ``peer_ssrc`` is the SSRC the peer announced
    (any value, 0 included): packets from other sources are dropped. None means no token (a
    non-vcall sender such as ffmpeg): the receiver locks on the first source. ``codec`` is the
    video codec negotiated in call control (a ``pipeline.codecs.registry`` name; classic V0
    calls are always JPEG).
    """

    ip: str
    rx_port: int
    mode: MediaMode
    local_ssrc: int = 0
    peer_ssrc: int | None = None
    codec: str = "JPEG"


@dataclass(frozen=True, slots=True)
class Stop:
    """End the stage's loop (EOF on the control pipe means the same)."""


@dataclass(frozen=True, slots=True)
class ResetStats:
    """Start the stage's latency windows and counters afresh (benchmarks: after warm-up)."""


@dataclass(frozen=True, slots=True)
class Connect:
    """Start sending to / accepting from ``peer`` (encode, send, receive)."""

    peer: PeerEndpoint


@dataclass(frozen=True, slots=True)
class SetSending:
    """Whether the call sends video now (the call session decides: hold and pause)."""

    enabled: bool


@dataclass(frozen=True, slots=True)
class SetPreset:
    """Resolution, quality and frame rate to send at (capture, encode, send)."""

    preset: Preset


@dataclass(frozen=True, slots=True)
class SetSource:
    """Switch the capture source (a spec string of ``pipeline.sources.video``)."""

    spec: str


@dataclass(frozen=True, slots=True)
class SetDisplaySize:
    """The boxes (width, height) the peer view and the self view are decoded to fit."""

    peer_box: tuple[int, int]
    self_box: tuple[int, int]


ControlMessage = Stop | ResetStats | Connect | SetSending | SetPreset | SetSource | SetDisplaySize
