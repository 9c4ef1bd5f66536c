"""What the controller tells the media pipeline: the media mode, the peer, and the typed control
messages that travel on each stage's control pipe.

API::

    class MediaMode(enum.StrEnum): V0 = "v0"; RTP = "rtp"
    @dataclass(frozen=True, slots=True)
    class PeerEndpoint: ip; rx_port; mode: MediaMode; local_ssrc = 0; peer_ssrc: int | None = None;
                        codec: str = "JPEG"   # the registry name negotiated for this call
                        tx_key: bytes | None = None; rx_key: bytes | None = None  # SRTP keys
    # control messages (frozen, slotted; every one is a ControlMessage):
    Stop, ResetStats, Connect(peer), SetSending(enabled), SetPreset(preset), SetSource(spec),
    SetDisplaySize(peer_box, self_box), SetAudioSending(enabled), SetAudioVolume(volume)
    @dataclass(frozen=True, slots=True) class AudioSpec: source; sink; processing; volume;
                                             lip_sync
    def audio_ssrc_of(video_ssrc: int) -> int

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

    ``tx_key`` / ``rx_key``: the call's SRTP master keys (30 bytes each: key + salt,
    AES_CM_128_HMAC_SHA1_80, RFC 3711), ours for what we send and the peer's for what we
    receive, exchanged inside the TLS call control (docs/protocol.md 4.1). None for both: no
    protection (classic peers, tools); RTP mode only.
    """

    ip: str
    rx_port: int
    mode: MediaMode
    local_ssrc: int = 0
    peer_ssrc: int | None = None
    codec: str = "JPEG"
    tx_key: bytes | None = None
    rx_key: bytes | None = None

    def __repr__(self) -> str:  # never log the keys
        keys = "srtp" if self.tx_key is not None else "none"
        return (
            f"PeerEndpoint(ip={self.ip!r}, rx_port={self.rx_port}, mode={self.mode!s}, "
            f"local_ssrc={self.local_ssrc}, peer_ssrc={self.peer_ssrc}, codec={self.codec!r}, "
            f"protection={keys})"
        )


@dataclass(frozen=True, slots=True)
class Stop:
    """End the stage's loop (EOF on the control pipe means the same)."""


@dataclass(frozen=True, slots=True)
class ResetStats:
    """Start the stage's latency windows and counters afresh (benchmarks: after warm-up)."""


@dataclass(frozen=True, slots=True)
class Connect:
    """Start sending to / accepting from ``peer`` (capture: the codec's raw format; encode, send,
    receive, display)."""

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


@dataclass(frozen=True, slots=True)
class SetAudioSending:
    """Whether the call sends audio now (the audio stage). The call session decides, as for
    video: audio goes out in a call neither side holds while the user has not muted; a video
    pause does not mute."""

    enabled: bool


@dataclass(frozen=True, slots=True)
class SetAudioVolume:
    """The speaker volume of the call's audio (the audio stage): a gain on what is played,
    0.0..1.5 (0..150 %; values outside are clamped)."""

    volume: float


@dataclass(frozen=True, slots=True)
class AudioSpec:
    """A call's audio: the capture and playback specs of ``pipeline.audio`` (sources
    ``device[:NAME]``, ``tone:HZ``, ``file:PATH.wav``, ``silence``; sinks ``device[:NAME]``,
    ``wav:PATH``, ``null``), whether echo cancellation / noise suppression run, and the speaker
    volume at start (0.0..1.5, ``SetAudioVolume`` changes it); ``lip_sync`` False measures the
    A/V offset but never delays the audio (``pipeline.audio.sync``; benchmarks compare)."""

    source: str = "device"
    sink: str = "device"
    processing: bool = True
    volume: float = 1.0
    lip_sync: bool = True


def audio_ssrc_of(video_ssrc: int) -> int:
    """The SSRC of a vcall peer's audio stream: its video SSRC + 2 (mod 2^32; + 1 is the RTX
    stream's), so call control needs no third token (docs/protocol.md 4.2)."""
    return (video_ssrc + 2) & 0xFFFFFFFF


ControlMessage = (
    Stop
    | ResetStats
    | Connect
    | SetSending
    | SetPreset
    | SetSource
    | SetDisplaySize
    | SetAudioSending
    | SetAudioVolume
)
