"""Pipeline statistics: latency windows, rates, and a per-stage board in shared memory.

Each stage process keeps its own ``LatencyWindow``s and ``RateMeter``s (pure, time passed in)
and publishes a JSON snapshot a few times a second to its ``StatsChannel`` (a two-slot ring:
the newest snapshot wins, the controller never blocks a stage). ``MediaSession.stats()`` merges
the stages' snapshots with CPU figures from psutil into one typed ``MediaStats`` (frozen
dataclasses all the way down; ``to_dict()`` gives its JSON): latencies in milliseconds, rates per
second, CPU in percent of one core.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psutil

from pipeline.ipc.ring import Ring, RingReader, RingWriter
from pipeline.ipc.shm import SegmentSet
from pipeline.presets import Preset

logger = logging.getLogger(__name__)

WINDOW_SAMPLES = 2048
RATE_WINDOW_S = 2.0
STATS_CAPACITY = 64 * 1024
PUBLISH_INTERVAL_NS = 250_000_000
STAGE_NAMES = ("capture", "encode", "send", "receive", "display")


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted non-empty list."""
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


class LatencyWindow:
    """The last ``WINDOW_SAMPLES`` durations of one stage, summarised as p50/p95/p99 in ms."""

    def __init__(self, size: int = WINDOW_SAMPLES) -> None:
        self._samples: deque[float] = deque(maxlen=size)
        self.count = 0

    def add_ns(self, duration_ns: int) -> None:
        if duration_ns < 0:  # a missing stamp; never a negative latency
            return
        self._samples.append(duration_ns / 1e6)
        self.count += 1

    def summary(self) -> dict[str, float | int]:
        if not self._samples:
            return {"count": self.count}
        values = sorted(self._samples)
        return {
            "count": self.count,
            "p50": round(percentile(values, 50), 3),
            "p95": round(percentile(values, 95), 3),
            "p99": round(percentile(values, 99), 3),
            "max": round(values[-1], 3),
            "mean": round(sum(values) / len(values), 3),
        }


class RateMeter:
    """Events (and bytes) per second over the last ``RATE_WINDOW_S`` seconds."""

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self._window_ns = int(window_s * 1e9)
        self._events: deque[tuple[int, int]] = deque()
        self._bytes = 0
        self.total = 0
        self.total_bytes = 0

    def add(self, now_ns: int, nbytes: int = 0) -> None:
        self._events.append((now_ns, nbytes))
        self._bytes += nbytes
        self.total += 1
        self.total_bytes += nbytes
        self._expire(now_ns)

    def _expire(self, now_ns: int) -> None:
        while self._events and now_ns - self._events[0][0] > self._window_ns:
            self._bytes -= self._events.popleft()[1]

    def rate(self, now_ns: int) -> float:
        self._expire(now_ns)
        if len(self._events) < 2:
            return 0.0
        span = max(now_ns - self._events[0][0], 1)
        # n events span n - 1 intervals.
        return (len(self._events) - 1) * 1e9 / span

    def bits_per_second(self, now_ns: int) -> float:
        self._expire(now_ns)
        if len(self._events) < 2:
            return 0.0
        span = max(now_ns - self._events[0][0], 1)
        return (self._bytes - self._events[0][1]) * 8e9 / span


class StatsChannel:
    """A stage's snapshot slot: the stage writes JSON, the controller reads the newest."""

    def __init__(self, ring: Ring) -> None:
        self._ring = ring
        self._writer: RingWriter | None = None
        self._reader: RingReader | None = None
        self._last_publish = 0

    @classmethod
    def create(cls, segments: SegmentSet, stage: str) -> StatsChannel:
        ring = Ring.create(segments, f"st{stage}", n_slots=2, capacity=STATS_CAPACITY, n_readers=0)
        return cls(ring)

    def due(self, now_ns: int) -> bool:
        """True when PUBLISH_INTERVAL_NS have passed since the last snapshot was written.

        A stage asks before building a snapshot: building one sorts every latency window.
        """
        return now_ns - self._last_publish >= PUBLISH_INTERVAL_NS

    def publish(self, snapshot: dict[str, Any], now_ns: int, force: bool = False) -> bool:
        """Write ``snapshot`` unless one was written less than PUBLISH_INTERVAL_NS ago."""
        if not force and not self.due(now_ns):
            return False
        self._last_publish = now_ns
        data = json.dumps(snapshot, separators=(",", ":")).encode()
        if len(data) > STATS_CAPACITY:
            logger.warning("stats snapshot of %d bytes dropped", len(data))
            return False
        if self._writer is None:
            self._writer = self._ring.writer()
        self._writer.write(data, frame_id=0)
        return True

    def read(self) -> dict[str, Any] | None:
        if self._reader is None:
            self._reader = RingReader(self._ring, -1)
        for _ in range(3):
            desc = self._reader.peek()
            if desc is None:
                return None
            data = self._reader.copy_bytes(desc)
            if data is not None:
                result: dict[str, Any] = json.loads(data)
                return result
        return None


