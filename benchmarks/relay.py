"""A lossy UDP relay on loopback, for benchmarks and tests: forwards an RTP/RTCP port pair to a
target pair and drops every ``drop_every``-th RTP datagram (RTCP passes untouched), and every
RTP datagram whose payload type is in ``drop_payload_types`` (e.g. RTX: repair never arrives).

API::

    class LossyRelay:
        def __init__(self, target_port: int, drop_every: int, host: str = "127.0.0.1",
                     drop_payload_types: frozenset[int] = frozenset()) -> None
        port: int            # the even RTP port to send to (RTCP on port + 1)
        forwarded: int; dropped: int
        def close(self) -> None                  # stops the thread, closes the sockets

A thread moves datagrams (select with a 50 ms timeout, so ``close`` returns promptly); sockets
bind to ``host`` only. Not an impairment model (the networks issue builds one): deterministic
loss only, no delay, no reordering.
"""

from __future__ import annotations

import select
import socket
import threading


class LossyRelay:
    def __init__(
        self,
        target_port: int,
        drop_every: int,
        host: str = "127.0.0.1",
        drop_payload_types: frozenset[int] = frozenset(),
    ) -> None:
        if drop_every < 1:
            raise ValueError(f"drop_every must be >= 1, got {drop_every}")
        self.host = host
        self.target = target_port
        self.drop_every = drop_every
        self.drop_payload_types = drop_payload_types
        self.forwarded = self.dropped = 0
        while True:
            rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            rtp.bind((host, 0))
            port = rtp.getsockname()[1]
            rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                if port % 2:
                    raise OSError("odd")
                rtcp.bind((host, port + 1))
            except OSError:
                rtp.close()
                rtcp.close()
                continue
            break
        self.port = port
        self._socks = {rtp: target_port, rtcp: target_port + 1}
        self._out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lossy-relay", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        count = 0
        while not self._stop.is_set():
            ready, _, _ = select.select(list(self._socks), [], [], 0.05)
            for sock in ready:
                data, _ = sock.recvfrom(65536)
                if self._socks[sock] == self.target:
                    count += 1
                    pt = data[1] & 0x7F if len(data) > 1 else -1
                    if count % self.drop_every == 0 or pt in self.drop_payload_types:
                        self.dropped += 1
                        continue
                self._out.sendto(data, (self.host, self._socks[sock]))
                self.forwarded += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in [*self._socks, self._out]:
            sock.close()
