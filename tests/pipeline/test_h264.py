"""H.264 (issue 10): NAL units and the SPS size check, the RFC 6184 payload format under loss,
reordering, duplicates and hostile packets, RTCP PLI/FIR, and two real sessions in an H.264
call, clean and through a lossy relay (keyframe requests end to end)."""

from __future__ import annotations

import base64
import contextlib
import functools
import random
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.relay import LossyRelay
from pipeline.codecs.base import CodecFrame
from pipeline.codecs.h264.codec import (
    H264_INFO,
    MAX_GAIN,
    PT_H264_RTX,
    REOPEN_BELOW,
    H264Decoder,
    H264Encoder,
)
from pipeline.codecs.h264.nal import (
    NAL_IDR,
    NAL_PPS,
    NAL_SPS,
    H264Error,
    join_annexb,
    nal_type,
    split_annexb,
    sps_size,
)
from pipeline.codecs.h264.rfc6184 import H264Depacketizer, H264Packetizer
from pipeline.codecs.registry import get_codec
from pipeline.control import MediaMode, PeerEndpoint
from pipeline.session import MediaSession
from pipeline.sources.pattern import read_stamp, render_into
from pipeline.transport.stream import RtpReceiver, RtpSender
from pipeline.wire.rtcp import (
    FullIntraRequest,
    PictureLossIndication,
    ReceiverReport,
    RtcpSession,
    parse_rtcp,
    serialize_rtcp,
)
from tests.pipeline.test_session import LOCAL, wait_for

SSRC = 0x4242


def pattern(width: int, height: int, frame_id: int) -> np.ndarray:
    image = np.empty((height, width, 3), np.uint8)
    render_into(image, frame_id, 1_000_000 + frame_id)
    return image


@functools.cache
def encoded(width: int = 640, height: int = 480, frames: int = 6) -> tuple[bytes, ...]:
    encoder = H264Encoder(bitrate=1_000_000, fps=30)
    return tuple(encoder.encode(pattern(width, height, i), 0).data for i in range(frames))


# -- NAL units and the SPS -----------------------------------------------------------------


def test_split_annexb_handles_both_start_codes() -> None:
    stream = b"\x00\x00\x00\x01\x67\x01\x02" + b"\x00\x00\x01\x68\x03" + b"\x00\x00\x01\x65\x04\x05"
    assert [bytes(n) for n in split_annexb(stream)] == [
        b"\x67\x01\x02",
        b"\x68\x03",
        b"\x65\x04\x05",
    ]
    assert split_annexb(join_annexb([b"\x67\x01", b"\x68\x02"]))[1].tobytes() == b"\x68\x02"


@pytest.mark.parametrize("size", [(640, 480), (1280, 720), (1920, 1080), (322, 242)])
def test_sps_size_reads_the_encoders_picture_size(size: tuple[int, int]) -> None:
    first = H264Encoder().encode(pattern(*size, 0), 0)
    nals = split_annexb(first.data)
    assert {NAL_SPS, NAL_PPS, NAL_IDR} <= {nal_type(n) for n in nals}
    (sps,) = [n for n in nals if nal_type(n) == NAL_SPS]
    assert sps_size(sps) == size  # cropping applied (1080 is coded as 1088)
    assert first.keyframe


def test_an_sps_bomb_is_refused_before_decoding() -> None:
    sps = next(n for n in split_annexb(encoded()[0]) if nal_type(n) == NAL_SPS)
    # profile 66, level, then id 0 (1), log2_max_frame_num (ue), poc type ... rebuild by hand:
    # a baseline SPS declaring 65536 x 65536 macroblocks: width_mbs_minus1 = 65535 (ue).
    bits = "1" + "1" + "1" + "1" + "0000000000000000" + "1" + "0" * 16 + "1" + "0" * 16 + "1"
    bits += "1" + "1" * 3 + "1"
    body = int(bits.ljust((len(bits) + 7) // 8 * 8, "0"), 2).to_bytes((len(bits) + 7) // 8, "big")
    bomb = bytes([0x67, 66, 0, 30]) + body
    with pytest.raises(H264Error):
        sps_size(bomb)
    decoder = H264Decoder()
    with pytest.raises(H264Error):
        decoder.frame_size(join_annexb([bomb]))
    assert decoder.frame_size(encoded()[0]) == (640, 480)
    assert sps_size(sps) == (640, 480)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=64))