class CpuMeter:
    """CPU use of a set of processes, in percent of one core, since the previous call."""

    def __init__(self) -> None:
        self._procs: dict[str, psutil.Process] = {}
        self._last: dict[str, tuple[float, float]] = {}
        self._result: dict[str, float] = {}

    def track(self, name: str, pid: int) -> None:
        try:
            proc = psutil.Process(pid)
            times = proc.cpu_times()
        except psutil.Error:
            return
        self._procs[name] = proc
        self._last[name] = (times.user + times.system, time.monotonic())

    def sample(self) -> dict[str, float]:
        """Per process CPU since the previous sample (kept if called again within 50 ms)."""
        result = self._result
        for name, proc in self._procs.items():
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            now = time.monotonic()
            busy = times.user + times.system
            last_busy, last_t = self._last[name]
            if now - last_t > 0.05:
                result[name] = round(100.0 * (busy - last_busy) / (now - last_t), 1)
                self._last[name] = (busy, now)
            else:
                result.setdefault(name, 0.0)
        return dict(result)


# Per-stage latency windows, in pipeline order, and the stage process that measures each.
LATENCY_ORDER = (
    ("capture", "send"),
    ("encode_wait", "send"),
    ("encode", "send"),
    ("send_wait", "send"),
    ("send", "send"),
    ("capture_to_receive", "display"),
    ("reassembly", "receive"),
    ("jitter_buffer", "receive"),
    ("keyframe_after_pli", "receive"),  # first PLI sent -> the next keyframe played out
    ("display_wait", "display"),
    ("decode", "display"),
    ("capture_to_display", "display"),
    ("self_view", "display"),
)


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """One latency window in milliseconds (None: no sample yet)."""

    count: int = 0
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None
    mean: float | None = None

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any]) -> LatencySummary:
        """From ``LatencyWindow.summary()`` (which crosses processes as JSON)."""
        return cls(
            **{k: summary.get(k) for k in ("p50", "p95", "p99", "max", "mean")},
            count=int(summary.get("count", 0)),
        )

    def to_dict(self) -> dict[str, float | int]:
        d: dict[str, float | int] = {"count": self.count}
        for k in ("p50", "p95", "p99", "max", "mean"):
            v = getattr(self, k)
            if v is not None:
                d[k] = v
        return d


@dataclass(frozen=True, slots=True)
class RepairStats:
    """Loss repair with generic NACK (RFC 4585 6.2.1) and RTX (RFC 4588), this endpoint's two
    sides: what we asked the peer to resend, and what we resent. Counts since the call began
    (webrtc-stats: ``nackCount``, ``retransmittedPacketsSent``)."""

    nacks_sent: int = 0  # NACK packets we sent about the peer's stream
    packets_requested: int = 0  # sequence numbers they named (a retry counts again)
    recovered: int = 0  # the peer's packets that came by retransmission
    abandoned: int = 0  # missing packets given up on (too old or too many tries)
    superseded: int = 0  # missing packets no longer asked for: a keyframe made them unneeded
    nacks_received: int = 0  # NACK packets from the peer about our stream
    retransmitted: int = 0  # RTX packets we sent (second copies included)
    rtx_repeats: int = 0  # of those, second copies sent 10 ms later on a long RTT
    repair_wait_ms: float = 0.0  # how long a frame under repair is waited for, now
    repair_rtt_ms: float | None = None  # request -> RTX, measured by our repairs (None: stale)


