"""A raw packet sniffer on loopback (AF_PACKET, needs root): collects TCP payloads to or from
chosen ports, so tests can check what really crossed the wire."""

from __future__ import annotations

import socket
import struct
import threading
from types import TracebackType

ETH_P_ALL = 0x0003
ETH_HEADER = 14
MAX_PACKET = 65536
MAX_PAYLOADS = 100_000  # a cap: a runaway capture must not eat the memory


class LoopbackSniffer:
    """``with LoopbackSniffer({port, ...}) as sniffer:`` ... ``sniffer.payloads``.

    Every TCP payload (IPv4 or IPv6, as read from ``lo``) whose source or destination port is in
    ``ports``; a loopback packet is seen twice (out and in). Packets beyond MAX_PAYLOADS are
    counted in ``dropped``, not kept."""

    def __init__(self, ports: set[int]) -> None:
        self.ports = ports
        self.payloads: list[bytes] = []
        self.packets = 0  # TCP packets of those ports, with or without payload
        self.dropped = 0
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self._sock.bind(("lo", 0))
        self._sock.settimeout(0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sniffer", daemon=True)

    def __enter__(self) -> LoopbackSniffer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self._sock.recv(MAX_PACKET)
            except TimeoutError:
                continue
            except OSError:
                return
            self._take(frame)

    def _take(self, frame: bytes) -> None:
        if len(frame) < ETH_HEADER:
            return
        (ethertype,) = struct.unpack_from("!H", frame, 12)
        ip = frame[ETH_HEADER:]
        if ethertype == 0x0800 and len(ip) >= 20 and ip[9] == socket.IPPROTO_TCP:
            ihl = (ip[0] & 0x0F) * 4
            (total,) = struct.unpack_from("!H", ip, 2)
            tcp = ip[ihl:total]
        elif ethertype == 0x86DD and len(ip) >= 40 and ip[6] == socket.IPPROTO_TCP:
            (length,) = struct.unpack_from("!H", ip, 4)
            tcp = ip[40 : 40 + length]
        else:
            return
        if len(tcp) < 20:
            return
        src, dst = struct.unpack_from("!HH", tcp, 0)
        if src not in self.ports and dst not in self.ports:
            return
        self.packets += 1
        payload = tcp[(tcp[12] >> 4) * 4 :]
        if payload:
            if len(self.payloads) >= MAX_PAYLOADS:
                self.dropped += 1
            else:
                self.payloads.append(bytes(payload))

    def seen(self, needle: bytes) -> bool:
        return any(needle in p for p in self.payloads)
