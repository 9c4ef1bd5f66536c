"""`vcall bench NAME [ARGS...]`: run one benchmark.

Each benchmark module provides ``add_arguments(parser)`` and ``run(args) -> int``, prints a table
and writes JSON (``--json FILE``). Only the chosen benchmark's module is imported.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
from typing import Any

BENCHMARKS: dict[str, tuple[str, str]] = {
    "e2e": ("benchmarks.e2e", "loopback call between two pipelines: per-stage latency, fps, CPU"),
    "jpeg": ("benchmarks.jpeg_backends", "PyTurboJPEG vs OpenCV: encode and decode to RGB"),
    "codec": ("benchmarks.codec", "the registered video codecs: time, kbit/s, PSNR-Y per preset"),
    "handoff": ("benchmarks.handoff", "shared-memory ring vs pickling frames through a queue"),
    "discovery": ("benchmarks.discovery", "discovery server throughput and latency"),
    "ui": ("benchmarks.ui", "Tk event-loop lag while showing a call"),
    "network": ("benchmarks.network", "a real call through the impairment lab, per direction"),
    "audio": ("benchmarks.audio_call", "a loopback call's voice: mouth-to-ear, loss, audio CPU"),
    "avsync": ("benchmarks.avsync", "flash-and-beep A/V offset of a loopback call"),
}


def write_json(path: str | None, doc: Any) -> None:
    """Write a benchmark's results to ``--json FILE`` (indented) and say so; None: nothing."""
    if not path:
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        json.dump(doc, out, indent=2)
    print(f"wrote {path}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("benchmark", choices=sorted(BENCHMARKS), help="which benchmark")
    parser.add_argument("bench_args", nargs=argparse.REMAINDER, help="the benchmark's options")


def run(args: argparse.Namespace) -> int:
    module_name, help_text = BENCHMARKS[args.benchmark]
    module: Any = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"vcall bench {args.benchmark}", description=help_text)
    module.add_arguments(parser)
    result: int = module.run(parser.parse_args(args.bench_args))
    return result
