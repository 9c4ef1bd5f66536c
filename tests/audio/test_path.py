"""Two audio paths over real UDP sockets on loopback: tone bursts in, a WAV out, onsets
compared (mouth-to-ear without devices), clean and through a 5% loss, 40+-10 ms jitter relay;
bad datagrams at the receiving edge."""

from __future__ import annotations

import heapq
import json
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.audio_call import onsets
from pipeline.audio.frames import SAMPLE_RATE
from pipeline.audio.path import AudioPath, audio_codec
from pipeline.audio.sinks import NullSink, WavSink
from pipeline.audio.sources import SilenceSource, ToneSource, read_wav
from pipeline.codecs.opus.codec import OpusEncoder
from pipeline.errors import LocalProtocolError
from pipeline.wire.rtp import rtp_header

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


class Pump:
    """A thread moving datagrams from a socket into ``handle``; stopped on close."""

    def __init__(self, sock: socket.socket, handle: Callable[[bytes], None]) -> None:
        self.sock, self.handle = sock, handle
        self.stop = threading.Event()
        sock.settimeout(0.05)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                data = self.sock.recv(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            self.handle(data)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)


class Relay:
    """Loss and delay between two sockets (seeded): each datagram is dropped with ``loss`` or
    delivered after base +- jitter seconds, reordering as the delays fall."""

    def __init__(self, dest: tuple[str, int], loss: float, base: float, jitter: float) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.dest, self.loss, self.base, self.jitter = dest, loss, base, jitter
        self.rng = random.Random(11)
        self.heap: list[tuple[float, int, bytes]] = []
        self.count = self.dropped = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.pump = Pump(self.sock, self._take)
        self.sender = threading.Thread(target=self._deliver, daemon=True)
        self.sender.start()

    @property
    def address(self) -> tuple[str, int]:
        return self.sock.getsockname()  # type: ignore[no-any-return]

    def _take(self, data: bytes) -> None:
        self.count += 1
        if self.rng.random() < self.loss:
            self.dropped += 1
            return
        due = time.monotonic() + self.base + self.rng.uniform(-self.jitter, self.jitter)
        with self.lock:
            heapq.heappush(self.heap, (due, self.count, data))

    def _deliver(self) -> None:
        while not self.stop.is_set():
            now = time.monotonic()
            with self.lock:
                while self.heap and self.heap[0][0] <= now:
                    self.out.sendto(heapq.heappop(self.heap)[2], self.dest)
            time.sleep(0.001)

    def close(self) -> None:
        self.stop.set()
        self.sender.join(2)
        self.pump.close()
        self.sock.close()
        self.out.close()


@pytest.fixture
def udp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a.bind(("127.0.0.1", 0))
    b.bind(("127.0.0.1", 0))
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def call(
    tmp_path: Path,
    sockets: tuple[socket.socket, socket.socket],
    seconds: float,
    burst: tuple[int, int],
    relay: Relay | None = None,
) -> tuple[AudioPath, AudioPath, np.ndarray]:
    """Alice sends tone bursts to Bob, Bob sends silence back; Bob's playout goes to a WAV."""
    sa, sb = sockets
    to_b = relay.address if relay else sb.getsockname()
    if relay:
        relay.dest = sb.getsockname()
    alice = AudioPath(
        source=ToneSource(1000, burst), sink=NullSink(),
        send=lambda d: sa.sendto(d, to_b), ssrc=0xA11CE, peer_ssrc=0xB0B,
    )  # fmt: skip
    wav = tmp_path / "bob.wav"
    bob = AudioPath(
        source=SilenceSource(), sink=WavSink(str(wav)),
        send=lambda d: sb.sendto(d, sa.getsockname()), ssrc=0xB0B, peer_ssrc=0xA11CE,
    )  # fmt: skip
    pumps = [Pump(sa, alice.receive), Pump(sb, bob.receive)]
    try:
        bob.start()
        alice.start()
        time.sleep(seconds)
    finally:
        alice.close()
        bob.close()
        for p in pumps:
            p.close()
    return alice, bob, read_wav(str(wav))


