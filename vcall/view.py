"""``vcall view --rtp PORT``: show an RTP video stream (JPEG RFC 2435, H.264 RFC 6184) from any
sender.

Usage::

    vcall view (--rtp 5004 | --sdp stream.sdp) [--bind IP] [--ssrc N] [--frames N]
               [--seconds S] [--save-last out.png] [--stats-json stats.json] [--headless]

It receives on UDP ``PORT`` (or the port and payload type of the SDP's first RTP/JPEG video
stream, e.g. one written by ``ffmpeg -sdp_file``; RTCP on PORT+1 is not read), receives them
through the same stream layer as a call (:class:`pipeline.transport.stream.RtpReceiver` and the
codec's depacketizer), plays them out through the jitter buffer, decodes them to RGB and shows
them in a Tk window (or, with ``--headless``, only counts them).
A line of counts is printed every second and a summary at the end; ``--stats-json`` writes the
same figures (plus the mean colour of the last frame) as JSON. Every datagram or frame thrown
away is counted under a named reason (:data:`DISCARD_REASONS`); the line's "dropped" is the sum
of all of them, followed by the reasons that are not zero. It stops after ``--frames``
frames, after ``--seconds``, when the window is closed, on SIGTERM or on Ctrl-C. Exit status
0 when at least one frame was shown, 1 otherwise.

Layers: :class:`Viewer` is the pure core (datagrams in, decoded frames and statistics out, time
passed in); :func:`receive_loop` is the thin socket adapter; the Tk window only polls the
newest frame with ``after()`` and never touches the socket.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import signal
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from pipeline.codecs.base import Codec, CodecError, CodecFrame, VideoDecoder
from pipeline.codecs.registry import DEFAULT_VIDEO, codecs, get_codec
from pipeline.control import MediaMode
from pipeline.errors import RemoteProtocolError
from pipeline.jitter import JitterBuffer
from pipeline.transport.edge import IDENTITY, Protection, ReplayError
from pipeline.transport.srtp import SrtpProtection
from pipeline.transport.stream import RtpReceiver
from pipeline.wire.sdp import SdpError, parse_sdp

logger = logging.getLogger(__name__)

RGB = npt.NDArray[np.uint8]
MAX_DATAGRAM = 65536
RECV_BUFFER = 4 << 20  # a 1080p frame is ~150 packets: absorb a burst of a few frames
POLL_S = 0.05  # socket timeout: how often the loop checks for the end
MAX_SDP_FILE = 64 * 1024


def add_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--rtp", type=int, metavar="PORT", help="UDP port (with --codec)")
    where.add_argument("--sdp", metavar="FILE", help="take port and payload type from an SDP")
    parser.add_argument("--bind", default="0.0.0.0", metavar="IP", help="local address")
    parser.add_argument(
        "--codec", default=DEFAULT_VIDEO, help="with --rtp: the codec (vcall codecs; JPEG)"
    )
    parser.add_argument(
        "--ssrc", type=lambda s: int(s, 0), default=None, help="accept only this SSRC"
    )
    parser.add_argument("--frames", type=int, default=None, help="stop after N frames")
    parser.add_argument("--seconds", type=float, default=None, help="stop after S seconds")
    parser.add_argument("--save-last", default=None, metavar="PNG", help="save the last frame")
    parser.add_argument("--stats-json", default=None, metavar="FILE", help="write statistics")
    parser.add_argument("--headless", action="store_true", help="no window (tests, servers)")


@dataclass(slots=True)
class ViewerCounts:
    frames: int = 0  # decoded and shown
    decode_errors: int = 0
    srtp_auth_failed: int = 0  # SRTP (an RTP/SAVP SDP): not authenticated by the SDP's key
    srtp_replayed: int = 0  # SRTP: an index already seen (RFC 3711 3.3.2)
    width: int = 0
    height: int = 0
    last_mean_rgb: list[float] = field(default_factory=list)


class Viewer:
    """Datagrams in, decoded RGB frames out. No socket, no clock, no window."""

    def __init__(
        self,
        codec: Codec,
        ssrc: int | None = None,
        payload_type: int | None = None,
        srtp_key: bytes | None = None,
    ) -> None:
        """``srtp_key``: the SDP's a=crypto master key and salt (RFC 4568): datagrams are
        SRTP and are authenticated and decrypted first (RFC 3711), failures counted."""
        self.codec = codec
        self.protection: Protection = (
            IDENTITY if srtp_key is None else SrtpProtection(tx_key=None, rx_key=srtp_key)
        )
        self.decoder: VideoDecoder = codec.decoder()
        self.receiver = RtpReceiver()
        self.stream = self.receiver.add_stream(
            codec.depacketizer(),
            payload_type=codec.info.payload_type if payload_type is None else payload_type,
            clock_rate=codec.info.clock_rate,
            expected_ssrc=ssrc,
        )
        self.jitter: JitterBuffer[CodecFrame] = JitterBuffer(
            clock_rate=codec.info.clock_rate, skip_older=codec.info.intra_only
        )
        self.counts = ViewerCounts()
        self.last: RGB | None = None

    def push(self, datagram: bytes, now: float) -> None:
        if self.protection is not IDENTITY:
            try:
                datagram = self.protection.unprotect(datagram)
            except ReplayError:
                self.counts.srtp_replayed += 1
                return
            except RemoteProtocolError:
                self.counts.srtp_auth_failed += 1
                return
        for frame in self.receiver.push(datagram, now):
            self.jitter.push(frame, frame.timestamp, now)

    def next_due(self, now: float) -> float | None:
        return self.jitter.next_due(now)

    def pop(self, now: float) -> RGB | None:
        """Decode and return the frame due now, if any."""
        self.receiver.expire(now)
        frame = self.jitter.pop(now)
        if frame is None:
            return None
        try:
            width, height = self.decoder.frame_size(frame.data)
            rgb: RGB = np.empty((height, width, 3), dtype=np.uint8)
            self.decoder.decode_rgb_into(frame.data, rgb)
        except CodecError as exc:
            self.counts.decode_errors += 1
            logger.debug("undecodable frame ts=%d: %s", frame.timestamp, exc)
            return None
        self.counts.frames += 1
        self.counts.height, self.counts.width = rgb.shape[:2]
        self.last = rgb
        return rgb

    def stats(self) -> dict[str, Any]:
        counts = asdict(self.counts)
        if self.last is not None:
            counts["last_mean_rgb"] = [round(float(v), 2) for v in self.last.mean(axis=(0, 1))]
        return {
            **counts,
            "reassembler": self.rtp_stats(),
            "jitter": asdict(self.jitter.stats),
            "codec": self.decoder.backend,
            "codec_name": self.codec.info.name,
            "discards": discards(self),
            "dropped": sum(discards(self).values()),
        }

    def rtp_stats(self) -> dict[str, int]:
        """The stream's counters, RTP-level garbage included in ``malformed``."""
        counts = asdict(self.stream.stats)
        counts["malformed"] += self.receiver.malformed
        counts["unknown_payload_type"] = self.receiver.unknown_payload_type
        return counts