@dataclass(frozen=True, slots=True)
class CongestionStats:
    """Congestion control (draft-ietf-rmcat-gcc-02): the rate we may send and why, the rate the
    peer estimates for our stream (REMB), and the rate we estimate for the peer's (the REMB we
    send). ``adaptation`` says what the encoder does with the target, in words."""

    target_bps: int | None = None
    target_reason: str = ""  # max | remb | loss | min | start
    remb_received_bps: int | None = None
    estimate_bps: int | None = None  # None: the path has not queued yet (nothing to limit)
    estimator_state: str = "normal"  # normal | overusing | underusing
    overuses: int = 0
    adaptation: str = ""
    pacer_queue: int = 0


@dataclass(frozen=True, slots=True)
class AudioStats:
    """The call's voice (issue 12): whether it runs, what we send and what we hear, and every
    discard by name. ``delay_ms``: the audio jitter buffer's target (frames x 20 ms)."""

    active: bool = False  # an audio path runs (False: no audio asked, classic peer, or error)
    sending: bool = False  # sending now (not muted and not on hold)
    packets_sent: int = 0
    packets_received: int = 0
    lost: int = 0  # frames never received
    concealed: int = 0  # frames made up by packet-loss concealment
    fec: int = 0  # frames rebuilt from the next packet's in-band FEC
    late: int = 0
    discarded: int = 0  # late + duplicates + overflow + shrunk + flushed, and bad datagrams
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    processing: str = "none"  # the echo canceller in use
    source: str = ""
    sink: str = ""
    fallback: str = ""  # a device that failed and what replaced it
    error: str = ""  # why there is no audio, when there is none
    input_dbfs: float = -100.0  # the microphone's level after echo cancellation (-100: silent)
    volume: float = 1.0  # the speaker volume (0..1.5)
    sync_offset_ms: float | None = None  # lip sync: how much later the video is (None: no SRs)
    sync_delay_ms: float = 0.0  # what lip sync adds to the audio now
    underruns: int = 0  # playout found nothing to play (after 6 in a row: silence, rebuffer)
    stretched: int = 0  # frames of concealment inserted to add the lip-sync delay


@dataclass(frozen=True, slots=True)
class FreezeStats:
    """Playback smoothness of the peer's video, by the W3C webrtc-stats rules (RTCInboundRtp-
    StreamStats ``freezeCount``, ``totalFreezesDuration``, ``pauseCount``,
    ``totalPausesDuration``): an interval between two shown frames of at least
    ``PAUSE_S`` is a pause (the sender stopped: hold, pause); otherwise one longer than
    max(3 x the mean of the last 30 intervals, that mean + 150 ms) is a freeze."""

    frames_shown: int = 0
    freeze_count: int = 0
    total_freezes_duration_s: float = 0.0
    pause_count: int = 0
    total_pauses_duration_s: float = 0.0
    longest_gap_ms: float = 0.0  # the longest interval between two shown frames
    since_last_frame_ms: float | None = None  # now - the last frame shown (None: none yet)
    # now - the first frame shown (0: none yet): what "frames shown per second over the call"
    # divides by, so a caller's ringing time before any video could come is not counted
    showing_s: float = 0.0


PAUSE_S = 5.0
FREEZE_WINDOW = 30
FREEZE_MIN_EXTRA_S = 0.150


class FreezeDetector:
    """Counts freezes and pauses from the times frames are shown (seconds, one clock). Pure."""

    def __init__(self) -> None:
        self._first: float | None = None
        self._last: float | None = None
        self._intervals: deque[float] = deque(maxlen=FREEZE_WINDOW)
        self._c = FreezeStats()

    def shown(self, now: float) -> None:
        c = self._c
        frames, freezes, freeze_s = c.frames_shown + 1, c.freeze_count, c.total_freezes_duration_s
        pauses, pause_s, longest = c.pause_count, c.total_pauses_duration_s, c.longest_gap_ms
        if self._last is not None:
            gap = now - self._last
            longest = max(longest, gap * 1000)
            if gap >= PAUSE_S:
                pauses, pause_s = pauses + 1, pause_s + gap
            else:
                if self._intervals:
                    mean = sum(self._intervals) / len(self._intervals)
                    if gap > max(3 * mean, mean + FREEZE_MIN_EXTRA_S):
                        freezes, freeze_s = freezes + 1, freeze_s + gap
                self._intervals.append(gap)
        else:
            self._first = now
        self._last = now
        self._c = FreezeStats(frames, freezes, freeze_s, pauses, pause_s, longest)

    def stats(self, now: float) -> FreezeStats:
        since = None if self._last is None else round((now - self._last) * 1000, 1)
        c = self._c
        return FreezeStats(
            c.frames_shown,
            c.freeze_count,
            round(c.total_freezes_duration_s, 3),
            c.pause_count,
            round(c.total_pauses_duration_s, 3),
            round(c.longest_gap_ms, 1),
            since,
            0.0 if self._first is None else round(max(0.0, now - self._first), 3),
        )