def mouth_to_ear(alice: AudioPath, bob: AudioPath, pcm: np.ndarray, period_s: float) -> list[float]:
    """Per burst: Bob's playout time of its onset minus Alice's capture time of it (the frames'
    times on the monotonic clock of this one process; device buffering is not included)."""
    t_a, t_b = alice.stats.capture_started, bob.stats.playout_started
    assert t_a is not None and t_b is not None
    heard = onsets(pcm, 3000, SAMPLE_RATE // 10)
    sent = [k * period_s for k in range(int(60 / period_s))]
    delays = []
    for h in heard:
        t_heard = t_b + h / SAMPLE_RATE
        # The burst it belongs to: the latest sent before it was heard.
        k = max(i for i, s in enumerate(sent) if t_a + s <= t_heard)
        delays.append(t_heard - (t_a + sent[k] + 1 / SAMPLE_RATE))
    return delays


def save(name: str, doc: dict[str, object]) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"{name}.json").write_text(json.dumps(doc, indent=2))


def test_tone_bursts_cross_a_clean_loopback(
    tmp_path: Path, udp_pair: tuple[socket.socket, socket.socket]
) -> None:
    alice, bob, pcm = call(tmp_path, udp_pair, 6.0, (200, 1000))
    delays = mouth_to_ear(alice, bob, pcm, 1.0)
    assert len(delays) >= 4, delays  # every burst that had time to arrive
    assert all(0 < d < 0.3 for d in delays), delays
    sa, sb = alice.stats, bob.stats
    assert sb.jitter.lost == 0 and sb.jitter.late == 0 and sb.wrong_ssrc == 0
    assert sb.depacketizer.frames == sb.jitter.received > 250
    assert sa.sent > 250 and sa.send_errors == 0 and sb.received >= sa.sent - 5
    # The tone itself: 1 kHz inside a burst.
    start = onsets(pcm, 3000, SAMPLE_RATE // 10)[1] + 480
    body = pcm[start : start + 4800].astype(np.float64)
    peak = np.argmax(np.abs(np.fft.rfft(body * np.hanning(len(body))))) * SAMPLE_RATE / len(body)
    assert abs(peak - 1000) < 15
    cpu = {"capture_cpu_s": sa.capture_cpu_s, "playout_cpu_s": sb.playout_cpu_s}
    p50 = float(np.median(delays))
    each = [round(1000 * d) for d in delays]
    print(f"\nmouth-to-ear (no devices) p50 {1000 * p50:.1f} ms, all {each}; CPU over 6 s: "
          f"capture {sa.capture_cpu_s:.2f} s, playout {sb.playout_cpu_s:.2f} s")  # fmt: skip
    save("audio_loopback", {"test": "clean loopback", "seconds": 6.0,
                            "mouth_to_ear_ms": [1000 * d for d in delays], "p50_ms": 1000 * p50,
                            **cpu})  # fmt: skip


def test_loss_and_jitter_leave_no_long_gap_and_no_drift(
    tmp_path: Path, udp_pair: tuple[socket.socket, socket.socket]
) -> None:
    relay = Relay(("127.0.0.1", 9), loss=0.05, base=0.04, jitter=0.01)
    try:
        alice, bob, pcm = call(tmp_path, udp_pair, 10.0, (600, 1000), relay)
    finally:
        relay.close()
    assert 0.02 < relay.dropped / relay.count < 0.09
    sb = bob.stats
    assert sb.jitter.lost > 0 and sb.jitter.fec + sb.jitter.concealed >= sb.jitter.lost
    delays = mouth_to_ear(alice, bob, pcm, 1.0)
    assert len(delays) >= 8
    # Inside each burst (past its first 20 ms, before its last 40 ms) no gap: 5 ms envelope.
    env = np.abs(pcm[: len(pcm) // 240 * 240].astype(np.float64)).reshape(-1, 240).max(axis=1)
    longest = 0.0
    for h in onsets(pcm, 3000, SAMPLE_RATE // 10):
        first, last = (h + 960) // 240, (h + int(0.56 * SAMPLE_RATE)) // 240
        quiet = env[first:last] < 1000
        run = best = 0
        for q in quiet:
            run = run + 1 if q else 0
            best = max(best, run)
        longest = max(longest, best * 0.005)
    assert longest <= 0.06, longest
    drift = float(np.median(delays[-3:]) - np.median(delays[:3]))
    assert abs(drift) < 0.05, delays
    print(f"\n5% loss, 40+-10 ms: mouth-to-ear p50 {1000 * np.median(delays):.0f} ms, longest gap "
          f"{1000 * longest:.0f} ms, drift {1000 * drift:.0f} ms, jitter {sb.jitter}")  # fmt: skip
    save("audio_lossy", {"test": "5% loss, 40+-10 ms jitter", "seconds": 10.0,
                         "mouth_to_ear_ms": [1000 * d for d in delays],
                         "longest_gap_ms": 1000 * longest, "drift_ms": 1000 * drift,
                         "lost": sb.jitter.lost, "fec": sb.jitter.fec,
                         "concealed": sb.jitter.concealed, "late": sb.jitter.late})  # fmt: skip


def test_the_receiving_edge_counts_what_it_drops(tmp_path: Path) -> None:
    bob = AudioPath(source=SilenceSource(), sink=NullSink(), send=lambda d: None, ssrc=2,
                    peer_ssrc=1)  # fmt: skip
    packet = OpusEncoder().encode(np.zeros(960, np.int16))[0]
    bob.receive(b"\x00garbage")  # not RTP
    bob.receive(rtp_header(96, 1, 0, 1) + packet)  # a video payload type
    bob.receive(rtp_header(111, 1, 0, 7) + packet)  # another source with the audio type
    bob.receive(rtp_header(111, 2, 960, 1) + b"\xff" * 3000)  # absurd Opus
    bob.receive(rtp_header(111, 3, 1920, 1) + packet)  # good
    s = bob.stats
    assert (s.received, s.malformed, s.wrong_payload_type, s.wrong_ssrc) == (5, 1, 1, 1)
    assert s.depacketizer.malformed == 1 and s.jitter.received == 1
    bob.close()
    with pytest.raises(LocalProtocolError):
        audio_codec("H264")


def test_muting_stops_packets_and_unmuting_marks_a_talkspurt() -> None:
    sent: list[bytes] = []
    alice = AudioPath(source=ToneSource(500), sink=NullSink(), send=sent.append, ssrc=5)
    alice.start()
    try:
        time.sleep(0.3)
        alice.set_sending(False)
        time.sleep(0.1)
        muted_at = len(sent)
        time.sleep(0.3)
        assert len(sent) == muted_at
        alice.set_sending(True)
        time.sleep(0.2)
    finally:
        alice.close()
    first_after = sent[muted_at]
    assert sent[0][1] & 0x80 and first_after[1] & 0x80  # marker on both talkspurt starts
    assert not sent[1][1] & 0x80
    ts = [int.from_bytes(p[4:8], "big") for p in (sent[muted_at - 1], first_after)]
    assert (ts[1] - ts[0]) % 2**32 >= 960 * 10  # the clock ran on while muted


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=1600),
            st.tuples(st.integers(0, 0xFFFF), st.integers(0, 2**32 - 1), st.sampled_from([1, 9]),
                      st.binary(max_size=1600)).map(
                lambda t: rtp_header(111, t[0], t[1], t[2]) + t[3]
            ),
        ),
        max_size=40,
    )
)  # fmt: skip
def test_receive_survives_any_datagram(datagrams: list[bytes]) -> None:
    bob = AudioPath(source=SilenceSource(), sink=NullSink(), send=lambda d: None, ssrc=2,
                    peer_ssrc=1)  # fmt: skip
    for i, d in enumerate(datagrams):
        bob.receive(d, now=i * 0.02)
    s = bob.stats
    assert s.received == len(datagrams)
    dropped = s.malformed + s.wrong_payload_type + s.wrong_ssrc
    dp = s.depacketizer
    assert dropped + dp.frames + dp.malformed + dp.duplicates == len(datagrams)
    assert s.jitter.received == dp.frames
    bob.close()


