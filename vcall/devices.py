"""``vcall devices``: the sound devices vcall can capture from and play to (PortAudio).

Usage::

    vcall devices [--json]

One row per PortAudio device: index, name, host API, input and output channels, default sample
rate, and ``*`` on the host's default input / output. The index or a unique part of the name
is what ``device:NAME`` audio sources and sinks take. ``--json`` prints a list of objects for
scripts. Exit status 0; 1 when PortAudio is missing (the message says what to install).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from pipeline.audio.devices import AudioDevice, list_devices
from pipeline.audio.frames import AudioError

COLUMNS = ("index", "name", "api", "in", "out", "rate", "default")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def table(devices: list[AudioDevice]) -> str:
    """The devices as an aligned text table, one per line."""
    rows = [COLUMNS] + [
        (
            str(d.index),
            d.name,
            d.hostapi,
            str(d.inputs),
            str(d.outputs),
            f"{d.default_rate:g}",
            ",".join(k for k, v in (("in", d.default_input), ("out", d.default_output)) if v),
        )
        for d in devices
    ]
    widths = [max(len(r[c]) for r in rows) for c in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def run(args: argparse.Namespace) -> int:
    try:
        devices = list_devices()
    except AudioError as exc:
        print(f"vcall devices: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([dataclasses.asdict(d) for d in devices], indent=2))
    else:
        print(table(devices) if devices else "no sound devices")
    return 0