@dataclass(frozen=True, slots=True)
class LossStats:
    lost_packets: int | None  # RFC 3550 cumulative loss of the peer's stream (RTP mode)
    lost_frames: int  # frames the jitter buffer saw missing (V0 sequence gaps)
    remote_fraction_lost: float | None  # 0..1, what the peer reports about our stream
    remote_cumulative_lost: int | None


@dataclass(frozen=True, slots=True)
class DropStats:
    """Every discard of the receive path and the hand-offs, by name."""

    capture_to_encode: int = 0  # ring drops: a reader skipped to the newest frame
    encode_to_send: int = 0
    receive_to_display: int = 0
    jitter_late: int = 0
    jitter_skipped: int = 0
    jitter_overflow: int = 0
    incomplete_frames: int = 0
    before_connect: int = 0
    wrong_address: int = 0
    wrong_source: int = 0  # another SSRC (media or reports)
    unknown_payload_type: int = 0
    unprotect_failed: int = 0
    malformed: int = 0
    rejected_frame: int = 0  # declared size refused or undecodable
    torn: int = 0
    peer_errors: int = 0
    send_errors: int = 0
    waiting_keyframe: int = 0  # whole frames not shown because a reference was lost


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """What the controller itself knows about its session (the rest comes from the stages)."""

    state: str
    rx_port: int
    mode: str | None  # "v0" | "rtp" once connected
    peer: str | None  # "ip:port"
    sending: bool
    preset: Preset
    source: str
    codec_name: str
    uptime_s: float
    controller_read_ms: Mapping[str, float | int]
    dead_stages: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MediaStats:
    """A snapshot of one media session (``MediaSession.stats()``); ``to_dict()`` is its JSON.

    Latencies in milliseconds, rates per second, bitrates in bit/s, CPU in percent of one core.
    ``stages`` keeps each stage's raw snapshot, for debugging.
    """

    info: SessionInfo
    latency_ms: Mapping[str, LatencySummary]
    codec: str | None  # the JPEG backend (turbojpeg | opencv)
    fps_sent: float
    fps_received: float
    fps_shown: float
    fps_self_view: float
    bitrate_sent_bps: int
    bitrate_received_bps: int
    loss: LossStats
    jitter_ms: float | None
    jitter_buffer_delay_ms: float | None
    rtt_ms: float | None
    drops: DropStats
    cpu_percent: Mapping[str, float]
    source: str  # what the capture stage really runs (a failed switch keeps the old one)
    source_error: str
    stages: Mapping[str, Mapping[str, Any]]
    pli_sent: int = 0  # keyframe requests (RTCP PLI + FIR) we sent: webrtc-stats pliCount
    pli_received: int = 0  # keyframe requests the peer sent us
    freezes: FreezeStats = FreezeStats()
    repair: RepairStats = RepairStats()
    congestion: CongestionStats = CongestionStats()
    audio: AudioStats = AudioStats()

    def to_dict(self) -> dict[str, Any]:
        """The JSON-serialisable form (docs/architecture.md, Media pipeline: Statistics)."""
        i = self.info
        p = i.preset
        return {
            "state": i.state,
            "rx_port": i.rx_port,
            "mode": i.mode,
            "peer": i.peer,
            "sending": i.sending,
            "preset": {
                "name": p.name,
                "size": [p.width, p.height],
                "quality": p.quality,
                "fps": p.fps,
            },
            "source": self.source,
            "uptime_s": i.uptime_s,
            "controller_read_ms": dict(i.controller_read_ms),
            "dead_stages": list(i.dead_stages),
            "latency_ms": {k: v.to_dict() for k, v in self.latency_ms.items()},
            "codec": self.codec,
            "codec_name": i.codec_name,
            "fps_sent": self.fps_sent,
            "fps_received": self.fps_received,
            "fps_shown": self.fps_shown,
            "fps_self_view": self.fps_self_view,
            "bitrate_sent_bps": self.bitrate_sent_bps,
            "bitrate_received_bps": self.bitrate_received_bps,
            "loss": dataclasses.asdict(self.loss),
            "jitter_ms": self.jitter_ms,
            "jitter_buffer_delay_ms": self.jitter_buffer_delay_ms,
            "rtt_ms": self.rtt_ms,
            "drops": dataclasses.asdict(self.drops),
            "cpu_percent": dict(self.cpu_percent),
            "errors": {"source": self.source_error},
            "pli_sent": self.pli_sent,
            "pli_received": self.pli_received,
            "freezes": dataclasses.asdict(self.freezes),
            "repair": dataclasses.asdict(self.repair),
            "congestion": dataclasses.asdict(self.congestion),
            "audio": dataclasses.asdict(self.audio),
            "stages": {k: dict(v) for k, v in self.stages.items()},
        }