class EchoRoom:
    """Bob's room: what his sink plays comes back into his microphone 40 ms later, low-passed
    and 10 dB down (the benchmark's echo path, frame by frame), plus faint noise."""

    def __init__(self) -> None:
        from benchmarks.audio_aec import echo_path

        self.played: list[np.ndarray] = []
        self.lock = threading.Lock()
        self.history = np.zeros(2 * 960 + 2400)
        impulse = np.zeros(4 * 960)
        impulse[0] = 1.0
        self.h = echo_path(impulse, 0.0)[:2400]
        self.rng = np.random.default_rng(4)

    def sink(self) -> NullSink:
        room = self

        class Speaker(NullSink):
            def write(self, pcm: np.ndarray) -> None:
                super().write(pcm)
                with room.lock:
                    room.played.append(pcm.astype(np.float64))

        return Speaker()

    def source(self) -> SilenceSource:
        room = self

        class Microphone(SilenceSource):
            def read(self) -> np.ndarray:
                with room.lock:
                    frame = room.played.pop(0) if room.played else np.zeros(960)
                room.history = np.concatenate([room.history[960:], frame])
                echo = np.convolve(room.history, room.h)[len(room.history) - 3 * 960 :][:960]
                noise = room.rng.standard_normal(960) * 10
                return np.clip(echo + noise, -32768, 32767).astype(np.int16)

        return Microphone()