# Every reason a datagram or a frame is thrown away between the socket and the screen, as
# (name, where the count lives, its key there). Packets: RFC 3550 5.1/8.2 (another SSRC, a
# repeated sequence number), the payload format's own checks (RFC 2435 / RFC 6184); frames: the
# reassembler's given-up frames, the jitter buffer's playout rules, the decoder.
DISCARD_REASONS: tuple[tuple[str, str, str], ...] = (
    ("wrong source", "rtp", "wrong_source"),
    ("malformed", "rtp", "malformed"),
    ("unknown payload type", "rtp", "unknown_payload_type"),
    ("duplicate packets", "rtp", "duplicates"),
    ("late packets", "rtp", "late"),
    ("unsupported", "rtp", "unsupported"),
    ("incomplete frames", "rtp", "incomplete"),
    ("late frames", "jitter", "late"),
    ("duplicate frames", "jitter", "duplicates"),
    ("skipped frames", "jitter", "skipped"),
    ("overflow", "jitter", "overflow"),
    ("undecodable", "viewer", "decode_errors"),
    ("SRTP authentication failed", "viewer", "srtp_auth_failed"),
    ("SRTP replayed", "viewer", "srtp_replayed"),
)


def discards(viewer: Viewer) -> dict[str, int]:
    """Every discard so far by reason (:data:`DISCARD_REASONS` names; zeros included)."""
    sources: dict[str, dict[str, Any]] = {
        "rtp": viewer.rtp_stats(),
        "jitter": asdict(viewer.jitter.stats),
        "viewer": asdict(viewer.counts),
    }
    return {name: int(sources[where][key]) for name, where, key in DISCARD_REASONS}


def status_line(viewer: Viewer, elapsed: float) -> str:
    """The one-line summary: frames, size, lost packets and every discard, by reason."""
    r = viewer.rtp_stats()
    counts = discards(viewer)
    reasons = ", ".join(f"{name} {n}" for name, n in counts.items() if n)
    line = (
        f"view: {elapsed:5.1f} s  frames {viewer.counts.frames}  "
        f"{viewer.counts.width}x{viewer.counts.height}  lost packets {r['lost_packets']}  "
        f"dropped {sum(counts.values())}"
    )
    return f"{line} ({reasons})" if reasons else line


