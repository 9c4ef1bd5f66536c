"""Messages on the feedback ring: from the receive stage (which owns RTCP) to the send stage
(retransmissions, pacing rate) and the encode stage (target bitrate). Local IPC, not a wire
format: both ends are our own processes, but the content came from a peer, so ``unpack``
still checks everything and the counts are bounded.

API::

    @dataclass(frozen=True, slots=True) class NackRequest: seqs: tuple[int, ...]; rtt_ms: int = 0
    @dataclass(frozen=True, slots=True) class TargetRate: bps: int; reason: str
    def pack(msg: NackRequest | TargetRate) -> bytes
    def unpack(data: bytes) -> NackRequest | TargetRate | None   # None: not a message
    def receive(reader: RingReader) -> list[NackRequest | TargetRate | None]  # all new ones
    MAX_NACK_SEQS; CAPACITY (bytes a message may take)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pipeline.ipc.ring import RingReader

MAX_NACK_SEQS = 1024
_REASON_BYTES = 8
CAPACITY = 6 + 2 * MAX_NACK_SEQS
_NACK, _TARGET = 1, 2
_TARGET_FMT = struct.Struct(f"!BxxxQ{_REASON_BYTES}s")


@dataclass(frozen=True, slots=True)
class NackRequest:
    """Sequence numbers of our media stream the peer asked us to resend, and our RTT to it in
    ms (0: unknown; the send stage does not answer the same packet twice within half of it)."""

    seqs: tuple[int, ...]
    rtt_ms: int = 0


@dataclass(frozen=True, slots=True)
class TargetRate:
    """The send rate congestion control allows, bit/s, and why (``rate.RateStats.reason``)."""

    bps: int
    reason: str


def pack(msg: NackRequest | TargetRate) -> bytes:
    if isinstance(msg, NackRequest):
        seqs = msg.seqs[:MAX_NACK_SEQS]
        rtt = min(max(msg.rtt_ms, 0), 0xFFFF)
        return struct.pack(f"!BxHH{len(seqs)}H", _NACK, len(seqs), rtt, *(s & 0xFFFF for s in seqs))
    return _TARGET_FMT.pack(_TARGET, max(msg.bps, 0), msg.reason.encode()[:_REASON_BYTES])


def unpack(data: bytes) -> NackRequest | TargetRate | None:
    if len(data) >= 6 and data[0] == _NACK and data[1] == 0:
        n, rtt = struct.unpack_from("!HH", data, 2)
        if n <= MAX_NACK_SEQS and len(data) == 6 + 2 * n:
            return NackRequest(struct.unpack_from(f"!{n}H", data, 6), rtt)
    elif len(data) == _TARGET_FMT.size and data[0] == _TARGET:
        _, bps, reason = _TARGET_FMT.unpack(data)
        return TargetRate(bps, reason.rstrip(b"\0").decode("ascii", "replace"))
    return None


def receive(reader: RingReader) -> list[NackRequest | TargetRate | None]:
    """Every message written since the last call, oldest first (None for one that was torn or
    is not a message). All of them, not the newest: a NACK left behind would wait for the next
    write, and the newest message alone may be a NACK hiding a target written just before it."""
    reader.drain()
    out: list[NackRequest | TargetRate | None] = []
    for _ in range(reader.ring.n_slots):
        desc = reader.next()
        if desc is None:
            break
        raw = reader.copy_bytes(desc)
        out.append(None if raw is None else unpack(raw))
    return out
