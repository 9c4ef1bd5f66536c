"""The audio path of a call: capture -> APM -> Opus -> RTP out; RTP in -> jitter -> decode -> play.

API::

    class AudioCodecParts(Protocol)      # what an audio codec of the registry provides
        info; audio_encoder(); audio_decoder(); packetizer(max_payload); depacketizer()
    def audio_codec(name: str = "opus") -> AudioCodecParts   # UnknownCodecError, AudioError
    @dataclass(frozen=True, slots=True)
    class AudioPathStats: sent; sent_bytes; send_errors; received; malformed; wrong_payload_type;
        wrong_ssrc; decode_errors; jitter: AudioJitterStats; depacketizer: DepacketizerStats;
        capture_cpu_s; playout_cpu_s; capture_started; playout_started;
        source_fallback; sink_fallback; processing; input_dbfs; volume; sync: SyncStats;
        rtcp_malformed
    class AudioPath:
        def __init__(self, *, source: AudioSource, sink: AudioSink,
                     send: Callable[[bytes], None], ssrc: int, peer_ssrc: int | None = None,
                     codec: str = "opus", processing: AudioProcessing | None = None,
                     jitter: AudioJitterBuffer | None = None, max_payload: int = 1200,
                     lip_sync: bool = True)   # False: measure the A/V offset, add no delay
        start() -> None                  # two threads: capture, playout
        receive(datagram, now=None) -> None   # from the session's socket thread; never raises
        set_sending(enabled: bool) -> None    # the call session's decision (mute, hold)
        set_volume(volume: float) -> None     # playout gain 0..MAX_VOLUME (1.0: as received)
        sender_info() -> SenderInfo | None    # for our audio SRs: counts, last RTP ts and the
                                              # monotonic instant it stands for
        on_rtcp(datagram) -> None             # the peer's SRs (audio and video): lip sync
        on_video(timing: VideoTiming) -> None # the peer video's timing (receive stage)
        stats -> AudioPathStats
        close() -> None                  # stops the threads, closes source and sink; idempotent

**Threads.** Capture: read a frame from the source (a device paces it; otherwise a 20 ms
``Pacer``), echo-cancel it against what was played (``process_capture``), encode, packetize,
``send(datagram)``. Playout: once per 20 ms (the sink's device clock, or a Pacer) pull the
jitter buffer's decision, decode / FEC / conceal / silence, give it to the APM as the far end
(``process_render``) and write it to the sink. Neither runs on the Tk thread and neither waits
for video: the session attaches ``send`` to the call's UDP socket and routes audio datagrams
(by payload type and SSRC) to ``receive``.

**Sending.** RFC 7587: one Opus packet per RTP packet, payload type from the codec (111),
timestamp in 48 kHz samples advancing 960 per frame even while not sending (so the receiver's
timeline stays right after a mute), marker on the first packet of a talkspurt (after start or
unmute, RFC 3551 4.1). ``set_sending(False)`` sends nothing; the source keeps being read (and
the APM fed) so that unmuting is instant.

**Receiving.** ``receive`` parses RTP (RFC 3550), drops and counts another payload type, another
SSRC than ``peer_ssrc`` (or, with None, than the first one heard), and what the depacketizer
refuses; valid packets go into the jitter buffer with the arrival time. It holds the buffer's
lock only for the push. Packets are 20 ms (what vcall sends); a peer's decoded frame of another
size is cut or padded to 20 ms (counted as ``decode_errors``).

**Lip sync** (``pipeline.audio.sync``): a frame's RTP timestamp stands for the monotonic instant
just before the source was read (the capture instant), which ``sender_info`` hands to the SR
(RFC 3550 6.4.1). On the way in, the peer's SRs and video timing feed a ``LipSync`` whose added
delay goes to the jitter buffer's ``extra_frames`` (rounded to frames); every frame decoded
from a packet reports when it was played.

**Level and volume.** ``input_dbfs`` is the RMS level of the captured frames after echo
cancellation, before the send decision (so the meter shows the microphone works while muted),
with a fall of ``LEVEL_FALL_DB`` per frame (a VU-like meter); ``MIN_DBFS`` for silence.
``set_volume`` scales what is played (and what the echo canceller hears as far end), clipped
to int16.

Guarantees: ``receive`` and ``on_rtcp`` never raise on any datagram; ``close`` joins both
threads within about one stall timeout of the devices; a send callback that raises
``OSError`` is counted (``send_errors``), never fatal.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from pipeline.audio.frames import FRAME_SAMPLES, AudioError, AudioSink, AudioSource, I16Array, Pacer
from pipeline.audio.jitter import AudioJitterBuffer, AudioJitterStats, PlayoutKind
from pipeline.audio.processing import AudioProcessing, PassThrough
from pipeline.audio.sync import LipSync, StreamKind, SyncStats, VideoTiming
from pipeline.codecs.base import CodecError, CodecInfo, Depacketizer, DepacketizerStats, Packetizer
from pipeline.codecs.registry import get_codec
from pipeline.wire.rtcp import RtcpError, SenderInfo, SenderReport, parse_rtcp
from pipeline.wire.rtp import RtpError, RtpPacket, rtp_header

logger = logging.getLogger(__name__)

MAX_VOLUME = 1.5
MIN_DBFS = -100.0
LEVEL_FALL_DB = 1.5  # per 20 ms frame: 75 dB/s


def rms_dbfs(pcm: I16Array) -> float:
    """RMS level of int16 samples in dB relative to full scale (a full-scale square wave is 0;
    a full-scale sine -3); MIN_DBFS for silence or an empty frame."""
    if len(pcm) == 0:
        return MIN_DBFS
    rms = float(np.sqrt(np.mean(np.square(pcm.astype(np.float64)))))
    if rms <= 0.0:
        return MIN_DBFS
    return max(MIN_DBFS, 20.0 * float(np.log10(rms / 32768.0)))


class _AudioEncoder(Protocol):
    def encode(self, pcm: I16Array) -> list[bytes]: ...


class _AudioDecoder(Protocol):
    backend: str

    def decode(self, packet: bytes) -> I16Array: ...

    def conceal(self, samples: int = ...) -> I16Array: ...

    def recover(self, next_packet: bytes, samples: int = ...) -> I16Array: ...


@runtime_checkable
class AudioCodecParts(Protocol):
    info: CodecInfo

    def audio_encoder(self) -> _AudioEncoder: ...

    def audio_decoder(self) -> _AudioDecoder: ...

    def packetizer(self, max_payload: int) -> Packetizer: ...

    def depacketizer(self) -> Depacketizer: ...


def audio_codec(name: str = "opus") -> AudioCodecParts:
    """The registry's codec ``name`` as an audio codec; AudioError if it is a video codec."""
    codec = get_codec(name)
    if not isinstance(codec, AudioCodecParts):
        raise AudioError(f"{name} is not an audio codec")
    return codec