def summarise(
    info: SessionInfo, stages: dict[str, dict[str, Any]], cpu: dict[str, float]
) -> MediaStats:
    """Merge a session's own facts and its stages' snapshots into the figures a GUI or a
    benchmark shows (see docs/architecture.md, Media pipeline)."""
    lat = {}
    for name, stage in LATENCY_ORDER:
        summary = stages.get(stage, {}).get("latency_ms", {}).get(name)
        if summary is not None:
            lat[name] = LatencySummary.from_summary(summary)
    snd, rcv, dsp, enc = (stages.get(k, {}) for k in ("send", "receive", "display", "encode"))
    rtp, rtcp, jb = rcv.get("rtp"), rcv.get("rtcp", {}), rcv.get("jitter_buffer", {})
    edge = rcv.get("edge", {})
    rtp_ = rtp or {}
    counters = {k: stages.get(k, {}).get("counters", {}) for k in (*STAGE_NAMES, "audio")}
    drops = DropStats(
        capture_to_encode=enc.get("ring_dropped", 0),
        encode_to_send=snd.get("ring_dropped", 0),
        receive_to_display=dsp.get("ring_dropped", 0),
        jitter_late=jb.get("late", 0),
        jitter_skipped=jb.get("skipped", 0),
        jitter_overflow=jb.get("overflow", 0),
        incomplete_frames=rtp_.get("incomplete", 0),
        before_connect=edge.get("dropped_before_connect", 0),
        wrong_address=edge.get("dropped_wrong_address", 0),
        wrong_source=rtp_.get("wrong_source", 0) + rtcp.get("wrong_source", 0),
        unknown_payload_type=rtp_.get("unknown_payload_type", 0),
        unprotect_failed=edge.get("unprotect_failed", 0),
        malformed=counters["receive"].get("malformed", 0) + rtp_.get("malformed", 0),
        rejected_frame=counters["display"].get("rejected_frame", 0)
        + counters["display"].get("undecodable", 0),
        torn=sum(c.get("torn", 0) for c in counters.values()),
        peer_errors=counters["receive"].get("peer_errors", 0),
        send_errors=snd.get("send_errors", 0),
        waiting_keyframe=rcv.get("depacketizer", {}).get("waiting_keyframe", 0)
        + counters["receive"].get("waiting_keyframe", 0)
        + counters["display"].get("waiting_keyframe", 0),
    )
    if cpu:
        cpu = dict(cpu)
        cpu["total"] = round(sum(cpu.values()), 1)
    cap = stages.get("capture", {})
    return MediaStats(
        info=info,
        latency_ms=lat,
        codec=enc.get("codec") or dsp.get("codec"),
        fps_sent=snd.get("fps_sent", 0.0),
        fps_received=rcv.get("fps_received", 0.0),
        fps_shown=dsp.get("fps_shown", 0.0),
        fps_self_view=dsp.get("fps_self_view", 0.0),
        bitrate_sent_bps=snd.get("bitrate_bps", 0),
        bitrate_received_bps=rcv.get("bitrate_bps", 0),
        loss=LossStats(
            lost_packets=None if rtp is None else rtp.get("lost_packets"),
            lost_frames=jb.get("lost_frames", 0),  # the jitter buffer's count (V0 seq gaps)
            remote_fraction_lost=rtcp.get("remote_fraction_lost"),
            remote_cumulative_lost=rtcp.get("remote_cumulative_lost"),
        ),
        jitter_ms=rtp_.get("jitter_ms", jb.get("jitter_ms")),
        jitter_buffer_delay_ms=jb.get("delay_ms"),
        rtt_ms=rtcp.get("rtt_ms"),
        drops=drops,
        cpu_percent=cpu,
        source=cap.get("source", info.source),
        source_error=cap.get("error", ""),
        stages=stages,
        pli_sent=rtcp.get("plis_sent", 0),
        pli_received=rtcp.get("plis_received", 0),
        freezes=FreezeStats(**dsp["freezes"])
        if isinstance(dsp.get("freezes"), dict)
        else FreezeStats(),
        repair=_repair(rcv, snd),
        congestion=_congestion(rcv, snd, enc),
        audio=_audio(stages.get("audio", {})),
    )


