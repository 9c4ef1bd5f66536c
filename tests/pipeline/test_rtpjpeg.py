"""RFC 2435 packetizer and reassembler, wired together in memory with loss and reordering."""

from __future__ import annotations

import random
import struct
import time

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from turbojpeg import TJSAMP_420, TJSAMP_422, TJSAMP_444, TurboJPEG

from pipeline.codecs.base import CodecFrame, EncodeError
from pipeline.codecs.jpeg.markers import ijg_quant_tables, split_jpeg
from pipeline.sources.pattern import render_into
from pipeline.wire.rtp import RtpPacket
from tests.fixtures.rtpjpeg import JpegRtpReceiver, JpegRtpSender

TJ = TurboJPEG()
pytestmark = pytest.mark.filterwarnings("error")  # "Corrupt JPEG data" warnings fail a test
SSRC = 0x1234ABCD


def jpeg(
    width: int = 320, height: int = 240, quality: int = 80, seed: int = 0, sub: int = TJSAMP_420
) -> bytes:
    rng = np.random.default_rng(seed)
    img = np.zeros((height, width, 3), np.uint8)
    img[:, :, 1] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
    h, w = min(50, height), min(80, width)
    img[:h, :w] = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    return bytes(TJ.encode(img, quality=quality, jpeg_subsample=sub))


def feed(r: JpegRtpReceiver, packets: list[bytes], now: float = 0.0) -> list[CodecFrame]:
    out: list[CodecFrame] = []
    for p in packets:
        out += r.push(p, now)
    return out


def test_round_trip_byte_exact_scan() -> None:
    src = jpeg()
    pk = JpegRtpSender(SSRC, initial_seq=100)
    packets = pk.packetize_jpeg(src, 9000)
    assert len(packets) > 3
    parsed = [RtpPacket.parse(p) for p in packets]
    assert all(len(p.payload) <= 1200 for p in parsed)
    assert [p.sequence_number for p in parsed] == list(range(100, 100 + len(packets)))
    assert {p.timestamp for p in parsed} == {9000}
    assert [p.marker for p in parsed] == [False] * (len(parsed) - 1) + [True]
    assert all(p.payload_type == 26 and p.ssrc == SSRC for p in parsed)
    assert parsed[0].payload[4:6] == bytes((1, 255))  # type 1 (4:2:0), Q 255
    assert pk.packets_sent == len(packets)
    assert pk.payload_octets_sent == sum(len(p.payload) for p in parsed)

    frames = feed(JpegRtpReceiver(SSRC), packets, now=1.5)
    assert len(frames) == 1
    f = frames[0]
    assert (f.width, f.height, f.timestamp, f.packets) == (320, 240, 9000, len(packets))
    assert split_jpeg(f.data).scan == split_jpeg(src).scan
    assert np.array_equal(TJ.decode(f.data), TJ.decode(src))


def test_opencv_jpeg_and_422_and_restart() -> None:
    img = np.full((240, 320, 3), 90, np.uint8)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_RST_INTERVAL, 3])
    assert ok
    for src, rtype in ((buf.tobytes(), 65), (jpeg(sub=TJSAMP_422), 0)):
        packets = JpegRtpSender(SSRC, initial_seq=0).packetize_jpeg(src, 0)
        assert RtpPacket.parse(packets[0]).payload[4] == rtype
        (f,) = feed(JpegRtpReceiver(SSRC), packets)
        assert split_jpeg(f.data).scan == split_jpeg(src).scan
        assert np.array_equal(TJ.decode(f.data), TJ.decode(src))