@dataclass(frozen=True, slots=True)
class AudioPathStats:
    sent: int = 0  # RTP packets
    sent_bytes: int = 0  # RTP payload bytes
    send_errors: int = 0
    received: int = 0  # datagrams given to receive()
    malformed: int = 0  # not RTP
    wrong_payload_type: int = 0
    wrong_ssrc: int = 0
    decode_errors: int = 0
    jitter: AudioJitterStats = field(default_factory=AudioJitterStats)
    depacketizer: DepacketizerStats = field(default_factory=DepacketizerStats)
    capture_cpu_s: float = 0.0  # CPU time of the capture thread
    playout_cpu_s: float = 0.0
    capture_started: float | None = None  # monotonic time of the first frame read
    playout_started: float | None = None  # monotonic time of the first frame written
    source_fallback: str | None = None
    sink_fallback: str | None = None
    processing: str = "none"
    input_dbfs: float = MIN_DBFS
    volume: float = 1.0
    sync: SyncStats = field(default_factory=SyncStats)
    rtcp_malformed: int = 0  # RTCP from the peer that did not parse


class AudioPath:
    """One call's audio, both directions; see the module docstring."""

    def __init__(
        self,
        *,
        source: AudioSource,
        sink: AudioSink,
        send: Callable[[bytes], None],
        ssrc: int,
        peer_ssrc: int | None = None,
        codec: str = "opus",
        processing: AudioProcessing | None = None,
        jitter: AudioJitterBuffer | None = None,
        max_payload: int = 1200,
        lip_sync: bool = True,
    ) -> None:
        parts = audio_codec(codec)
        self._info = parts.info
        self._encoder = parts.audio_encoder()
        self._decoder = parts.audio_decoder()
        self._packetizer = parts.packetizer(max_payload)
        self._depacketizer = parts.depacketizer()
        self._source, self._sink, self._send = source, sink, send
        self._ssrc = ssrc & 0xFFFFFFFF
        self._peer_ssrc = peer_ssrc
        # The peer's video SSRC (audio - 2, pipeline.control.audio_ssrc_of): its SRs count too.
        self.video_ssrc: int | None = None if peer_ssrc is None else (peer_ssrc - 2) & 0xFFFFFFFF
        self._apm = processing or PassThrough()
        self._apm_lock = threading.Lock()
        self._jitter = jitter or AudioJitterBuffer(self._info.clock_rate, FRAME_SAMPLES)
        self._rx_lock = threading.Lock()
        self._stop = threading.Event()
        self._sending = True
        self._talkspurt = True  # the next packet starts one (marker bit)
        self._volume = 1.0
        self._level = MIN_DBFS
        self._sync = LipSync(audio_rate=self._info.clock_rate, act=lip_sync)
        self._sent_capture: tuple[int, float] | None = None  # (RTP ts, instant) of the last sent
        self._seq = int.from_bytes(np.random.default_rng().bytes(2), "big")
        self._ts = int.from_bytes(np.random.default_rng().bytes(4), "big")
        self._c: dict[str, Any] = dict.fromkeys(
            ("sent", "sent_bytes", "send_errors", "received", "malformed",
             "wrong_payload_type", "wrong_ssrc", "decode_errors", "rtcp_malformed"), 0
        )  # fmt: skip
        self._cpu = {"capture": 0.0, "playout": 0.0}
        self._started: dict[str, float | None] = {"capture": None, "playout": None}
        self._threads: list[threading.Thread] = []

    # -- control ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._threads:
            raise AudioError("audio path already started")
        for name, target in (("capture", self._capture_loop), ("playout", self._playout_loop)):
            thread = threading.Thread(target=target, name=f"audio-{name}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def set_sending(self, enabled: bool) -> None:
        """Send (True) or not (False: mute, hold); the capture keeps running."""
        if enabled and not self._sending:
            self._talkspurt = True
        self._sending = enabled

    @property
    def clock_rate(self) -> int:
        """The RTP clock of the audio codec (48000 for Opus, RFC 7587 4.1)."""
        return self._info.clock_rate

    def set_volume(self, volume: float) -> None:
        """Playout gain, clamped to 0..MAX_VOLUME (1.0 plays what was received)."""
        self._volume = max(0.0, min(MAX_VOLUME, float(volume)))

    def sender_info(self) -> SenderInfo | None:
        """What our audio SR needs (None before the first packet went out): totals, the last
        sent RTP timestamp and, as ``sent_ns``, the capture instant it stands for."""
        last = self._sent_capture
        if last is None:
            return None
        return SenderInfo(self._c["sent"], self._c["sent_bytes"], last[0], int(last[1] * 1e9))

    def on_rtcp(self, datagram: bytes | bytearray | memoryview) -> None:
        """A compound RTCP packet from the peer: its SRs of the peer's audio (our
        ``peer_ssrc``) and video (``video_ssrc``) streams feed lip sync; the rest is ignored."""
        try:
            packets = parse_rtcp(datagram)
        except RtcpError:
            self._c["rtcp_malformed"] += 1
            return
        peer = self._peer_ssrc
        for p in packets:
            if not isinstance(p, SenderReport) or peer is None:
                continue
            kind: StreamKind
            if p.ssrc == peer:
                kind = "audio"
            elif p.ssrc == self.video_ssrc:
                kind = "video"
            else:
                continue
            with self._rx_lock:
                self._sync.on_sender_report(kind, p.ntp_timestamp, p.rtp_timestamp)

    def on_video(self, timing: VideoTiming) -> None:
        """The peer video's newest frame timing: updates the lip-sync delay of the audio."""
        with self._rx_lock:
            self._sync.on_video(timing)
            frames = round(self._sync.extra_delay * self._info.clock_rate / FRAME_SAMPLES)
            self._jitter.extra_frames = frames

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        self._threads = []
        self._source.close()
        self._sink.close()

    # -- receiving (the session's socket thread) ----------------------------------------------

    def receive(self, datagram: bytes | bytearray | memoryview, now: float | None = None) -> None:
        """One datagram of the peer's audio stream; bad ones are counted and dropped."""
        now = time.monotonic() if now is None else now
        self._c["received"] += 1
        try:
            packet = RtpPacket.parse(datagram)
        except RtpError:
            self._c["malformed"] += 1
            return
        if packet.payload_type != self._info.payload_type:
            self._c["wrong_payload_type"] += 1
            return
        if self._peer_ssrc is None:
            self._peer_ssrc = packet.ssrc  # no token: lock on the first source heard
        elif packet.ssrc != self._peer_ssrc:
            self._c["wrong_ssrc"] += 1
            return
        frames = self._depacketizer.push(
            packet.sequence_number, packet.timestamp, packet.marker,
            memoryview(packet.payload), now,
        )  # fmt: skip
        if frames:
            with self._rx_lock:
                for f in frames:
                    self._jitter.push(packet.sequence_number, f.timestamp, f.data, now)

    # -- the two loops ---------------------------------------------------------------------

    def _capture_loop(self) -> None:
        pacer = Pacer()
        cpu0 = time.thread_time()
        try:
            while not self._stop.is_set():
                if not self._source.paced:
                    pacer.wait(self._stop)
                instant = time.monotonic()
                frame = self._source.read()
                if self._started["capture"] is None:
                    self._started["capture"] = instant
                with self._apm_lock:
                    frame = self._apm.process_capture(frame)
                self._level = max(rms_dbfs(frame), self._level - LEVEL_FALL_DB)
                self._send_frame(frame, instant)
                self._cpu["capture"] = time.thread_time() - cpu0
        except Exception:
            logger.exception("audio capture stopped")
            raise

    def _send_frame(self, frame: I16Array, instant: float) -> None:
        packets = self._encoder.encode(frame)
        if self._sending and packets:
            self._sent_capture = (self._ts, instant)
        if self._sending:
            for packet in packets:
                for payload in self._packetizer.payloads(packet, 0, 0):
                    header = rtp_header(
                        self._info.payload_type, self._seq, self._ts, self._ssrc, self._talkspurt
                    )
                    datagram = header + b"".join(bytes(p) for p in payload)
                    try:
                        self._send(datagram)
                        self._c["sent"] += 1
                        self._c["sent_bytes"] += len(datagram) - len(header)
                    except OSError:
                        self._c["send_errors"] += 1
                    self._talkspurt = False
                    self._seq = (self._seq + 1) & 0xFFFF
        self._ts = (self._ts + FRAME_SAMPLES) & 0xFFFFFFFF

    def _playout_loop(self) -> None:
        pacer = Pacer()
        cpu0 = time.thread_time()
        try:
            while not self._stop.is_set():
                if not self._sink.paced:
                    pacer.wait(self._stop)
                now = time.monotonic()
                with self._rx_lock:
                    decision = self._jitter.pull(now)
                    if decision.timestamp is not None:
                        self._sync.on_audio_played(decision.timestamp, now)
                frame = self._decode(decision.kind, decision.payload)
                volume = self._volume
                if volume != 1.0:
                    frame = np.clip(frame * volume, -32768, 32767).astype(np.int16)
                with self._apm_lock:
                    self._apm.process_render(frame)
                self._sink.write(frame)
                if self._started["playout"] is None:
                    self._started["playout"] = now
                self._cpu["playout"] = time.thread_time() - cpu0
        except Exception:
            logger.exception("audio playout stopped")
            raise

    def _decode(self, kind: PlayoutKind, payload: bytes | None) -> I16Array:
        try:
            if kind is PlayoutKind.FRAME and payload is not None:
                pcm = self._decoder.decode(payload)
            elif kind is PlayoutKind.FEC and payload is not None:
                pcm = self._decoder.recover(payload, FRAME_SAMPLES)
            elif kind is PlayoutKind.CONCEAL:
                pcm = self._decoder.conceal(FRAME_SAMPLES)
            else:
                return np.zeros(FRAME_SAMPLES, np.int16)
        except CodecError:
            self._c["decode_errors"] += 1
            return self._decoder_conceal()
        if len(pcm) != FRAME_SAMPLES:
            self._c["decode_errors"] += 1
            out = np.zeros(FRAME_SAMPLES, np.int16)
            out[: min(len(pcm), FRAME_SAMPLES)] = pcm[:FRAME_SAMPLES]
            return out
        return pcm

    def _decoder_conceal(self) -> I16Array:
        try:
            pcm = self._decoder.conceal(FRAME_SAMPLES)
        except CodecError:
            return np.zeros(FRAME_SAMPLES, np.int16)
        return pcm if len(pcm) == FRAME_SAMPLES else np.zeros(FRAME_SAMPLES, np.int16)

    @property
    def stats(self) -> AudioPathStats:
        with self._rx_lock:
            jitter = self._jitter.stats
            sync = self._sync.stats
        return AudioPathStats(
            **self._c,
            jitter=jitter,
            depacketizer=self._depacketizer.stats,
            capture_cpu_s=self._cpu["capture"],
            playout_cpu_s=self._cpu["playout"],
            capture_started=self._started["capture"],
            playout_started=self._started["playout"],
            source_fallback=self._source.fallback,
            sink_fallback=self._sink.fallback,
            processing=self._apm.backend,
            input_dbfs=round(self._level, 1),
            volume=self._volume,
            sync=sync,
        )
