"""Send stage: the newest encoded frame of the tx ring -> UDP datagrams to the peer.

Nothing is sent before ``Connect`` (which names the call's codec). In RTP mode the codec's
packetizer feeds an ``RtpSender``
(the stream layer: headers, sequence numbers, counts); in a mode with a framing of its own
(V0) the framing makes one datagram per frame. Every datagram leaves through the socket's
``DatagramEdge`` (the protect hook). In RTP mode the sender's running counts are published as an
``rtcp.SenderInfo`` in the ``txinfo`` ring, from which the receive stage (which owns the RTCP
socket on rx port + 1) builds our sender reports. A datagram the kernel refuses (ENOBUFS,
ECONNREFUSED from an earlier ICMP) is counted by the edge and the frame goes on.

RTP mode, for a real network (docs/architecture.md, "Calls on real networks"): every packet
carries the abs-send-time extension, stamped as it leaves (the peer's bandwidth estimator reads
it); packets leave through a ``Pacer`` at PACING_FACTOR x the target rate; sent packets stay in
a bounded ``RetransmissionBuffer``, and the peer's NACKs (from the receive stage, on the
``feedback`` ring) are answered with RTX packets (RFC 4588), ahead of new media. The target rate
comes on the same ring; after a sharp delay-based cut, repair is thriftier and a congestion loss
is repaired with one keyframe instead of retransmissions through the full queue (CONGESTION_CUT).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
import time
from collections.abc import Sequence
from typing import Any

from pipeline.codecs.base import Codec, EncodeError, Framing
from pipeline.codecs.registry import get_codec
from pipeline.control import Connect, ControlMessage, SetPreset, SetSending
from pipeline.ipc.ring import Descriptor, Ring, Ts
from pipeline.stages.base import Stage, StageContext
from pipeline.stats import RateMeter
from pipeline.transport import feedback
from pipeline.transport.edge import DatagramEdge
from pipeline.transport.history import RepeatSchedule, RetransmissionBuffer
from pipeline.transport.pacer import PACING_FACTOR, Pacer
from pipeline.transport.srtp import protection_for
from pipeline.transport.stream import RtpSender
from pipeline.wire.rtp import stamp_abs_send_time

logger = logging.getLogger(__name__)

SEND_BUFFER = 4 * 1024 * 1024
MAX_PAYLOAD = 1200  # bytes of RTP payload: fits any path MTU we meet, with headers to spare
START_PACING_BPS = 50_000_000  # until the first target: pace only what is far beyond any link
# A NACK for a packet we resent less than max(RTX_MIN_INTERVAL_S, RTX_GUARD_RTTS x RTT) ago is
# not answered again (the copy is on its way; RFC 4588 8.4): the peer's own retry comes after
# more than an RTT, so what comes sooner is the copy it sends of each request on a long RTT
# (pipeline/transport/nack.py REPEAT_AFTER_S), answered once.
RTX_MIN_INTERVAL_S = 0.01
RTX_GUARD_RTTS = 0.5
# On an RTT of RTX_REPEAT_MIN_RTT_S or more each retransmission is sent once more
# RTX_REPEAT_AFTER_S later (history.RepeatSchedule; a fresh RTX packet with its own RTX
# sequence number, so SRTP's replay check passes it): on the lab's 5% loss, 40+-10 ms path the
# freezes left were second repair rounds after a lost retransmission (gaps of 175-260 ms, no
# repair abandoned). Both copies count against the RTX_SHARE budget; on a short RTT a retry
# is cheaper than the copy.
RTX_REPEAT_MIN_RTT_S = 0.04
RTX_REPEAT_AFTER_S = 0.01
RTX_REPEAT_MAX = 256
RTX_REPEAT_KEEP_BUDGET = 0.5  # a second copy goes only while half the RTX budget is left
# Retransmissions may take at most this share of the target rate (a token bucket holding
# RTX_BURST_S of it): on a congested link, repair must not become the congestion.
RTX_SHARE = 0.3
RTX_BURST_S = 0.5
# Congestion: a delay-based target (TargetRate reason "remb") more than CONGESTION_CUT below
# what we sent over the last 2 s says the bottleneck queue is full (GCC reports overuse only
# then; measured against the rate sent, not the last target, which may be far above what the
# encoder spends, so that this matches the encode stage's drain), and for CONGESTION_MEMORY_S
# after it the losses are that queue's, not the path's. Then (measured at the lab's 5 -> 1.5
# Mbit/s step, vcall bench network --profile step_5_1_5; figures in docs/architecture.md):
# - retransmissions get RTX_SHARE_CONGESTED of the target in a RTX_BURST_CONGESTED_S bucket and
#   no second copy: at RTX_SHARE, answers, retries and copies went into the full queue at up to
#   0.7 Mbit/s on top of the media, were lost there and asked for again;
# - if the peer NACKed within CONGESTION_NACK_WINDOW_S before the cut, or NACKs while it lasts,
#   the encoder is asked for one keyframe (at most one per CONGESTION_MEMORY_S): it comes after
#   the encode stage's drain, sized for the new target (pipeline.codecs.h264 reopens below
#   REOPEN_BELOW), and the peer's depacketizer shows it at once, dropping the older frames
#   still waiting for repairs through the queue. Repairing them instead took retries of RTT
#   250 ms and froze 0.7-1.5 s.
CONGESTION_CUT = 0.1
CONGESTION_MEMORY_S = 2.0
RTX_SHARE_CONGESTED = 0.15
RTX_BURST_CONGESTED_S = 0.25
CONGESTION_NACK_WINDOW_S = 0.5


def rtp_ts_of(monotonic_ns: int, clock_rate: int = 90000) -> int:
    """A monotonic_ns time as an RTP timestamp at ``clock_rate`` (32-bit)."""
    return (monotonic_ns * clock_rate // 1_000_000_000) & 0xFFFFFFFF


class SendStage(Stage):
    def __init__(
        self,
        ctx: StageContext,
        *,
        encoded_tx: Ring,
        txinfo: Ring,
        fps: int,
        codec: Codec,
        keyframe_request: int = -1,
        feedback_ring: Ring | None = None,
    ) -> None:
        super().__init__(ctx)
        self._feedback = None if feedback_ring is None else feedback_ring.reader(0)
        self._pacer = Pacer(START_PACING_BPS)
        self._target_bps: int | None = None
        self._target_reason = ""
        self._congested_until = 0.0
        self._last_nack = float("-inf")
        self._congestion_keyframe = float("-inf")
        self._rtx_budget = 0.0
        self._rtx_refilled: float | None = None
        self._rtx_repeats = RepeatSchedule(
            min_rtt=RTX_REPEAT_MIN_RTT_S, after=RTX_REPEAT_AFTER_S, max_pending=RTX_REPEAT_MAX
        )
        self._keyframe_fd = keyframe_request  # we write: a frame we never sent broke the chain
        self._awaiting_keyframe = False
        self._reader = encoded_tx.reader(0)
        self._txinfo = txinfo.writer()
        self._fps = fps
        self._codec = codec
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        except OSError:
            logger.debug("send buffer size not changed")
        self._edge = DatagramEdge(sock)
        self._mode: str | None = None
        self._rtp: RtpSender | None = None
        self._framing: Framing | None = None
        self._sending = True
        self._rate = RateMeter()

    def wait_fds(self) -> Sequence[int]:
        if self._feedback is not None:
            return (self._reader.fd, self._feedback.fd)
        return (self._reader.fd,)

    def timeout(self, now_ns: int) -> float:
        now = now_ns / 1e9
        dues = (self._pacer.next_send(now), self._rtx_repeats.next_due(now))
        return min((d for d in dues if d is not None), default=0.25)

    def step(self, ready: Sequence[int], now_ns: int) -> None:
        if self._feedback is not None and self._feedback.fd in ready:
            self._on_feedback()
        if self._reader.fd in ready:
            self._take_frames()
        self._repeat_due()
        self._flush()

    def _on_feedback(self) -> None:
        reader = self._feedback
        assert reader is not None
        for msg in feedback.receive(reader):
            now_ns = time.monotonic_ns()
            now = now_ns / 1e9
            if isinstance(msg, feedback.NackRequest):
                self._last_nack = now
                self._congestion_repair(now)
                self._retransmit(msg.seqs, msg.rtt_ms / 1000)
            elif isinstance(msg, feedback.TargetRate):
                sent = self._rate.bits_per_second(now_ns)
                if msg.reason == "remb" and msg.bps < (1 - CONGESTION_CUT) * sent:
                    self._congested_until = now + CONGESTION_MEMORY_S
                    self._rtx_repeats.clear()
                    self._congestion_repair(now)
                self._target_bps, self._target_reason = msg.bps, msg.reason
                self._pacer.set_rate(int(PACING_FACTOR * msg.bps))
            else:
                self.count("feedback_malformed")

    def _congestion_repair(self, now: float) -> None:
        """Ask the encoder for one keyframe when the queue a delay-based cut reported has
        already lost packets the peer wants (see CONGESTION_CUT)."""
        if (
            now < self._congested_until
            and now - self._last_nack < CONGESTION_NACK_WINDOW_S
            and now - self._congestion_keyframe > CONGESTION_MEMORY_S
            and self._codec.info.keyframe_requests
        ):
            self._congestion_keyframe = now
            self.count("congestion_keyframes")
            self._ask_keyframe()

    def _ask_keyframe(self) -> None:
        """Make the encoder's next frame a keyframe (the ``keyframe_request`` eventfd)."""
        if self._keyframe_fd >= 0:
            with contextlib.suppress(BlockingIOError):
                os.eventfd_write(self._keyframe_fd, 1)

    def _retransmit(self, seqs: Sequence[int], rtt: float = 0.0) -> None:
        rtp = self._rtp
        if rtp is None or not self._sending:
            return
        now = time.monotonic()
        for seq in seqs:
            resent = self._resend(seq, now, max(RTX_MIN_INTERVAL_S, RTX_GUARD_RTTS * rtt))
            if resent and now >= self._congested_until:  # no second copy into a full queue
                self._rtx_repeats.add(seq, now, rtt)

    def _repeat_due(self) -> None:
        now = time.monotonic()
        for seq in self._rtx_repeats.due(now):
            # A second copy never takes the budget first answers need: half is kept for them.
            if self._resend(seq, now, 0.0, keep=RTX_REPEAT_KEEP_BUDGET):
                self.count("rtx_repeats")
            else:
                self.count("rtx_repeats_skipped")  # not sending, budget kept, or gone

    def _resend(self, seq: int, now: float, min_interval: float, keep: float = 0.0) -> bool:
        """Queue the RTX packet for ``seq`` if the RTX budget holds more than ``keep`` of its
        capacity; True when it was queued."""
        rtp = self._rtp
        if rtp is None or not self._sending:
            return False
        if self._target_bps is not None:
            congested = now < self._congested_until
            rate = (RTX_SHARE_CONGESTED if congested else RTX_SHARE) * self._target_bps / 8
            burst = rate * (RTX_BURST_CONGESTED_S if congested else RTX_BURST_S)
            if self._rtx_refilled is None:
                self._rtx_budget = burst  # the first repair starts with a full bucket
            else:
                self._rtx_budget += (now - self._rtx_refilled) * rate
            self._rtx_budget = min(self._rtx_budget, burst)
            self._rtx_refilled = now
            if self._rtx_budget <= keep * burst:
                if not keep:
                    self.count("rtx_rate_limited")
                return False
        packet = rtp.retransmit(seq, now, min_interval)
        if packet is None:
            return False
        self._rtx_budget -= len(packet)
        self._pacer.push(packet, now, priority=True)
        self.count("rtx_packets")
        return True

    def _flush(self) -> None:
        """Send what the pacer lets go now, stamping the abs-send-time as it leaves."""
        now = time.monotonic()
        stamp = self._rtp is not None and self._rtp.abs_send_time
        sent_bytes = 0
        packets = self._pacer.pop(now)
        for d in packets:
            if stamp and isinstance(d, bytearray):
                stamp_abs_send_time(d, now)
            sent_bytes += self._edge.send(d)
        if packets:
            self._rate.add(time.monotonic_ns(), sent_bytes)
            self.count("datagrams", len(packets))

    def _take_frames(self) -> None:
        self._reader.drain()
        if self._codec.info.intra_only:
            desc = self._reader.latest()  # the newest frame wins
            if desc is not None:
                self._send(desc)
            return
        # An inter-frame codec: every frame, in order. A frame the ring overwrote before we
        # read it breaks the peer's chain of references without a gap in the RTP sequence
        # numbers (the receiver could not notice): send nothing more until a keyframe, and ask
        # our encoder for one.
        for _ in range(self._reader.ring.n_slots):
            dropped = self._reader.dropped
            desc = self._reader.next()
            if desc is None:
                return
            if self._reader.dropped != dropped:
                self._awaiting_keyframe = True
                self.count("ring_drops_inter_frame")
                self._ask_keyframe()
            if self._awaiting_keyframe and not desc.keyframe:
                self.count("waiting_keyframe")
                continue
            self._awaiting_keyframe = False
            self._send(desc)

    def _send(self, desc: Descriptor) -> None:
        if self._mode is None or not self._sending:
            return
        start = time.monotonic_ns()
        data = self._reader.copy_bytes(desc)
        if data is None:
            self.count("torn")
            return
        try:
            datagrams = self._datagrams(data, desc.width, desc.height, desc.stamp(Ts.CAPTURE))
        except EncodeError as exc:
            self.count("unsendable")
            logger.debug("send: frame %d not sendable: %s", desc.frame_id, exc)
            return
        now = time.monotonic()
        for d in datagrams:
            self._pacer.push(d, now)
        self._flush()
        done = time.monotonic_ns()
        self.count("frames")
        if self._rtp is not None:
            self._txinfo.write(self._rtp.sender_info(done).pack(), frame_id=desc.frame_id)
        self.window("send_wait").add_ns(start - desc.stamp(Ts.ENCODED))
        self.window("send").add_ns(done - start)
        self.window("capture_to_sent").add_ns(done - desc.stamp(Ts.CAPTURE))
        for name, a, b in (
            ("capture", Ts.CAPTURE, Ts.CAPTURED),
            ("encode_wait", Ts.CAPTURED, Ts.ENCODE_START),
            ("encode", Ts.ENCODE_START, Ts.ENCODED),
        ):
            self.window(name).add_ns(desc.stamp(b) - desc.stamp(a))

    def _datagrams(
        self, data: bytes, width: int, height: int, capture_ns: int
    ) -> list[bytearray] | list[bytes]:
        if self._rtp is not None:
            ts = rtp_ts_of(capture_ns, self._codec.info.clock_rate)
            return self._rtp.packetize(data, width, height, ts, time.monotonic())
        assert self._framing is not None
        return [self._framing.datagram(data, width, height, self._fps, time.time())]

    def handle(self, msg: ControlMessage) -> None:
        match msg:
            case Connect(peer=peer):
                if peer.codec.upper() != self._codec.info.name:
                    self._codec = get_codec(peer.codec)
                    self._framing = None
                self._edge.connect(peer.ip, peer.rx_port)
                # SRTP with our key from call control (None: a classic peer, a tool).
                self._edge.protection = protection_for(
                    self._edge.protection, tx_key=peer.tx_key, rx_key=None
                )
                if self._framing is None or self._mode != str(peer.mode):
                    # A reconnect in the same mode keeps the framing (V0's frame counter).
                    self._framing = self._codec.framing(peer.mode)
                self._mode = str(peer.mode)
                self._rtp = None
                self._rtx_repeats.clear()  # sequence numbers of the old stream
                # A new stream (a reconnect) starts uncongested; its first cut says afresh.
                self._congested_until, self._last_nack = 0.0, float("-inf")
                self._congestion_keyframe = float("-inf")
                if self._framing is None:
                    info = self._codec.info
                    self._rtp = RtpSender(
                        self._codec.packetizer(MAX_PAYLOAD),
                        ssrc=peer.local_ssrc,
                        payload_type=info.payload_type,
                        rtx_payload_type=info.rtx_payload_type,
                        abs_send_time=True,
                        history=RetransmissionBuffer(),
                    )
                logger.info("send: %s to %s:%d", peer.mode, peer.ip, peer.rx_port)
            case SetSending(enabled=enabled):
                self._sending = enabled
            case SetPreset(preset=preset):
                self._fps = preset.fps

    def snapshot(self, now_ns: int) -> dict[str, Any]:
        edge = self._edge.stats
        return {
            "mode": self._mode,
            "sending": self._sending,
            "fps_sent": round(self._rate.rate(now_ns), 2),
            "bitrate_bps": round(self._rate.bits_per_second(now_ns)),
            "ring_dropped": self._reader.dropped,
            "send_errors": edge.send_errors,
            "target_bps": self._target_bps,
            "target_reason": self._target_reason,
            "pacer": dataclasses.asdict(self._pacer.stats),
            "pacer_queue": self._pacer.queued_packets,
            "retransmitted": 0 if self._rtp is None else self._rtp.retransmitted,
            "rtx_repeats_dropped": self._rtx_repeats.dropped,
            "history": None
            if self._rtp is None or self._rtp.history is None
            else dataclasses.asdict(self._rtp.history.stats),
        }

    def reset_stats(self) -> None:
        self._edge.reset_stats()
        self._rtx_repeats.dropped = 0

    def close(self) -> None:
        self._edge.close()