def test_q_standard_tables_and_cached_tables() -> None:
    src = jpeg(quality=70)
    pk = JpegRtpSender(SSRC, q=70, initial_seq=0)
    packets = pk.packetize_jpeg(src, 0)
    assert len(RtpPacket.parse(packets[0]).payload) <= 1200
    (f,) = feed(JpegRtpReceiver(SSRC), packets)
    assert split_jpeg(f.data).quant_tables == ijg_quant_tables(70)
    assert np.array_equal(TJ.decode(f.data), TJ.decode(src))
    with pytest.raises(EncodeError, match="Q=50"):
        JpegRtpSender(SSRC, q=50).packetize_jpeg(src, 0)

    # Q 128-254: tables in band once, then a zero-length table header uses the cache.
    r = JpegRtpReceiver(SSRC)
    pk = JpegRtpSender(SSRC, q=200, initial_seq=0)
    assert len(feed(r, pk.packetize_jpeg(src, 0))) == 1
    second = pk.packetize_jpeg(src, 3000)
    first = RtpPacket.parse(second[0])
    payload = first.payload[:8] + b"\x00\x00\x00\x00" + first.payload[8 + 4 + 128 :]
    second[0] = RtpPacket(26, first.sequence_number, 3000, SSRC, payload=payload).serialize()
    (f,) = feed(r, second)
    assert np.array_equal(TJ.decode(f.data), TJ.decode(src))
    # Q 255 without tables cannot be rebuilt: counted, not raised.
    r2 = JpegRtpReceiver(SSRC)
    bad = bytearray(second[0])
    bad[12 + 5] = 255
    assert feed(r2, [bytes(bad), *second[1:]]) == []
    assert r2.stats.unsupported == 1


def test_reordered_duplicated_and_wraparound() -> None:
    src = jpeg(640, 480, quality=90)
    pk = JpegRtpSender(SSRC, initial_seq=65530)
    r = JpegRtpReceiver(SSRC)
    rng = random.Random(4)
    ts = 0xFFFFFFFF - 6000  # the timestamp wraps too
    got = []
    for i in range(5):
        packets = pk.packetize_jpeg(src, (ts + i * 3000) & 0xFFFFFFFF)
        shuffled = packets + packets[:3]  # duplicates
        rng.shuffle(shuffled)
        got += feed(r, shuffled, now=i / 30)
    assert len(got) == 5
    assert [f.timestamp for f in got] == [(ts + i * 3000) & 0xFFFFFFFF for i in range(5)]
    assert all(split_jpeg(f.data).scan == split_jpeg(src).scan for f in got)
    s = r.stats
    assert s.frames == 5 and s.incomplete == 0 and s.lost_packets == 0
    assert s.duplicates >= 1  # a duplicate arriving after completion counts as one too


def test_lost_packet_drops_frame_when_newer_completes() -> None:
    pk = JpegRtpSender(SSRC, initial_seq=0)
    r = JpegRtpReceiver(SSRC)
    a = pk.packetize_jpeg(jpeg(seed=1), 0)
    b = pk.packetize_jpeg(jpeg(seed=2), 3000)
    assert feed(r, a[:2] + a[3:]) == []  # one fragment lost
    (f,) = feed(r, b)
    assert f.timestamp == 3000
    assert r.stats.incomplete == 1 and r.stats.lost_packets == 1
    assert feed(r, a[2:3]) == []  # the straggler is late now
    assert r.stats.late == 1


def test_timeout_drops_partial_frame() -> None:
    r = JpegRtpReceiver(SSRC, timeout=0.5)
    a = JpegRtpSender(SSRC, initial_seq=0).packetize_jpeg(jpeg(), 0)
    feed(r, a[:-1], now=0.0)
    assert r.expire(0.4) == 0
    assert r.expire(0.6) == 1
    assert r.stats.incomplete == 1
    assert feed(r, a[-1:], now=0.7) == []


def test_partial_frames_bounded() -> None:
    pk = JpegRtpSender(SSRC, initial_seq=0)
    r = JpegRtpReceiver(SSRC, max_partial=3)
    for i in range(10):
        feed(r, pk.packetize_jpeg(jpeg(), i * 3000)[:1])
    assert r.stats.incomplete == 7