def test_sps_size_raises_only_h264_error(data: bytes) -> None:
    with contextlib.suppress(H264Error):
        sps_size(b"\x67" + data)


def test_each_picture_is_its_own_frame_though_the_encoder_reuses_its_buffer() -> None:
    """The encoder hands libx264 the same I420 buffer every frame (no copy): each decoded
    picture must still show its own frame's stamp, not a neighbour's."""
    encoder, decoder = H264Encoder(bitrate=1_000_000, fps=30), H264Decoder()
    out = np.empty((240, 320, 3), np.uint8)
    ids = []
    for i in range(8):
        data = encoder.encode(pattern(320, 240, 100 + i), 0).data
        decoder.frame_size(data)
        decoder.decode_rgb_into(data, out)
        stamp = read_stamp(out)
        ids.append(None if stamp is None else stamp.frame_id)
    assert ids == list(range(100, 108))


def test_the_target_bitrate_changes_mid_stream() -> None:
    rng = np.random.default_rng(5)
    base = pattern(640, 480, 0)

    def frame(i: int) -> np.ndarray:
        noise = rng.integers(0, 40, base.shape, dtype=np.uint8)
        return np.roll(base, 8 * i, axis=1) + noise  # hard to compress: the rate control bites

    encoder = H264Encoder(bitrate=2_000_000, fps=30)
    first = [len(encoder.encode(frame(i), 0).data) for i in range(40)]
    encoder.set_bitrate(300_000)
    second = [len(encoder.encode(frame(i), 0).data) for i in range(40, 80)]
    kbit = [sum(x[10:]) * 8 * 30 / 30 / 1000 for x in (first, second)]
    assert kbit[1] < kbit[0] / 3, kbit  # no restart, no keyframe needed
    encoder.set_bitrate(4_000_000)  # above the ceiling it opened with: reopens with an IDR
    assert encoder.encode(frame(80), 0).keyframe


def test_a_keyframe_asked_for_far_below_the_opening_rate_is_sized_for_the_new_rate() -> None:
    """The VBV buffer is fixed when libx264 opens: an IDR forced after a congestion cut would be
    sized for the old rate (at the lab's 5 -> 1.5 Mbit/s step a 16-packet IDR, nearly a whole
    router queue). A keyframe asked for below REOPEN_BELOW of the buffer's rate reopens the
    encoder with the buffer sized for the target; the maxrate ceiling stays, so the target
    climbing back needs no reopen and brings no IDR nobody asked for."""
    rng = np.random.default_rng(7)
    base = pattern(640, 480, 0)

    def frame(i: int) -> np.ndarray:
        return np.roll(base, 8 * i, axis=1) + rng.integers(0, 60, base.shape, dtype=np.uint8)

    def keyframe_after_cut(to_bps: int) -> tuple[int, H264Encoder]:
        encoder = H264Encoder(bitrate=2_000_000, fps=30)
        for i in range(10):
            encoder.encode(frame(i), 0)
        encoder.set_bitrate(to_bps)
        for i in range(10, 20):
            encoder.encode(frame(i), 0)
        encoder.request_keyframe()
        key = encoder.encode(frame(20), 0)
        assert key.keyframe
        return len(key.data), encoder

    small_size, small = keyframe_after_cut(int(2_000_000 * REOPEN_BELOW * 1.05))  # no reopen
    big_size, big = keyframe_after_cut(600_000)
    assert (small.vbv_bps, small.ceiling) == (2_000_000, int(2_000_000 * MAX_GAIN))
    assert (big.vbv_bps, big.ceiling) == (600_000, int(2_000_000 * MAX_GAIN))  # ceiling kept
    assert big_size < small_size * 0.6, (big_size, small_size)
    for bps in (900_000, 1_400_000, 2_000_000):  # the target climbs back: no reopen, no IDR
        big.set_bitrate(bps)
        assert not any(big.encode(frame(21 + i), 0).keyframe for i in range(3))
    assert big.vbv_bps == 600_000
    big.request_keyframe()  # the next keyframe asked for resizes the buffer for the target
    assert big.encode(frame(30), 0).keyframe and big.vbv_bps == 2_000_000