class _Shared:
    """The newest frame, handed from the receive thread to the Tk thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.frame: RGB | None = None
        self.stop = threading.Event()


def receive_loop(
    sock: socket.socket,
    viewer: Viewer,
    shared: _Shared,
    frames: int | None,
    seconds: float | None,
) -> None:
    """Move datagrams from the socket into the viewer until a limit or ``shared.stop``."""
    start = time.monotonic()
    next_print = start + 1.0
    while not shared.stop.is_set():
        now = time.monotonic()
        due = viewer.next_due(now)
        sock.settimeout(POLL_S if due is None else max(min(due, POLL_S), 0.0005))
        try:
            data = sock.recv(MAX_DATAGRAM)
        except TimeoutError:
            data = b""
        now = time.monotonic()
        if data:
            viewer.push(data, now)
        rgb = viewer.pop(now)
        if rgb is not None:
            with shared.lock:
                shared.frame = rgb
        if now >= next_print:
            _print_counts(viewer, now - start)
            next_print = now + 1.0
        if frames is not None and viewer.counts.frames >= frames:
            break
        if seconds is not None and now - start >= seconds:
            break
    shared.stop.set()


def _print_counts(viewer: Viewer, elapsed: float) -> None:
    print(status_line(viewer, elapsed), flush=True)


def _run_window(shared: _Shared, title: str) -> None:  # pragma: no cover - needs a display
    import tkinter as tk  # noqa: PLC0415 - headless runs (tests, servers) never load Tk

    try:
        root = tk.Tk()
    except tk.TclError as exc:
        print(f"vcall view: no display ({exc}); use --headless", file=sys.stderr)
        shared.stop.set()
        return
    root.title(title)
    label = tk.Label(root, text="waiting for RTP/JPEG...", width=60, height=10)
    label.pack(fill="both", expand=True)
    photo: list[tk.PhotoImage] = []

    def poll() -> None:
        if shared.stop.is_set():
            root.destroy()
            return
        with shared.lock:
            rgb, shared.frame = shared.frame, None
        if rgb is not None:
            h, w = rgb.shape[:2]
            ppm = b"P6 %d %d 255\n" % (w, h) + rgb.tobytes()
            if photo and (photo[0].width(), photo[0].height()) == (w, h):
                photo[0].configure(data=ppm, format="PPM")  # in place: no new image per frame
            else:
                photo[:] = [tk.PhotoImage(data=ppm, format="PPM")]
                label.configure(image=photo[0], text="", width=w, height=h)
        root.after(10, poll)

    root.protocol("WM_DELETE_WINDOW", shared.stop.set)
    root.after(10, poll)
    root.mainloop()


def _stream(args: argparse.Namespace) -> tuple[int, int | None, str, bytes | None]:
    """(port, payload type, codec name, SRTP key) from --rtp [--codec] or --sdp (payload type
    None: the codec's own; key None: plain RTP); ValueError with a message for the user."""
    if args.sdp is None:
        return int(args.rtp), None, args.codec, None
    try:
        with open(args.sdp, encoding="utf-8", errors="replace") as fh:
            names = [c.info.name for c in codecs() if MediaMode.RTP in c.info.modes]
            video = parse_sdp(fh.read(MAX_SDP_FILE), names)
    except (OSError, SdpError) as exc:
        raise ValueError(f"cannot use {args.sdp}: {exc}") from exc
    if video.address and ipaddress.ip_address(video.address).is_multicast:
        raise ValueError(f"{args.sdp}: multicast ({video.address}) is not supported")
    return video.port, video.payload_type, video.encoding, video.srtp_key


def run(args: argparse.Namespace) -> int:
    try:
        port, payload_type, codec_name, srtp_key = _stream(args)
        codec = get_codec(codec_name)
    except ValueError as exc:
        print(f"vcall view: {exc}", file=sys.stderr)
        return 2
    args.rtp = port
    viewer = Viewer(codec, args.ssrc, payload_type, srtp_key)
    shared = _Shared()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER)
        sock.bind((args.bind, args.rtp))
    except OSError as exc:
        sock.close()
        print(f"vcall view: cannot listen on {args.bind}:{args.rtp}: {exc}", file=sys.stderr)
        return 2
    # SIGTERM ends the view like closing the window: counts, stats and the last frame are kept.
    signal.signal(signal.SIGTERM, lambda _sig, _frame: shared.stop.set())
    print(f"view: listening for RTP/{viewer.codec.info.name} on {args.bind}:{args.rtp}", flush=True)
    start = time.monotonic()
    worker = threading.Thread(
        target=receive_loop,
        args=(sock, viewer, shared, args.frames, args.seconds),
        name="view-rx",
        daemon=True,
    )
    worker.start()
    try:
        if args.headless:
            while worker.is_alive():
                worker.join(0.2)
        else:
            _run_window(shared, f"vcall view :{args.rtp}")
    except KeyboardInterrupt:
        pass
    finally:
        shared.stop.set()
        worker.join()
        sock.close()
    _print_counts(viewer, time.monotonic() - start)
    stats = viewer.stats()
    stats["seconds"] = round(time.monotonic() - start, 3)
    if args.stats_json:
        with open(args.stats_json, "w", encoding="utf-8") as fh:
            json.dump(stats, fh, indent=2)
    if args.save_last and viewer.last is not None:
        cv2.imwrite(args.save_last, np.ascontiguousarray(viewer.last[:, :, ::-1]))
    return 0 if viewer.counts.frames else 1