def test_wrong_ssrc_and_payload_type_dropped() -> None:
    src = jpeg()
    other = JpegRtpSender(0x5555, initial_seq=0).packetize_jpeg(src, 0)
    r = JpegRtpReceiver(SSRC)
    assert feed(r, other) == []
    assert r.stats.wrong_source == len(other)
    wrong_pt = JpegRtpSender(SSRC, payload_type=96, initial_seq=0).packetize_jpeg(src, 0)
    assert feed(r, wrong_pt) == []
    assert r.receiver.unknown_payload_type == len(wrong_pt)
    assert len(feed(JpegRtpReceiver(SSRC, payload_type=None), wrong_pt)) == 1


def test_any_source_locks_then_follows_after_silence() -> None:
    src = jpeg()
    a = JpegRtpSender(1, initial_seq=0)
    b = JpegRtpSender(2, initial_seq=500)
    r = JpegRtpReceiver(None, timeout=0.5)
    assert len(feed(r, a.packetize_jpeg(src, 0), now=0.0)) == 1
    assert feed(r, b.packetize_jpeg(src, 0), now=0.1) == []  # a second sender is ignored
    assert len(feed(r, b.packetize_jpeg(src, 3000), now=1.0)) == 1  # after the first fell silent
    assert r.ssrc == 2 and r.stats.source_changes == 1


def test_packetizer_rejects_what_rfc2435_cannot_carry() -> None:
    pk = JpegRtpSender(SSRC)
    with pytest.raises(EncodeError):
        pk.packetize_jpeg(jpeg(sub=TJSAMP_444), 0)
    with pytest.raises(EncodeError, match="multiples of 8"):
        pk.packetize_jpeg(jpeg(100, 60), 0)
    with pytest.raises(EncodeError, match="2040"):
        pk.packetize_jpeg(jpeg(2048, 16), 0)
    with pytest.raises(EncodeError):
        pk.packetize_jpeg(b"not a jpeg", 0)
    with pytest.raises(ValueError):
        JpegRtpSender(SSRC, q=100)
    with pytest.raises(ValueError):
        JpegRtpSender(SSRC, max_payload=50)
    with pytest.raises(ValueError):
        JpegRtpSender(SSRC, initial_seq=70000)


def test_reassembler_limits() -> None:
    packets = JpegRtpSender(SSRC, initial_seq=0).packetize_jpeg(jpeg(640, 480), 0)
    r = JpegRtpReceiver(SSRC, max_dim=320)
    assert feed(r, packets) == []
    assert r.stats.unsupported == 1
    r = JpegRtpReceiver(SSRC, max_frame_bytes=2000)
    assert feed(r, packets) == []


def test_headers_with_reserved_values_counted() -> None:
    src = jpeg()
    packets = JpegRtpSender(SSRC, initial_seq=0).packetize_jpeg(src, 0)
    r = JpegRtpReceiver(SSRC)
    mangled = []
    for p in packets:
        b = bytearray(p)
        b[12 + 4] = 7  # type 7: no defined sampling
        mangled.append(bytes(b))
    assert feed(r, mangled) == []
    assert r.stats.unsupported == 1
    short = RtpPacket(26, 999, 5, SSRC, payload=b"\x00\x00").serialize()
    assert r.push(short, 0) == [] and r.stats.malformed == 1
    assert r.push(b"\x00" * 8, 0) == [] and r.receiver.malformed == 1  # not RTP at all


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=20))
def test_any_datagrams_never_raise(datagrams: list[bytes]) -> None:
    r = JpegRtpReceiver(None)
    for d in datagrams:
        r.push(d, 0.0)
        r.push(struct.pack("!BBHII", 0x80, 26, 1, 2, 3) + d, 0.0)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_mutated_stream_never_raises(data: st.DataObject) -> None:
    packets = JpegRtpSender(SSRC, initial_seq=0).packetize_jpeg(jpeg(160, 120, quality=95), 0)
    r = JpegRtpReceiver(SSRC)
    order = data.draw(st.permutations(range(len(packets))))
    for i in order:
        p = bytearray(packets[i])
        if data.draw(st.booleans()):
            pos = data.draw(st.integers(0, len(p) - 1))
            p[pos] = data.draw(st.integers(0, 255))
        for f in r.push(bytes(p), 0.0):
            assert f.width <= 2040 and f.height <= 2040