def test_no_periodic_keyframe_from_the_encoder() -> None:
    """Keyframes come on request only (a PLI, a reopen); the safety net for receivers that
    cannot ask lives in the encode stage, only toward such peers."""
    encoder = H264Encoder(bitrate=300_000, fps=30)
    picture = pattern(160, 120, 0)
    keys = [encoder.encode(np.roll(picture, i, axis=1), 0).keyframe for i in range(320)]
    assert keys[0] and not any(keys[1:])


def test_the_encoder_spends_its_budget_and_obeys_a_lower_target_at_once() -> None:
    """libx264 with a two-frame VBV undershoots (0.80 of the target here without the gain);
    the rate adjustment brings it near TARGET_UTILIZATION (0.85), and a lower target drops the
    gain."""
    rng = np.random.default_rng(5)
    base = pattern(640, 480, 0)

    def frame(i: int) -> np.ndarray:
        return np.roll(base, 4 * i, axis=1) + rng.integers(0, 10, base.shape, dtype=np.uint8)

    encoder = H264Encoder(bitrate=1_000_000, fps=30)
    sizes = [len(encoder.encode(frame(i), 0).data) for i in range(150)]
    last_second = sum(sizes[-30:]) * 8
    assert 1.0 < encoder.gain <= MAX_GAIN
    assert 820_000 <= last_second <= 950_000, last_second
    encoder.set_bitrate(500_000)
    assert encoder.gain == 1.0
    after = sum(len(encoder.encode(frame(i), 0).data) for i in range(150, 180)) * 8
    assert after <= 575_000, after


# -- RFC 6184 ------------------------------------------------------------------------------


def packets_of(frames: tuple[bytes, ...], max_payload: int = 1200) -> list[list[bytes]]:
    sender = RtpSender(H264Packetizer(max_payload), ssrc=SSRC, payload_type=96, initial_seq=65500)
    return [sender.packetize(f, 0, 0, 3000 * i) for i, f in enumerate(frames)]


def receiver() -> tuple[RtpReceiver, H264Depacketizer]:
    depacketizer = H264Depacketizer()
    rx = RtpReceiver()
    rx.add_stream(depacketizer, payload_type=96, clock_rate=90000, expected_ssrc=SSRC)
    return rx, depacketizer


def feed(rx: RtpReceiver, datagrams: list[bytes], now: float = 0.0) -> list[CodecFrame]:
    out: list[CodecFrame] = []
    for d in datagrams:
        out += rx.push(d, now)
    return out


def test_round_trip_with_stap_a_fu_a_reordering_and_duplicates() -> None:
    frames = encoded()
    per_frame = packets_of(frames, max_payload=300)  # small: FU-A for the slices
    first = per_frame[0]
    assert any(p[12] & 0x1F == 24 for p in first)  # SPS + PPS aggregated in a STAP-A
    assert any(p[12] & 0x1F == 28 for p in first)  # large slices in FU-A fragments
    rx, depacketizer = receiver()
    rng = random.Random(3)
    got: list[CodecFrame] = []
    for packets in per_frame:
        shuffled = packets + packets[:2]  # duplicates
        rng.shuffle(shuffled)
        got += feed(rx, shuffled)
    assert [f.timestamp for f in got] == [3000 * i for i in range(len(frames))]
    assert [f.data for f in got] == [join_annexb(split_annexb(f)) for f in frames]
    assert got[0].keyframe and not got[1].keyframe
    stats = depacketizer.stats
    assert (stats.frames, stats.duplicates, stats.keyframes) == (len(frames), 2 * len(frames), 1)
    decoder = H264Decoder()
    for f in got:
        w, h = decoder.frame_size(f.data)
        rgb = np.empty((h, w, 3), np.uint8)
        decoder.decode_rgb_into(f.data, rgb)
    stamp = read_stamp(rgb[:, :, ::-1].copy())
    assert stamp is not None and stamp.frame_id == len(frames) - 1


