"""Measurements through the lab: paced UDP flows and UDP echo round trips.

Both ends are sockets of the calling process (``Lab.socket``), so a packet's send and receive
times come from one clock, ``time.monotonic()`` (CLOCK_MONOTONIC is the same in every network
namespace): one-way delays need no clock synchronisation. Each datagram starts with a 16-byte
header (magic ``VCLB``, sequence number, send time) and is padded to the requested size.

Guarantees:
- A flow sends exactly ``count`` datagrams at ``start + i * interval`` (late sends are not made
  up for by bursts larger than one datagram) and records every datagram received until
  ``drain_s`` after the last send; datagrams without the header are ignored.
- ``FlowResult`` counts each sequence number once for loss, delay and order; later copies are
  ``duplicates``. Rates are IP-layer bits (UDP payload + 28 bytes of headers).
"""

from __future__ import annotations

import math
import socket
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

HEADER = struct.Struct("!4sId")
MAGIC = b"VCLB"
UDP_IP_OVERHEAD = 28  # IPv4 + UDP headers, counted in rates


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass(frozen=True, slots=True)
class Arrival:
    seq: int
    sent: float  # time.monotonic() at the sender
    received: float  # time.monotonic() at the receiver

    @property
    def delay_ms(self) -> float:
        return (self.received - self.sent) * 1000.0


@dataclass(frozen=True, slots=True)
class FlowResult:
    sent: int
    size: int  # UDP payload bytes of each datagram
    started: float
    finished: float  # time of the last send
    arrivals: tuple[Arrival, ...]  # in arrival order, duplicates included

    @property
    def first_arrivals(self) -> list[Arrival]:
        seen: set[int] = set()
        first = []
        for a in self.arrivals:
            if a.seq not in seen:
                seen.add(a.seq)
                first.append(a)
        return first

    @property
    def received(self) -> int:
        return len({a.seq for a in self.arrivals})

    @property
    def lost(self) -> int:
        return self.sent - self.received

    @property
    def loss_fraction(self) -> float:
        return self.lost / self.sent if self.sent else 0.0

    @property
    def duplicates(self) -> int:
        return len(self.arrivals) - self.received

    @property
    def reordered(self) -> int:
        """First arrivals that came after a datagram sent later than them."""
        highest = -1
        late = 0
        for a in self.first_arrivals:
            if a.seq < highest:
                late += 1
            highest = max(highest, a.seq)
        return late

    def delays_ms(self) -> list[float]:
        return [a.delay_ms for a in self.first_arrivals]

    def throughput_bps(self, start: float, end: float) -> float:
        """IP-layer bits per second received in [start, end) (time.monotonic() times)."""
        count = sum(1 for a in self.arrivals if start <= a.received < end)
        return count * (self.size + UDP_IP_OVERHEAD) * 8 / (end - start)

    def longest_gap(self) -> tuple[float, float]:
        """The longest silence between consecutive arrivals, as (last before, first after);
        (nan, nan) with fewer than two arrivals."""
        times = [a.received for a in self.arrivals]
        if len(times) < 2:
            return (math.nan, math.nan)
        i = max(range(len(times) - 1), key=lambda k: times[k + 1] - times[k])
        return (times[i], times[i + 1])


def _pad(seq: int, size: int) -> bytes:
    header = HEADER.pack(MAGIC, seq, time.monotonic())
    return header + bytes(max(0, size - len(header)))


def run_flow(
    tx: socket.socket,
    rx: socket.socket,
    dest: tuple[str, int],
    *,
    count: int,
    interval_s: float,
    size: int = 200,
    drain_s: float = 0.5,
) -> FlowResult:
    """Send ``count`` datagrams of ``size`` bytes from ``tx`` to ``dest`` every ``interval_s``
    (on a thread) while receiving on ``rx`` (here); returns when the flow is drained."""
    if size < HEADER.size:
        raise ValueError(f"size must be >= {HEADER.size}, got {size}")
    started = time.monotonic() + 0.01
    finished: list[float] = []
    errors: list[BaseException] = []

    def send() -> None:
        try:
            for seq in range(count):
                delay = started + seq * interval_s - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                tx.sendto(_pad(seq, size), dest)
        except BaseException as exc:
            errors.append(exc)
        finally:
            finished.append(time.monotonic())

    sender = threading.Thread(target=send, name="probe-send", daemon=True)
    sender.start()
    arrivals: list[Arrival] = []
    buffer = bytearray(65_536)
    rx.settimeout(0.05)
    while True:
        if finished and time.monotonic() > finished[0] + drain_s:
            break
        try:
            n = rx.recv_into(buffer)
        except TimeoutError:
            continue
        now = time.monotonic()
        if n >= HEADER.size:
            magic, seq, sent = HEADER.unpack_from(buffer)
            if magic == MAGIC:
                arrivals.append(Arrival(seq, sent, now))
    sender.join()
    if errors:
        raise errors[0]
    return FlowResult(count, size, started, finished[0], tuple(arrivals))


class EchoServer:
    """Sends every datagram back to where it came from, on a thread, until ``close()``."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.echoed = 0
        self._stop = threading.Event()
        sock.settimeout(0.05)
        self._thread = threading.Thread(target=self._run, name="probe-echo", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65_536)
            except TimeoutError:
                continue
            except OSError:
                return
            self.sock.sendto(data, peer)
            self.echoed += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)


def ping(
    client: socket.socket,
    dest: tuple[str, int],
    *,
    count: int,
    timeout_s: float = 1.0,
    size: int = 64,
) -> list[float | None]:
    """Round-trip times in ms of ``count`` echo requests sent one after another (None: no
    reply within ``timeout_s``; a late reply to an earlier request is ignored)."""
    rtts: list[float | None] = []
    buffer = bytearray(65_536)
    for seq in range(count):
        sent = time.monotonic()
        client.sendto(_pad(seq, size), dest)
        deadline = sent + timeout_s
        rtt: float | None = None
        while (left := deadline - time.monotonic()) > 0:
            client.settimeout(left)
            try:
                n = client.recv_into(buffer)
            except TimeoutError:
                break
            if n >= HEADER.size:
                magic, got, _ = HEADER.unpack_from(buffer)
                if magic == MAGIC and got == seq:
                    rtt = (time.monotonic() - sent) * 1000.0
                    break
        rtts.append(rtt)
    return rtts