@pytest.mark.parametrize("cancel", [False, True])
def test_echo_from_the_peer_room_is_cancelled_in_the_path(
    tmp_path: Path, udp_pair: tuple[socket.socket, socket.socket], cancel: bool
) -> None:
    from pipeline.audio.processing import PassThrough, WebrtcProcessing

    sa, sb = udp_pair
    room = EchoRoom()
    wav = tmp_path / "alice.wav"
    to_bob = sb.getsockname()
    alice = AudioPath(source=ToneSource(700, (300, 600)), sink=WavSink(str(wav)),
                      send=lambda d: sa.sendto(d, to_bob), ssrc=1, peer_ssrc=2)  # fmt: skip
    apm = WebrtcProcessing(noise_suppression=False) if cancel else PassThrough()
    bob = AudioPath(source=room.source(), sink=room.sink(), processing=apm,
                    send=lambda d: sb.sendto(d, sa.getsockname()), ssrc=2, peer_ssrc=1)  # fmt: skip
    pumps = [Pump(sa, alice.receive), Pump(sb, bob.receive)]
    try:
        bob.start()
        alice.start()
        time.sleep(8.0)
    finally:
        alice.close()
        bob.close()
        for p in pumps:
            p.close()
    back = read_wav(str(wav)).astype(np.float64)
    level = 10 * np.log10(np.mean(back[-4 * SAMPLE_RATE :] ** 2) + 1e-9)  # after convergence
    tone = 10 * np.log10((0.316 * 32767) ** 2 / 2 / 2)  # the tone, half the time on
    echo_return = tone - level
    print(f"\necho of alice's tone back at alice ({'APM' if cancel else 'none'}): "
          f"{echo_return:.1f} dB below the tone; bob {bob.stats.processing}")  # fmt: skip
    if cancel:
        assert echo_return > 10 + 20, echo_return  # the room's 10 dB plus >= 20 dB of ERLE
    else:
        assert 5 < echo_return < 20, echo_return  # the room alone (10 dB, low-passed)