def test_a_lost_packet_breaks_the_chain_until_a_keyframe() -> None:
    encoder = H264Encoder(bitrate=1_000_000)
    frames = [encoder.encode(pattern(640, 480, i), 0).data for i in range(4)]
    encoder.request_keyframe()
    key = encoder.encode(pattern(640, 480, 4), 0)
    assert key.keyframe
    per_frame = packets_of((*frames, key.data), max_payload=300)
    rx, depacketizer = receiver()
    assert len(feed(rx, per_frame[0])) == 1
    assert len(feed(rx, per_frame[1][:-2] + per_frame[1][-1:])) == 0  # one packet lost
    # Complete, but it waits up to REORDER_WAIT for the older frame (reordering)...
    assert feed(rx, per_frame[2], now=0.0) == []
    assert not depacketizer.needs_keyframe
    # ...after which the older frame is lost, and with it this frame's reference.
    assert feed(rx, per_frame[3], now=0.1) == []
    assert depacketizer.needs_keyframe
    s = depacketizer.stats
    assert (s.incomplete, s.waiting_keyframe) == (1, 2)
    (recovered,) = feed(rx, per_frame[4], now=0.2)
    assert recovered.keyframe and not depacketizer.needs_keyframe


def test_frames_reordered_across_frames_come_out_whole_and_in_order() -> None:
    """The last packet of frame 1 arrives after all of frame 2: both are shown, in order, and
    nothing asks for a keyframe (before: frame 1 was dropped when frame 2 completed)."""
    per_frame = packets_of(encoded(frames=4), max_payload=300)
    rx, depacketizer = receiver()
    got = feed(rx, per_frame[0], now=0.0)
    got += feed(rx, per_frame[1][:-1] + per_frame[2] + per_frame[1][-1:], now=0.01)
    got += feed(rx, per_frame[3], now=0.02)
    assert [f.timestamp for f in got] == [0, 3000, 6000, 9000]
    assert not depacketizer.needs_keyframe and depacketizer.stats.incomplete == 0


def test_whole_frames_lost_in_an_outage_break_the_chain() -> None:
    """A cut loses whole frames: no partial frame is left to notice, only the sequence gap.
    The next P frame must not be shown on a missing reference: ask for a keyframe."""
    per_frame = packets_of(encoded(frames=6), max_payload=300)
    rx, depacketizer = receiver()
    assert len(feed(rx, per_frame[0], now=0.0)) == 1
    assert len(feed(rx, per_frame[1], now=0.03)) == 1
    # Frames 2 and 3 never arrive. Frame 4 is held first: the missing packets could be whole
    # frames under repair (NACK/RTX).
    assert feed(rx, per_frame[4], now=3.0) == []
    assert not depacketizer.needs_keyframe
    # Past the wait, the gap breaks the chain: frames 4 and 5 are not shown.
    assert feed(rx, per_frame[5], now=3.1) == []
    assert depacketizer.needs_keyframe
    s = depacketizer.stats
    assert (s.gaps, s.waiting_keyframe, s.incomplete) == (1, 2, 0)


def test_a_whole_frame_repaired_in_time_keeps_the_chain() -> None:
    """The one packet of a small frame is lost and comes back by retransmission within the
    repair wait: the newer frame waited for it, and nothing is dropped."""
    per_frame = packets_of(encoded(frames=6), max_payload=100_000)
    rx, depacketizer = receiver()
    depacketizer.repair_wait = 0.3
    shown = feed(rx, per_frame[0], now=0.0) + feed(rx, per_frame[1], now=0.03)
    assert feed(rx, per_frame[3], now=0.1) == []  # frame 2 is missing: wait for it
    shown += feed(rx, per_frame[2], now=0.2)  # repaired: both go, in order
    shown += feed(rx, per_frame[4], now=0.23)
    assert [f.timestamp for f in shown] == sorted(f.timestamp for f in shown)
    assert len(shown) == 5 and not depacketizer.needs_keyframe
    assert depacketizer.stats.gaps == 0


