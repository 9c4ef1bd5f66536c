"""Opus: the codec through PyAV and libopus for real, the RFC 6716 packet checks against
libopus's own parser, and the RFC 7587 payload format on arbitrary bytes."""

from __future__ import annotations

import ctypes
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.codecs.base import EncodeError, MediaKind
from pipeline.codecs.opus.codec import (
    FRAME_SAMPLES,
    OPUS_INFO,
    SAMPLE_RATE,
    OpusAudioCodec,
    OpusDecoder,
    OpusEncoder,
)
from pipeline.codecs.opus.libopus import load
from pipeline.codecs.opus.rfc7587 import OpusDepacketizer, OpusPacketizer
from pipeline.codecs.opus.toc import MAX_PACKET, OpusPacketError, parse_packet
from pipeline.codecs.registry import codecs, for_mode, get_codec
from pipeline.control import MediaMode


def tone(hz: float, frames: int, level: float = 0.3) -> np.ndarray:
    t = np.arange(frames * FRAME_SAMPLES) / SAMPLE_RATE
    return (np.sin(2 * np.pi * hz * t) * level * 32767).astype(np.int16)


def peak_hz(pcm: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    return float(np.argmax(spectrum) * SAMPLE_RATE / len(pcm))


def rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))


def encode_all(enc: OpusEncoder, pcm: np.ndarray) -> list[bytes]:
    packets: list[bytes] = []
    for i in range(0, len(pcm), FRAME_SAMPLES):
        packets += enc.encode(pcm[i : i + FRAME_SAMPLES])
    return packets


# -- registry and negotiation ----------------------------------------------------------------


def test_opus_is_registered_with_its_rfc_7587_facts() -> None:
    opus = get_codec("OPUS")
    assert isinstance(opus, OpusAudioCodec) and opus.info is OPUS_INFO
    info = opus.info
    assert (info.kind, info.payload_type, info.clock_rate) == (MediaKind.AUDIO, 111, 48000)
    assert info.rtpmap == "opus/48000/2"  # RFC 7587 7: always two channels in the rtpmap
    assert info.payload_format == "RFC 7587" and info.modes == (MediaMode.RTP,)
    with pytest.raises(EncodeError, match="audio codec"):
        opus.encoder()
    with pytest.raises(EncodeError, match="audio codec"):
        opus.decoder()


def test_an_audio_codec_changes_nothing_for_video() -> None:
    assert for_mode(MediaMode.RTP).info.name == "JPEG"
    assert for_mode(MediaMode.V0).info.name == "JPEG"
    assert for_mode(MediaMode.RTP, MediaKind.AUDIO) is get_codec("opus")
    video = [c.info.name for c in codecs() if c.info.kind is MediaKind.VIDEO]
    assert video == ["JPEG", "H264"]
    assert len({c.info.payload_type for c in codecs()}) == len(codecs())


# -- encoder and decoder ---------------------------------------------------------------------


def test_encoder_takes_fec_and_loss_options_and_ffmpeg_has_no_dtx() -> None:
    enc = OpusEncoder(24_000, fec=True, packet_loss=20)
    assert enc.unused_options == {}  # application, frame_duration, fec, packet_loss all taken
    import av

    ctx = av.CodecContext.create("libopus", "w")
    assert isinstance(ctx, av.AudioCodecContext)
    ctx.sample_rate, ctx.layout, ctx.format = SAMPLE_RATE, "mono", "s16"
    ctx.options = {"dtx": "1"}
    ctx.open()
    assert dict(ctx.options) == {"dtx": "1"}  # left unused: this FFmpeg exposes no DTX


@pytest.mark.parametrize("backend", ["libopus", "pyav"])
def test_a_tone_survives_encode_and_decode(backend: str) -> None:
    pcm = tone(1000, 50)
    packets = encode_all(OpusEncoder(), pcm)
    assert len(packets) == 50
    assert all(parse_packet(p).samples == FRAME_SAMPLES for p in packets)
    dec = OpusDecoder(backend)
    assert dec.backend == backend
    out = np.concatenate([dec.decode(p) for p in packets])
    assert out.shape == pcm.shape and out.dtype == np.int16
    tail = out[FRAME_SAMPLES * 10 :]  # past the encoder's start-up
    assert abs(peak_hz(tail) - 1000) < 5
    assert 0.7 < rms(tail) / rms(pcm) < 1.3


