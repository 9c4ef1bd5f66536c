"""Lip sync as pure logic (pipeline.audio.sync): SR mappings, the offset, the audio's added delay,
driven through the real audio jitter buffer with time passed in."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.audio.jitter import MAX_EXTRA_FRAMES, AudioJitterBuffer, PlayoutKind
from pipeline.audio.sync import (
    LipSync,
    SenderClock,
    VideoTiming,
    capture_instant_ns,
    is_rtcp,
    rtcp_sender_ssrc,
)
from pipeline.wire.rtcp import SdesChunk, SenderReport, SourceDescription, serialize_rtcp

NTP_EPOCH = 3_900_000_000.0  # sender NTP seconds at its t = 0


def ntp_of(t: float) -> int:
    return int((NTP_EPOCH + t) * (1 << 32))


def test_a_sender_clock_maps_rtp_to_ntp_across_wraparound() -> None:
    clock = SenderClock(48_000)
    assert clock.capture(123) is None  # no SR yet
    ts0 = 0xFFFF_FF00  # wraps soon after
    assert clock.update(ntp_of(10.0), ts0)
    later = (ts0 + 48_000) & 0xFFFF_FFFF  # one second later, wrapped
    capture = clock.capture(later)
    assert capture is not None and abs(capture - (NTP_EPOCH + 11.0)) < 1e-6
    # The next SR agrees with the first: taken.
    assert clock.update(ntp_of(12.0), (ts0 + 2 * 48_000) & 0xFFFF_FFFF)


def test_implausible_sender_reports_are_ignored_until_a_restart_is_clear() -> None:
    clock = SenderClock(90_000)
    assert clock.update(ntp_of(0.0), 0)
    assert not clock.update(0, 90_000)  # NTP 0
    assert not clock.update(ntp_of(-5.0), 90_000)  # NTP going back
    assert not clock.update(ntp_of(1.0), 10 * 90_000)  # 10 s of media in 1 s
    capture = clock.capture(90_000)
    assert capture is not None and abs(capture - (NTP_EPOCH + 1.0)) < 1e-6  # still the first
    # A restarted sender: three SRs in a row that agree with each other are taken.
    assert not clock.update(ntp_of(2.0), 5_000_000)
    assert not clock.update(ntp_of(3.0), 5_090_000)
    assert clock.update(ntp_of(4.0), 5_180_000)
    capture = clock.capture(5_000_000)
    assert capture is not None and abs(capture - (NTP_EPOCH + 2.0)) < 1e-6


def test_video_timing_round_trips_and_nothing_else_unpacks() -> None:
    timing = VideoTiming(0xDEADBEEF, 123_456_789_000)
    assert VideoTiming.unpack(timing.pack()) == timing
    assert VideoTiming.unpack(timing.pack()[:-1]) is None
    assert VideoTiming.unpack(b"\x80" + timing.pack()[1:]) is None
    assert not is_rtcp(timing.pack())


def test_rtcp_is_told_from_rtp_and_its_first_sr_named() -> None:
    sr = serialize_rtcp(
        [
            SenderReport(0x1234_5678, ntp_of(1.0), 42, 10, 1000),
            SourceDescription((SdesChunk(0x1234_5678, ((1, b"vcall"),)),)),
        ]
    )
    assert is_rtcp(sr) and rtcp_sender_ssrc(sr) == 0x1234_5678
    rtp_audio = bytes([0x80, 111]) + bytes(10)
    rtp_marked = bytes([0x80, 0x80 | 111]) + bytes(10)
    for rtp in (rtp_audio, rtp_marked):
        assert not is_rtcp(rtp) and rtcp_sender_ssrc(rtp) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_the_demultiplexers_take_any_bytes(data: bytes) -> None:
    is_rtcp(data)
    rtcp_sender_ssrc(data)
    VideoTiming.unpack(data)


def test_capture_instant_of_a_vcall_video_timestamp() -> None:
    captured_ns = 5_000_000_000_000
    ts = (captured_ns * 90_000 // 1_000_000_000) & 0xFFFF_FFFF
    sent_ns = captured_ns + 12_000_000  # encoded and sent 12 ms later
    assert abs(capture_instant_ns(sent_ns, ts, 90_000) - captured_ns) < 20_000
    # A timestamp that is not of this clock: the time given.
    assert capture_instant_ns(sent_ns, ts + 10 * 90_000, 90_000) == sent_ns


# -- the closed loop: sender, network, the real jitter buffer, LipSync --------------------------


@dataclass
class Call:
    true_offsets_ms: list[float]  # per video measurement: video delay - audio delay (truth)
    extras_ms: list[float]
    sync: LipSync
    buf: AudioJitterBuffer


def simulate(
    *,
    video_delay: float,
    seconds: float = 20.0,
    net: float = 0.01,
    clock_offset: float = 5_000.0,
    srs: bool = True,
    act: bool = True,
) -> Call:
    """A 20 ms audio frame a tick; a video frame played ``video_delay`` after its capture;
    SRs every second; the receiver's clock ``clock_offset`` ahead of the sender's."""
    sync = LipSync(video_render=0.0, act=act)
    buf = AudioJitterBuffer()
    ts0, seq0 = 1_000_000, 100
    audio_delays: list[float] = []
    call = Call([], [], sync, buf)
    ticks = int(seconds / 0.02)
    for k in range(ticks):
        t = k * 0.02  # sender time of frame k's capture
        buf.push(seq0 + k, ts0 + 960 * k, b"opus", t + net + clock_offset)
        now = t + net + 0.005 + clock_offset  # the receiver's pull, on its clock
        decision = buf.pull(now)
        if decision.kind is PlayoutKind.FRAME and decision.timestamp is not None:
            sync.on_audio_played(decision.timestamp, now)
            captured = (decision.timestamp - ts0) / 48_000
            audio_delays.append(now - clock_offset - captured)
        if srs and k % 50 == 0:
            sync.on_sender_report("audio", ntp_of(t), (ts0 + round(t * 48_000)) & 0xFFFF_FFFF)
            sync.on_sender_report("video", ntp_of(t), round(t * 90_000) & 0xFFFF_FFFF)
        if k % 10 == 5:
            v_capture = t - 0.01
            played = v_capture + video_delay + clock_offset
            sync.on_video(VideoTiming(round(v_capture * 90_000), round(played * 1e9)))
            buf.extra_frames = round(sync.extra_delay / 0.02)
            if audio_delays:
                truth = video_delay - statistics.mean(audio_delays[-10:])
                call.true_offsets_ms.append(1000 * truth)
            call.extras_ms.append(1000 * sync.extra_delay)
    return call


def test_late_video_gets_the_audio_delayed_to_within_40_ms() -> None:
    call = simulate(video_delay=0.15)
    assert call.true_offsets_ms[5] > 80  # before: the picture ~100 ms behind the sound
    settled = call.true_offsets_ms[-20:]  # the last 4 s
    assert max(abs(o) for o in settled) <= 40, settled
    assert 60 <= call.extras_ms[-1] <= 140
    stats_buf = call.buf.stats
    assert stats_buf.stretched >= 3  # the delay was grown by stretching, frame by frame
    assert stats_buf.received == stats_buf.played + stats_buf.discarded + stats_buf.buffered
    stats = call.sync.stats
    assert stats.engaged and stats.audio_srs == stats.video_srs == 20
    assert stats.offset_ms is not None and abs(stats.offset_ms) <= 20


def test_an_offset_within_the_tolerance_adds_nothing() -> None:
    call = simulate(video_delay=0.05)
    assert max(call.extras_ms) == 0.0 and call.buf.stats.stretched == 0
    assert 0 < max(call.true_offsets_ms) <= 40
    assert not call.sync.stats.engaged


def test_early_video_adds_nothing_and_is_reported() -> None:
    call = simulate(video_delay=0.0)
    assert max(call.extras_ms) == 0.0
    offset = call.sync.stats.offset_ms
    assert offset is not None and offset <= -10  # the audio takes 15 ms here


def test_no_sender_report_no_delay() -> None:
    call = simulate(video_delay=0.15, srs=False)
    assert max(call.extras_ms) == 0.0
    assert call.sync.stats.offset_ms is None and call.sync.stats.measurements == 0


def test_the_added_delay_is_bounded() -> None:
    call = simulate(video_delay=0.6, seconds=40.0)
    assert max(call.extras_ms) <= 200.0
    assert call.extras_ms[-1] == 200.0


def test_measure_only_never_delays() -> None:
    call = simulate(video_delay=0.15, act=False)
    assert max(call.extras_ms) == 0.0
    offset = call.sync.stats.offset_ms
    assert offset is not None and offset > 80


def test_an_absurd_offset_is_counted_and_ignored() -> None:
    sync = LipSync(video_render=0.0)
    sync.on_sender_report("audio", ntp_of(0.0), 0)
    sync.on_sender_report("video", ntp_of(0.0), 0)
    sync.on_audio_played(0, 0.05)
    for _ in range(50):  # a peer whose video SR claims capture 30 s before the audio's
        sync.on_video(VideoTiming(0, round(30.0 * 1e9)))
    assert sync.stats.implausible_offsets == 50 and sync.extra_delay == 0.0


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["audio", "video", "played", "timing"]),
            st.integers(0, 2**64 - 1),
            st.integers(0, 2**32 - 1),
            st.floats(-1e6, 1e6),
        ),
        max_size=60,
    )
)
def test_any_peer_values_keep_the_delay_in_bounds(
    events: list[tuple[str, int, int, float]],
) -> None:
    sync = LipSync()
    for kind, ntp, rtp, when in events:
        if kind in {"audio", "video"}:
            sync.on_sender_report("audio" if kind == "audio" else "video", ntp, rtp)
        elif kind == "played":
            sync.on_audio_played(rtp, when)
        else:
            sync.on_video(VideoTiming(rtp, ntp & 0x7FFF_FFFF_FFFF_FFFF))
        assert 0.0 <= sync.extra_delay <= 0.2


def test_a_start_does_not_wait_for_the_lip_sync_delay() -> None:
    buf = AudioJitterBuffer()
    buf.extra_frames = 5
    assert buf.extra_frames == 5 and buf.target_frames == 6
    buf.push(1, 960, b"a", 0.0)
    assert buf.pull(0.005).kind is PlayoutKind.FRAME  # the jitter's own target: one frame
    buf.extra_frames = 10_000
    assert buf.extra_frames == MAX_EXTRA_FRAMES  # 400 ms at most
    small = AudioJitterBuffer(max_frames=10, capacity=15)
    small.extra_frames = 10_000  # bounded too by the room the buffer has
    assert small.extra_frames == 15 - 10 - 1
