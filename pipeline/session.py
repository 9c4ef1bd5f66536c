"""MediaSession: the controller's handle on one call's media pipeline (see docs/architecture.md).

``open()`` removes stale segments of dead controllers, creates this session's rings, binds the
UDP receive socket (and, for RTCP, the next port: the RTP port is even), and forks the five
stage processes from a launcher thread that lives until ``close()`` (so the parent-death
signal fires only when the controller really dies). ``connect()`` tells the stages where to
send and whom to accept. Everything else is a small control message on a pipe; pixels stay in
shared memory. ``close()`` stops the stages (stop message, then SIGTERM, then SIGKILL), closes
the sockets and unlinks every segment; it is idempotent.

Threading: every method is thread-safe (one lock), so the GUI's worker thread and the Tk
thread may share a session; ``latest()`` and ``notify_fd()`` are cheap and never wait for the
lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import multiprocessing
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt

from pipeline.codecs.base import Codec
from pipeline.codecs.registry import DEFAULT_VIDEO, get_codec
from pipeline.control import (
    AudioSpec,
    Connect,
    ControlMessage,
    MediaMode,
    PeerEndpoint,
    ResetStats,
    SetAudioSending,
    SetAudioVolume,
    SetDisplaySize,
    SetPreset,
    SetSending,
    SetSource,
    Stop,
    audio_ssrc_of,
)
from pipeline.errors import LocalProtocolError
from pipeline.ipc import lifecycle, shm
from pipeline.ipc.ring import Ring, RingReader, Ts
from pipeline.presets import DEFAULT_PRESET, Preset, get_preset
from pipeline.sources.video import parse_spec
from pipeline.stages import audio as audio_stage
from pipeline.stages import capture, display, encode, receive, send
from pipeline.stages.base import OPENCV_THREADS, Stage, StageContext, stage_main
from pipeline.stats import (
    STAGE_NAMES,
    CpuMeter,
    LatencyWindow,
    MediaStats,
    SessionInfo,
    StatsChannel,
    summarise,
)
from pipeline.transport import feedback
from pipeline.wire.sdp import SdpAudioLine, build_sdp

__all__ = ["Frame", "MediaMode", "MediaSession", "MediaSessionError", "PeerEndpoint"]

logger = logging.getLogger(__name__)

STAGES = STAGE_NAMES
RAW_SLOTS = 4
ENCODED_SLOTS = 4
# Frames released together after a repair (in order, an inter-frame codec) must all reach the
# display, which decodes them one by one (2-3 ms each at 720p) while the receive stage writes
# the whole burst within a millisecond or two, MAX_FRAMES_PER_TURN a loop turn: up to
# everything the jitter buffer held, and one more turn's worth for frames that complete
# meanwhile. With 12 slots, a hold of more than 12 frames (400 ms, at a bandwidth drop) lapped
# the display, which then saw a broken chain and waited for a keyframe behind the same full
# queues (likely the 841 ms freeze of one vcall bench network --profile step_5_1_5 run in
# which every lost packet was repaired). Pages are touched only as frames fill them: a normal
# call's slots hold a few MB; a peer sending frames near the 4 MiB cap could fill them all.
ENCODED_RX_SLOTS = receive.JITTER_MAX_FRAMES + receive.MAX_FRAMES_PER_TURN
AUDIO_SLOTS = 64  # 1.3 s of 20 ms packets: the audio stage reads them in order
AUDIO_CAPACITY = 1500  # one datagram (RFC 7587: one Opus packet per RTP packet)
FEEDBACK_SLOTS = 32  # NACK and rate messages; a reader that falls behind skips (counted)
RGB_SLOTS = 3
MAX_FRAME = (1920, 1080)
ENCODED_TX_CAPACITY = 2 * 1024 * 1024
ENCODED_RX_CAPACITY = 4 * 1024 * 1024  # the depacketizer's own frame cap
SELF_VIEW_MAX = (640, 480)
# Stage processes run this much nicer than the controller (see docs/architecture.md).
STAGE_NICE = 0
DEFAULT_PEER_VIEW = (640, 480)
DEFAULT_SELF_VIEW = (160, 120)
STOP_TIMEOUT_S = 2.0

U8Array = npt.NDArray[np.uint8]


class MediaSessionError(LocalProtocolError):
    """Local misuse of a MediaSession (wrong order of calls, bad arguments)."""


@dataclass(frozen=True, slots=True)
class Frame:
    """A displayed frame, copied out of shared memory: the caller owns ``image``."""

    image: U8Array  # (height, width, 3) uint8 RGB
    width: int
    height: int
    frame_id: int  # receive order (peer) or capture id (self view)
    capture_ns: int  # monotonic_ns at capture when known (pattern stamp / self view), else 0
    shown_ns: int  # monotonic_ns when the display stage finished it
    pattern_id: int  # the test pattern's embedded frame id (0 if not the pattern)
    source_size: tuple[int, int]  # (width, height) of the frame before scaling for display


class MediaSession:
    def __init__(
        self,
        *,
        source: str = "pattern",
        preset: str | Preset = DEFAULT_PRESET,
        bind_ip: str = "0.0.0.0",
        rx_port: int = 0,
        codec: str = DEFAULT_VIDEO,
        jpeg_backend: str = "auto",
        v0_max_bytes: int | None = None,
        peer_view: tuple[int, int] = DEFAULT_PEER_VIEW,
        self_view: tuple[int, int] = DEFAULT_SELF_VIEW,
        stage_nice: int = STAGE_NICE,
        audio: AudioSpec | None = None,
    ) -> None:
        parse_spec(source)  # a malformed spec is the caller's mistake: raise now
        # Audio (issue 12) is one more stage, only when asked for: video-only sessions (tests,
        # benchmarks, the classic path) are unchanged.
        self._audio = audio
        self._stage_names: tuple[str, ...] = STAGES + (("audio",) if audio is not None else ())
        self._audio_sending = True
        self._source = source
        self._codec: Codec = get_codec(codec)
        self._preset = self._checked(preset)
        self._bind_ip = bind_ip
        self._rx_port = rx_port
        self._backend = jpeg_backend
        self._v0_max = v0_max_bytes
        self._peer_box = peer_view
        self._self_box = self_view
        self._stage_nice = stage_nice
        self._state: Literal["new", "open", "closed"] = "new"
        self._lock = threading.RLock()
        self._peer: PeerEndpoint | None = None
        self._audio_port: int | None = None  # connect(audio_port=...): audio to its own port
        self._sending = True
        self._segments: shm.SegmentSet | None = None
        self._rings: dict[str, Ring] = {}
        self._stats: dict[str, StatsChannel] = {}
        self._controls: dict[str, Connection] = {}
        self._procs: dict[str, lifecycle.ChildProcess] = {}
        self._socks: list[socket.socket] = []
        self._watchdog: lifecycle.Watchdog | None = None
        self._launcher: lifecycle.Launcher | None = None
        self._notify = -1
        self._kf_request = -1
        self._kf_needed = -1
        self._readers: dict[str, RingReader] = {}
        self._cached: dict[str, tuple[int, Frame]] = {}
        self._read_latency = LatencyWindow()
        self._cpu = CpuMeter()
        self._opened_ns = 0

    # -- lifecycle --------------------------------------------------------------------------
    def open(self) -> int:
        """Bind the receive socket(s), start the stage processes; returns the RTP rx port."""
        with self._lock:
            if self._state != "new":
                raise MediaSessionError(f"open() on a {self._state} session")
            self._state = "open"
            try:
                self._open()
            except BaseException:
                self.close()
                raise
            return self._rx_port

    def _open(self) -> None:
        shm.remove_stale()
        self._segments = seg = shm.SegmentSet()
        frame_max = max(MAX_FRAME[0] * MAX_FRAME[1] * 3, self._preset.frame_bytes)
        peer_max = max(frame_max, self._peer_box[0] * self._peer_box[1] * 3)
        self._notify = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        # Keyframe feedback: receive -> encode (the peer asked, RTCP PLI/FIR) and
        # display -> receive (our decoder lost the chain: ask the peer).
        self._kf_request = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._kf_needed = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        r = self._rings
        r["raw"] = Ring.create(seg, "raw", n_slots=RAW_SLOTS, capacity=frame_max, n_readers=2)
        r["etx"] = Ring.create(seg, "etx", n_slots=ENCODED_SLOTS, capacity=ENCODED_TX_CAPACITY)
        r["erx"] = Ring.create(seg, "erx", n_slots=ENCODED_RX_SLOTS, capacity=ENCODED_RX_CAPACITY)
        r["txinfo"] = Ring.create(seg, "txinfo", n_slots=2, capacity=64, n_readers=0)
        # receive -> send (NACKs, target rate) and -> encode (target rate): reader 0 and 1.
        r["feedback"] = Ring.create(
            seg, "feedback", n_slots=FEEDBACK_SLOTS, capacity=feedback.CAPACITY, n_readers=2
        )
        r["peer"] = Ring.create(
            seg, "peer", n_slots=RGB_SLOTS, capacity=peer_max, reader_fds=[self._notify]
        )
        r["self"] = Ring.create(
            seg,
            "self",
            n_slots=RGB_SLOTS,
            capacity=SELF_VIEW_MAX[0] * SELF_VIEW_MAX[1] * 3,
            reader_fds=[self._notify],
        )
        if self._audio is not None:
            r["arx"] = Ring.create(seg, "arx", n_slots=AUDIO_SLOTS, capacity=AUDIO_CAPACITY)
        for name in self._stage_names:
            self._stats[name] = StatsChannel.create(seg, name)
        rtp, rtcp = receive.bind_rx_sockets(self._bind_ip, self._rx_port)
        self._socks = [rtp, rtcp]
        self._rx_port = rtp.getsockname()[1]
        self._watchdog = lifecycle.Watchdog()
        p = self._preset
        factories: dict[str, Callable[[StageContext], Stage]] = {
            "capture": functools.partial(
                capture.CaptureStage,
                raw=r["raw"],
                spec=self._source,
                preset=p,
                raw_formats=self._codec.info.raw_formats,
            ),
            "encode": functools.partial(
                encode.EncodeStage,
                raw=r["raw"],
                raw_reader=0,
                encoded_tx=r["etx"],
                preset=p,
                codec=self._codec,
                backend=self._backend,
                v0_max_bytes=self._v0_max,
                keyframe_request=self._kf_request,
                feedback_ring=r["feedback"],
                feedback_reader=1,
            ),
            "send": functools.partial(
                send.SendStage,
                encoded_tx=r["etx"],
                txinfo=r["txinfo"],
                fps=p.fps,
                codec=self._codec,
                keyframe_request=self._kf_request,
                feedback_ring=r["feedback"],
            ),
            "receive": functools.partial(
                receive.ReceiveStage,
                rtp_sock=rtp,
                rtcp_sock=rtcp,
                encoded_rx=r["erx"],
                txinfo=r["txinfo"],
                codec=self._codec,
                keyframe_request=self._kf_request,
                keyframe_needed=self._kf_needed,
                feedback_ring=r["feedback"],
                audio_rx=r.get("arx"),
            ),
            "display": functools.partial(
                display.DisplayStage,
                encoded_rx=r["erx"],
                raw=r["raw"],
                raw_reader=1,
                rgb_peer=r["peer"],
                rgb_self=r["self"],
                peer_box=self._peer_box,
                self_box=self._self_box,
                codec=self._codec,
                backend=self._backend,
                keyframe_needed=self._kf_needed,
            ),
        }
        if self._audio is not None:
            factories["audio"] = functools.partial(
                audio_stage.AudioStage, audio_rx=r["arx"], spec=self._audio
            )
        self._launcher = lifecycle.Launcher(lambda: self._start_stages(factories))
        self._launcher.run()
        for name, proc in self._procs.items():
            if proc.pid is not None:
                self._cpu.track(name, proc.pid)
        self._cpu.track("controller", os.getpid())
        self._readers = {k: RingReader(r[k], self._notify) for k in ("peer", "self")}
        self._opened_ns = time.monotonic_ns()
        logger.info(
            "media session open: rx port %d, %s, %s, %s, %dx%d@%d",
            self._rx_port,
            self._codec.info.name,
            self._source,
            p.name,
            p.width,
            p.height,
            p.fps,
        )

    def _start_stages(self, factories: dict[str, Callable[[StageContext], Stage]]) -> None:
        assert self._watchdog is not None
        # What every stage keeps after fork: the session's eventfds (a writer wakes all the
        # readers of its ring); the receive stage also keeps the sockets. Everything else the
        # controller has open is closed in the child (lifecycle.child_init).
        eventfds = {self._notify, self._kf_request, self._kf_needed}
        for ring in self._rings.values():
            eventfds.update(ring.reader_fds)
        sock_fds = tuple(s.fileno() for s in self._socks)
        wallclock_offset = time.time() - time.monotonic()  # one for every stage's SRs
        # Inherited by every stage; in this process too (see OPENCV_THREADS for why here).
        cv2.setNumThreads(OPENCV_THREADS)
        for name in self._stage_names:
            reader, writer = multiprocessing.Pipe(duplex=False)
            self._controls[name] = writer
            ctx = StageContext(
                name=name,
                controller_pid=os.getpid(),
                watchdog_fd=self._watchdog.read_fd,
                control=reader,
                stats=self._stats[name],
                keep_fds=(*eventfds, *(sock_fds if name == "receive" else ())),
                nice=self._stage_nice,
                wallclock_offset=wallclock_offset,
            )
            proc = lifecycle.ChildProcess(
                f"vcall-{name}", functools.partial(stage_main, ctx, factories[name])
            )
            proc.start()
            reader.close()
            self._procs[name] = proc

    def close(self) -> None:
        """Stop the stages, close sockets, unlink segments. Idempotent; never raises."""
        with self._lock:
            if self._state == "closed":
                return
            self._state = "closed"
            self._stop_stages()
            if self._launcher is not None:
                self._launcher.close()
                self._launcher = None  # it references the rings: let their mappings go
            for conn in self._controls.values():
                conn.close()
            self._controls.clear()
            for sock in self._socks:
                sock.close()
            self._socks = []
            if self._watchdog is not None:
                self._watchdog.close()
            for ring in self._rings.values():
                ring.close()
            for fd in (self._notify, self._kf_request, self._kf_needed):
                if fd >= 0:
                    os.close(fd)
            self._notify = self._kf_request = self._kf_needed = -1
            self._readers.clear()
            self._cached.clear()
            self._rings.clear()
            self._stats.clear()
            if self._segments is not None:
                self._segments.close()
            logger.info("media session closed")

    def _stop_stages(self) -> None:
        for conn in self._controls.values():
            with contextlib.suppress(OSError, ValueError):
                conn.send(Stop())
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in self._procs.values():
            proc.join(max(0.0, deadline - time.monotonic()))
        for proc in self._procs.values():
            if proc.is_alive():
                logger.warning("stage %s did not stop: terminating", proc.name)
                proc.terminate()
                proc.join(1.0)
            if proc.is_alive():
                proc.kill()
                proc.join(1.0)
            if proc.exitcode not in (0, None):
                logger.warning("stage %s exited with %s", proc.name, proc.exitcode)
            proc.close()
        self._procs.clear()

    def __enter__(self) -> MediaSession:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- control ----------------------------------------------------------------------------
    def _send(self, msg: ControlMessage, *stages: str) -> None:
        if self._state != "open":
            raise MediaSessionError(f"session is {self._state}, not open")
        for name in stages or self._stage_names:
            try:
                self._controls[name].send(msg)
            except (OSError, ValueError) as exc:  # the stage died: close() will reap it
                logger.warning("control message to %s failed: %s", name, exc)

    def connect(self, peer: PeerEndpoint, *, audio_port: int | None = None) -> None:
        """Start sending to, and accepting from, ``peer``.

        ``audio_port``: send the audio (if any) to this port of the peer instead of the video
        port, for a tool in the peer's place (ffmpeg's SDP reader binds one socket per m-line:
        docs/interop.md); a vcall peer takes both on ``peer.rx_port``. ``sdp()`` then describes
        the audio too. MediaSessionError if it meets the video RTP/RTCP ports."""
        if audio_port is not None and (
            not 0 < audio_port < 65535 or abs(audio_port - peer.rx_port) < 2
        ):
            raise MediaSessionError(f"bad audio port {audio_port} (video {peer.rx_port})")
        try:
            mode = MediaMode(peer.mode)  # a plain "rtp" / "v0" is accepted too
        except ValueError:
            raise MediaSessionError(f"unknown media mode {peer.mode!r}") from None
        try:
            codec = get_codec(peer.codec)
        except LocalProtocolError as exc:
            raise MediaSessionError(str(exc)) from None
        if mode not in codec.info.modes:
            raise MediaSessionError(f"{codec.info.name} is not carried in {peer.mode}")
        if not 0 < peer.rx_port < 65536:
            raise MediaSessionError(f"bad peer port {peer.rx_port}")
        try:  # an IP address, canonical text; a host name is resolved once, here
            ip = socket.getaddrinfo(peer.ip, None, socket.AF_INET, socket.SOCK_DGRAM)[0][4][0]
        except (OSError, UnicodeError) as exc:
            raise MediaSessionError(f"bad peer address {peer.ip!r}: {exc}") from None
        peer = dataclasses.replace(peer, ip=str(ip), mode=mode, codec=codec.info.name)
        with self._lock:
            self._peer = peer
            self._codec = codec
            self._audio_port = audio_port
            self._send(Connect(peer), "capture", "encode", "send", "receive", "display")
            if self._audio is not None:
                to = peer if audio_port is None else dataclasses.replace(peer, rx_port=audio_port)
                self._send(Connect(to), "audio")

    def set_sending(self, enabled: bool) -> None:
        with self._lock:
            self._sending = enabled
            self._send(SetSending(enabled), "encode", "send")

    def set_audio_sending(self, enabled: bool) -> None:
        """Send audio or not (no-op without audio): the call session's decision (not held, not
        muted), as ``set_sending`` is for video."""
        with self._lock:
            self._audio_sending = enabled
            if self._audio is not None:
                self._send(SetAudioSending(enabled), "audio")

    def set_audio_volume(self, volume: float) -> None:
        """The speaker volume of the call, 0.0..1.5 (1.0: as received; no-op without audio)."""
        with self._lock:
            if self._audio is not None:
                self._send(SetAudioVolume(min(max(volume, 0.0), 1.5)), "audio")

    @property
    def has_audio(self) -> bool:
        return self._audio is not None

    def set_preset(self, name: str | Preset) -> None:
        preset = self._checked(name)
        with self._lock:
            if self._rings and preset.frame_bytes > self._rings["raw"].capacity:
                raise MediaSessionError(f"preset {preset.name} exceeds {MAX_FRAME}")
            self._preset = preset
            self._send(SetPreset(preset), "capture", "encode", "send")

    def set_source(self, spec: str) -> None:
        parse_spec(spec)
        with self._lock:
            self._source = spec
            self._send(SetSource(spec), "capture")

    def set_display_size(self, peer: tuple[int, int], self_view: tuple[int, int]) -> None:
        for w, h in (peer, self_view):
            if w <= 0 or h <= 0:
                raise MediaSessionError(f"display sizes must be positive: {peer}, {self_view}")
        with self._lock:
            self._peer_box, self._self_box = peer, self_view
            self._send(SetDisplaySize(peer, self_view), "display")

    # -- frames -----------------------------------------------------------------------------
    def notify_fd(self) -> int:
        """An eventfd, readable when a new peer or self-view frame is ready (``latest`` drains
        it)."""
        if self._notify < 0:
            raise MediaSessionError("session is not open")
        return self._notify

    def latest(self) -> tuple[Frame | None, Frame | None]:
        """The newest peer and self-view frames (copies); never blocks."""
        # Never wait for the lock: close() holds it while stages stop, and the Tk thread must
        # not stall meanwhile; the frames already handed out are as good as any then.
        if not self._lock.acquire(blocking=False):
            return self._cached_frames()
        try:
            if self._state != "open":
                return None, None
            with contextlib.suppress(BlockingIOError):
                os.eventfd_read(self._notify)
            return self._latest("peer"), self._latest("self")
        finally:
            self._lock.release()

    def _cached_frames(self) -> tuple[Frame | None, Frame | None]:
        peer, mine = self._cached.get("peer"), self._cached.get("self")
        return (peer[1] if peer else None), (mine[1] if mine else None)

    def _latest(self, kind: str) -> Frame | None:
        reader = self._readers[kind]
        for _ in range(3):
            desc = reader.peek()
            if desc is None:
                return None
            cached = self._cached.get(kind)
            if cached is not None and cached[0] == desc.seq:
                return cached[1]
            image = reader.array(desc).copy()
            if not reader.valid(desc):
                continue
            shown = desc.stamp(Ts.DISPLAYED)
            if kind == "peer":
                self._read_latency.add_ns(time.monotonic_ns() - shown)
            frame = Frame(
                image=image,
                width=desc.width,
                height=desc.height,
                frame_id=desc.frame_id,
                capture_ns=desc.stamp(Ts.CAPTURE),
                shown_ns=shown,
                pattern_id=desc.pattern_id,
                source_size=(desc.source_width, desc.source_height),
            )
            self._cached[kind] = (desc.seq, frame)
            return frame
        return None

    # -- information ------------------------------------------------------------------------
    def sdp(self) -> str:
        """An SDP describing the RTP streams we send (for ffmpeg/GStreamer); rtp mode only.

        The video; the audio when it has a port of its own (``connect(audio_port=...)``: an
        SDP reader cannot take two m-lines on one port); with SRTP, ``RTP/SAVP`` and our send
        key in ``a=crypto`` (RFC 4568): save it with ``pipeline.wire.sdp.write_sdp`` (0600)."""
        peer = self._peer
        if peer is None or peer.mode is not MediaMode.RTP:
            raise MediaSessionError("sdp() needs a session connected in rtp mode")
        info, p = self._codec.info, self._preset
        audio = None
        if self._audio is not None and self._audio_port is not None:
            ssrc = audio_ssrc_of(peer.local_ssrc) if peer.local_ssrc else None
            audio = SdpAudioLine(self._audio_port, ssrc=ssrc)
        return build_sdp(
            peer.ip,
            peer.rx_port,
            payload_type=info.payload_type,
            rtpmap=info.rtpmap,
            fmtp=self._codec.sdp_fmtp(p.width, p.height, p.fps, p.bitrate_bps),
            ssrc=peer.local_ssrc or None,
            framerate=self._preset.fps,
            audio=audio,
            srtp_key=peer.tx_key,
        )

    @property
    def rx_port(self) -> int:
        return self._rx_port

    def stats(self) -> MediaStats:
        """A snapshot: latencies (ms), rates, loss, RTT, drops, CPU (``.to_dict()`` for JSON)."""
        with self._lock:
            stages = {k: ch.read() or {} for k, ch in self._stats.items()}
            cpu = self._cpu.sample() if self._state == "open" else {}
            return summarise(self._describe(), stages, cpu)

    def reset_stats(self) -> None:
        """Start the latency windows and counters afresh (benchmarks: after warm-up)."""
        with self._lock:
            self._read_latency = LatencyWindow()
            self._cpu.sample()
            self._send(ResetStats())

    def _describe(self) -> SessionInfo:
        p = self._preset
        peer = self._peer
        return SessionInfo(
            state=self._state,
            rx_port=self._rx_port,
            mode=None if peer is None else str(peer.mode),
            peer=None if peer is None else f"{peer.ip}:{peer.rx_port}",
            sending=self._sending,
            preset=p,
            source=self._source,
            codec_name=self._codec.info.name,
            uptime_s=round((time.monotonic_ns() - self._opened_ns) / 1e9, 3)
            if self._opened_ns
            else 0.0,
            controller_read_ms=self._read_latency.summary(),
            dead_stages=tuple(
                sorted(name for name, proc in self._procs.items() if proc.poll() is not None)
            ),
        )

    def _checked(self, preset: str | Preset) -> Preset:
        """The preset, checked against what the codec's payload format can carry."""
        p = preset if isinstance(preset, Preset) else get_preset(preset)
        try:
            self._codec.info.check_size(p.width, p.height)
        except LocalProtocolError as exc:
            raise MediaSessionError(f"preset {p.name}: {exc}") from None
        return p