_FRAMES = [jpeg(160, 120, quality=90, seed=s) for s in range(4)]
_STREAM = [
    JpegRtpSender(SSRC, initial_seq=65533).packetize_jpeg(j, (0xFFFFF000 + 3000 * i) % 2**32)
    for i, j in enumerate(_FRAMES)
]


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_lossy_reordered_stream_yields_only_exact_frames_in_order(data: st.DataObject) -> None:
    """Whatever is lost, duplicated or reordered: frames come out whole, byte-exact, in order."""
    sent = [(i, p) for i, packets in enumerate(_STREAM) for p in packets]
    kept = [x for x in sent if data.draw(st.booleans(), label="keep") or len(sent) < 2]
    kept += data.draw(st.lists(st.sampled_from(sent), max_size=5), label="duplicates")
    order = data.draw(st.permutations(kept), label="order")
    r = JpegRtpReceiver(SSRC)
    out = [f for _, p in order for f in r.push(p, 0.0)]
    expected_scans = [split_jpeg(j).scan for j in _FRAMES]
    indices = []
    for f in out:
        index = [(0xFFFFF000 + 3000 * i) % 2**32 for i in range(4)].index(f.timestamp)
        assert split_jpeg(f.data).scan == expected_scans[index]
        indices.append(index)
    assert indices == sorted(set(indices))
    assert r.stats.frames == len(out)


def test_in_order_lossless_stream_yields_every_frame() -> None:
    r = JpegRtpReceiver(SSRC)
    out = [f for packets in _STREAM for p in packets for f in r.push(p, 0.0)]
    assert len(out) == 4 and r.stats.lost_packets == 0 and r.stats.incomplete == 0


