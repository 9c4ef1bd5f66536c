"""Send stage: the newest JPEG of the tx ring -> UDP datagrams to the peer (V0 or RTP/JPEG).

Nothing is sent before ``("connect", peer)``. In RTP mode the running packet/octet counts and
the last RTP timestamp are published in the ``txinfo`` ring, from which the receive stage (which
owns the RTCP socket on rx port + 1) builds our sender reports. A datagram the kernel refuses
(ENOBUFS, ECONNREFUSED from an earlier ICMP) is counted and the frame goes on.
"""

from __future__ import annotations

import logging
import socket
import struct
import time
from collections.abc import Sequence
from typing import Any

from pipeline.codecs.jpeg.rfc2435 import PacketizeError, RtpJpegPacketizer
from pipeline.ipc.ring import Ring, Ts
from pipeline.stages.base import Message, Stage, StageContext
from pipeline.stats import RateMeter
from pipeline.wire.v0 import V0TooLargeError, encode_v0

logger = logging.getLogger(__name__)

# packets, payload octets, last RTP timestamp, monotonic ns of the last send
TXINFO = struct.Struct("!QQIQ")
SEND_BUFFER = 4 * 1024 * 1024


def rtp_ts_of(monotonic_ns: int) -> int:
    """A monotonic_ns time as a 90 kHz RTP timestamp."""
    return (monotonic_ns * 9 // 100_000) & 0xFFFFFFFF


class SendStage(Stage):
    def __init__(self, ctx: StageContext, *, jpeg_tx: Ring, txinfo: Ring, fps: int) -> None:
        super().__init__(ctx)
        self._reader = jpeg_tx.reader(0)
        self._txinfo = txinfo.writer()
        self._fps = fps
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        except OSError:
            logger.debug("send buffer size not changed")
        self._peer: tuple[str, int] | None = None
        self._mode: str | None = None
        self._packetizer: RtpJpegPacketizer | None = None
        self._sending = True
        self._seq = 0
        self._rate = RateMeter()

    def wait_fds(self) -> Sequence[int]:
        return (self._reader.fd,)

    def step(self, ready: Sequence[int], now_ns: int) -> None:
        if not ready:
            return
        self._reader.drain()
        desc = self._reader.latest()
        if desc is None or self._peer is None or not self._sending:
            return
        start = time.monotonic_ns()
        jpeg = self._reader.copy_bytes(desc)
        if jpeg is None:
            self.count("torn")
            return
        try:
            datagrams = self._datagrams(jpeg, desc.width, desc.height, desc.stamp(Ts.CAPTURE))
        except (V0TooLargeError, PacketizeError) as exc:
            self.count("unsendable")
            logger.debug("send: frame %d not sendable: %s", desc.frame_id, exc)
            return
        sent_bytes = 0
        for datagram in datagrams:
            try:
                sent_bytes += self._sock.sendto(datagram, self._peer)
            except OSError as exc:
                self.count("send_errors")
                logger.debug("send: sendto failed: %s", exc)
        done = time.monotonic_ns()
        self._rate.add(done, sent_bytes)
        self.count("frames")
        self.count("datagrams", len(datagrams))
        if self._packetizer is not None:
            p = self._packetizer
            self._txinfo.write(
                TXINFO.pack(
                    p.packets_sent, p.payload_octets_sent, rtp_ts_of(desc.stamp(Ts.CAPTURE)), done
                ),
                frame_id=desc.frame_id,
            )
        self.window("send_wait").add_ns(start - desc.stamp(Ts.ENCODED))
        self.window("send").add_ns(done - start)
        self.window("capture_to_sent").add_ns(done - desc.stamp(Ts.CAPTURE))
        for name, a, b in (
            ("capture", Ts.CAPTURE, Ts.CAPTURED),
            ("encode_wait", Ts.CAPTURED, Ts.ENCODE_START),
            ("encode", Ts.ENCODE_START, Ts.ENCODED),
        ):
            self.window(name).add_ns(desc.stamp(b) - desc.stamp(a))

    def _datagrams(self, jpeg: bytes, width: int, height: int, capture_ns: int) -> list[bytes]:
        if self._packetizer is not None:
            return self._packetizer.packetize(jpeg, rtp_ts_of(capture_ns))
        self._seq += 1
        return [encode_v0(self._seq, time.time(), width, height, self._fps, jpeg)]

    def handle(self, msg: Message) -> None:
        verb = msg[0]
        if verb == "connect":
            ip, port, mode, local_ssrc = msg[1:5]
            self._peer = (ip, port)
            self._mode = mode
            self._packetizer = RtpJpegPacketizer(local_ssrc) if mode == "rtp" else None
            logger.info("send: %s to %s:%d", mode, ip, port)
        elif verb == "sending":
            self._sending = bool(msg[1])
        elif verb == "preset":
            self._fps = msg[1].fps
        else:
            super().handle(msg)

    def snapshot(self, now_ns: int) -> dict[str, Any]:
        return {
            "mode": self._mode,
            "sending": self._sending,
            "fps_sent": round(self._rate.rate(now_ns), 2),
            "bitrate_bps": round(self._rate.bits_per_second(now_ns)),
            "ring_dropped": self._reader.dropped,
        }

    def close(self) -> None:
        self._sock.close()
