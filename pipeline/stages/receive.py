"""Receive stage: UDP from the negotiated peer -> (reassembly) -> jitter buffer -> rx JPEG ring.

The sockets were bound by the controller in ``MediaSession.open`` and are inherited. Until
``("connect", ...)`` every datagram is dropped. After it, only datagrams whose source IP is
the peer's (the source port is arbitrary in this protocol family) are looked at, and in RTP
mode only the peer's SSRC (the reassembler's ``expected_ssrc``). Every reader has a cap: one
``recvfrom`` reads at most 64 KiB, a turn reads at most ``MAX_DATAGRAMS_PER_TURN``, and the
reassembler bounds frame size and open frames. Garbage is counted, never raised; an
unexpected error on a peer's data (a parser bug) is counted as ``peer_errors`` and dropped.

RTCP (RTP mode): this stage owns the socket on rx port + 1. It takes in the peer's SR/RR, and
every second sends our report to the peer's port + 1: an SR built from the send stage's counts
(``txinfo`` ring) plus a report block about what we receive (loss, jitter, LSR/DLSR for RTT).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.codecs.jpeg.rfc2435 import RtpJpegReassembler
from pipeline.ipc.ring import Ring, RingError, RingReader, Ts
from pipeline.jitter import JitterBuffer
from pipeline.stages.base import Message, Stage, StageContext
from pipeline.stages.send import TXINFO
from pipeline.stats import RateMeter
from pipeline.wire.rtcp import RtcpSession
from pipeline.wire.rtp import to_rtp_ts
from pipeline.wire.v0 import V0Error, decode_v0

logger = logging.getLogger(__name__)

MAX_DATAGRAM = 65536
RECEIVE_BUFFER = 4 * 1024 * 1024
EVEN_PORT_ATTEMPTS = 64
MAX_DATAGRAMS_PER_TURN = 512
EXPIRE_INTERVAL_NS = 100_000_000
# Playout delay = JITTER_FACTOR x measured frame jitter, at most MAX_PLAYOUT_DELAY_S. RTP
# timestamps are capture times, so the sender's own processing variation (a millisecond or two)
# counts as jitter: a factor of 1.5 keeps the delay at about that on a clean link, and the cap
# keeps an interactive call interactive when the path is bad.
JITTER_FACTOR = 1.5
MAX_PLAYOUT_DELAY_S = 0.05


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
    jpeg: bytes
    width: int
    height: int
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
        jpeg_rx: Ring,
        txinfo: Ring,
    ) -> None:
        super().__init__(ctx)
        self._rtp = rtp_sock
        self._rtcp = rtcp_sock
        for sock in (rtp_sock, rtcp_sock):
            sock.setblocking(False)
        self._writer = jpeg_rx.writer()
        self._txinfo = RingReader(txinfo, -1)
        self._peer_ip: str | None = None
        self._peer_rtcp: tuple[str, int] | None = None
        self._mode: str | None = None
        self._reassembler: RtpJpegReassembler | None = None
        self._rtcp_session: RtcpSession | None = None
        self._jitter: JitterBuffer[_RxFrame] = JitterBuffer(
            jitter_factor=JITTER_FACTOR, max_delay=MAX_PLAYOUT_DELAY_S
        )
        self._frame_counter = 0
        self._last_expire = 0
        self._tx_packets = 0
        self._tx_octets = 0
        self._rate = RateMeter()
        self._played = RateMeter()

    def wait_fds(self) -> Sequence[int]:
        return (self._rtp.fileno(), self._rtcp.fileno())

    def timeout(self, now_ns: int) -> float:
        due = self._jitter.next_due(now_ns / 1e9)
        return 0.25 if due is None else due

    def step(self, ready: Sequence[int], now_ns: int) -> None:
        if self._rtp.fileno() in ready:
            self._read_media()
        if self._rtcp.fileno() in ready:
            self._read_rtcp()
        now_ns = time.monotonic_ns()
        now = now_ns / 1e9
        frame = self._jitter.pop(now)
        if frame is not None:
            self._play(frame, now_ns)
        if self._reassembler is not None and now_ns - self._last_expire > EXPIRE_INTERVAL_NS:
            self._last_expire = now_ns
            self._reassembler.expire(now)
        if self._rtcp_session is not None:
            self._rtcp_tick(now)

    def _recv(self, sock: socket.socket) -> tuple[bytes, tuple[str, int]] | None:
        try:
            data, addr = sock.recvfrom(MAX_DATAGRAM)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:  # e.g. ECONNREFUSED reported for an earlier send
            self.count("socket_errors")
            logger.debug("receive: %s", exc)
            return None
        return data, addr

    def _from_peer(self, addr: tuple[str, int]) -> bool:
        if self._peer_ip is None:
            self.count("dropped_before_connect")
            return False
        # The kernel gives canonical address text and connect() normalised the peer's, so a
        # string compare is exact (and cheap at thousands of packets a second).
        if addr[0] != self._peer_ip:
            self.count("dropped_wrong_address")
            return False
        return True

    def _read_media(self) -> None:
        for _ in range(MAX_DATAGRAMS_PER_TURN):
            got = self._recv(self._rtp)
            if got is None:
                return
            data, addr = got
            if not self._from_peer(addr):
                continue
            arrival_ns = time.monotonic_ns()
            self._rate.add(arrival_ns, len(data))
            try:
                if self._reassembler is not None:
                    self._push_rtp(data, arrival_ns)
                else:
                    self._push_v0(data, arrival_ns)
            except Exception:  # a peer's datagram must never end the stage
                self._peer_error("media")

    def _push_v0(self, data: bytes, arrival_ns: int) -> None:
        try:
            frame = decode_v0(data)
        except V0Error:
            self.count("malformed")
            return
        rx = _RxFrame(frame.jpeg, frame.width, frame.height, frame.seq, arrival_ns, arrival_ns)
        ts = None if frame.ts is None else to_rtp_ts(frame.ts)
        # The jitter buffer counts V0 loss from seq (the one count: jitter_buffer.lost_frames).
        self._jitter.push(rx, ts, arrival_ns / 1e9, seq=frame.seq)

    def _push_rtp(self, data: bytes, arrival_ns: int) -> None:
        assert self._reassembler is not None
        for jf in self._reassembler.push(data, arrival_ns / 1e9):
            self._frame_counter += 1
            rx = _RxFrame(
                jf.jpeg,
                jf.width,
                jf.height,
                self._frame_counter,
                int(jf.first_arrival * 1e9),
                arrival_ns,
            )
            self._jitter.push(rx, jf.rtp_ts, arrival_ns / 1e9)

    def _play(self, frame: _RxFrame, now_ns: int) -> None:
        try:
            self._writer.write(
                frame.jpeg,
                frame_id=frame.frame_id,
                width=frame.width,
                height=frame.height,
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
        self._played.add(now_ns)
        self.window("reassembly").add_ns(frame.complete_ns - frame.first_ns)
        self.window("jitter_buffer").add_ns(now_ns - frame.complete_ns)

    def _read_rtcp(self) -> None:
        for _ in range(64):
            got = self._recv(self._rtcp)
            if got is None:
                return
            data, addr = got
            if not self._from_peer(addr) or self._rtcp_session is None:
                continue
            try:
                self._rtcp_session.receive(data, time.monotonic())
            except Exception:  # a peer's report must never end the stage
                self._peer_error("rtcp")

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
        desc = self._txinfo.latest()
        if desc is not None:
            raw = self._txinfo.copy_bytes(desc)
            if raw is not None and len(raw) == TXINFO.size:
                packets, octets, rtp_ts, sent_ns = TXINFO.unpack(raw)
                if packets > self._tx_packets:
                    session.on_rtp_sent(
                        rtp_ts, octets - self._tx_octets, sent_ns / 1e9, packets - self._tx_packets
                    )
                    self._tx_packets, self._tx_octets = packets, octets
        if session.due(now) and self._peer_rtcp is not None:
            reception = None if self._reassembler is None else self._reassembler.reception
            report = session.build_report(now, reception)
            try:
                self._rtcp.sendto(report, self._peer_rtcp)
            except OSError as exc:
                self.count("rtcp_send_errors")
                logger.debug("receive: RTCP send failed: %s", exc)

    def handle(self, msg: Message) -> None:
        verb = msg[0]
        if verb == "connect":
            ip, port, mode, local_ssrc, peer_ssrc = msg[1:6]
            self._peer_ip = str(ipaddress.ip_address(ip))
            self._mode = mode
            if mode == "rtp":
                # The negotiated SSRC is the per-call token (0 included): media and reports
                # from any other source are dropped. None (no negotiation, e.g. an ffmpeg
                # sender): lock on the first source.
                self._reassembler = RtpJpegReassembler(peer_ssrc)
                self._rtcp_session = RtcpSession(
                    local_ssrc,
                    wallclock_offset=time.time() - time.monotonic(),
                    peer_ssrc=peer_ssrc,
                )
                self._peer_rtcp = (ip, port + 1)
            logger.info("receive: %s from %s", mode, ip)
        else:
            super().handle(msg)

    def snapshot(self, now_ns: int) -> dict[str, Any]:
        js = self._jitter.stats
        snap: dict[str, Any] = {
            "mode": self._mode,
            "fps_received": round(self._played.rate(now_ns), 2),
            "bitrate_bps": round(self._rate.bits_per_second(now_ns)),
            "jitter_buffer": {
                "delay_ms": round(js.delay_s * 1000, 3),
                "jitter_ms": round(js.jitter_s * 1000, 3),
                "late": js.late,
                "skipped": js.skipped,
                "overflow": js.overflow,
                "duplicates": js.duplicates,
                "lost_frames": js.lost,
                "buffered": js.buffered,
            },
        }
        if self._reassembler is not None:
            rs = self._reassembler.stats
            rec = self._reassembler.reception
            snap["rtp"] = {
                "packets": rs.packets,
                "frames": rs.frames,
                "malformed": rs.malformed,
                "wrong_source": rs.wrong_source,
                "duplicates": rs.duplicates,
                "late": rs.late,
                "incomplete": rs.incomplete,
                "unsupported": rs.unsupported,
                "lost_packets": rs.lost_packets,
                "jitter_ms": None if rec is None else round(rec.jitter_s * 1000, 3),
            }
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
                "reports_received": st.reports_received,
                "malformed": st.malformed,
                "wrong_source": st.wrong_source,
            }
        return snap

    def close(self) -> None:
        if self._rtcp_session is not None and self._peer_rtcp is not None:
            with contextlib.suppress(OSError):
                self._rtcp.sendto(self._rtcp_session.build_bye("call ended"), self._peer_rtcp)
        self._rtp.close()
        self._rtcp.close()
