"""`vcall bench jpeg`: PyTurboJPEG vs OpenCV: encode, decode to RGB, decode at display size.

Images: the stamped test pattern (sharp edges, flat areas) and a camera-like image (smooth
colour regions plus sensor noise, which is what makes real frames expensive). OpenCV's decode to
RGB is imdecode + cvtColor, as a caller without TurboJPEG would do it. "decode_display" decodes
to the display size (default: half the resolution) using each backend's DCT scaling.
"turbojpeg" is the codec as vcall uses it (fast IDCT and upsampling when decoding);
"turbojpeg-accurate" decodes with libjpeg's defaults, like OpenCV.

Prints medians and p95 in ms per codec and the OpenCV/TurboJPEG ratio; ``--json FILE`` writes::

    {"benchmark": "jpeg", "resolution": [W, H], "display": [W, H], "quality": Q, "frames": N,
     "results": [{"codec", "image", "operation", "median_ms", "p95_ms", "samples", "bytes"}],
     "ratios": [{"image", "operation", "opencv_over_turbojpeg"}]}
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from pipeline.codecs.jpeg.backends import JpegCodec, OpenCvCodec, TurboJpegCodec
from pipeline.sources.pattern import render_into


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"expected positive WxH, got {text!r}")
    return w, h


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--resolution", type=_size, default=(1280, 720), help="WxH (1280x720)")
    parser.add_argument("--display", type=_size, default=None, help="WxH (half the resolution)")
    parser.add_argument("--quality", type=int, default=70, help="JPEG quality (70)")
    parser.add_argument("--frames", type=int, default=200, help="iterations per measurement")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")


def camera_like(width: int, height: int, seed: int = 1) -> np.ndarray:
    """Smooth colour regions, a few edges and Gaussian sensor noise (sigma 6)."""
    rng = np.random.default_rng(seed)
    blobs = rng.integers(0, 256, (9, 16, 3), dtype=np.uint8)
    base: Any = cv2.resize(blobs, (width, height), interpolation=cv2.INTER_CUBIC)
    base = cv2.GaussianBlur(base, (0, 0), max(width, height) / 80)
    cv2.rectangle(base, (width // 5, height // 4), (width // 2, height * 3 // 4), (40, 60, 90), -1)
    cv2.circle(base, (width * 3 // 4, height // 2), height // 5, (200, 190, 170), -1)
    noise = rng.normal(0, 6, base.shape)
    image: np.ndarray = np.clip(base.astype(np.float64) + noise, 0, 255).astype(np.uint8)
    return image


def _time(fn: Callable[[], object], frames: int) -> list[float]:
    fn()  # warm-up: first calls load tables and allocate
    samples = []
    for _ in range(frames):
        start = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return samples


def _summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95


def _codecs() -> list[tuple[str, JpegCodec]]:
    """(label, codec): vcall's TurboJPEG set-up (fast decode), TurboJPEG's accurate decode, and
    OpenCV, which has no fast-decode switch."""
    codecs: list[tuple[str, JpegCodec]] = []
    try:
        codecs.append(("turbojpeg", TurboJpegCodec()))
        codecs.append(("turbojpeg-accurate", TurboJpegCodec(fast_decode=False)))
    except (OSError, RuntimeError) as exc:
        print(f"TurboJPEG unavailable ({exc}); measuring OpenCV only")
    codecs.append(("opencv", OpenCvCodec()))
    return codecs


def run(args: argparse.Namespace) -> int:
    width, height = args.resolution
    display = args.display or (max(1, width // 2), max(1, height // 2))
    if args.frames < 1 or not 1 <= args.quality <= 100:
        print("--frames must be >= 1 and --quality in 1..100")
        return 2
    pattern = np.zeros((height, width, 3), np.uint8)
    render_into(pattern, 1, time.monotonic_ns())
    images = {"pattern": pattern, "camera-like": camera_like(width, height)}
    results: list[dict[str, Any]] = []
    for label, codec in _codecs():
        for image_name, image in images.items():
            jpeg = codec.encode(image, args.quality)
            dst = np.empty((display[1], display[0], 3), np.uint8)
            operations: dict[str, Callable[[], object]] = {
                "encode": functools.partial(codec.encode, image, args.quality),
                "decode_rgb": functools.partial(codec.decode_rgb, jpeg),
                "decode_display": functools.partial(codec.decode_rgb_into, jpeg, dst),
            }
            if label == "turbojpeg-accurate":
                del operations["encode"]  # encoding is the same as "turbojpeg"
            for op, fn in operations.items():
                median, p95 = _summary(_time(fn, args.frames))
                results.append(
                    {
                        "codec": label,
                        "image": image_name,
                        "operation": op,
                        "median_ms": round(median, 4),
                        "p95_ms": round(p95, 4),
                        "samples": args.frames,
                        "bytes": len(jpeg),
                    }
                )
    ratios = _ratios(results)
    _print_table(results, ratios, (width, height), display, args)
    if args.json:
        report = {
            "benchmark": "jpeg",
            "resolution": [width, height],
            "display": list(display),
            "quality": args.quality,
            "frames": args.frames,
            "results": results,
            "ratios": ratios,
        }
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2)
            fh.write("\n")
    return 0


def _ratios(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_key = {(r["codec"], r["image"], r["operation"]): r["median_ms"] for r in results}
    ratios = []
    for (codec, image, op), median in by_key.items():
        turbo = by_key.get(("turbojpeg", image, op))
        if codec == "opencv" and turbo:
            ratios.append(
                {"image": image, "operation": op, "opencv_over_turbojpeg": round(median / turbo, 3)}
            )
    return ratios


def _print_table(
    results: list[dict[str, Any]],
    ratios: list[dict[str, Any]],
    size: tuple[int, int],
    display: tuple[int, int],
    args: argparse.Namespace,
) -> None:
    print(
        f"JPEG backends at {size[0]}x{size[1]} q{args.quality}, display {display[0]}x{display[1]},"
        f" {args.frames} frames (times in ms)"
    )
    ratio_of = {(r["image"], r["operation"]): r["opencv_over_turbojpeg"] for r in ratios}
    header = f"{'image':<12} {'operation':<15} {'codec':<18} {'median':>8} {'p95':>8} {'bytes':>8}"
    print(header + f" {'opencv/turbo':>13}")
    print("-" * (len(header) + 14))
    for r in results:
        ratio = ratio_of.get((r["image"], r["operation"])) if r["codec"] == "opencv" else None
        print(
            f"{r['image']:<12} {r['operation']:<15} {r['codec']:<18} {r['median_ms']:>8.3f}"
            f" {r['p95_ms']:>8.3f} {r['bytes']:>8}" + (f" {ratio:>12.2f}x" if ratio else "")
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.jpeg_backends")
    add_arguments(parser)
    raise SystemExit(run(parser.parse_args()))