def test_bitrate_is_what_was_asked() -> None:
    rng = np.random.default_rng(1)
    noise = (rng.standard_normal(100 * FRAME_SAMPLES) * 3000).astype(np.int16)
    for bitrate in (16_000, 64_000):
        packets = encode_all(OpusEncoder(bitrate, fec=False, packet_loss=0), noise)
        measured = sum(len(p) for p in packets) * 8 / 2.0  # 100 frames = 2 s
        assert 0.7 * bitrate < measured < 1.3 * bitrate, (bitrate, measured)


def test_libopus_conceals_a_lost_packet_and_fec_does_better() -> None:
    assert load() is not None
    rng = np.random.default_rng(7)
    # Speech-like: a 200 Hz buzz with a wandering formant, syllables of 120 ms.
    t = np.arange(60 * FRAME_SAMPLES) / SAMPLE_RATE
    buzz = np.sign(np.sin(2 * np.pi * (180 + 40 * np.sin(2 * np.pi * 3 * t)) * t))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * t / 0.12)
    pcm = (np.convolve(buzz * env, np.ones(12) / 12, "same") * 8000).astype(np.int16)
    pcm += (rng.standard_normal(len(pcm)) * 200).astype(np.int16)
    packets = encode_all(OpusEncoder(32_000, fec=True, packet_loss=30), pcm)

    def spectrum(x: np.ndarray) -> np.ndarray:
        return np.abs(np.fft.rfft(x * np.hanning(len(x))))[:200]  # 0-10 kHz

    for lost in (20, 30, 45):  # voiced frames (a quiet one carries no FEC worth testing)
        ref_dec = OpusDecoder("libopus")
        ref = [ref_dec.decode(p) for p in packets[: lost + 1]][lost]
        got = {}
        for how in ("plc", "fec"):
            dec = OpusDecoder("libopus")
            for p in packets[:lost]:
                dec.decode(p)
            if how == "plc":
                got[how] = dec.conceal(FRAME_SAMPLES)
            else:
                got[how] = dec.recover(packets[lost + 1], FRAME_SAMPLES)
            assert got[how].shape == (FRAME_SAMPLES,)
        # PLC: something of the right colour (not silence), not the waveform.
        assert rms(got["plc"]) > 0.1 * rms(ref)
        assert np.corrcoef(spectrum(got["plc"]), spectrum(ref))[0, 1] > 0.5
        # FEC: the lost frame itself, at a lower bitrate.
        fec_error = rms(got["fec"].astype(np.int32) - ref)
        assert fec_error < 0.4 * rms(ref), (lost, fec_error, rms(ref))
        assert fec_error < 0.5 * rms(got["plc"].astype(np.int32) - ref)


def test_pyav_decoder_conceals_with_a_fade() -> None:
    dec = OpusDecoder("pyav")
    for p in encode_all(OpusEncoder(), tone(440, 20)):
        dec.decode(p)
    levels = [rms(dec.conceal(FRAME_SAMPLES)) for _ in range(6)]
    assert levels[0] > 0 and all(b < a or b == 0 for a, b in itertools.pairwise(levels))
    assert levels[-1] == 0


@pytest.mark.parametrize("backend", ["libopus", "pyav"])
def test_decoder_refuses_garbage_with_a_codec_error(backend: str) -> None:
    dec = OpusDecoder(backend)
    for bad in (b"", b"\x03", bytes([0x01, 1, 2, 3]), b"\xff" * 2000):
        with pytest.raises(OpusPacketError):
            dec.decode(bad)


def test_encoder_refuses_a_wrong_frame() -> None:
    enc = OpusEncoder()
    with pytest.raises(EncodeError):
        enc.encode(np.zeros(480, np.int16))
    with pytest.raises(EncodeError):
        enc.encode(np.zeros(FRAME_SAMPLES, np.float32))  # type: ignore[arg-type]
    with pytest.raises(EncodeError):
        OpusEncoder(1000)