def test_a_frame_is_held_while_a_packet_before_it_is_still_asked_for() -> None:
    """Past ``repair_wait`` a frame still waits, up to ``repair_hold``, while the NACK list
    asks for a packet before its first (an RTT that grew faster than it was measured); not
    once the list gave up."""
    per_frame = packets_of(encoded(frames=5), max_payload=100_000)
    for listed in (True, False):
        rx, depacketizer = receiver()
        depacketizer.repair_wait, depacketizer.repair_hold = 0.1, 0.5
        depacketizer.repair_pending = lambda seq, listed=listed: listed
        shown = feed(rx, per_frame[0] + per_frame[1], now=0.0)
        assert feed(rx, per_frame[3], now=0.01) == []  # frame 2 missing: wait
        shown += feed(rx, per_frame[4], now=0.3)  # 0.3 s > repair_wait
        if listed:  # still held; then the repair comes, and all go in order
            assert len(shown) == 2  # frames 0 and 1 only
            assert not depacketizer.needs_keyframe
            shown += feed(rx, per_frame[2], now=0.35)
            assert [f.timestamp for f in shown] == [0, 3000, 6000, 9000, 12000]
        else:  # given up after repair_wait: the gap breaks the chain
            assert depacketizer.needs_keyframe and depacketizer.stats.gaps == 1
            assert [f.timestamp for f in shown] == [0, 3000]


def test_a_keyframe_after_a_broken_chain_waits_for_nothing_older() -> None:
    """Frames older than a keyframe with its SPS and PPS would be dropped anyway while the
    chain is broken: the keyframe is shown at once, not after the repair wait."""
    encoder = H264Encoder(bitrate=1_000_000)
    frames = [encoder.encode(pattern(640, 480, i), 0).data for i in range(5)]
    encoder.request_keyframe()
    frames.append(encoder.encode(pattern(640, 480, 5), 0).data)
    per_frame = packets_of(tuple(frames), max_payload=300)
    rx, depacketizer = receiver()
    depacketizer.repair_wait, depacketizer.repair_hold = 0.4, 0.5
    depacketizer.repair_pending = lambda seq: True
    assert len(feed(rx, per_frame[0], now=0.0)) == 1
    assert feed(rx, per_frame[2], now=0.0) == []  # frame 1 lost whole
    assert feed(rx, per_frame[3], now=0.6) == []  # past the hold: the chain breaks
    assert depacketizer.needs_keyframe
    assert feed(rx, per_frame[4][1:], now=0.61) == []  # frame 4 incomplete, still open
    (key,) = feed(rx, per_frame[5], now=0.62)  # the keyframe: at once, though 4 is open
    assert key.keyframe and not depacketizer.needs_keyframe
    assert depacketizer.stats.incomplete == 1  # frame 4, dropped when the keyframe went


def test_a_complete_keyframe_waits_for_nothing_older_while_the_chain_is_whole() -> None:
    """An older frame still under repair is not worth waiting for once a complete keyframe with
    its parameter sets is here: nothing after the keyframe refers to it, and the display shows
    the newest decodable frame anyway. Under congestion the keyframe is the repair
    (pipeline.stages.send asks for one), and waiting for the older frame's retransmission
    through a full queue was the rest of the freeze."""
    encoder = H264Encoder(bitrate=1_000_000)
    frames = [encoder.encode(pattern(640, 480, i), 0).data for i in range(3)]
    encoder.request_keyframe()
    frames.append(encoder.encode(pattern(640, 480, 3), 0).data)
    per_frame = packets_of(tuple(frames), max_payload=300)
    rx, depacketizer = receiver()
    depacketizer.repair_wait, depacketizer.repair_hold = 0.4, 0.5
    depacketizer.repair_pending = lambda seq: True
    moot: list[int] = []
    depacketizer.repair_moot = moot.append
    assert len(feed(rx, per_frame[0], now=0.0)) == 1
    assert feed(rx, per_frame[1][:-1], now=0.03) == []  # frame 1: its last packet under repair
    assert feed(rx, per_frame[2], now=0.06) == []  # frame 2 waits for frame 1
    assert not depacketizer.needs_keyframe
    (key,) = feed(rx, per_frame[3], now=0.1)  # the keyframe: at once
    assert key.keyframe and key.timestamp == 9000
    s = depacketizer.stats
    assert (s.incomplete, s.waiting_keyframe, s.gaps) == (1, 1, 0)  # frames 1 and 2, no outage
    first_of_key = int.from_bytes(per_frame[3][0][2:4], "big")
    assert moot == [first_of_key]  # the receiver stops asking for frame 1's packet
    assert not depacketizer.needs_keyframe
    assert feed(rx, per_frame[1][-1:], now=0.2) == []  # frame 1's repair, too late: ignored
    assert depacketizer.stats.late == 1


