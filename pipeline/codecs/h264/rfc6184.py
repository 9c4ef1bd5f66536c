"""RTP payload format for H.264 (RFC 6184), packetization mode 1. Pure: no I/O, no clock.

API::

    class H264Packetizer(Packetizer):
        def __init__(self, max_payload: int = 1200) -> None
        def payloads(self, frame, width=0, height=0) -> list[Payload]   # one access unit
    class H264Depacketizer(Depacketizer):
        def __init__(self, *, timeout: float = 0.5, max_frame_bytes: int = 4 << 20,
                     max_partial: int = 8) -> None
        def push(self, seq, timestamp, marker, payload, now) -> list[CodecFrame]  # never raises
        def expire(self, now) -> int; def reset(self) -> None
        needs_keyframe -> bool       # a frame was lost since the last keyframe (ask: PLI)
        stats -> H264DepacketizerStats

Frames on both sides are Annex B access units (4-byte start codes), as the encoder writes them
and the decoder reads them.

Packetizer (RFC 6184 5.6-5.8): NAL units that fit go as single NAL unit packets, consecutive
small ones (SPS, PPS, SEI before a slice) are aggregated into one STAP-A, a NAL unit larger than
``max_payload`` is cut into FU-A fragments (S bit on the first, E bit on the last). The stream
layer sets the marker bit on the last packet of the access unit and one timestamp for all.

Depacketizer: packets are grouped by RTP timestamp. An access unit is complete when its marker
packet arrived, its sequence numbers are contiguous up to the marker, its first packet begins a
picture (an AUD, SEI, SPS or PPS, or a slice whose ``first_mb_in_slice`` is 0, 7.3.3: the first
bit of the slice header is 1), and every FU-A was started and ended. Complete units are released
in timestamp order: one waits up to max(REORDER_WAIT, ``repair_wait``) for an older unit still
missing packets, or when packets are missing between it and the last frame released (a whole
frame lost, perhaps under repair, or the head of this one: a lost STAP-A with the SPS and PPS
leaves an IDR slice that looks like the start); a complete keyframe with its SPS and PPS never
waits: what is older and still open or waiting is dropped (``incomplete``, ``waiting_keyframe``)
and the keyframe goes out (on a clean link nothing is older and nothing is missing, so nothing
waits). A frame
that cannot be completed (a lost packet, a newer frame released past it, ``timeout`` without
packets, more than ``max_partial`` open) is dropped and counted as ``incomplete``; a sequence
gap between the last released frame and the next (whole frames lost: an outage) is counted as
``gaps``; from either on, the chain of references is broken: frames are dropped
(``waiting_keyframe``) until an IDR access unit arrives, and ``needs_keyframe`` stays true so
the receiver asks the sender for one (RTCP PLI). Duplicates, packets of frames already done
(``late``), forbidden bits, truncated STAP-A sizes, FU-A fragments without a start, NAL types it
does not know (``malformed`` / ``unsupported``) and oversized frames are counted and dropped;
memory per frame is bounded by ``max_frame_bytes``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pipeline.codecs.assembly import FrameAssembly
from pipeline.codecs.base import (
    CodecFrame,
    Depacketizer,
    DepacketizerStats,
    EncodeError,
    Packetizer,
    Payload,
)
from pipeline.codecs.h264.nal import (
    NAL_AUD,
    NAL_FU_A,
    NAL_IDR,
    NAL_PPS,
    NAL_SEI,
    NAL_SLICE,
    NAL_SPS,
    NAL_STAP_A,
    START_CODE,
    split_annexb,
)
from pipeline.wire.rtp import seq_diff, ts_diff

logger = logging.getLogger(__name__)

CLOCK_RATE = 90000
# A complete frame waits at most this long for an older frame still missing packets (packets
# reordered across frames); on a clean link nothing is older, so nothing waits.
REORDER_WAIT = 0.06
_MAX_FRAGMENTS = 4096
# At most this many packets before a held unit's first can be its missing head (parameter
# sets and SEI fit one STAP-A; a few more for a sender that sends them one per packet).
_MAX_HEAD = 8


class H264Packetizer(Packetizer):
    """Access units -> RFC 6184 payloads (mode 1: single NAL, STAP-A, FU-A)."""

    def __init__(self, max_payload: int = 1200) -> None:
        if max_payload < 64:
            raise ValueError(f"max_payload {max_payload} too small")
        self.max_payload = max_payload

    def payloads(self, frame: bytes, width: int = 0, height: int = 0) -> list[Payload]:
        nals = split_annexb(frame)
        if not nals:
            raise EncodeError("no NAL unit in the access unit")
        out: list[Payload] = []
        stap: list[memoryview] = []

        def flush_stap() -> None:
            if len(stap) == 1:
                out.append((stap[0],))
            elif stap:
                nri = max(n[0] & 0x60 for n in stap)
                pieces: list[bytes | memoryview] = [bytes((nri | NAL_STAP_A,))]
                for n in stap:
                    pieces += [len(n).to_bytes(2, "big"), n]
                out.append(tuple(pieces))
            stap.clear()

        for nal in nals:
            if len(nal) > self.max_payload:
                flush_stap()
                out.extend(self._fu_a(nal))
                continue
            size = 1 + sum(2 + len(n) for n in stap) + 2 + len(nal)
            if stap and size > self.max_payload:
                flush_stap()
            stap.append(nal)
        flush_stap()
        return out

    def _fu_a(self, nal: memoryview) -> list[Payload]:
        header = nal[0]
        indicator = bytes(((header & 0xE0) | NAL_FU_A,))
        ntype = header & 0x1F
        body = nal[1:]
        room = self.max_payload - 2
        out: list[Payload] = []
        for offset in range(0, len(body), room):
            start = offset == 0
            end = offset + room >= len(body)
            fu_header = bytes(((0x80 if start else 0) | (0x40 if end else 0) | ntype,))
            out.append((indicator, fu_header, body[offset : offset + room]))
        return out


@dataclass(frozen=True, slots=True)
class H264DepacketizerStats(DepacketizerStats):
    waiting_keyframe: int = 0  # complete frames dropped: a reference was lost, or a newer
    # keyframe made them unneeded (``_supersede``)
    keyframes: int = 0
    gaps: int = 0  # sequence gaps between frames (whole frames lost: an outage)


@dataclass(frozen=True, slots=True)
class _Ready:
    """A complete access unit waiting for its turn (older units first)."""

    unit: _AccessUnit
    nals: list[bytes]
    first_seq: int
    marker_seq: int
    since: float  # when it became complete


class _AccessUnit:
    __slots__ = ("first_arrival", "last_arrival", "marker_seq", "nbytes", "packets")

    def __init__(self, now: float) -> None:
        self.packets: dict[int, memoryview] = {}  # seq -> payload
        self.marker_seq: int | None = None
        self.nbytes = 0
        self.first_arrival = now
        self.last_arrival = now


class H264Depacketizer(Depacketizer):
    """Rebuilds H.264 access units from RFC 6184 packets of one source."""

    def __init__(
        self, *, timeout: float = 0.5, max_frame_bytes: int = 4 << 20, max_partial: int = 8
    ) -> None:
        self.timeout = timeout
        self.max_frame_bytes = max_frame_bytes
        self.max_partial = max_partial
        self._c = dict.fromkeys(H264DepacketizerStats.__dataclass_fields__, 0)
        self._units: FrameAssembly[_AccessUnit] = FrameAssembly(
            self._c, timeout=timeout, max_partial=max_partial, on_drop=self._chain_broken
        )
        self._ready: dict[int, _Ready] = {}
        self._last_marker_seq: int | None = None
        self._broken = True  # no keyframe yet: nothing can be decoded
        self.needs_keyframe = False

    @property
    def stats(self) -> H264DepacketizerStats:
        return H264DepacketizerStats(**self._c)

    def reset(self) -> None:
        self._units.reset()
        self._ready.clear()
        self._last_marker_seq = None
        self._broken = True
        self.needs_keyframe = False

    def push(
        self, seq: int, timestamp: int, marker: bool, payload: memoryview, now: float
    ) -> list[CodecFrame]:
        ts = timestamp
        if not payload or payload[0] & 0x80:  # empty, or the forbidden_zero_bit set
            self._c["malformed"] += 1
            return []
        if not (1 <= payload[0] & 0x1F <= 23 or payload[0] & 0x1F in (NAL_STAP_A, NAL_FU_A)):
            self._c["unsupported"] += 1  # STAP-B, MTAP, FU-B, reserved: not in mode 1
            return []
        if self._units.finished(ts):
            return []
        if ts in self._ready:  # complete, waiting for an older frame
            return self._extend_head(ts, seq, payload, now)
        unit = self._units.open(ts, now, _AccessUnit)
        if seq in unit.packets:
            self._c["duplicates"] += 1
            return []
        if unit.nbytes + len(payload) > self.max_frame_bytes or len(unit.packets) >= _MAX_FRAGMENTS:
            self._units.drop(ts, "unsupported")
            return []
        unit.packets[seq] = payload
        unit.nbytes += len(payload)
        unit.last_arrival = now
        if marker:
            unit.marker_seq = seq
        if unit.marker_seq is None:
            return self._release(now)
        return self._try_complete(ts, unit)

    def expire(self, now: float) -> int:
        return self._units.expire(now)

    # -- internals --

    def _chain_broken(self) -> None:
        """A frame was dropped: the frames after it have lost a reference."""
        self._broken = True
        self.needs_keyframe = True

    def _try_complete(self, ts: int, unit: _AccessUnit) -> list[CodecFrame]:
        assert unit.marker_seq is not None
        whole = _whole(unit, unit.marker_seq)
        if whole is None:
            return []  # packets are still missing (reordered or lost: repair, the timeout)
        first, payloads = whole
        nals = self._nals(payloads)
        if not nals:  # counted by name; all its packets are here, so it will not heal
            self._units.drop(ts, "incomplete")
            return []
        self._units.take(ts)
        self._ready[ts] = _Ready(unit, nals, first, unit.marker_seq, unit.last_arrival)
        return self._release(unit.last_arrival)

    def _extend_head(self, ts: int, seq: int, payload: memoryview, now: float) -> list[CodecFrame]:
        """A packet for a unit already complete and held back: a duplicate, or (just before
        its first packet) its missing head, e.g. the repaired STAP-A with the SPS and PPS of an
        IDR unit; the unit takes it when the packets from it to the marker are contiguous."""
        ready = self._ready[ts]
        unit = ready.unit
        if seq in unit.packets or seq_diff(seq, ready.first_seq) >= 0:
            self._c["duplicates"] += 1
            return []
        if len(unit.packets) >= _MAX_FRAGMENTS or seq_diff(ready.first_seq, seq) > _MAX_HEAD:
            self._c["late"] += 1  # not a head this unit can still take
            return []
        unit.packets[seq] = payload
        unit.nbytes += len(payload)
        unit.last_arrival = now
        whole = _whole(unit, ready.marker_seq)  # the head's packets may come in any order
        if whole is None:
            return []  # more of the head is missing: keep waiting
        first, payloads = whole
        nals = self._nals(payloads)
        if nals:
            self._ready[ts] = _Ready(unit, nals, first, ready.marker_seq, ready.since)
        return self._release(now)

    def _release(self, now: float) -> list[CodecFrame]:
        """Complete units, oldest first, once no older unit can still complete."""
        out: list[CodecFrame] = []
        self._supersede()
        while self._ready:
            ts = min(self._ready, key=lambda t: ts_diff(t, next(iter(self._ready))))
            ready = self._ready[ts]
            older = self._units.older(ts)
            last = self._last_marker_seq
            # Packets between the last frame released and this one are missing: a whole frame
            # may be lost and under repair (NACK/RTX), so wait as for an open older frame. A
            # keyframe that carries its parameter sets needs nothing older: it goes at once. One
            # without them waits too: the missing packets may be its own SPS and PPS (a lost
            # STAP-A leaves an IDR slice with first_mb_in_slice 0 looking like the start).
            # The first frame of a stream has no last frame to show a gap: one that is not
            # self-contained waits REORDER_WAIT for a head reordered behind it (NACK cannot
            # ask for packets before the first one seen, so no repair is worth waiting for).
            # A keyframe with its parameter sets waits for nothing (``_supersede``).
            wait = max(REORDER_WAIT, self.repair_wait)
            if last is not None:
                gap = seq_diff(ready.first_seq, last) != 1 and not _self_contained(ready.nals)
            else:
                gap = not _self_contained(ready.nals)
                wait = wait if older else REORDER_WAIT
            if (older or gap) and self._waits(ready, now, wait):
                break  # an older frame may still complete (reordering, repair)
            for t in older:  # waited long enough: the older frames are lost
                self._units.drop(t, "incomplete")
            del self._ready[ts]
            frame = self._emit(ts, ready)
            if frame is not None:
                out.append(frame)
        return out

    def _supersede(self) -> None:
        """A complete keyframe with its parameter sets is never held for older frames: what is
        older is dropped (open frames as ``incomplete``, complete ones waiting for them as
        ``waiting_keyframe``) and the keyframe goes out. Nothing after it refers to them, and
        the display shows the newest decodable frame anyway; under congestion the keyframe is
        the repair (pipeline.stages.send asks for one) and waiting for an older frame's
        retransmission through the full queue was the rest of the freeze."""
        keys = [t for t, r in self._ready.items() if _self_contained(r.nals)]
        if not keys:
            return
        ref = keys[0]
        key = max(keys, key=lambda t: ts_diff(t, ref))
        older = [t for t in self._ready if ts_diff(t, key) < 0]
        for t in older:
            del self._ready[t]
            self._units.mark_done(t)
            self._c["waiting_keyframe"] += 1
        open_older = self._units.older(key)
        for t in open_older:
            self._units.drop(t, "incomplete")
        if older or open_older:
            # What is skipped is not an outage: no gap is counted before the keyframe, and
            # the packets still missing before it are asked for no more.
            first = self._ready[key].first_seq
            self._last_marker_seq = (first - 1) & 0xFFFF
            if self.repair_moot is not None:
                self.repair_moot(first)

    def _waits(self, ready: _Ready, now: float, wait: float) -> bool:
        """Whether ``ready`` still waits for what is missing before it: ``wait`` seconds, or
        up to ``repair_hold`` while a packet before its first is still asked for."""
        held = now - ready.since
        if held < wait:
            return True
        pending = self.repair_pending
        return held < self.repair_hold and pending is not None and pending(ready.first_seq)

    def _emit(self, ts: int, ready: _Ready) -> CodecFrame | None:
        self._units.mark_done(ts)
        last = self._last_marker_seq
        self._last_marker_seq = ready.marker_seq
        if last is not None and seq_diff(ready.first_seq, last) != 1:
            # Packets between the last frame and this one never came: whole frames were lost
            # (an outage, or a frame dropped above), and the chain of references with them.
            self._c["gaps"] += 1
            self._broken = True
        nals = ready.nals
        keyframe = any((n[0] & 0x1F) == NAL_IDR for n in nals)
        if keyframe:
            self._c["keyframes"] += 1
            self._broken = False
            self.needs_keyframe = False
        elif self._broken:
            self._c["waiting_keyframe"] += 1
            self.needs_keyframe = True
            return None
        self._c["frames"] += 1
        data = b"".join(piece for n in nals for piece in (START_CODE, n))
        unit = ready.unit
        return CodecFrame(
            data=data,
            timestamp=ts,
            width=0,
            height=0,
            keyframe=keyframe,
            first_arrival=unit.first_arrival,
            last_arrival=unit.last_arrival,
            packets=len(unit.packets),
        )

    def _nals(self, payloads: list[memoryview]) -> list[bytes]:
        """The NAL units of a unit's payloads in order; [] (counted) if they do not form
        whole NAL units."""
        nals: list[bytes] = []
        fu: list[memoryview] | None = None
        for p in payloads:
            ntype = p[0] & 0x1F
            if ntype == NAL_FU_A:
                if len(p) < 3:
                    return self._bad("malformed")
                start, end, inner = p[1] & 0x80, p[1] & 0x40, p[1] & 0x1F
                if start:
                    if fu is not None:
                        return self._bad("malformed")  # a new start before the last ended
                    fu = [memoryview(bytes(((p[0] & 0xE0) | inner,))), p[2:]]
                elif fu is None:
                    return self._bad("malformed")  # FU-A without its start
                else:
                    fu.append(p[2:])
                if end:
                    nals.append(b"".join(fu))
                    fu = None
                continue
            if fu is not None:
                return self._bad("malformed")  # an FU-A never ended
            if 1 <= ntype <= 23:
                nals.append(bytes(p))
            elif ntype == NAL_STAP_A:
                pos = 1
                while pos < len(p):
                    if pos + 2 > len(p):
                        return self._bad("malformed")
                    size = int.from_bytes(p[pos : pos + 2], "big")
                    pos += 2
                    if size == 0 or pos + size > len(p):
                        return self._bad("malformed")  # a giant or empty STAP-A size
                    nals.append(bytes(p[pos : pos + size]))
                    pos += size
            else:
                return self._bad("unsupported")  # STAP-B, MTAP, FU-B, reserved
        if fu is not None or not nals:
            return self._bad("malformed")
        return nals

    def _bad(self, reason: str) -> list[bytes]:
        """Count a discard by name; no NAL units, for the caller to return."""
        self._c[reason] += 1
        return []


def _whole(unit: _AccessUnit, marker_seq: int) -> tuple[int, list[memoryview]] | None:
    """(first seq, payloads in order) when the unit's packets run without a gap from one that
    begins a picture to the marker; None while any is missing."""
    seqs = sorted(unit.packets, key=lambda s: seq_diff(s, marker_seq))
    first = seqs[0]
    if seq_diff(marker_seq, first) + 1 != len(seqs) or not _starts_picture(unit.packets[first]):
        return None
    return first, [unit.packets[s] for s in seqs]


def _self_contained(nals: list[bytes]) -> bool:
    """An IDR access unit with its SPS and PPS: decodable with nothing before it."""
    types = {n[0] & 0x1F for n in nals}
    return {NAL_IDR, NAL_SPS, NAL_PPS} <= types


def _starts_picture(payload: memoryview) -> bool:
    """Whether an RFC 6184 payload begins an access unit (7.4.1.2.3 order; 7.3.3)."""
    ntype = payload[0] & 0x1F
    if ntype == NAL_STAP_A:
        if len(payload) < 4:
            return False
        ntype, first = payload[3] & 0x1F, payload[3:]
    elif ntype == NAL_FU_A:
        if len(payload) < 3 or not payload[1] & 0x80:
            return False
        ntype, first = payload[1] & 0x1F, payload[1:]
    else:
        first = payload
    if ntype in (NAL_SEI, NAL_SPS, NAL_PPS, NAL_AUD):
        return True
    if ntype in (NAL_SLICE, NAL_IDR):
        return len(first) > 1 and bool(first[1] & 0x80)  # first_mb_in_slice == 0
    return False
