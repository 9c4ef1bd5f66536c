"""A peer's clock is a hint, not an identity (issue #15 fault 1, issue #14), on a real receiving
side: vcall's receive stage on loopback UDP sockets writing into its real shared-memory ring
(what the display stage reads), fed by raw senders on real sockets whose clocks lie.

- Classic V0 peers (bytes built with ``pipeline.wire.v0``), 60 frames at 20 fps with a new seq
  each: a ts frozen at import time, ``int(time.time())``, and a clock stepped back 3 s at frame
  20. Before the fix the display got 1, 4 and 20 of 60.
- An RTP/JPEG peer one of whose frames claims a time 8 s ahead.

All senders run at once in one loop (the box is shared: one 3-second run, not four)."""

from __future__ import annotations

import functools
import select
import time
from collections.abc import Callable, Iterator, Sequence

import cv2
import numpy as np
import pytest

from pipeline.control import Connect, MediaMode, PeerEndpoint
from pipeline.ipc.ring import Ts
from pipeline.ipc.shm import SegmentSet
from pipeline.wire.rtp import to_rtp_ts
from pipeline.wire.v0 import encode_v0
from tests.fixtures.rtpjpeg import JpegRtpSender
from tests.pipeline.test_receive import Rx

pytestmark = pytest.mark.usefixtures("no_leaks")

LOCAL = "127.0.0.1"
FPS = 20
N = 60
MIN_SHOWN = 57  # of 60: a stalled turn on a loaded 2-core box may skip a frame or two
TAIL_S = 0.5  # pumping after the last datagram
SIZE = (64, 48)
IMPORT_TIME = time.time()  # the frozen clock: a default argument evaluated once


def _jpeg(level: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((SIZE[1], SIZE[0], 3), level, np.uint8))
    assert ok
    return buf.tobytes()


def _level(jpeg: bytes) -> int:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert image is not None
    return round(float(image.mean()))


# Frame n shows grey level 4n, so what reaches the ring says which frame it is.
JPEGS = [_jpeg(4 * n) for n in range(N)]
FORGED_LEVEL = 250
FORGED = _jpeg(FORGED_LEVEL)


class Receiver(Rx):
    """A ``ReceiveStage`` on its own loopback sockets and rings, pumped by hand; ``shown``
    collects (frame_id, bytes) of every frame it writes for the display, in order, and
    ``held_ns`` how long each waited in the jitter buffer (for figures, never asserted)."""

    def __init__(self, segments: SegmentSet, name: str) -> None:
        super().__init__(segments, name, slots=8, capacity=1 << 16)
        self.reader = self.rx_ring.reader()
        self.shown: list[tuple[int, bytes]] = []
        self.held_ns: list[int] = []

    def step(self, ready: list[int]) -> None:
        own = [fd for fd in ready if fd in self.stage.wait_fds()]
        self.stage.step(own, time.monotonic_ns())
        while (desc := self.reader.next()) is not None:
            data = self.reader.copy_bytes(desc)
            assert data is not None, "the ring overwrote a frame being read"
            self.shown.append((desc.frame_id, data))
            self.held_ns.append(desc.stamp(Ts.PLAYOUT) - desc.stamp(Ts.RECV_COMPLETE))

    def jitter(self) -> dict[str, int]:
        counts: dict[str, int] = self.stage.snapshot(time.monotonic_ns())["jitter_buffer"]
        return counts

    def close(self) -> None:
        del self.reader
        super().close()


@pytest.fixture
def segments() -> Iterator[SegmentSet]:
    segs = SegmentSet()
    yield segs
    segs.close()


@pytest.fixture
def receivers(segments: SegmentSet) -> Iterator[Callable[[str], Receiver]]:
    made: list[Receiver] = []

    def make(name: str) -> Receiver:
        made.append(Receiver(segments, name))
        return made[-1]

    yield make
    for r in made:
        r.close()


# (offset s, to whom, the frame's datagrams, built when it is sent)
Send = tuple[float, Receiver, Callable[[], Sequence[bytes | bytearray]]]


def drive(sends: list[Send]) -> None:
    """Send each frame at its offset from now (its bytes built at send time, so a clock read
    in them is real), running every receiver's loop in between, then TAIL_S more."""
    sends = sorted(sends, key=lambda s: s[0])
    receivers = list({id(r): r for _, r, _ in sends}.values())
    fds = [fd for r in receivers for fd in r.stage.wait_fds()]
    start = time.monotonic()
    end = start + sends[-1][0] + TAIL_S
    i = 0
    while (now := time.monotonic()) < end:
        while i < len(sends) and start + sends[i][0] <= now:
            _, r, build = sends[i]
            for datagram in build():
                r.send(datagram)
            i += 1
        wait = min(r.stage.timeout(time.monotonic_ns()) for r in receivers)
        if i < len(sends):
            wait = min(wait, start + sends[i][0] - now)
        ready, _, _ = select.select(fds, [], [], max(min(wait, 0.01), 0.0))
        for r in receivers:
            r.step(ready)