def _audio(stage: Mapping[str, Any]) -> AudioStats:
    if not stage:
        return AudioStats()
    path = stage.get("path") or {}
    jitter = path.get("jitter") or {}
    bad = sum(path.get(k, 0) for k in ("malformed", "wrong_payload_type", "wrong_ssrc"))
    discarded = sum(
        jitter.get(k, 0) for k in ("late", "duplicates", "overflow", "shrunk", "flushed")
    )
    fallbacks = [f for f in (path.get("source_fallback"), path.get("sink_fallback")) if f]
    sync = path.get("sync") or {}
    return AudioStats(
        active=bool(stage.get("active")),
        sending=bool(stage.get("sending")) and bool(stage.get("active")),
        packets_sent=path.get("sent", 0),
        packets_received=path.get("received", 0),
        lost=jitter.get("lost", 0),
        concealed=jitter.get("concealed", 0),
        fec=jitter.get("fec", 0),
        late=jitter.get("late", 0),
        discarded=discarded + bad + path.get("decode_errors", 0),
        delay_ms=20.0 * jitter.get("target_frames", 0),
        jitter_ms=jitter.get("jitter_ms", 0.0),
        processing=path.get("processing", "none"),
        source=stage.get("source", ""),
        sink=stage.get("sink", ""),
        fallback="; ".join(str(f) for f in fallbacks),
        error=stage.get("error", ""),
        input_dbfs=path.get("input_dbfs", -100.0),
        volume=stage.get("volume", 1.0),
        sync_offset_ms=sync.get("offset_ms"),
        sync_delay_ms=sync.get("extra_ms", 0.0),
        underruns=jitter.get("underruns", 0),
        stretched=jitter.get("stretched", 0),
    )


def _repair(rcv: Mapping[str, Any], snd: Mapping[str, Any]) -> RepairStats:
    nack, rtcp = rcv.get("nack") or {}, rcv.get("rtcp") or {}
    return RepairStats(
        nacks_sent=rtcp.get("nacks_sent", 0),
        packets_requested=nack.get("requests", 0),
        recovered=nack.get("recovered", 0),
        abandoned=nack.get("abandoned", 0),
        superseded=nack.get("superseded", 0),
        nacks_received=rtcp.get("nacks_received", 0),
        retransmitted=snd.get("retransmitted", 0),
        rtx_repeats=(snd.get("counters") or {}).get("rtx_repeats", 0),
        repair_wait_ms=nack.get("repair_wait_ms", 0.0),
        repair_rtt_ms=nack.get("repair_rtt_ms"),
    )


def _congestion(
    rcv: Mapping[str, Any], snd: Mapping[str, Any], enc: Mapping[str, Any]
) -> CongestionStats:
    rate, bwe = rcv.get("send_rate") or {}, rcv.get("bwe") or {}
    ladder = enc.get("ladder")
    target = snd.get("target_bps")
    if isinstance(ladder, dict):
        # Short: the GUI shows it in one row of its statistics column.
        adaptation = (
            f"q{ladder.get('quality')} {round(100 * ladder.get('scale', 1.0))}% "
            f"{ladder.get('fps'):g} fps"
        )
    elif enc.get("encoder_bps") is not None:
        adaptation = f"{enc.get('codec_name', '')} {enc['encoder_bps'] / 1e6:.2f} Mbit/s".strip()
    else:
        adaptation = ""
    return CongestionStats(
        target_bps=target,
        target_reason=snd.get("target_reason", "") or rate.get("reason", ""),
        remb_received_bps=rate.get("remb_bps"),
        estimate_bps=bwe.get("estimate_bps"),
        estimator_state=bwe.get("state", "normal"),
        overuses=bwe.get("overuses", 0),
        adaptation=adaptation,
        pacer_queue=snd.get("pacer_queue", 0),
    )
