"""Receive stage: UDP from the negotiated peer -> frames -> jitter buffer -> rx encoded ring.

The sockets were bound by the controller in ``MediaSession.open`` and are inherited; each is
wrapped in a ``DatagramEdge`` (the only way in and out: the peer-address rule and the
unprotect hook). Until ``Connect`` every datagram is dropped and counted. In RTP mode the
``RtpReceiver`` (the stream layer) filters payload type and SSRC (the negotiated SSRC is the
per-call token, 0 included; None locks on the first source) and keeps the RFC 3550 statistics,
and the codec's depacketizer rebuilds frames; in a mode with a framing of its own (V0) each
datagram is one frame. Every reader has a cap: one ``recvfrom`` reads at most 64 KiB, a turn
takes at most ``MAX_DATAGRAMS_PER_TURN`` datagrams (and skips at most
``edge.MAX_DISCARDS_PER_CALL`` times as many discarded ones), and the depacketizer bounds frame
size and open frames. Garbage is counted, never raised; an unexpected error on a peer's data (a
parser bug) is counted as ``peer_errors`` and dropped.

The jitter buffer skips older frames only when the codec says every frame is independent
(``CodecInfo.intra_only``); for an inter-frame codec every due frame is played, in order.

Keyframe requests (codecs with ``keyframe_requests``, RFC 4585/5104): when the depacketizer
says a lost frame broke the chain of references, or the display stage signals on the
``keyframe_needed`` eventfd that a frame did not decode, this stage sends the peer an RTCP
PLI + FIR (rate-limited by ``RtcpSession``). When the peer asks us for one, it signals the encode
stage on the ``keyframe_request`` eventfd.

RTCP (RTP mode): this stage owns the socket on rx port + 1. It takes in the peer's SR/RR, and
every second sends our report to the peer's port + 1: an SR built from the send stage's
``SenderInfo`` (``txinfo`` ring) plus a report block about what we receive (loss, jitter,
LSR/DLSR for RTT). The SR maps the RTP timestamp to the capture instant it stands for.

Lip sync (``pipeline.audio.sync``, with an audio stage): the peer's SRs of its video and audio
streams go to the audio stage on the ``audio_rx`` ring (the audio stream's, sent by the peer's
audio stage from its own socket, stay out of the video's RTCP session: ``audio_rtcp``), and
every ``SYNC_TIMING_S`` a ``VideoTiming`` of the last video frame played out (RTP timestamp,
time).

Loss repair and congestion control, both directions (docs/architecture.md, "Calls on real
networks"). What we receive: a ``NackTracker`` lists missing packets and this stage sends
generic NACKs (RFC 4585) for them; RTX packets (RFC 4588) are unwrapped into the stream; the
in-order depacketizer's ``repair_wait`` follows the RTT so a frame under repair is waited for
(longer while the NACK list still asks for a packet before it: transport/stream.py);
a ``DelayBasedEstimator`` on the abs-send-time of each packet estimates the path's rate and a
REMB reports it to the peer. What we send: the peer's NACKs go to the send stage and its REMB
and report blocks feed a ``SendRateController`` whose target goes to the send stage (pacing)
and the encode stage (bitrate), all on the ``feedback`` ring.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.audio.sync import VideoTiming, capture_instant_ns, rtcp_sender_ssrc
from pipeline.codecs.base import Codec, Framing, MediaKind
from pipeline.codecs.registry import for_mode, get_codec
from pipeline.control import Connect, ControlMessage, MediaMode, audio_ssrc_of
from pipeline.errors import RemoteProtocolError
from pipeline.ipc.ring import Ring, RingError, RingReader, RingWriter, Ts
from pipeline.jitter import JitterBuffer
from pipeline.stages.base import Stage, StageContext
from pipeline.stats import RateMeter
from pipeline.transport import feedback
from pipeline.transport.bwe import DelayBasedEstimator
from pipeline.transport.edge import DatagramEdge
from pipeline.transport.rate import START_BPS, SendRateController
from pipeline.transport.srtp import protection_for
from pipeline.transport.stream import RtpReceiver, RtpStream
from pipeline.wire.rtcp import RtcpSession, SenderInfo
from pipeline.wire.rtp import to_rtp_ts

logger = logging.getLogger(__name__)

RECEIVE_BUFFER = 4 * 1024 * 1024
EVEN_PORT_ATTEMPTS = 64
MAX_DATAGRAMS_PER_TURN = 512
MAX_RTCP_PER_TURN = 64
MAX_FRAMES_PER_TURN = 8
EXPIRE_INTERVAL_NS = 100_000_000
# Playout delay = JITTER_FACTOR x measured frame jitter, at most MAX_PLAYOUT_DELAY_S. RTP
# timestamps are capture times, so the sender's own processing variation (a millisecond or two)
# counts as jitter: a factor of 1.5 keeps the delay at about that on a clean link, and the cap
# keeps an interactive call interactive when the path is bad.
JITTER_FACTOR = 1.5
MAX_PLAYOUT_DELAY_S = 0.05
# Congestion control range: the floor keeps a picture alive; the ceiling is far above any
# preset (the encode stage caps the target at the preset's own bitrate).
MIN_TARGET_BPS = 150_000
MAX_TARGET_BPS = 50_000_000
TARGET_PUBLISH_S = 1.0  # the target goes to send/encode on a change of 2 % or at this interval
# How long a complete frame waits for an older one under repair: a NACK, its RTX and a retry
# take about REPAIR_RTTS round trips, plus the wait for reordering; never beyond
# MAX_REPAIR_WAIT_S (past that a keyframe request is the faster repair), the NACK list's own age
# limit, up to which the depacketizer holds a frame while the list still asks for a packet
# before it (RtpReceiver.add_rtx). Following only the RTT dropped frames whose repair was on its
# way when the RTT grew faster than it is measured: at the lab's bandwidth step the RTT went from
# 49 to ~240 ms in 0.3 s (the bottleneck queues filled) while RTCP still said 49, so frames were
# given up after 142 ms, and the keyframe requests that followed froze the picture for about a
# second. An inter-frame decoder cannot go on without the frame anyway.
REPAIR_RTTS = 2.5
REPAIR_MARGIN_S = 0.02
MAX_REPAIR_WAIT_S = 0.5
REPAIR_MEMORY_S = 10.0
SENT_RATE_S = 0.5
EARLY_REPORT_S = 0.25
EARLY_REPORT_LOSS = 0.1
EARLY_REPORT_MIN_PACKETS = 20
# Frames waiting for playout: a repair held for MAX_REPAIR_WAIT_S at 48 fps. Beyond that an
# in-order codec's oldest frame is pushed out, the chain of references breaks, and nothing is
# shown until a keyframe (asked for at once).
JITTER_MAX_FRAMES = 24
MAX_RTT_S = 1.0  # an RTT above this (RTCP's can say up to 60 s) is taken as this
# What a keyframe needs beyond one RTT to answer a request: the encoder's next frame (33 ms at
# 30 fps) and the keyframe's own serialisation (about 60 ms for 12 KB at 1.5 Mbit/s).
KEYFRAME_ANSWER_MARGIN_S = 0.1
# A peer that has sent no RTCP for KEYFRAME_SAFETY_S cannot ask for keyframes (ffplay or a
# GStreamer pipeline fed from our SDP, whose reports, if any, do not reach our RTCP port; a vcall
# peer whose RTCP is blocked): our encoder is asked for one every KEYFRAME_SAFETY_S, so such a
# receiver can join late and recover from a loss. A vcall peer reports every second and asks
# (PLI) when it needs one: it gets no periodic IDR, a burst into a tight link's queue for
# nothing (pipeline.codecs.h264; libwebrtc sends none either).
KEYFRAME_SAFETY_S = 10.0
DEFAULT_RTT_S = 0.1
SYNC_TIMING_S = 0.2  # the peer video's timing to the audio stage (lip sync), 5 a second
SYNC_PENDING = 64


def bind_rx_sockets(ip: str, port: int) -> tuple[socket.socket, socket.socket]:
    """Bind RTP on an even port (``port``, or any free one when 0) and RTCP on port + 1."""
    for _ in range(EVEN_PORT_ATTEMPTS if port == 0 else 1):
        rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            rtp.bind((ip, port))
            chosen = rtp.getsockname()[1]
            if port == 0 and chosen % 2:
                raise OSError(errno.EADDRINUSE, "odd port")
            rtcp.bind((ip, chosen + 1))
        except OSError:
            rtp.close()
            rtcp.close()
            if port != 0:
                raise
            continue
        _set_receive_buffer(rtp)
        return rtp, rtcp
    raise OSError(errno.EADDRINUSE, "no free even UDP port pair")


def _set_receive_buffer(sock: socket.socket) -> None:
    # A 1080p frame is ~200 datagrams arriving in one burst: the default buffer (208 KiB of
    # truesize) overflows. SO_RCVBUFFORCE passes rmem_max when we may; else take what we get.
    for option in (getattr(socket, "SO_RCVBUFFORCE", 33), socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, RECEIVE_BUFFER)
            return
        except OSError:
            continue


@dataclass(frozen=True, slots=True)
class _RxFrame:
    data: bytes
    width: int
    height: int
    keyframe: bool
    frame_id: int
    first_ns: int
    complete_ns: int


class ReceiveStage(Stage):
    def __init__(
        self,
        ctx: StageContext,
        *,
        rtp_sock: socket.socket,
        rtcp_sock: socket.socket,
        encoded_rx: Ring,
        txinfo: Ring,
        codec: Codec,
        keyframe_request: int = -1,
        keyframe_needed: int = -1,
        feedback_ring: Ring | None = None,
        audio_rx: Ring | None = None,
    ) -> None:
        super().__init__(ctx)
        self._audio: RingWriter | None = None if audio_rx is None else audio_rx.writer()
        self._audio_id = 0
        # Lip sync (pipeline.audio.sync): the peer's audio SSRC; the RTP timestamps of frames
        # waiting in the jitter buffer (frame id -> ts, at most SYNC_PENDING); the last frame
        # played (ts, monotonic ns), whose timing goes to the audio stage every SYNC_TIMING_S.
        self._peer_audio_ssrc: int | None = None
        self._pending_ts: dict[int, int] = {}
        self._last_video: tuple[int, int] | None = None
        self._last_timing = 0.0
        self._feedback: RingWriter | None = None
        if feedback_ring is not None:
            self._feedback = feedback_ring.writer()
        self._bwe: DelayBasedEstimator | None = None
        self._send_rate: SendRateController | None = None
        self._published: tuple[float, int] | None = None
        self._reports_seen = 0
        self._feedback_id = 0
        self._nack_requests = 0
        self._sent_base: SenderInfo | None = None
        self._repairing_until = 0.0
        self._keyframe_request = keyframe_request  # we write: the peer asked for a keyframe
        self._peer_rtcp_at = 0.0  # the last RTCP from the peer (or the Connect), monotonic s
        self._safety_keyframe_at = 0.0  # the last keyframe asked for by KEYFRAME_SAFETY_S
        self._keyframe_needed = keyframe_needed  # we read: the display lost the chain
        self._rtp = DatagramEdge(rtp_sock)
        self._rtcp = DatagramEdge(rtcp_sock)
        self._writer = encoded_rx.writer()
        self._txinfo = RingReader(txinfo, -1)
        self._txinfo_seq = 0  # the send stage's info last read (ring write number)
        self._codec = codec
        self._mode: str | None = None
        self._receiver: RtpReceiver | None = None
        self._video: RtpStream | None = None
        self._framing: Framing | None = None
        self._rtcp_session: RtcpSession | None = None
        self._jitter = self._new_jitter()
        self._overflows_seen = 0  # the jitter buffer's overflows already acted on
        self._overflow_gap = False  # an in-order frame was pushed out: show only from a keyframe
        self._rtcp_rtt: float | None = None  # RTCP's RTT, and when it last changed
        self._rtcp_rtt_at = 0.0
        self._frame_counter = 0
        self._pli_since_ns = 0  # monotonic ns of the first PLI not yet answered by a keyframe
        self._last_expire = 0
        self._sender_info: SenderInfo | None = None
        self._rate = RateMeter()
        self._played = RateMeter()

    def _new_jitter(self) -> JitterBuffer[_RxFrame]:
        info = self._codec.info
        return JitterBuffer(
            clock_rate=info.clock_rate,
            jitter_factor=JITTER_FACTOR,
            max_delay=MAX_PLAYOUT_DELAY_S,
            skip_older=info.intra_only,
            max_frames=JITTER_MAX_FRAMES,
        )

    def wait_fds(self) -> Sequence[int]:
        if self._keyframe_needed >= 0:
            return (self._rtp.fileno(), self._rtcp.fileno(), self._keyframe_needed)
        return (self._rtp.fileno(), self._rtcp.fileno())

    def timeout(self, now_ns: int) -> float:
        now = now_ns / 1e9
        due = self._jitter.next_due(now)
        wait = 0.25 if due is None else due
        nack = None if self._video is None or self._video.nack is None else self._video.nack
        if nack is not None:
            nack_due = nack.next_due(now, self._rtt(now))
            if nack_due is not None:
                wait = min(wait, nack_due)
        return wait

    def _rtt(self, now: float) -> float | None:
        """The round trip in seconds, at most MAX_RTT_S: the newer of RTCP's (RFC 3550 6.4.1,
        once a second) and the one our recent repairs measured (NackTracker.repair_rtt: it
        follows a queue that drains within a few repairs; RTCP's, when newer, lifts it when the
        queue grows and every repair is asked twice, which gives no sample by Karn's rule)."""
        rtcp = None if self._rtcp_session is None else self._rtcp_session.rtt_s
        if rtcp != self._rtcp_rtt:
            self._rtcp_rtt, self._rtcp_rtt_at = rtcp, now
        nack = None if self._video is None else self._video.nack
        measured = None if nack is None else nack.repair_rtt(now)
        rtt = rtcp
        if measured is not None and nack is not None:
            measured_at = nack.repair_rtt_at or 0.0  # not None: there is a sample
            if rtcp is None or measured_at >= self._rtcp_rtt_at:
                rtt = measured
        return None if rtt is None else min(rtt, MAX_RTT_S)

    def step(self, ready: Sequence[int], now_ns: int) -> None:
        if self._rtp.fileno() in ready:
            self._read_media()
        if self._rtcp.fileno() in ready:
            self._read_rtcp()
        now_ns = time.monotonic_ns()
        now = now_ns / 1e9
        if self._keyframe_needed in ready:
            with contextlib.suppress(BlockingIOError):
                os.eventfd_read(self._keyframe_needed)
            self.count("keyframe_needed_by_display")
            self._ask_keyframe(now)
        if self._video is not None and self._video.depacketizer.needs_keyframe:
            self._ask_keyframe(now)
        if self._jitter.overflows != self._overflows_seen:
            self._overflows_seen = self._jitter.overflows
            # An in-order codec's frame was pushed out: the frames after it lost a reference.
            self._overflow_gap = not self._codec.info.intra_only
        if self._overflow_gap:
            self._ask_keyframe(now)
        # Every due frame (one for an intra-only codec, whose pop skips to the newest).
        for _ in range(MAX_FRAMES_PER_TURN):
            frame = self._jitter.pop(now)
            if frame is None:
                break
            self._play(frame, now_ns)
        if self._receiver is not None and now_ns - self._last_expire > EXPIRE_INTERVAL_NS:
            self._last_expire = now_ns
            self._receiver.expire(now)
        if self._rtcp_session is not None:
            self._rtcp_tick(now)
            self._feedback_tick(now)
        if self._peer_audio_ssrc is not None and now - self._last_timing >= SYNC_TIMING_S:
            self._send_video_timing(now)

    def _feedback_tick(self, now: float) -> None:
        """NACKs and REMB about what we receive; the target rate of what we send."""
        session, video = self._rtcp_session, self._video
        assert session is not None
        if video is None or self._rtcp.peer is None:
            return
        rtt = self._rtt(now)
        nack = video.nack
        seqs: list[int] = []
        if nack is not None:
            seqs = nack.due(now, rtt)
            if nack.overflowed:  # an outage: a keyframe repairs faster than a long NACK
                nack.overflowed = False
                self._ask_keyframe(now)
            nst = nack.stats
            repair_wait = min(
                REPAIR_RTTS * (DEFAULT_RTT_S if rtt is None else rtt)
                + nst.reorder_wait_ms / 1000
                + REPAIR_MARGIN_S,
                MAX_REPAIR_WAIT_S,
            )
            video.depacketizer.repair_wait = repair_wait
            if nst.requests != self._nack_requests:
                self._nack_requests = nst.requests
                self._repairing_until = now + REPAIR_MEMORY_S
            # In-order codecs wait for repairs; hold playout steadily while they happen, and
            # give the delay back once the link has been clean for REPAIR_MEMORY_S.
            if not self._codec.info.intra_only:
                one_repair = (
                    (DEFAULT_RTT_S if rtt is None else rtt)
                    + nst.reorder_wait_ms / 1000
                    + REPAIR_MARGIN_S
                )
                floor = min(one_repair, repair_wait) if now < self._repairing_until else 0.0
                self._jitter.set_repair_floor(floor)
        remb = None if self._bwe is None else self._bwe.remb_due(now)
        if seqs or remb is not None:
            media_ssrc = video.ssrc if video.ssrc is not None else 0
            if self._rtcp.send(session.build_feedback(media_ssrc, nack=seqs, remb=remb)) == 0:
                self.count("rtcp_send_errors")
        rate = self._send_rate
        if rate is not None:
            published = self._published
            target = rate.target_bps
            if (
                published is None
                or abs(target - published[1]) > 0.02 * published[1]
                or now - published[0] >= TARGET_PUBLISH_S
            ):
                self._published = (now, target)
                self._publish(feedback.TargetRate(target, rate.reason))

    def _on_sent(self, info: SenderInfo) -> None:
        """Our send rate (from the send stage's counts, over at least SENT_RATE_S)."""
        base = self._sent_base
        if base is None or info.sent_ns < base.sent_ns:
            self._sent_base = info
            return
        span = (info.sent_ns - base.sent_ns) / 1e9
        if span >= SENT_RATE_S:
            if self._send_rate is not None:
                self._send_rate.on_sent((info.octets - base.octets) * 8 / span)
            self._sent_base = info

    def _to_audio(self, datagram: bytes, now: float) -> None:
        """An audio datagram: to the audio stage's ring, with its arrival time."""
        assert self._audio is not None
        self._audio_id += 1
        try:
            self._audio.write(
                datagram, frame_id=self._audio_id, stamps={Ts.RECV_FIRST: int(now * 1e9)}
            )
        except RingError:
            self.count("audio_too_large")
            return
        self.count("audio_packets")

    def _publish(self, msg: feedback.NackRequest | feedback.TargetRate) -> None:
        if self._feedback is not None:
            self._feedback_id += 1
            self._feedback.write(feedback.pack(msg), frame_id=self._feedback_id)

    def _read_media(self) -> None:
        for _ in range(MAX_DATAGRAMS_PER_TURN):
            got = self._rtp.receive()
            if got is None:
                return
            data, arrival_ns = got
            self._rate.add(arrival_ns, len(data))
            try:
                if self._receiver is not None:
                    self._push_rtp(data, arrival_ns)
                else:
                    self._push_framed(data, arrival_ns)
            except Exception:  # a peer's datagram must never end the stage
                self._peer_error("media")

    def _push_framed(self, data: bytes, arrival_ns: int) -> None:
        assert self._framing is not None
        try:
            frame = self._framing.parse(data)
        except RemoteProtocolError:
            self.count("malformed")
            return
        rx = _RxFrame(
            frame.data, frame.width, frame.height, True, frame.seq, arrival_ns, arrival_ns
        )
        ts = None if frame.capture_time is None else to_rtp_ts(frame.capture_time)
        # The seq says which frame this is (a new seq is a new frame whatever its ts; loss is
        # counted from it, the one count: jitter_buffer.lost_frames); the sender's ts is only
        # a timing hint, bounded by the jitter buffer's max_skew (pipeline/jitter.py).
        self._jitter.push(rx, ts, arrival_ns / 1e9, seq=frame.seq)

    def _push_rtp(self, data: bytes, arrival_ns: int) -> None:
        assert self._receiver is not None
        for cf in self._receiver.push(data, arrival_ns / 1e9):
            # A frame held back in order behind one under repair counts as arriving when its
            # own packets did; one that needed a retransmission stays out of the estimate.
            repaired = self._video is not None and cf.timestamp in self._video.repaired
            self._frame_counter += 1
            rx = _RxFrame(
                cf.data,
                cf.width,
                cf.height,
                cf.keyframe,
                self._frame_counter,
                int(cf.first_arrival * 1e9),
                arrival_ns,
            )
            # No seq: the depacketizer told new frames from repeated packets by their sequence
            # numbers; a timestamp far off arrival time starts a new timeline, never a freeze.
            self._jitter.push(rx, cf.timestamp, cf.last_arrival, repaired=repaired)
            if self._peer_audio_ssrc is not None:
                self._pending_ts[self._frame_counter] = cf.timestamp
                if len(self._pending_ts) > SYNC_PENDING:
                    del self._pending_ts[next(iter(self._pending_ts))]

    def _play(self, frame: _RxFrame, now_ns: int) -> None:
        if self._overflow_gap:
            if not frame.keyframe:
                self.count("waiting_keyframe")
                self._pending_ts.pop(frame.frame_id, None)
                return
            self._overflow_gap = False
        try:
            self._writer.write(
                frame.data,
                frame_id=frame.frame_id,
                width=frame.width,
                height=frame.height,
                keyframe=frame.keyframe,
                stamps={
                    Ts.RECV_FIRST: frame.first_ns,
                    Ts.RECV_COMPLETE: frame.complete_ns,
                    Ts.PLAYOUT: now_ns,
                },
            )
        except RingError:
            self.count("too_large")
            return
        except Exception:  # the frame's fields came from the peer
            self._peer_error("playout")
            return
        self.count("frames")
        ts = self._pending_ts.pop(frame.frame_id, None)
        if ts is not None:
            self._last_video = (ts, now_ns)
        self._played.add(now_ns)
        if frame.keyframe and self._pli_since_ns:
            # The first keyframe played after our first request since the last one.
            self.window("keyframe_after_pli").add_ns(now_ns - self._pli_since_ns)
            self._pli_since_ns = 0
        if frame.keyframe and self._rtcp_session is not None:
            # Requests are answered: a new break asks after the 200 ms floor, not one RTT.
            self._rtcp_session.keyframe_answered()
        self.window("reassembly").add_ns(frame.complete_ns - frame.first_ns)
        self.window("jitter_buffer").add_ns(now_ns - frame.complete_ns)

    def _read_rtcp(self) -> None:
        for _ in range(MAX_RTCP_PER_TURN):
            got = self._rtcp.receive()
            if got is None:
                return
            if self._rtcp_session is None:
                continue
            try:
                if self._rtcp_to_audio(got[0], got[1]):
                    continue
                self._on_rtcp(self._rtcp_session, got[0], time.monotonic())
            except Exception:  # a peer's report must never end the stage
                self._peer_error("rtcp")

    def _rtcp_to_audio(self, datagram: bytes, arrival_ns: int) -> bool:
        """Lip sync: the peer's SRs go to the audio stage too; True when the packet is its audio
        stream's (the audio stage's own RTCP), which stays out of the video's RTCP session."""
        ssrc = rtcp_sender_ssrc(datagram)
        if ssrc is None or self._peer_audio_ssrc is None:
            return False
        ours = ssrc == self._peer_audio_ssrc
        if ours or ssrc == (self._peer_audio_ssrc - 2) & 0xFFFFFFFF:  # its video: audio - 2
            self._to_audio(datagram, arrival_ns / 1e9)
        if ours:
            self.count("audio_rtcp")
        return ours

    def _send_video_timing(self, now: float) -> None:
        self._last_timing = now
        if self._last_video is None:
            return
        ts, played_ns = self._last_video
        self._to_audio(VideoTiming(ts, played_ns).pack(), now)

    def _on_rtcp(self, session: RtcpSession, datagram: bytes, now: float) -> None:
        packets = session.receive(datagram, now)
        if packets:
            self._peer_rtcp_at = now
        if session.keyframe_requested(packets) and self._keyframe_request >= 0:
            os.eventfd_write(self._keyframe_request, 1)
        seqs = session.nacked(packets)
        if seqs:
            rtt = self._rtt(now)
            rtt_ms = 0 if rtt is None else round(rtt * 1000)
            self._publish(feedback.NackRequest(tuple(seqs[: feedback.MAX_NACK_SEQS]), rtt_ms))
            if len(seqs) > feedback.MAX_NACK_SEQS:
                self.count("nack_truncated")
        rate = self._send_rate
        if rate is None:
            return
        remb = session.remb(packets)
        if remb is not None:
            rate.on_remb(remb, now)
        st = session.stats
        if st.reports_received != self._reports_seen:
            self._reports_seen = st.reports_received
            if st.remote_fraction_lost is not None:
                rate.on_loss(st.remote_fraction_lost, now)

    def _ask_keyframe(self, now: float) -> None:
        """Ask the peer for a keyframe (RTCP PLI + FIR). A request is repeated only when the
        answer to the last one is overdue: after one RTT plus KEYFRAME_ANSWER_MARGIN_S, at
        least every 200 ms (``KEYFRAME_REQUEST_INTERVAL``). Each request makes the peer send
        an IDR; on a congested path (RTT 250 ms at the lab's bandwidth step) requests every
        200 ms crossed the keyframe in flight and sent a second, larger frame into the same
        full queue."""
        session, video = self._rtcp_session, self._video
        if session is None or video is None or not self._codec.info.keyframe_requests:
            return
        media_ssrc = video.ssrc if video.ssrc is not None else 0
        rtt = self._rtt(now)
        answer = (DEFAULT_RTT_S if rtt is None else rtt) + KEYFRAME_ANSWER_MARGIN_S
        request = session.build_keyframe_request(media_ssrc, now, answer)
        if request is None:
            return
        if self._pli_since_ns == 0:
            self._pli_since_ns = int(now * 1e9)
        if self._rtcp.send(request) == 0:
            self.count("rtcp_send_errors")

    def _peer_error(self, where: str) -> None:
        # The parsers count garbage themselves; reaching here is a bug in them that a peer
        # found. Count it, log it with the traceback once in a while, drop the datagram.
        self.count("peer_errors")
        n = self.counters["peer_errors"]
        if n & (n - 1) == 0:  # 1, 2, 4, 8...: visible without flooding the log
            logger.exception("receive: unexpected error on %s data from the peer (#%d)", where, n)

    def _rtcp_tick(self, now: float) -> None:
        session = self._rtcp_session
        assert session is not None
        if (
            self._keyframe_request >= 0
            and self._codec.info.keyframe_requests
            and now - max(self._peer_rtcp_at, self._safety_keyframe_at) >= KEYFRAME_SAFETY_S
        ):
            self._safety_keyframe_at = now
            os.eventfd_write(self._keyframe_request, 1)
            self.count("safety_keyframes")
        desc = self._txinfo.latest()
        # This runs every loop turn (every packet); the send stage writes its info once a frame.
        if desc is not None and desc.seq != self._txinfo_seq:
            self._txinfo_seq = desc.seq
            raw = self._txinfo.copy_bytes(desc)
            if raw is not None and len(raw) == SenderInfo.SIZE:
                info = SenderInfo.unpack(raw)
                # The SR maps RTP time to the capture instant the timestamp stands for, not to
                # the time the frame left (RFC 3550 6.4.1; lip sync reads it, pipeline.audio.sync).
                at = capture_instant_ns(info.sent_ns, info.rtp_timestamp, session.clock_rate)
                session.on_sender_info(dataclasses.replace(info, sent_ns=at), self._sender_info)
                self._on_sent(info)
                if self._sender_info is None or info.packets > self._sender_info.packets:
                    self._sender_info = info
        reception = None if self._video is None else self._video.reception
        early = False
        if reception is not None and session.since_report(now) >= EARLY_REPORT_S:
            # RFC 4585 3.5 early feedback: heavy loss reaches the peer's rate control in a
            # quarter of a second, not at the next regular report.
            expected, lost = reception.interval_loss()
            early = expected >= EARLY_REPORT_MIN_PACKETS and lost > EARLY_REPORT_LOSS * expected
        report_now = session.due(now) or early
        if report_now and self._rtcp.peer is not None:
            sent = self._rtcp.send(session.build_report(now, reception))
            if sent == 0:
                self.count("rtcp_send_errors")

    def reset_stats(self) -> None:
        self._rtp.reset_stats()
        self._rtcp.reset_stats()

    def handle(self, msg: ControlMessage) -> None:
        match msg:
            case Connect(peer=peer):
                if peer.codec.upper() != self._codec.info.name:
                    self._codec = get_codec(peer.codec)
                    self._jitter = self._new_jitter()
                    self._overflows_seen, self._overflow_gap = 0, False
                self._rtp.connect(peer.ip, None)
                self._rtcp.connect(peer.ip, None)  # RTP mode: the peer's RTCP port, below
                # SRTP from the keys call control exchanged (None: a classic peer, a tool).
                self._rtp.protection = protection_for(
                    self._rtp.protection, tx_key=None, rx_key=peer.rx_key
                )
                self._rtcp.protection = protection_for(
                    self._rtcp.protection, tx_key=peer.tx_key, rx_key=peer.rx_key, rtcp=True
                )
                self._mode = str(peer.mode)
                self._framing = self._codec.framing(peer.mode)
                if self._framing is None:
                    info = self._codec.info
                    self._receiver = RtpReceiver()
                    # The negotiated SSRC is the per-call token (0 included): media and reports
                    # from any other source are dropped. None (no negotiation, e.g. an ffmpeg
                    # sender): lock on the first source.
                    self._video = self._receiver.add_stream(
                        self._codec.depacketizer(),
                        payload_type=info.payload_type,
                        clock_rate=info.clock_rate,
                        expected_ssrc=peer.peer_ssrc,
                    )
                    if info.rtx_payload_type is not None:
                        self._receiver.add_rtx(self._video, info.rtx_payload_type)
                    if self._audio is not None:
                        audio = for_mode(MediaMode.RTP, MediaKind.AUDIO)
                        self._receiver.add_forward(audio.info.payload_type, self._to_audio)
                        if peer.peer_ssrc is not None:
                            self._peer_audio_ssrc = audio_ssrc_of(peer.peer_ssrc)
                    self._bwe = DelayBasedEstimator(min_bps=MIN_TARGET_BPS, max_bps=MAX_TARGET_BPS)
                    self._receiver.on_send_time = self._bwe.on_packet
                    self._send_rate = SendRateController(
                        min_bps=MIN_TARGET_BPS, max_bps=MAX_TARGET_BPS, start_bps=START_BPS
                    )
                    self._published = None
                    self._rtcp_session = RtcpSession(
                        peer.local_ssrc,
                        clock_rate=info.clock_rate,
                        wallclock_offset=self.wallclock_offset(),
                        peer_ssrc=peer.peer_ssrc,
                    )
                    self._rtcp.connect(peer.ip, peer.rx_port + 1)
                    self._peer_rtcp_at = self._safety_keyframe_at = time.monotonic()
                logger.info("receive: %s from %s", peer.mode, peer.ip)

    def snapshot(self, now_ns: int) -> dict[str, Any]:
        js = self._jitter.stats
        edge = self._rtp.stats
        rtcp_edge = self._rtcp.stats
        snap: dict[str, Any] = {
            "mode": self._mode,
            "fps_received": round(self._played.rate(now_ns), 2),
            "bitrate_bps": round(self._rate.bits_per_second(now_ns)),
            "edge": {
                "received": edge.received,
                "dropped_before_connect": edge.dropped_before_connect
                + rtcp_edge.dropped_before_connect,
                "dropped_wrong_address": edge.dropped_wrong_address
                + rtcp_edge.dropped_wrong_address,
                "unprotect_failed": edge.unprotect_failed + rtcp_edge.unprotect_failed,
                "unprotect_replayed": edge.unprotect_replayed + rtcp_edge.unprotect_replayed,
                "socket_errors": edge.socket_errors + rtcp_edge.socket_errors,
            },
            "jitter_buffer": {
                "delay_ms": round(js.delay_s * 1000, 3),
                "jitter_ms": round(js.jitter_s * 1000, 3),
                "late": js.late,
                "skipped": js.skipped,
                "overflow": js.overflow,
                "duplicates": js.duplicates,
                "lost_frames": js.lost,
                "buffered": js.buffered,
                "resets": js.resets,
                "lagging": js.lagging,
            },
        }
        if self._receiver is not None and self._video is not None:
            rs = self._video.stats
            rec = self._video.reception
            snap["rtp"] = {
                "packets": rs.packets,
                "frames": rs.frames,
                "malformed": rs.malformed + self._receiver.malformed,
                "wrong_source": rs.wrong_source,
                "unknown_payload_type": self._receiver.unknown_payload_type,
                "duplicates": rs.duplicates,
                "late": rs.late,
                "incomplete": rs.incomplete,
                "unsupported": rs.unsupported,
                "lost_packets": rs.lost_packets,
                "jitter_ms": None if rec is None else round(rec.jitter_s * 1000, 3),
            }
            snap["depacketizer"] = dataclasses.asdict(self._video.depacketizer.stats)
            video = self._video
            if video.nack is not None:
                snap["nack"] = {
                    **dataclasses.asdict(video.nack.stats),
                    "rtx_packets": video.rtx_packets,
                    "rtx_wrong_source": video.rtx_wrong_source,
                    "rtx_malformed": video.rtx_malformed,
                    "repair_wait_ms": round(video.depacketizer.repair_wait * 1000, 1),
                }
        if self._bwe is not None:
            snap["bwe"] = dataclasses.asdict(self._bwe.stats)
        if self._send_rate is not None:
            snap["send_rate"] = dataclasses.asdict(self._send_rate.stats)
        if self._rtcp_session is not None:
            st = self._rtcp_session.stats
            snap["rtcp"] = {
                "rtt_ms": None if st.rtt_s is None else round(st.rtt_s * 1000, 3),
                "remote_fraction_lost": st.remote_fraction_lost,
                "remote_cumulative_lost": st.remote_cumulative_lost,
                "remote_jitter_ms": None
                if st.remote_jitter_s is None
                else round(st.remote_jitter_s * 1000, 3),
                "reports_sent": st.reports_sent,
                "plis_sent": st.plis_sent,
                "plis_received": st.plis_received,
                "nacks_sent": st.nacks_sent,
                "nacks_received": st.nacks_received,
                "nacked_packets": st.nacked_packets,
                "rembs_received": st.rembs_received,
                "feedback_ignored": st.feedback_ignored,
                "reports_received": st.reports_received,
                "malformed": st.malformed,
                "wrong_source": st.wrong_source,
            }
        return snap

    def close(self) -> None:
        if self._rtcp_session is not None and self._rtcp.peer is not None:
            with contextlib.suppress(OSError):
                self._rtcp.send(self._rtcp_session.build_bye("call ended"))
        self._rtp.close()
        self._rtcp.close()