def test_a_keyframe_whose_parameter_sets_are_lost_waits_for_their_repair() -> None:
    """A lost STAP-A (SPS + PPS) leaves an IDR slice with first_mb_in_slice 0 that looks like
    the start of the picture: the keyframe waits for the missing packets as a P frame would,
    and comes out whole when the repair arrives (before: at once, without its SPS, which the
    display rejects on a first keyframe or a new size)."""
    encoder = H264Encoder(bitrate=1_000_000)
    frames = [encoder.encode(pattern(640, 480, i), 0).data for i in range(2)]
    encoder.request_keyframe()
    frames.append(encoder.encode(pattern(640, 480, 2), 0).data)
    per_frame = packets_of(tuple(frames), max_payload=300)
    stap_a, *rest = per_frame[2]
    assert stap_a[12] & 0x1F == 24
    rx, depacketizer = receiver()
    depacketizer.repair_wait = 0.3
    assert len(feed(rx, per_frame[0] + per_frame[1], now=0.0)) == 2
    assert feed(rx, rest, now=0.05) == []  # complete-looking, but its head is missing
    (key,) = feed(rx, [stap_a], now=0.15)  # the retransmission
    assert key.keyframe and key.data == join_annexb(split_annexb(frames[2]))
    assert H264Decoder().frame_size(key.data) == (640, 480)
    s = depacketizer.stats
    assert (s.gaps, s.incomplete, s.keyframes) == (0, 0, 2)


@pytest.mark.parametrize("head_order", [(0, 1), (1, 0)])
def test_a_head_in_several_packets_is_taken_in_any_order(head_order: tuple[int, int]) -> None:
    """A sender that puts the SPS and the PPS in packets of their own (single NAL units, seq
    wrapping at 65535): both lost, their repairs come back in either order."""
    encoder = H264Encoder(bitrate=1_000_000)
    frames = [encoder.encode(pattern(640, 480, i), 0).data for i in range(2)]
    encoder.request_keyframe()
    frames.append(encoder.encode(pattern(640, 480, 2), 0).data)
    seq = 65530
    per_frame: list[list[tuple[int, int, bool, memoryview]]] = []
    for i, frame in enumerate(frames):
        nals = split_annexb(frame)
        per_frame.append(
            [(seq + j & 0xFFFF, 3000 * i, j == len(nals) - 1, n) for j, n in enumerate(nals)]
        )
        seq += len(nals)
    key = per_frame[2]
    assert [p[3][0] & 0x1F for p in key[:2]] == [7, 8]  # SPS, PPS
    depacketizer = H264Depacketizer()
    depacketizer.repair_wait = 0.3
    out = [f for p in per_frame[0] + per_frame[1] for f in depacketizer.push(*p, now=0.0)]
    assert len(out) == 2
    assert [f for p in key[2:] for f in depacketizer.push(*p, now=0.05)] == []
    out = [f for i in head_order for f in depacketizer.push(*key[i], now=0.1)]
    assert len(out) == 1 and out[0].keyframe
    assert out[0].data == join_annexb(split_annexb(frames[2]))


