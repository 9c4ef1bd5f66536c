"""Lip sync: how much later the peer's video is rendered than its audio, and how much to delay
the audio so that both agree (issue 12). Pure: no I/O, no clock; times are passed in.

API::

    class SenderClock:                    # one stream's RTP -> sender NTP mapping, from its SRs
        def __init__(self, clock_rate: int) -> None
        def update(self, ntp: int, rtp_ts: int) -> bool    # False: implausible, ignored
        def capture(self, rtp_ts: int) -> float | None    # sender NTP seconds, None before an SR
    @dataclass(frozen=True, slots=True)
    class VideoTiming: rtp_timestamp; played_ns                 # receive stage -> audio stage
        pack() -> bytes; unpack(data) -> VideoTiming | None          # None: not one
    def rtcp_sender_ssrc(datagram) -> int | None  # the SSRC of a compound RTCP packet's first SR
    def is_rtcp(datagram) -> bool                 # RFC 5761 4: RTCP, not RTP, on a shared path
    def capture_instant_ns(sent_ns, rtp_ts, clock_rate) -> int   # vcall video: the instant an
                                                  # RTP timestamp stands for (see below)
    @dataclass(frozen=True, slots=True)
    class SyncStats: audio_srs; video_srs; implausible_srs; implausible_offsets; offset_ms;
        extra_ms; engaged
    class LipSync:
        def __init__(self, *, tolerance=0.04, max_extra=0.2, video_render=VIDEO_RENDER_S,
                     audio_rate=48000, video_rate=90000, act=True)   # act False: measure only
        def on_sender_report(self, kind: "audio" | "video", ntp, rtp_ts) -> None
        def on_audio_played(self, rtp_ts, played_at) -> None     # each frame decoded from a packet
        def on_video(self, timing: VideoTiming) -> None          # a few times a second
        extra_delay -> float        # seconds of delay the audio should add now
        stats -> SyncStats

**The rule** (RFC 3550 6.4.1 and 6.5.1; the idea of libwebrtc's ``StreamSynchronization``): a
sender report maps its stream's RTP time to the sender's NTP clock; the peer's two streams share
one NTP clock (one CNAME). For each stream the receiver computes the *relative delay*: local
time of rendering minus sender NTP time of capture. Each value holds the unknown offset between
the two hosts' clocks, the difference does not: ``offset = video relative delay - audio
relative delay`` is how much later the picture is rendered than the sound captured at the same
instant. Audio: the time a frame was handed to the sink minus its capture time (its RTP
timestamp through the audio SR). Video: the time the receive stage's jitter buffer played the
newest frame out to the decoder plus ``video_render`` (decoding it for the display), minus its
capture time (through the video SR): the receive stage sends these as ``VideoTiming``.

**What is done with it.** The offset is smoothed (``SMOOTHING`` per video measurement, a few a
second). When the picture is late by more than ``tolerance`` (40 ms: the limit the issue sets,
under ITU-R BT.1359's detectability threshold of 45 ms for sound ahead of picture), the audio
is delayed to match, by at most ``max_extra`` (200 ms), moving by ``STEP_GAIN`` x the offset (at
most ``MAX_STEP_S``) per measurement (the jitter buffer realises it one 20 ms frame per window,
``pipeline.audio.jitter``); the alignment is then kept, and let go as the offset shrinks,
until the added delay is back to zero. Nothing is added while the offset is within the
tolerance: a clean network gets no added buffering. Nothing is added before both streams'
sender reports have arrived. When the picture is *early* the audio
cannot help (only the video could wait): the offset is reported, no delay is added.

**A peer's SR is a hint.** An SR with NTP 0, an NTP that goes back, or whose RTP advance
disagrees with its NTP advance by more than ``RATE_TOLERANCE`` (+ ``SLACK_S``) is counted
(``implausible_srs``) and ignored, unless ``RESTART_AFTER`` such SRs in a row agree with each
other (a restarted sender: the new mapping is taken). An offset beyond ``MAX_PLAUSIBLE_S`` is
counted (``implausible_offsets``) and never acted on.

Guarantees: ``extra_delay`` is always in [0, max_extra]; no method raises on any value from the
peer; memory is constant.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Literal

from pipeline.wire.rtp import ts_diff

NTP_FRACTION = float(1 << 32)
SMOOTHING = 0.25  # weight of a new offset measurement (a few per second: ~1 s time constant)
AUDIO_SMOOTHING = 0.05  # weight of each audio frame's relative delay (50 a second)
# Each video measurement moves the added delay by STEP_GAIN x the offset, at most MAX_STEP_S:
# slower than the jitter buffer realises it (a frame per 0.5 s), so the loop does not overshoot.
STEP_GAIN = 0.1
MAX_STEP_S = 0.01
HOLD_S = 0.01  # while aligned, offsets within this are left alone (frames are 20 ms)
MAX_PLAUSIBLE_S = 1.0  # a larger offset is a broken SR, not a call
RATE_TOLERANCE = 0.05  # RTP vs NTP advance between two SRs
SLACK_S = 0.25  # a sender's media clock may slip by a stall; an absurd SR is far beyond
MAX_SR_GAP_S = 3600.0
RESTART_AFTER = 3
# Decoding a frame to RGB after the receive stage plays it out: the display stage's decode p50 at
# 720p H.264 on the development machine (the "decode" window of ``vcall bench e2e``).
VIDEO_RENDER_S = 0.005

StreamKind = Literal["audio", "video"]


class SenderClock:
    """One stream's mapping from RTP time to the sender's NTP time, from its latest SR."""

    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self._ntp: float | None = None  # seconds since 1900
        self._rtp = 0
        self._candidate: tuple[float, int] | None = None  # the last rejected mapping
        self._rejected_in_row = 0  # mutually consistent rejected SRs in a row

    def update(self, ntp: int, rtp_ts: int) -> bool:
        """Take an SR's (64-bit NTP, 32-bit RTP) pair; False (ignored) when implausible."""
        ntp_s = (ntp & 0xFFFF_FFFF_FFFF_FFFF) / NTP_FRACTION
        rtp_ts &= 0xFFFF_FFFF
        if ntp_s == 0.0:
            return False
        if self._ntp is not None and not self._consistent((self._ntp, self._rtp), ntp_s, rtp_ts):
            candidate = self._candidate
            if candidate is not None and self._consistent(candidate, ntp_s, rtp_ts):
                self._rejected_in_row += 1
            else:
                self._rejected_in_row = 1
            self._candidate = (ntp_s, rtp_ts)
            if self._rejected_in_row < RESTART_AFTER:
                return False
        self._rejected_in_row = 0
        self._candidate = None
        self._ntp, self._rtp = ntp_s, rtp_ts
        return True

    def _consistent(self, base: tuple[float, int], ntp_s: float, rtp_ts: int) -> bool:
        dt = ntp_s - base[0]
        if not 0.0 <= dt <= MAX_SR_GAP_S:
            return False
        media = ts_diff(rtp_ts, base[1]) / self.clock_rate
        return abs(media - dt) <= RATE_TOLERANCE * dt + SLACK_S

    def capture(self, rtp_ts: int) -> float | None:
        """The sender NTP time (s) of ``rtp_ts``, within 2^31 ticks of the last SR's."""
        if self._ntp is None:
            return None
        return self._ntp + ts_diff(rtp_ts & 0xFFFF_FFFF, self._rtp) / self.clock_rate


