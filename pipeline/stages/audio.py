"""Audio stage: a call's voice, both directions, in a process of its own (issue 12).

It holds one ``pipeline.audio.path.AudioPath`` (capture -> echo cancellation -> Opus -> RTP, and
RTP -> jitter buffer -> decode/FEC/conceal -> playback, in two threads of the path's own), so
neither the Tk thread nor the video stages ever wait for audio, and audio never waits for video.

What flows:

- **In**: the receive stage owns the call's UDP socket and routes datagrams of the audio codec's
  payload type to the ``audio_rx`` ring (one slot per datagram, the kernel arrival time in
  ``Ts.RECV_FIRST``); this stage reads them in order and hands them to the path, which checks
  payload type and SSRC (the peer's video SSRC + 2, ``audio_ssrc_of``) itself.
- **Out**: the path sends from its capture thread through this stage's own ``DatagramEdge``
  (SRTP with the call's key when call control exchanged one) to the peer's media port (the one
  video uses; the peer tells the streams apart by payload type and SSRC, RFC 3550 5.2). The
  source port differs from video's, which the protocol allows.
- **Lip sync** (``pipeline.audio.sync``): the ``audio_rx`` ring also carries, from the receive
  stage, the peer's RTCP packets that hold its SRs (audio and video) and ``VideoTiming``
  records of the peer's video; this stage tells them apart from RTP (RFC 5761 4 and the
  record's magic) and hands them to the path. It sends the SRs of our audio stream itself, once
  per ``RTCP_INTERVAL_S``, from a socket of its own to the peer's RTCP port (rx port + 1, as
  video's), SRTCP with the call's key. Why here rather than in the receive stage's compound
  report: this stage owns the audio stream's counts and its RTP-to-capture-time mapping, and no
  shared ring has to carry them to another process (RFC 3550 6.1 allows one compound packet per
  SSRC; RFC 8108 5.4.1 a sender's several).
- **Volume**: ``SetAudioVolume`` sets the playout gain (0..150 %; ``AudioSpec.volume`` at
  start); the snapshot reports the input level (``path.input_dbfs``) for a meter.
- **Decisions**: it sends only while the call session says so (``SetAudioSending``: not held,
  not muted), the same one decision the session makes for video; a video pause does not mute.

Audio exists only between vcall peers in RTP mode: a classic (V0) peer gets none. A device
that cannot be opened is said once in the log and the call goes on without audio in that
direction (``audio_error`` in the snapshot); a device that disappears mid-call falls back inside
the path (``source_fallback`` / ``sink_fallback``).
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import time
from collections.abc import Sequence
from typing import Any

from pipeline.audio.frames import AudioSink, AudioSource
from pipeline.audio.path import AudioPath
from pipeline.audio.processing import make_processing
from pipeline.audio.sinks import open_sink
from pipeline.audio.sources import open_source
from pipeline.audio.sync import VideoTiming, is_rtcp
from pipeline.control import (
    AudioSpec,
    Connect,
    ControlMessage,
    MediaMode,
    PeerEndpoint,
    SetAudioSending,
    SetAudioVolume,
    audio_ssrc_of,
)
from pipeline.ipc.ring import Ring, Ts
from pipeline.stages.base import Stage, StageContext
from pipeline.transport.edge import DatagramEdge
from pipeline.transport.srtp import protection_for
from pipeline.wire.rtcp import RtcpSession, SenderInfo

logger = logging.getLogger(__name__)

MAX_PACKETS_PER_TURN = 64
RTCP_INTERVAL_S = 1.0


class AudioStage(Stage):
    def __init__(self, ctx: StageContext, *, audio_rx: Ring, spec: AudioSpec) -> None:
        super().__init__(ctx)
        self._reader = audio_rx.reader(0)
        self._spec = spec
        self._edge = DatagramEdge(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        self._rtcp_edge = DatagramEdge(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        self._rtcp: RtcpSession | None = None
        self._sent_info: SenderInfo | None = None
        self._path: AudioPath | None = None
        self._sending = True
        self._volume = spec.volume
        self._error = ""

    def wait_fds(self) -> Sequence[int]:
        return (self._reader.fd,)

    def timeout(self, now_ns: int) -> float:
        if self._rtcp is None:
            return super().timeout(now_ns)
        return max(0.0, RTCP_INTERVAL_S - self._rtcp.since_report(now_ns / 1e9))

    def step(self, ready: Sequence[int], now_ns: int) -> None:
        self._rtcp_tick(time.monotonic())
        if self._reader.fd not in ready:
            return
        self._reader.drain()
        path = self._path
        for _ in range(MAX_PACKETS_PER_TURN):
            desc = self._reader.next()
            if desc is None:
                return
            data = self._reader.copy_bytes(desc)
            if data is None:
                self.count("torn")
                continue
            if path is None:
                self.count("dropped_no_path")
                continue
            timing = VideoTiming.unpack(data)
            if timing is not None:
                path.on_video(timing)
                self.count("video_timings_in")
            elif is_rtcp(data):
                path.on_rtcp(data)
                self.count("rtcp_in")
            else:
                path.receive(data, desc.stamp(Ts.RECV_FIRST) / 1e9 or time.monotonic())
                self.count("packets_in")

    def _rtcp_tick(self, now: float) -> None:
        """Our audio SR, once per RTCP_INTERVAL_S, when we sent since the last one."""
        session, path = self._rtcp, self._path
        if session is None or path is None or not session.due(now):
            return
        info = path.sender_info()
        if info is not None and (self._sent_info is None or info.packets > self._sent_info.packets):
            session.on_sender_info(info, self._sent_info)
            self._sent_info = info
        report = session.build_report(now)
        if len(report) < 2 or report[1] != 200:
            return  # not sending (muted, held): an RR about nothing would tell the peer nothing
        if self._rtcp_edge.send(report) == 0:
            self.count("rtcp_send_errors")

    def _send(self, datagram: bytes) -> None:
        """The path's capture thread sends through our edge (counted there)."""
        if self._edge.peer is not None:
            self._edge.send(datagram)

    def _start(self, peer: PeerEndpoint) -> None:
        source: AudioSource | None = None
        sink: AudioSink | None = None
        try:
            source = open_source(self._spec.source)
            sink = open_sink(self._spec.sink)
            path = AudioPath(
                source=source,
                sink=sink,
                send=self._send,
                ssrc=audio_ssrc_of(peer.local_ssrc),
                peer_ssrc=None if peer.peer_ssrc is None else audio_ssrc_of(peer.peer_ssrc),
                processing=make_processing(self._spec.processing),
                lip_sync=self._spec.lip_sync,
            )
            path.start()
        except Exception as exc:  # any device library failure: no audio in this call, said once
            for part in (source, sink):
                if part is not None:
                    part.close()
            self._error = str(exc)
            self.count("open_failed")
            logger.warning("audio: no audio in this call: %s", exc)
            return
        self._path = path
        # Our SRs: the audio SSRC, the 48 kHz clock, NTP from the very wall clock offset of the
        # receive stage's video SRs (the session's, taken once: StageContext).
        self._rtcp = RtcpSession(
            audio_ssrc_of(peer.local_ssrc),
            clock_rate=path.clock_rate,
            interval=RTCP_INTERVAL_S,
            wallclock_offset=self.wallclock_offset(),
        )
        self._apply()
        logger.info("audio: %s -> %s, %s -> peer", self._spec.source, self._spec.sink, peer.ip)

    def _apply(self) -> None:
        if self._path is not None:
            self._path.set_sending(self._sending)
            self._path.set_volume(self._volume)

    def handle(self, msg: ControlMessage) -> None:
        match msg:
            case Connect(peer=peer):
                if peer.mode is not MediaMode.RTP and str(peer.mode) != "rtp":
                    return  # classic peers have no audio
                self._edge.connect(peer.ip, peer.rx_port)
                self._rtcp_edge.connect(peer.ip, peer.rx_port + 1)
                # SRTP with the call's key, as the send stage: its own SSRC (video + 2) gives
                # it its own keystream (RFC 3711 4.1.1); what it receives was unprotected by
                # the receive stage's edge.
                self._edge.protection = protection_for(
                    self._edge.protection, tx_key=peer.tx_key, rx_key=None
                )
                self._rtcp_edge.protection = protection_for(
                    self._rtcp_edge.protection, tx_key=peer.tx_key, rx_key=None, rtcp=True
                )
                if self._path is None and not self._error:
                    self._start(peer)
            case SetAudioSending(enabled=enabled):
                self._sending = enabled
                self._apply()
            case SetAudioVolume(volume=volume):
                self._volume = volume
                self._apply()

    def snapshot(self, now_ns: int) -> dict[str, Any]:
        snap: dict[str, Any] = {
            "active": self._path is not None,
            "sending": self._sending,
            "source": self._spec.source,
            "sink": self._spec.sink,
            "error": self._error,
            "ring_dropped": self._reader.dropped,
            "send_errors": self._edge.stats.send_errors,
            "volume": self._volume,
        }
        if self._path is not None:
            snap["path"] = dataclasses.asdict(self._path.stats)
        return snap

    def reset_stats(self) -> None:
        self._edge.reset_stats()
        self._rtcp_edge.reset_stats()

    def close(self) -> None:
        if self._path is not None:
            self._path.close()
            self._path = None
        self._edge.close()
        self._rtcp_edge.close()