def test_hostile_payloads_are_counted_and_dropped() -> None:
    rx, depacketizer = receiver()
    sender = RtpSender(H264Packetizer(), ssrc=SSRC, payload_type=96, initial_seq=1)

    def send(payload: bytes, ts: int) -> list[CodecFrame]:
        from pipeline.wire.rtp import rtp_header

        return rx.push(rtp_header(96, ts // 3000 + 10, ts, SSRC, True) + payload, 0.0)

    assert send(b"\x9c\x85\x88", 0) == []  # forbidden bit
    assert send(b"\x1c\x05\x88\x80", 3000) == []  # FU-A without its start
    assert send(b"\x18\xff\xff\x67", 6000) == []  # STAP-A claiming 65535 bytes
    assert send(b"\x1e\x00", 9000) == []  # NAL type 30: unknown
    depacketizer.expire(10.0)  # the FU-A that never started times out
    s = depacketizer.stats
    assert (s.malformed, s.unsupported, s.frames) == (2, 1, 0)
    assert s.incomplete >= 1 and depacketizer.needs_keyframe
    assert sender.packets_sent == 0


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 40), st.integers(0, 6), st.booleans(), st.binary(max_size=40)),
        max_size=30,
    )
)
def test_depacketizer_never_raises(packets: list[tuple[int, int, bool, bytes]]) -> None:
    depacketizer = H264Depacketizer(max_frame_bytes=4096)
    for i, (seq, ts, marker, payload) in enumerate(packets):
        depacketizer.push(seq, ts * 3000, marker, memoryview(payload), i * 0.01)
    depacketizer.expire(100.0)


# -- RTCP feedback -------------------------------------------------------------------------


def test_pli_and_fir_round_trip_and_are_rate_limited() -> None:
    pkts = [PictureLossIndication(1, 2), FullIntraRequest(1, ((2, 7),)), ReceiverReport(1)]
    assert parse_rtcp(serialize_rtcp(pkts)) == pkts
    receiver_side = RtcpSession(ssrc=10, peer_ssrc=20)
    request = receiver_side.build_keyframe_request(media_ssrc=20, now=1.0)
    assert request is not None
    assert receiver_side.build_keyframe_request(media_ssrc=20, now=1.1) is None  # 200 ms limit
    assert receiver_side.build_keyframe_request(media_ssrc=20, now=1.3) is not None
    sender_side = RtcpSession(ssrc=20, peer_ssrc=10)
    assert sender_side.keyframe_requested(sender_side.receive(request, 1.0))
    stranger = RtcpSession(ssrc=20, peer_ssrc=99)  # a request from anyone but the peer
    assert not stranger.keyframe_requested(stranger.receive(request, 1.0))
    other = RtcpSession(ssrc=21, peer_ssrc=10)  # about another stream
    assert not other.keyframe_requested(other.receive(request, 1.0))
    assert (receiver_side.stats.plis_sent, sender_side.stats.plis_received) == (2, 1)


def test_a_keyframe_request_is_repeated_only_when_the_answer_is_overdue() -> None:
    """The receive stage passes RTT + a margin: on a 300 ms path a request every 200 ms would
    cross the keyframe in flight and ask for a second one."""
    from pipeline.stages.receive import KEYFRAME_ANSWER_MARGIN_S

    session = RtcpSession(ssrc=10, peer_ssrc=20)
    answer = 0.3 + KEYFRAME_ANSWER_MARGIN_S
    assert session.build_keyframe_request(20, 1.0, answer) is not None
    assert session.build_keyframe_request(20, 1.25, answer) is None  # 200 ms: not yet
    assert session.build_keyframe_request(20, 1.0 + answer + 0.001, answer) is not None
    # Never more often than every 200 ms, whatever the caller passes.
    assert session.build_keyframe_request(20, 2.0, 0.01) is not None
    assert session.build_keyframe_request(20, 2.1, 0.01) is None
    assert session.stats.plis_sent == 3
    session.keyframe_answered()  # a keyframe came: a new break waits only the 200 ms floor
    assert session.build_keyframe_request(20, 2.15, answer) is None
    assert session.build_keyframe_request(20, 2.21, answer) is not None
    assert session.build_keyframe_request(20, 2.45, answer) is None  # a repeat: RTT + margin


# -- real sessions --------------------------------------------------------------------------

pytestmark = pytest.mark.usefixtures("no_leaks")


