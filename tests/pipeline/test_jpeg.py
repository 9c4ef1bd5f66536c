"""JPEG codecs: round trips, RFC 2435 compatibility (parsed markers), size guards, fallback."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pipeline.codecs.jpeg.backends as jpeg_mod
from pipeline.codecs.jpeg.backends import (
    MAX_DIMENSION,
    CappedEncoder,
    CappedJpeg,
    FrameTooLargeError,
    JpegCodec,
    JpegError,
    OpenCvCodec,
    TurboJpegCodec,
    best_codec,
    codec_by_name,
    encode_under,
    fit_size,
    read_header,
)
from pipeline.sources.pattern import Stamp, read_stamp, render_into

CODECS: list[JpegCodec] = [TurboJpegCodec(), TurboJpegCodec(fast_decode=False), OpenCvCodec()]
CODEC_IDS = ["turbojpeg", "turbojpeg-accurate", "opencv"]
codec_param = pytest.mark.parametrize("codec", CODECS, ids=CODEC_IDS)

# ITU-T T.81 Annex K.3 standard Huffman tables (also RFC 2435 appendix A): (bits, values).
ANNEX_K = {
    (0, 0): (
        bytes([0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]),
        bytes(range(12)),
    ),
    (0, 1): (
        bytes([0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0]),
        bytes(range(12)),
    ),
    (1, 0): (
        bytes([0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D]),
        bytes.fromhex(
            "01020300041105122131410613516107227114328191a1082342b1c11552d1f0"
            "2433627282090a161718191a25262728292a3435363738393a434445464748494a"
            "535455565758595a636465666768696a737475767778797a838485868788898a"
            "92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6"
            "c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9fa"
        ),
    ),
    (1, 1): (
        bytes([0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77]),
        bytes.fromhex(
            "000102031104052131061241510761711322328108144291a1b1c109233352f0"
            "156272d10a162434e125f11718191a262728292a35363738393a434445464748"
            "494a535455565758595a636465666768696a737475767778797a828384858687"
            "88898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3"
            "c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae2e3e4e5e6e7e8e9eaf2f3f4f5f6f7f8f9fa"
        ),
    ),
}


def walk_markers(data: bytes) -> list[tuple[int, bytes]]:
    """(marker, segment payload) from SOI up to and including SOS; asserts well-formedness."""
    assert data[:2] == b"\xff\xd8", "no SOI"
    assert data[-2:] == b"\xff\xd9", "no EOI"
    segments: list[tuple[int, bytes]] = []
    pos = 2
    while True:
        assert data[pos] == 0xFF, f"expected a marker at {pos}"
        marker = data[pos + 1]
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        segments.append((marker, data[pos + 4 : pos + 2 + length]))
        pos += 2 + length
        if marker == 0xDA:
            return segments


def parse_dht(payload: bytes) -> dict[tuple[int, int], tuple[bytes, bytes]]:
    tables = {}
    pos = 0
    while pos < len(payload):
        cls, ident = payload[pos] >> 4, payload[pos] & 0x0F
        bits = payload[pos + 1 : pos + 17]
        values = payload[pos + 17 : pos + 17 + sum(bits)]
        tables[(cls, ident)] = (bits, values)
        pos += 17 + sum(bits)
    return tables


def pattern(width: int = 640, height: int = 480, frame_id: int = 1) -> np.ndarray:
    image = np.zeros((height, width, 3), np.uint8)
    render_into(image, frame_id, 1000)
    return image


def noisy(width: int = 640, height: int = 480, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def smooth(width: int, height: int) -> np.ndarray:
    """Camera-like content without sensor noise: blurred colour blobs."""
    blobs = cv2.resize(noisy(8, 6), (width, height), interpolation=cv2.INTER_CUBIC)
    return cv2.GaussianBlur(blobs, (0, 0), max(width, height) / 40)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255**2 / mse)


def test_annex_k_tables_are_well_formed() -> None:
    for bits, values in ANNEX_K.values():
        assert sum(bits) == len(values)
        assert len(set(values)) == len(values)


@codec_param
@pytest.mark.parametrize("quality", [20, 70, 95])
def test_encode_is_baseline_420_with_standard_huffman(codec: JpegCodec, quality: int) -> None:
    data = codec.encode(pattern(1280, 720), quality)
    segments = walk_markers(data)
    markers = [m for m, _ in segments]
    assert 0xC0 in markers, "not baseline (SOF0)"
    assert not {0xC1, 0xC2, 0xC3} & set(markers), "extended, progressive or lossless SOF"
    assert 0xDD not in markers, "restart interval (RFC 2435 types 0/1 have none)"
    sof = next(p for m, p in segments if m == 0xC0)
    assert sof[0] == 8 and int.from_bytes(sof[1:3], "big") == 720
    assert int.from_bytes(sof[3:5], "big") == 1280 and sof[5] == 3
    sampling = [sof[7 + 3 * i] for i in range(3)]
    assert sampling == [0x22, 0x11, 0x11], "not 4:2:0"
    tables: dict[tuple[int, int], tuple[bytes, bytes]] = {}
    for marker, payload in segments:
        if marker == 0xC4:
            tables.update(parse_dht(payload))
    assert tables == ANNEX_K
    # One scan with all three components (not progressive, not one scan per component).
    sos = segments[-1][1]
    assert sos[0] == 3
    assert read_header(data).sampling == ((2, 2), (1, 1), (1, 1))
    assert read_header(data).baseline


@codec_param
@pytest.mark.parametrize("size", [(320, 240), (1280, 720), (1920, 1080), (100, 75)])
def test_round_trip_shape_and_quality(codec: JpegCodec, size: tuple[int, int]) -> None:
    image = smooth(*size)
    decoded = codec.decode_rgb(codec.encode(image, 85))
    assert decoded.shape == (size[1], size[0], 3) and decoded.dtype == np.uint8
    # Accurate decoding gives 37-49 dB here; fast decoding (nearest chroma upsampling) loses
    # most on tiny smooth images (100x75: 33.6 dB), 0.2 dB on camera-like content.
    assert psnr(decoded, image[:, :, ::-1]) > 32
    # Straight to RGB: on the colour bars, swapped channels would be far off.
    bars = pattern(*size)
    decoded = codec.decode_rgb(codec.encode(bars, 85))
    assert psnr(decoded, bars[:, :, ::-1]) > psnr(decoded, bars) + 5


@codec_param
def test_both_codecs_read_each_others_output(codec: JpegCodec) -> None:
    image = pattern(640, 480)
    for other in CODECS:
        assert psnr(other.decode_rgb(codec.encode(image, 70)), image[:, :, ::-1]) > 28


@codec_param
@pytest.mark.parametrize("target", [(640, 360), (320, 180), (500, 281), (160, 90), (2560, 1440)])
def test_decode_at_display_size(codec: JpegCodec, target: tuple[int, int]) -> None:
    image = pattern(1280, 720)
    data = codec.encode(image, 80)
    shown = codec.decode_rgb(data, target)
    assert shown.shape == (target[1], target[0], 3)
    dst = np.full((target[1], target[0], 3), 7, np.uint8)
    codec.decode_rgb_into(data, dst)
    assert psnr(dst, shown) > 35
    if target[0] >= 320:
        assert read_stamp(dst) == Stamp(1, 1000)


@codec_param
def test_decode_into_a_full_size_slot(codec: JpegCodec) -> None:
    image = pattern(640, 480, 9)
    backing = np.zeros(640 * 480 * 3 * 2, np.uint8)
    slot = backing[: 640 * 480 * 3].reshape(480, 640, 3)
    codec.decode_rgb_into(codec.encode(image, 70), slot)
    assert read_stamp(slot) == Stamp(9, 1000)
    assert not backing[640 * 480 * 3 :].any()
    with pytest.raises(ValueError):
        codec.decode_rgb_into(codec.encode(image, 70), np.zeros((480, 640, 3), np.float32))
    with pytest.raises(ValueError):
        codec.decode_rgb_into(codec.encode(image, 70), np.zeros((480, 700, 3), np.uint8)[:, :640])


@codec_param
def test_encode_rejects_misuse(codec: JpegCodec) -> None:
    with pytest.raises(ValueError):
        codec.encode(np.zeros((48, 64), np.uint8), 70)
    with pytest.raises(ValueError):
        codec.encode(np.zeros((48, 64, 3), np.float32), 70)
    with pytest.raises(ValueError):
        codec.encode(np.zeros((48, 64, 3), np.uint8), 0)
    # A non-contiguous view is fine.
    image = pattern(640, 480)
    assert codec.decode_rgb(codec.encode(image[:, ::2], 70)).shape == (480, 320, 3)


def bomb(width: int, height: int) -> bytes:
    """SOI + SOF0 declaring width x height, and nothing else (about 20 bytes)."""
    sof = bytes([8]) + height.to_bytes(2, "big") + width.to_bytes(2, "big")
    sof += bytes([3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1])
    return b"\xff\xd8\xff\xc0" + (len(sof) + 2).to_bytes(2, "big") + sof + b"\xff\xd9"


@codec_param
def test_decompression_bomb_costs_no_memory(codec: JpegCodec) -> None:
    """Refusing a bomb allocates next to nothing: numpy's arrays are traced by tracemalloc, so
    a frame-sized buffer would show (with the size check disabled, this 5000x5000 one costs
    75 MB in either backend before the decoder notices the scan is too short)."""
    data = bytearray(codec.encode(pattern(64, 48), 70))  # a real JPEG whose SOF lies
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (5000).to_bytes(2, "big") * 2
    dst = np.zeros((48, 64, 3), np.uint8)
    tracemalloc.start()
    try:
        for _ in range(10):
            with pytest.raises(JpegError):
                codec.decode_rgb(bytes(data))
            with pytest.raises(JpegError):
                codec.decode_rgb_into(bytes(data), dst)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024, peak


@codec_param
def test_decompression_bomb_is_refused_before_decoding(codec: JpegCodec) -> None:
    with pytest.raises(JpegError, match="30000x30000"):
        codec.decode_rgb(bomb(30000, 30000))
    with pytest.raises(JpegError):
        codec.decode_rgb_into(bomb(MAX_DIMENSION + 8, 8), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(JpegError):
        codec.decode_rgb(bomb(4000, 4000))  # each side fits, the pixel count does not
    # A real JPEG whose SOF is patched to claim 60000 x 60000.
    data = bytearray(codec.encode(pattern(64, 48), 70))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (60000).to_bytes(2, "big") * 2
    with pytest.raises(JpegError):
        codec.decode_rgb(bytes(data))


@codec_param
def test_decodes_progressive_and_optimised_jpegs_from_other_senders(codec: JpegCodec) -> None:
    image = smooth(320, 240)
    for flag in (cv2.IMWRITE_JPEG_PROGRESSIVE, cv2.IMWRITE_JPEG_OPTIMIZE):
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80, flag, 1])
        assert ok
        assert psnr(codec.decode_rgb(buf.tobytes()), image[:, :, ::-1]) > 32


@codec_param
def test_damaged_jpegs_raise_jpeg_error(codec: JpegCodec) -> None:
    good = codec.encode(pattern(320, 240), 70)
    for bad in (b"", b"\xff\xd8", b"not a jpeg", good[:200], good[: len(good) // 2]):
        with pytest.raises(JpegError):
            codec.decode_rgb(bad)


@given(st.binary(max_size=600))
@settings(max_examples=300, deadline=None)
def test_read_header_survives_arbitrary_bytes(data: bytes) -> None:
    try:
        header = read_header(data)
    except JpegError:
        return
    assert header.width > 0 and header.height > 0


@given(st.binary(max_size=400), st.integers(0, 4000))
@settings(max_examples=200, deadline=None)
def test_decoders_survive_garbage_after_a_real_header(tail: bytes, cut: int) -> None:
    good = OpenCvCodec().encode(pattern(64, 48), 70)
    data = good[: min(cut, len(good))] + tail
    for codec in CODECS:
        try:
            image = codec.decode_rgb(data, (32, 24))
        except JpegError:
            continue
        assert image.shape == (24, 32, 3)


@codec_param
def test_encode_under_respects_the_limit(codec: JpegCodec) -> None:
    image = noisy(1280, 720)
    full = codec.encode(image, 70)
    for limit in (len(full) + 1, len(full) // 2, 60_000, 20_000, 8_000):
        frame = encode_under(codec, image, 70, limit)
        assert isinstance(frame, CappedJpeg)
        assert len(frame.jpeg) <= limit
        header = read_header(frame.jpeg)
        assert (header.width, header.height) == (frame.width, frame.height)
        assert frame.width % 8 == 0 and frame.height % 8 == 0
        assert 20 <= frame.quality <= 70
    assert encode_under(codec, image, 70, len(full)).quality == 70
    # Quality goes down before resolution.
    step = encode_under(codec, image, 70, int(len(full) * 0.8))
    assert (step.width, step.height) == (1280, 720) and step.quality < 70
    with pytest.raises(FrameTooLargeError):
        encode_under(codec, image, 70, 500)
    with pytest.raises(ValueError):
        encode_under(codec, image, 70, 0)


class CountingCodec:
    """A real codec that counts its encodes."""

    def __init__(self, inner: JpegCodec) -> None:
        self.name = inner.name
        self.inner = inner
        self.encodes = 0

    def encode(self, bgr: np.ndarray, quality: int) -> bytes:
        self.encodes += 1
        return self.inner.encode(bgr, quality)

    def decode_rgb(self, jpeg: bytes, scale_to: tuple[int, int] | None = None) -> np.ndarray:
        return self.inner.decode_rgb(jpeg, scale_to)

    def decode_rgb_into(self, jpeg: bytes, dst: np.ndarray) -> None:
        self.inner.decode_rgb_into(jpeg, dst)


def test_capped_encoder_remembers_what_fits() -> None:
    codec = CountingCodec(TurboJpegCodec())
    busy, calm = noisy(640, 480), smooth(640, 480)
    limit = len(codec.inner.encode(busy, 70)) // 3
    assert len(codec.inner.encode(calm, 70)) < limit
    encoder = CappedEncoder(codec, limit, probe_every=5)
    first = encoder.encode(busy, 70)
    searched = codec.encodes
    assert searched > 1 and len(first.jpeg) <= limit
    codec.encodes = 0
    for _ in range(20):
        frame = encoder.encode(busy, 70)
        assert len(frame.jpeg) <= limit
        assert (frame.quality, frame.width) == (first.quality, first.width)
    # About one encode per frame: one extra probe every 5 frames.
    assert codec.encodes <= 20 + 20 // 5
    # Simpler content: the probes climb back to full quality and size, one step at a time.
    for _ in range(5 * searched + 5):
        frame = encoder.encode(calm, 70)
        assert len(frame.jpeg) <= limit
    assert (frame.quality, frame.width, frame.height) == (70, 640, 480)
    # A new requested quality (preset switch) starts from the top.
    assert encoder.encode(calm, 50).quality == 50
    with pytest.raises(FrameTooLargeError):
        CappedEncoder(codec, 300).encode(busy, 70)


def test_fit_size() -> None:
    assert fit_size((1280, 720), (640, 640)) == (640, 360)
    assert fit_size((640, 480), (1280, 720)) == (960, 720)
    assert fit_size((1000, 10), (10, 10)) == (10, 1)
    with pytest.raises(ValueError):
        fit_size((0, 10), (10, 10))


def test_best_codec_prefers_turbojpeg() -> None:
    best_codec.cache_clear()
    try:
        assert best_codec().name == "turbojpeg"
    finally:
        best_codec.cache_clear()
    assert codec_by_name("opencv").name == "opencv"
    with pytest.raises(ValueError):
        codec_by_name("png")


def test_falls_back_to_opencv_without_libturbojpeg(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def missing() -> None:
        raise RuntimeError("Unable to locate turbojpeg library automatically.")

    monkeypatch.setattr(jpeg_mod, "_load_turbojpeg", missing)
    best_codec.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="pipeline.codecs.jpeg.backends"):
            codec = best_codec()
            assert best_codec() is codec
        assert codec.name == "opencv"
        assert isinstance(codec, OpenCvCodec)
        warnings = [r for r in caplog.records if "libturbojpeg unavailable" in r.getMessage()]
        assert len(warnings) == 1  # said once
        image = pattern(320, 240, 4)
        assert read_stamp(codec.decode_rgb(codec.encode(image, 70))) == Stamp(4, 1000)
    finally:
        best_codec.cache_clear()


def test_fallback_also_when_the_library_fails_to_load(monkeypatch: pytest.MonkeyPatch) -> None:
    import turbojpeg

    def broken(lib_path: str | None = None) -> None:
        raise OSError("libturbojpeg.so.0: cannot open shared object file")

    monkeypatch.setattr(turbojpeg, "TurboJPEG", broken)
    best_codec.cache_clear()
    try:
        assert best_codec().name == "opencv"
    finally:
        best_codec.cache_clear()


def test_bench_jpeg_runs_and_writes_sane_json(tmp_path: Path) -> None:
    out = tmp_path / "jpeg.json"
    proc = subprocess.run(
        [sys.executable, "-m", "vcall", "bench", "jpeg", "--frames", "20",
         "--resolution", "640x480", "--json", str(out)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "turbojpeg" in proc.stdout and "opencv" in proc.stdout
    assert "turbojpeg-accurate" in proc.stdout
    report = json.loads(out.read_text())
    assert report["resolution"] == [640, 480] and report["frames"] == 20
    results = report["results"]
    assert {r["codec"] for r in results} == {"turbojpeg", "turbojpeg-accurate", "opencv"}
    assert {r["image"] for r in results} == {"pattern", "camera-like"}
    assert {r["operation"] for r in results} >= {"encode", "decode_rgb", "decode_display"}
    for r in results:
        assert 0 < r["median_ms"] <= r["p95_ms"] < 1000
        assert r["samples"] == 20
    assert all(r["bytes"] > 1000 for r in results if r["operation"] == "encode")