def test_memory_per_frame_bounded_against_overlaps_and_tiny_fragments() -> None:
    r = JpegRtpReceiver(SSRC, max_frame_bytes=64 * 1024)
    header = bytes((0, 0, 0, 0, 1, 50, 40, 30))
    for off in range(0, 2000, 2):  # 1000 overlapping 1000-byte fragments: 1 MB for a 3 KB span
        body = header[:1] + off.to_bytes(3, "big") + header[4:] + bytes(1000)
        r.push(RtpPacket(26, off // 2, 7, SSRC, payload=body).serialize(), 0.0)
    assert r.stats.unsupported == 1
    r = JpegRtpReceiver(SSRC, max_frame_bytes=64 * 1024)
    for off in range(1000):  # empty fragments
        body = header[:1] + off.to_bytes(3, "big") + header[4:]
        r.push(RtpPacket(26, off, 7, SSRC, payload=body).serialize(), 0.0)
    assert r.stats.unsupported == 1


def test_cost_per_720p_frame_printed() -> None:
    """Not a timed assertion (shared machine): prints the figures, checks they are sane."""
    img = np.zeros((720, 1280, 3), np.uint8)
    render_into(img, 1, 0)
    src = bytes(TJ.encode(img, quality=70, jpeg_subsample=TJSAMP_420))
    pk, r = JpegRtpSender(SSRC, initial_seq=0), JpegRtpReceiver(SSRC)
    pack, join = [], []
    for i in range(100):
        t0 = time.perf_counter()
        packets = pk.packetize_jpeg(src, i * 3000)
        t1 = time.perf_counter()
        frames = [f for p in packets for f in r.push(p, i / 30)]
        join.append(time.perf_counter() - t1)
        pack.append(t1 - t0)
        assert len(frames) == 1
    p50 = sorted(pack)[50] * 1e3, sorted(join)[50] * 1e3
    print(
        f"\n720p q70 ({len(src)} B, {len(packets)} packets): packetize p50 {p50[0]:.3f} ms, "
        f"reassemble p50 {p50[1]:.3f} ms"
    )
    assert 0 < p50[0] < 100 and 0 < p50[1] < 100


_RESTART_SRC = cv2.imencode(
    ".jpg", np.full((96, 128, 3), 90, np.uint8), [cv2.IMWRITE_JPEG_RST_INTERVAL, 2]
)[1].tobytes()


@settings(max_examples=60, deadline=None)
@given(
    max_payload=st.integers(8 + 4 + 4 + 128 + 1, 1500),
    restart=st.booleans(),
    q=st.sampled_from([255, 200, 90]),
    seq=st.integers(0, 65535),
    ts=st.integers(0, 2**32 - 1),
)
def test_packets_fit_any_payload_limit_and_carry_rfc2435_headers(
    max_payload: int, restart: bool, q: int, seq: int, ts: int
) -> None:
    """Every payload within the limit; contiguous offsets; one ts; marker last; seq wraps."""
    src = _RESTART_SRC if restart else jpeg(160, 120, quality=90)
    if q == 90 and restart:
        q = 255  # OpenCV's tables at its default quality are not RFC 2435 Q=90 ones
    pk = JpegRtpSender(SSRC, max_payload=max_payload, q=q, initial_seq=seq)
    packets = [RtpPacket.parse(p) for p in pk.packetize_jpeg(src, ts)]
    assert all(len(p.payload) <= max_payload for p in packets)
    assert [p.sequence_number for p in packets] == [(seq + i) % 65536 for i in range(len(packets))]
    assert {p.timestamp for p in packets} == {ts}
    assert [p.marker for p in packets] == [False] * (len(packets) - 1) + [True]
    offset = 0
    for i, p in enumerate(packets):
        assert int.from_bytes(p.payload[1:4], "big") == offset
        rtype, pq = p.payload[4], p.payload[5]
        assert (rtype, pq) == ((65 if restart else 1), q)
        pos = 8
        if restart:
            interval, flags = struct.unpack_from("!HH", p.payload, 8)
            assert interval == 2 and flags == 0xFFFF  # F=L=1, count 0x3FFF
            pos += 4
        if i == 0 and q >= 128:
            assert p.payload[pos : pos + 4] == b"\x00\x00\x00\x80"  # two 8-bit tables in band
            pos += 4 + 128
        offset += len(p.payload) - pos
    assert offset == len(split_jpeg(src).scan)
    assert pk.next_seq == (seq + len(packets)) % 65536
    (f,) = feed(JpegRtpReceiver(SSRC), pk.packetize_jpeg(src, ts + 1))
    assert split_jpeg(f.data).scan == split_jpeg(src).scan


def test_fragment_beyond_the_end_is_trimmed() -> None:
    """A forged fragment past the marker packet's end neither breaks nor pads the frame."""
    src = jpeg()
    packets = JpegRtpSender(SSRC, initial_seq=0).packetize_jpeg(src, 0)
    scan = bytes(split_jpeg(src).scan)
    header = bytes((1, 255, 40, 30))
    # Starts just before the marker packet's data and runs 50 bytes past the end.
    start = int.from_bytes(RtpPacket.parse(packets[-1]).payload[1:4], "big") - 5
    straddle = start.to_bytes(4, "big") + header + scan[start:] + b"\xbb" * 50
    past = len(scan).to_bytes(4, "big") + header + b"\xaa" * 50
    forged = [
        RtpPacket(26, 60000 + i, 0, SSRC, payload=p).serialize()
        for i, p in enumerate((past, straddle))
    ]
    (f,) = feed(JpegRtpReceiver(SSRC), [packets[0], *forged, *packets[1:]])
    assert split_jpeg(f.data).scan == split_jpeg(src).scan
    assert np.array_equal(TJ.decode(f.data), TJ.decode(src))