@contextlib.contextmanager
def h264_call(
    preset: str = "medium", drop_every: int = 0, drop_payload_types: frozenset[int] = frozenset()
) -> Iterator[tuple[MediaSession, MediaSession, LossyRelay | None]]:
    a = MediaSession(bind_ip=LOCAL, preset=preset)
    b = MediaSession(bind_ip=LOCAL, preset=preset)
    relay: LossyRelay | None = None
    try:
        port_a, port_b = a.open(), b.open()
        target = port_b
        if drop_every:
            relay = LossyRelay(port_b, drop_every=drop_every, drop_payload_types=drop_payload_types)
            target = relay.port
        a.connect(PeerEndpoint(LOCAL, target, MediaMode.RTP, 1, 2, codec="H264"))
        b.connect(PeerEndpoint(LOCAL, port_a, MediaMode.RTP, 2, 1, codec="H264"))
        yield a, b, relay
    finally:
        if relay is not None:
            relay.close()
        a.close()
        b.close()


def stamped(session: MediaSession, after: int = -1) -> int | None:
    frame = session.latest()[0]
    if frame is None:
        return None
    stamp = read_stamp(frame.image)
    return stamp.frame_id if stamp is not None and stamp.frame_id > after else None


def test_an_h264_call_shows_the_moving_pattern_both_ways() -> None:
    with h264_call() as (a, b, _):
        for session in (a, b):
            first = wait_for(functools.partial(stamped, session))
            wait_for(functools.partial(stamped, session, first))
        # Stage snapshots are published every 250 ms: the encoder's may lag the first frames.
        wait_for(lambda: b.stats().codec == "libx264")  # the encoder's backend
        st = b.stats()
        assert st.info.codec_name == "H264"
        assert st.drops.waiting_keyframe == 0 and st.info.dead_stages == ()
        wait_for(lambda: b.stats().freezes.frames_shown > 0)  # snapshots: every 250 ms
        text = a.sdp()
        assert "a=rtpmap:96 H264/90000" in text
        (fmtp,) = [line for line in text.splitlines() if line.startswith("a=fmtp:96 ")]
        params = dict(kv.split("=", 1) for kv in fmtp[len("a=fmtp:96 ") :].split(";"))
        assert params["packetization-mode"] == "1"
        sps_b64, _pps_b64 = params["sprop-parameter-sets"].split(",")
        sps = base64.b64decode(sps_b64)
        assert sps_size(sps) == (640, 480)  # the medium preset's size, from the SDP alone
        assert params["profile-level-id"] == sps[1:4].hex()
        assert get_codec("h264").info is H264_INFO


def _counter(session: MediaSession, stage: str, name: str) -> int:
    counters = session.stats().stages.get(stage, {}).get("counters", {})
    return int(counters.get(name, 0))


def test_loss_is_repaired_by_nack_and_rtx_without_a_broken_picture() -> None:
    with h264_call(drop_every=40) as (a, b, relay):
        assert relay is not None
        wait_for(lambda: relay.dropped >= 5)
        wait_for(lambda: b.stats().repair.recovered >= 3)
        assert a.stats().repair.retransmitted >= 3
        assert b.stats().repair.nacks_sent > 0 and a.stats().repair.nacks_received > 0
        first = wait_for(functools.partial(stamped, b))
        wait_for(functools.partial(stamped, b, first))
        assert b.stats().info.dead_stages == ()


def test_loss_that_cannot_be_repaired_leads_to_keyframe_requests_and_the_picture_recovers() -> None:
    # Every retransmission (RTX, RFC 4588) is lost too: only a keyframe repairs the chain.
    with h264_call(drop_every=40, drop_payload_types=frozenset({PT_H264_RTX})) as (a, b, relay):
        assert relay is not None
        wait_for(lambda: relay.dropped >= 5)
        wait_for(lambda: b.stats().pli_sent > 0)
        wait_for(lambda: a.stats().pli_received > 0)
        wait_for(
            lambda: (
                a.stats().stages.get("encode", {}).get("counters", {}).get("keyframe_requests", 0)
                > 0
            )
        )
        # Never a broken picture: every frame shown carries a readable stamp, and it moves on.
        first = wait_for(functools.partial(stamped, b))
        wait_for(functools.partial(stamped, b, first))
        st = b.stats()
        assert st.drops.incomplete_frames + st.drops.waiting_keyframe > 0
        assert st.info.dead_stages == ()