def _v0(clock: Callable[[int], float], n: int) -> list[bytes]:
    """Frame ``n`` as a classic peer sends it: seq n + 1, ts read from ``clock`` now."""
    return [encode_v0(n + 1, clock(n), SIZE[0], SIZE[1], FPS, JPEGS[n])]


CLOCKS: dict[str, Callable[[int], float]] = {
    # n is the frame's index (seq - 1); each is read when the frame is sent.
    "frozen": lambda n: IMPORT_TIME,
    "onesecond": lambda n: float(int(time.time())),
    "steppedback": lambda n: time.time() - (3.0 if n >= 20 else 0.0),
}


def test_classic_peers_with_lying_clocks_are_shown_every_frame(
    receivers: Callable[[str], Receiver],
) -> None:
    rx = {name: receivers(name) for name in CLOCKS}
    sends: list[Send] = []
    for name, clock in CLOCKS.items():
        rx[name].stage.handle(Connect(PeerEndpoint(LOCAL, 5000, MediaMode.V0)))
        for n in range(N):
            sends.append((n / FPS, rx[name], functools.partial(_v0, clock, n)))
    drive(sends)
    for name, r in rx.items():
        seqs = [frame_id for frame_id, _ in r.shown]
        assert len(seqs) >= MIN_SHOWN, (name, len(seqs), r.jitter())
        assert seqs == sorted(set(seqs)), name  # in order, each once
        assert all(data == JPEGS[seq - 1] for seq, data in r.shown), name
        jb = r.jitter()
        # Nothing was lost, duplicated or late: a new seq is a new frame, whatever its ts.
        assert (jb["lost_frames"], jb["duplicates"], jb["late"]) == (0, 0, 0), (name, jb)
    frozen, one_second, stepped = (rx[n].jitter() for n in CLOCKS)
    assert frozen["lagging"] >= N // 2  # the stalled clock is seen and counted
    # A coarse clock is not a jump: at most its first tick (the first frame's ts may lag its
    # capture by up to 1 s, so the tick can look early by as much) starts a timeline.
    assert one_second["resets"] <= 1
    assert stepped["resets"] >= 1  # the step back starts a new timeline


def test_rtp_peers_whose_clock_jumps_do_not_freeze_the_picture(
    receivers: Callable[[str], Receiver],
) -> None:
    """One frame 8 s ahead (a forged but authenticated packet, or a clock jump and back), and
    a vcall peer whose clock an NTP correction steps back 3 s at frame 20."""
    token = 0x2222
    clocks: dict[str, Callable[[int], float]] = {
        "ahead": lambda n: time.time(),
        "back": lambda n: time.time() - (3.0 if n >= 20 else 0.0),
    }
    rx = {name: receivers(name) for name in clocks}
    sends: list[Send] = []
    for name, clock in clocks.items():
        r = rx[name]
        r.stage.handle(Connect(PeerEndpoint(LOCAL, 5000, MediaMode.RTP, 0x1111, token)))
        sender = JpegRtpSender(token)
        for n in range(N):
            sends.append((n / FPS, r, functools.partial(_rtp, sender, JPEGS[n], clock, n)))
        if name == "ahead":
            forged = functools.partial(_rtp, sender, FORGED, lambda n: time.time() + 8.0, 0)
            sends.append((20.5 / FPS, r, forged))
    drive(sends)
    for name, r in rx.items():
        levels = [_level(data) for _, data in r.shown]
        real = [round(level / 4) for level in levels if abs(level - FORGED_LEVEL) > 2]
        rtp = r.stage.snapshot(0)["rtp"]
        assert len(real) >= MIN_SHOWN, (name, len(real), r.jitter(), rtp)
        assert real == sorted(set(real)), name
        jb = r.jitter()
        assert (jb["late"], jb["duplicates"], rtp["late"]) == (0, 0, 0), (name, jb, rtp)
    # The forged frame's timeline, then the real one again; the step back starts one.
    assert rx["ahead"].jitter()["resets"] >= 2
    assert rx["back"].jitter()["resets"] >= 1


def _rtp(sender: JpegRtpSender, jpeg: bytes, clock: Callable[[int], float], n: int) -> list[bytes]:
    """One JPEG as RTP packets, its timestamp read from ``clock`` when it is sent."""
    return sender.packetize_jpeg(jpeg, to_rtp_ts(clock(n)))