# -- packet checks against libopus -----------------------------------------------------------


def _libopus_frames(packet: bytes) -> int:
    """opus_packet_parse's verdict: the frame count, or a negative error."""
    lib = load()
    assert lib is not None
    fn = lib.opus_packet_parse
    fn.restype = ctypes.c_int
    toc = ctypes.c_ubyte()
    frames = (ctypes.c_void_p * 48)()
    sizes = (ctypes.c_int16 * 48)()
    offset = ctypes.c_int()
    fn.argtypes = [ctypes.c_char_p, ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p,
                   ctypes.c_void_p, ctypes.c_void_p]  # fmt: skip
    return int(fn(packet, len(packet), ctypes.byref(toc), frames, sizes, ctypes.byref(offset)))


packet_bytes = st.one_of(
    st.binary(min_size=0, max_size=MAX_PACKET),
    # Mostly well-formed code 2/3 headers, so that the length rules are exercised.
    st.tuples(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=400)).map(
        lambda t: bytes([t[0] | 0x02, t[1]]) + t[2]
    ),
)


@settings(max_examples=3000, deadline=None)
@given(packet_bytes)
def test_parse_packet_agrees_with_libopus(packet: bytes) -> None:
    try:
        toc = parse_packet(packet)
    except OpusPacketError:
        ours = None
    else:
        ours = toc.frames
        assert 120 <= toc.samples <= 5760
    theirs = _libopus_frames(packet) if packet else -4
    assert ours == (theirs if theirs > 0 else None), (packet[:8].hex(), ours, theirs)


def test_parse_packet_reads_each_code() -> None:
    assert parse_packet(bytes([9 << 3]) + b"x" * 10).samples == 960  # code 0, 20 ms SILK WB
    assert parse_packet(bytes([(9 << 3) | 1]) + b"x" * 10).samples == 1920
    assert parse_packet(bytes([(31 << 3) | 2, 3]) + b"x" * 5).frames == 2
    assert parse_packet(bytes([(31 << 3) | 3, 6]) + b"x" * 12).samples == 5760
    with pytest.raises(OpusPacketError, match="R5"):
        parse_packet(bytes([(31 << 3) | 3, 7]) + b"x" * 14)  # 140 ms
    with pytest.raises(OpusPacketError):
        parse_packet(bytes([0]) + b"x" * 1276)  # a frame over 1275 bytes


# -- RFC 7587 payload format -----------------------------------------------------------------


def test_packetizer_carries_one_packet_and_refuses_garbage() -> None:
    packets = encode_all(OpusEncoder(), tone(300, 3))
    pk = OpusPacketizer(1200)
    assert pk.payloads(packets[0], 0, 0) == [[packets[0]]]
    with pytest.raises(EncodeError):
        pk.payloads(b"", 0, 0)
    with pytest.raises(EncodeError):
        OpusPacketizer(10).payloads(packets[1], 0, 0)


def test_depacketizer_returns_packets_and_counts_drops() -> None:
    packets = encode_all(OpusEncoder(), tone(300, 3))
    dp = OpusDepacketizer()
    got = dp.push(5, 960, True, memoryview(packets[0]), 1.0)
    assert [f.data for f in got] == [packets[0]] and got[0].timestamp == 960
    assert dp.push(5, 960, False, memoryview(packets[0]), 1.0) == []
    assert dp.push(6, 1920, False, memoryview(b""), 1.0) == []
    assert dp.push(7, 2880, False, memoryview(b"\x03"), 1.0) == []
    s = dp.stats
    assert (s.frames, s.duplicates, s.malformed) == (1, 1, 2)
    assert dp.expire(100.0) == 0


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=1600)), max_size=50))
def test_depacketizer_survives_arbitrary_payloads(pushes: list[tuple[int, bytes]]) -> None:
    dp = OpusDepacketizer()
    returned = 0
    for seq, payload in pushes:
        frames = dp.push(seq, seq * 960, False, memoryview(payload), 0.0)
        returned += len(frames)
        for f in frames:
            assert f.data == payload and len(f.data) <= MAX_PACKET
    s = dp.stats
    assert s.frames == returned
    assert s.frames + s.malformed + s.duplicates == len(pushes)