@dataclass(frozen=True, slots=True)
class VideoTiming:
    """The peer video's newest frame played out by the receive stage's jitter buffer: its RTP
    timestamp and when (monotonic ns). ``pack`` gives 16 bytes; ``unpack`` None for anything
    else."""

    rtp_timestamp: int
    played_ns: int

    MAGIC = b"VSYN"  # first byte 0x56: RTP/RTCP version 1, never a valid vcall datagram
    _FORMAT = struct.Struct("!4sIQ")
    SIZE = _FORMAT.size

    def pack(self) -> bytes:
        return self._FORMAT.pack(self.MAGIC, self.rtp_timestamp & 0xFFFF_FFFF, self.played_ns)

    @classmethod
    def unpack(cls, data: bytes | bytearray | memoryview) -> VideoTiming | None:
        if len(data) != cls.SIZE or bytes(data[:4]) != cls.MAGIC:
            return None
        _, ts, played = cls._FORMAT.unpack(bytes(data))
        return cls(ts, played)


def capture_instant_ns(sent_ns: int, rtp_ts: int, clock_rate: int) -> int:
    """The monotonic instant (ns) that ``rtp_ts`` stands for, given a time ``sent_ns`` shortly
    after it: vcall's video RTP timestamps are the capture time on CLOCK_MONOTONIC
    (``pipeline.stages.send.rtp_ts_of``), so an SR can map them to NTP exactly rather than to
    the time the frame left (which is later by the encoding). ``sent_ns`` itself when the
    timestamp is not within one second before it (not such a timestamp)."""
    now_ts = (sent_ns * clock_rate // 1_000_000_000) & 0xFFFF_FFFF
    behind = ts_diff(now_ts, rtp_ts & 0xFFFF_FFFF)
    if not 0 <= behind <= clock_rate:
        return sent_ns
    return sent_ns - behind * 1_000_000_000 // clock_rate


def is_rtcp(datagram: bytes | bytearray | memoryview) -> bool:
    """RTCP rather than RTP (RFC 5761 4: version 2 and a second byte of 192..223, which no RTP
    payload type with or without the marker takes in vcall: 96..127 and 224..255)."""
    return len(datagram) >= 8 and datagram[0] >> 6 == 2 and 192 <= datagram[1] <= 223


def rtcp_sender_ssrc(datagram: bytes | bytearray | memoryview) -> int | None:
    """The SSRC of the SR that begins a compound RTCP packet (RFC 3550 6.1: it begins with an SR
    or RR), or None when it begins with anything else."""
    if len(datagram) < 8 or datagram[0] >> 6 != 2 or datagram[1] != 200:
        return None
    return int.from_bytes(bytes(datagram[4:8]), "big")


@dataclass(frozen=True, slots=True)
class SyncStats:
    audio_srs: int = 0  # plausible SRs taken, per stream
    video_srs: int = 0
    implausible_srs: int = 0
    implausible_offsets: int = 0
    measurements: int = 0
    offset_ms: float | None = None  # smoothed: video relative delay - audio's (+: video late)
    extra_ms: float = 0.0  # delay the audio adds now
    engaged: bool = False


class LipSync:
    """Audio delay to meet the video; see the module docstring."""

    def __init__(
        self,
        *,
        tolerance: float = 0.04,
        max_extra: float = 0.2,
        video_render: float = VIDEO_RENDER_S,
        audio_rate: int = 48_000,
        video_rate: int = 90_000,
        act: bool = True,
    ) -> None:
        self.tolerance, self.max_extra, self.video_render = tolerance, max_extra, video_render
        self.act = act
        self._clocks = {"audio": SenderClock(audio_rate), "video": SenderClock(video_rate)}
        self._taken = {"audio": 0, "video": 0}
        self._implausible_srs = 0
        self._implausible_offsets = 0
        self._measurements = 0
        self._audio_rel: float | None = None
        self._offset: float | None = None
        self._extra = 0.0
        self._engaged = False

    def on_sender_report(self, kind: StreamKind, ntp: int, rtp_ts: int) -> None:
        if self._clocks[kind].update(ntp, rtp_ts):
            self._taken[kind] += 1
        else:
            self._implausible_srs += 1

    def on_audio_played(self, rtp_ts: int, played_at: float) -> None:
        """A frame decoded from the peer's packet ``rtp_ts`` went to the sink at ``played_at``."""
        capture = self._clocks["audio"].capture(rtp_ts)
        if capture is None:
            return
        rel = played_at - capture
        if self._audio_rel is None or abs(rel - self._audio_rel) > MAX_PLAUSIBLE_S:
            self._audio_rel = rel  # the first, or a new mapping: start afresh
        else:
            self._audio_rel += AUDIO_SMOOTHING * (rel - self._audio_rel)

    def on_video(self, timing: VideoTiming) -> None:
        """The newest video frame's timing; updates the offset and the audio's added delay."""
        capture = self._clocks["video"].capture(timing.rtp_timestamp)
        if capture is None or self._audio_rel is None:
            return
        render = timing.played_ns / 1e9 + self.video_render
        offset = (render - capture) - self._audio_rel
        if abs(offset) > MAX_PLAUSIBLE_S:
            self._implausible_offsets += 1
            return
        self._measurements += 1
        if self._offset is None:
            self._offset = offset
        else:
            self._offset += SMOOTHING * (offset - self._offset)
        if self.act:
            self._steer(self._offset)

    def _steer(self, offset: float) -> None:
        if not self._engaged:
            if offset <= self.tolerance:
                return  # within the tolerance: add nothing
            self._engaged = True
        if abs(offset) <= HOLD_S:
            return
        step = max(-MAX_STEP_S, min(MAX_STEP_S, STEP_GAIN * offset))
        self._extra = max(0.0, min(self.max_extra, self._extra + step))
        if self._extra == 0.0:
            self._engaged = False

    @property
    def extra_delay(self) -> float:
        return self._extra

    @property
    def stats(self) -> SyncStats:
        return SyncStats(
            audio_srs=self._taken["audio"],
            video_srs=self._taken["video"],
            implausible_srs=self._implausible_srs,
            implausible_offsets=self._implausible_offsets,
            measurements=self._measurements,
            offset_ms=None if self._offset is None else round(self._offset * 1000, 1),
            extra_ms=round(self._extra * 1000, 1),
            engaged=self._engaged,
        )
