"""`vcall bench codec`: the registered video codecs compared through the codec seam.

For each preset and each codec, on two moving sources, the benchmark encodes ``--frames``
frames with the codec's ``VideoEncoder`` as the send stage sets it up (``set_fps(preset.fps)``,
``set_bitrate(preset.bitrate_bps)``, ``encode(bgr, preset.quality)``), then decodes every frame
in order at full size with its ``VideoDecoder`` as the receive stage does (``frame_size`` then
``decode_rgb_into``). It never asks which codec it holds.

Sources: ``pattern`` is the stamped test pattern (pipeline/sources/pattern.py: scrolling bars,
a bouncing box, sharp edges); ``camera`` is a camera-like clip generated once per preset size
into a temporary raw BGR file: FFmpeg's ``testsrc2`` at the preset's size and frame rate with
temporal noise and a light blur (``noise=alls=12:allf=t,gblur=sigma=0.6``), which is what makes
real frames expensive. Without ffmpeg (if it is missing or fails, or with ``--camera-clip
numpy``) a panning picture of smooth colour regions gets the same noise and blur from numpy and
OpenCV; the JSON's ``camera_clip`` says which, and why.

What is reported, per preset, source and codec:

- encode and decode time in ms, p50 and p99 (nearest rank) over frames 2..N: the first frame is
  reported on its own (``first``) because it includes opening the encoder or decoder (and for
  an inter-frame codec it is the keyframe). Decode time includes ``frame_size``. The source is
  rendered or read before the clock starts.
- kbit/s at the preset's frame rate: all bytes of all N frames (the first included) x 8 x fps /
  N / 1000, next to the preset's target (codecs steered by quality ignore it).
- PSNR-Y in dB: luma (OpenCV BGR -> YCrCb, full range) of the source against the decoded
  picture, the mean of the per-frame values over all N frames, the first included for every
  codec (an inter-frame codec's first keyframe is usually its worst: ``min`` and ``first`` show
  it); identical pictures count as PSNR_CAP_DB. This is the picture as the user sees it, the
  same measure for every codec.
- PSNR-Y (codec) in dB, where the codec exposes its planes (``coded_luma``/``last_luma``:
  H.264): its own Y plane in, its own Y plane out, before any conversion to RGB, as x264's
  ``--psnr`` and FFmpeg's ``psnr`` filter on yuv420p report it. For H.264 that plane is video
  range (16-235), so the same errors weigh 255/219 less than in the full-range column: about
  1.3 dB higher, with no change in the picture. Null for codecs that do not expose it.
- SSIM-Y only with ``--ssim`` (Gaussian 11x11, sigma 1.5): about 37 ms a frame at 720p here,
  more than encoding and decoding together, so it is off by default.

Defaults: presets medium and high, 90 frames, every registered video codec (about 5 s on the
2-core development machine; ``--presets all`` about 11 s, and the 1080p clip takes 560 MB of
temporary disk while its preset runs).

Prints a table and writes JSON (``--json FILE``) with the machine's load average::

    {"benchmark": "codec", "config": {...}, "presets": {name: {...}}, "camera_clip": {...},
     "host": {"cpus", "loadavg_before", "loadavg_after", ...}, "seconds": S,
     "results": [{"preset", "source", "codec", "encoder", "decoder", "frames", "keyframes",
                  "bytes", "kbps", "target_kbps", "encode_ms": {"p50", "p99", "max", "first"},
                  "decode_ms": {...}, "psnr_y_db": {"mean", "min", "first"},
                  "psnr_y_codec_db": {...} | null, "ssim_y"}]}
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from pipeline.codecs.base import Codec, MediaKind
from pipeline.codecs.registry import UnknownCodecError, codecs, get_codec
from pipeline.errors import LocalProtocolError
from pipeline.presets import PRESET_NAMES, Preset, UnknownPresetError, get_preset
from pipeline.sources.pattern import render_into

U8Array = npt.NDArray[np.uint8]

DEFAULT_PRESETS = ("medium", "high")
SOURCES = ("pattern", "camera")
PSNR_CAP_DB = 100.0
DEFAULT_NOISE = 12


def camera_filter(noise: int) -> str:
    """The ffmpeg filter that makes testsrc2 camera-like: temporal noise of strength ``noise``
    (0: none) and a light blur."""
    return f"noise=alls={noise}:allf=t,gblur=sigma=0.6" if noise else "gblur=sigma=0.6"


def numpy_sigma(noise: int) -> float:
    """FFmpeg's noise filter is Gaussian with sigma strength / sqrt(3)."""
    return noise / math.sqrt(3)


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--presets",
        default=",".join(DEFAULT_PRESETS),
        help=f"comma-separated presets, or 'all' ({','.join(DEFAULT_PRESETS)}; all: "
        f"{','.join(PRESET_NAMES)})",
    )
    parser.add_argument(
        "--codecs", default="all", help="comma-separated codec names (all registered video codecs)"
    )
    parser.add_argument(
        "--sources", default=",".join(SOURCES), help=f"comma-separated ({','.join(SOURCES)})"
    )
    parser.add_argument("--frames", type=int, default=90, help="frames per run (90)")
    parser.add_argument(
        "--camera-clip",
        choices=("auto", "ffmpeg", "numpy"),
        default="auto",
        help="how to make the camera-like clip (auto: ffmpeg if installed, else numpy)",
    )
    parser.add_argument(
        "--noise",
        type=int,
        default=DEFAULT_NOISE,
        help=f"temporal noise strength of the camera-like clip (ffmpeg alls; {DEFAULT_NOISE})",
    )
    parser.add_argument("--ssim", action="store_true", help="also compute SSIM-Y (slow)")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")


# Sources: each yields the same N frames, in order, every time it is iterated, into one buffer.

FrameSource = Callable[[], Iterator[U8Array]]


def _pattern(preset: Preset, frames: int) -> FrameSource:
    def iterate() -> Iterator[U8Array]:
        buf = np.empty((preset.height, preset.width, 3), np.uint8)
        for i in range(frames):
            render_into(buf, i, i * 1_000_000_000 // preset.fps)
            yield buf

    return iterate


def _raw_file(path: Path, preset: Preset, frames: int) -> FrameSource:
    def iterate() -> Iterator[U8Array]:
        buf = np.empty((preset.height, preset.width, 3), np.uint8)
        with path.open("rb") as fh:
            for _ in range(frames):
                if fh.readinto(buf.data) != buf.nbytes:
                    raise RuntimeError(f"{path}: fewer than {frames} frames")
                yield buf

    return iterate


def _ffmpeg_clip(path: Path, preset: Preset, frames: int, noise: int) -> None:
    size = f"{preset.width}x{preset.height}"
    subprocess.run(
        [
            "ffmpeg", "-nostdin", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={preset.fps}",
            "-vf", camera_filter(noise), "-frames:v", str(frames),
            "-f", "rawvideo", "-pix_fmt", "bgr24", str(path),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )  # fmt: skip


def _numpy_clip(path: Path, preset: Preset, frames: int, noise: int, seed: int = 1) -> None:
    """Smooth colour regions and two solid shapes that pan 4 px a frame, with fresh Gaussian
    noise on every frame (sigma 12 / sqrt(3): what FFmpeg's ``noise=alls=12`` adds), then the
    same light blur."""
    w, h = preset.width, preset.height
    rng = np.random.default_rng(seed)
    blobs = rng.integers(0, 256, (9, 24, 3), dtype=np.uint8)
    scene: Any = cv2.resize(blobs, (2 * w, h), interpolation=cv2.INTER_CUBIC)
    scene = cv2.GaussianBlur(scene, (0, 0), max(w, h) / 80)
    cv2.rectangle(scene, (w // 5, h // 4), (w // 2, h * 3 // 4), (40, 60, 90), -1)
    cv2.circle(scene, (w * 5 // 4, h // 2), h // 5, (200, 190, 170), -1)
    noisy = np.empty((h, w, 3), np.int16)
    out = np.empty((h, w, 3), np.uint8)
    with path.open("wb") as fh:
        for i in range(frames):
            x = (i * 4) % w
            grain = np.rint(rng.normal(0, numpy_sigma(noise), (h, w, 3))).astype(np.int16)
            np.add(scene[:, x : x + w], grain, noisy)
            np.clip(noisy, 0, 255, out=noisy)
            fh.write(cv2.GaussianBlur(noisy.astype(np.uint8), (0, 0), 0.6, dst=out).data)


def _camera(
    workdir: Path, preset: Preset, frames: int, how: str, noise: int = DEFAULT_NOISE
) -> tuple[FrameSource, dict[str, Any]]:
    """The camera-like clip as a source, and how it was made (for the JSON)."""
    path = workdir / f"camera-{preset.width}x{preset.height}.bgr"
    why_not = "not asked for (--camera-clip numpy)"
    if how != "numpy":
        why_not = "not installed"
        if shutil.which("ffmpeg"):
            try:
                _ffmpeg_clip(path, preset, frames, noise)
                recipe = f"testsrc2=size={preset.width}x{preset.height}:rate={preset.fps}"
                return _raw_file(path, preset, frames), {
                    "generator": "ffmpeg",
                    "recipe": f"{recipe}, -vf {camera_filter(noise)}",
                }
            except (OSError, subprocess.SubprocessError) as exc:
                if how == "ffmpeg":
                    raise
                stderr = getattr(exc, "stderr", b"") or b""
                why_not = f"failed: {exc} {stderr.decode(errors='replace').strip()[-300:]}"
    _numpy_clip(path, preset, frames, noise)
    return _raw_file(path, preset, frames), {
        "generator": "numpy",
        "recipe": "panning smooth colour regions and shapes, Gaussian noise sigma "
        f"{numpy_sigma(noise):.2f} per frame, Gaussian blur sigma 0.6",
        "note": f"ffmpeg {why_not}",
    }


# Measuring.


def _luma(image: U8Array, code: int) -> U8Array:
    ycrcb: U8Array = np.asarray(cv2.cvtColor(image, code), dtype=np.uint8)
    return ycrcb[:, :, 0]


def _psnr(a: U8Array, b: U8Array) -> float:
    mse = cv2.norm(a, b, cv2.NORM_L2SQR) / a.size
    return PSNR_CAP_DB if mse == 0 else min(PSNR_CAP_DB, 10 * math.log10(255.0**2 / mse))


def _ssim(a: U8Array, b: U8Array) -> float:
    """Mean SSIM (Wang et al. 2004: Gaussian window 11x11, sigma 1.5, K1 0.01, K2 0.03)."""
    x, y = a.astype(np.float32), b.astype(np.float32)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(v: npt.NDArray[np.float32]) -> Any:
        return cv2.GaussianBlur(v, (11, 11), 1.5)

    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    ssim = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(ssim.mean())


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _times(samples: list[float]) -> dict[str, float | None]:
    """p50/p99/max over frames 2..N (steady state), and the first frame on its own."""
    steady = sorted(samples[1:])
    stats: dict[str, float | None] = {"p50": None, "p99": None, "max": None}
    if steady:
        stats = {
            "p50": round(_percentile(steady, 0.5), 3),
            "p99": round(_percentile(steady, 0.99), 3),
            "max": round(steady[-1], 3),
        }
    return stats | {"first": round(samples[0], 3)}


def _psnr_summary(values: list[float]) -> dict[str, float]:
    return {
        "mean": round(sum(values) / len(values), 2),
        "min": round(min(values), 2),
        "first": round(values[0], 2),
    }


def _measure(
    codec: Codec, preset: Preset, source: FrameSource, frames: int, ssim: bool
) -> dict[str, Any]:
    encoder = codec.encoder()
    encoder.set_fps(preset.fps)
    encoder.set_bitrate(preset.bitrate_bps)
    encoded: list[bytes] = []
    keyframes = 0
    encode_ms: list[float] = []
    for bgr in source():
        start = time.perf_counter_ns()
        frame = encoder.encode(bgr, preset.quality)
        encode_ms.append((time.perf_counter_ns() - start) / 1e6)
        encoded.append(frame.data)
        keyframes += frame.keyframe

    decoder = codec.decoder()
    dst = np.empty((preset.height, preset.width, 3), np.uint8)
    decode_ms: list[float] = []
    psnr: list[float] = []
    psnr_codec: list[float] = []
    ssims: list[float] = []
    for data, bgr in zip(encoded, source(), strict=True):
        start = time.perf_counter_ns()
        w, h = decoder.frame_size(data)
        if (w, h) != (preset.width, preset.height):
            raise RuntimeError(f"{codec.info.name} declared {w}x{h}, not {preset.size}")
        decoder.decode_rgb_into(data, dst)
        decode_ms.append((time.perf_counter_ns() - start) / 1e6)
        src_y, out_y = _luma(bgr, cv2.COLOR_BGR2YCrCb), _luma(dst, cv2.COLOR_RGB2YCrCb)
        psnr.append(_psnr(src_y, out_y))
        coded, decoded = encoder.coded_luma(bgr), decoder.last_luma()
        if coded is not None and decoded is not None and coded.shape == decoded.shape:
            psnr_codec.append(_psnr(coded, decoded))
        if ssim:
            ssims.append(_ssim(src_y, out_y))

    total = sum(len(d) for d in encoded)
    return {
        "codec": codec.info.name,
        "encoder": encoder.backend,
        "decoder": decoder.backend,
        "frames": frames,
        "keyframes": keyframes,
        "bytes": total,
        "kbps": round(total * 8 * preset.fps / frames / 1000, 1),
        "target_kbps": round(preset.bitrate_bps / 1000, 1),
        "encode_ms": _times(encode_ms),
        "decode_ms": _times(decode_ms),
        "psnr_y_db": _psnr_summary(psnr),
        "psnr_y_codec_db": _psnr_summary(psnr_codec) if len(psnr_codec) == frames else None,
        "ssim_y": round(sum(ssims) / len(ssims), 4) if ssims else None,
    }


# The command.


def _choose(args: argparse.Namespace) -> tuple[list[Preset], list[Codec], list[str]]:
    """Presets, codecs and sources from the options; LocalProtocolError or ValueError."""
    preset_names = PRESET_NAMES if args.presets == "all" else _names(args.presets)
    presets = [get_preset(n) for n in preset_names]
    if args.codecs == "all":
        chosen = [c for c in codecs() if c.info.kind is MediaKind.VIDEO]
    else:
        chosen = [get_codec(n) for n in _names(args.codecs)]
    sources = _names(args.sources)
    unknown = set(sources) - set(SOURCES)
    if unknown or not presets or not chosen or not sources:
        raise ValueError(f"need presets, codecs and sources (from {', '.join(SOURCES)})")
    if args.frames < 1:
        raise ValueError("--frames must be >= 1")
    if args.camera_clip == "ffmpeg" and "camera" in sources and not shutil.which("ffmpeg"):
        raise ValueError("--camera-clip ffmpeg: ffmpeg is not installed")
    return presets, chosen, sources


def run(args: argparse.Namespace) -> int:
    try:
        presets, chosen, sources = _choose(args)
    except (UnknownPresetError, UnknownCodecError, ValueError) as exc:
        print(exc)
        return 2
    started = time.monotonic()
    load_before = [round(x, 2) for x in os.getloadavg()]
    results: list[dict[str, Any]] = []
    clips: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="vcall-bench-codec-") as tmp:
        for preset in presets:
            inputs: dict[str, FrameSource] = {}
            for name in sources:
                if name == "pattern":
                    inputs[name] = _pattern(preset, args.frames)
                else:
                    inputs[name], clips[preset.name] = _camera(
                        Path(tmp), preset, args.frames, args.camera_clip, args.noise
                    )
            for name, source in inputs.items():
                for codec in chosen:
                    try:
                        codec.info.check_size(preset.width, preset.height)
                    except LocalProtocolError as exc:
                        print(f"skipped {codec.info.name} at {preset.name}: {exc}")
                        continue
                    row = _measure(codec, preset, source, args.frames, args.ssim)
                    results.append({"preset": preset.name, "source": name} | row)
            for clip in Path(tmp).iterdir():  # one preset's clip at a time (560 MB at 1080p)
                clip.unlink()
    report = {
        "benchmark": "codec",
        "config": {
            "presets": [p.name for p in presets],
            "codecs": [c.info.name for c in chosen],
            "sources": sources,
            "frames": args.frames,
            "ssim": args.ssim,
        },
        "presets": {
            p.name: {
                "size": [p.width, p.height],
                "fps": p.fps,
                "quality": p.quality,
                "bitrate_bps": p.bitrate_bps,
            }
            for p in presets
        },
        "camera_clip": clips,
        "host": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            # Other work on the machine inflates the times: the load average says how much.
            "loadavg_before": load_before,
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        },
        "seconds": round(time.monotonic() - started, 1),
        "results": results,
    }
    _print_table(report)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2)
            fh.write("\n")
    return 0


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _print_table(report: dict[str, Any]) -> None:
    cfg, host = report["config"], report["host"]
    generators = {c["generator"] for c in report["camera_clip"].values()}
    print(
        f"Video codecs through the codec seam, {cfg['frames']} frames per run, "
        f"{report['seconds']} s (load {host['loadavg_before'][0]} -> {host['loadavg_after'][0]}"
        f" on {host['cpus']} CPUs)"
        + (f"; camera clip by {', '.join(sorted(generators))}" if generators else "")
    )
    print(
        "times in ms (p50/p99 over frames 2..N; 'first' opens the codec); kbit/s and PSNR-Y "
        "(mean over all frames, dB) include the first frame; PSNR-Y is the picture's full-range "
        "luma, 'codec' the codec's own Y plane where it exposes it"
    )
    header = (
        f"{'source':<8} {'codec':<6} {'enc p50':>8} {'p99':>7} {'first':>7} {'dec p50':>8} "
        f"{'p99':>7} {'first':>7} {'kbit/s':>8} {'PSNR-Y':>7} {'min':>6} {'codec':>6}"
        + (f" {'SSIM-Y':>7}" if cfg["ssim"] else "")
    )
    for name, p in report["presets"].items():
        print()
        print(
            f"{name}: {p['size'][0]}x{p['size'][1]} @ {p['fps']} fps, quality {p['quality']}, "
            f"bitrate {p['bitrate_bps'] / 1000:g} kbit/s (each codec uses its own knob)"
        )
        print(header)
        print("-" * len(header))
        for r in report["results"]:
            if r["preset"] != name:
                continue
            enc, dec, psnr = r["encode_ms"], r["decode_ms"], r["psnr_y_db"]
            in_codec = (r["psnr_y_codec_db"] or {}).get("mean")
            print(
                f"{r['source']:<8} {r['codec']:<6} {_fmt(enc['p50'], '8.2f')} "
                f"{_fmt(enc['p99'], '7.2f')} {enc['first']:>7.2f} {_fmt(dec['p50'], '8.2f')} "
                f"{_fmt(dec['p99'], '7.2f')} {dec['first']:>7.2f} {r['kbps']:>8.0f} "
                f"{psnr['mean']:>7.2f} {psnr['min']:>6.2f} {_fmt(in_codec, '6.2f')}"
                + (f" {_fmt(r['ssim_y'], '7.4f')}" if cfg["ssim"] else "")
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.codec")
    add_arguments(parser)
    raise SystemExit(run(parser.parse_args()))
