"""``vcall codecs``: the codec registry, as ``ffmpeg -codecs`` prints its own.

Usage::

    vcall codecs [--json]

One row per registered codec: name, media kind, RTP payload type, clock rate, the SDP rtpmap
(and fmtp), its RTP payload format, the call modes that carry it (``rtp`` between vcall peers,
``v0`` with classic clients), whether every frame is independent (intra-only: the jitter buffer
may skip older frames) and whether the encoder takes keyframe requests. ``--json`` prints a list
of objects with the same fields, for scripts. Exit status 0.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from pipeline.codecs.base import CodecInfo
from pipeline.codecs.registry import codecs

COLUMNS = ("name", "kind", "pt", "clock", "rtpmap", "format", "modes", "intra", "keyframes")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def describe(info: CodecInfo) -> dict[str, Any]:
    """One codec's row as JSON-ready data."""
    return {
        "name": info.name,
        "kind": str(info.kind),
        "payload_type": info.payload_type,
        "clock_rate": info.clock_rate,
        "channels": info.channels,
        "rtpmap": info.rtpmap,
        "fmtp": info.fmtp,
        "payload_format": info.payload_format,
        "modes": [str(m) for m in info.modes],
        "intra_only": info.intra_only,
        "keyframe_requests": info.keyframe_requests,
        "max_dimension": info.max_dimension,
        "size_multiple": info.size_multiple,
    }


def table(infos: list[CodecInfo]) -> str:
    """The registry as an aligned text table, one codec per line."""
    rows = [COLUMNS] + [
        (
            i.name,
            str(i.kind),
            str(i.payload_type),
            str(i.clock_rate),
            i.rtpmap + (f" ({i.fmtp})" if i.fmtp else ""),
            i.payload_format,
            ",".join(str(m) for m in i.modes),
            "yes" if i.intra_only else "no",
            "yes" if i.keyframe_requests else "no",
        )
        for i in infos
    ]
    widths = [max(len(r[c]) for r in rows) for c in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def run(args: argparse.Namespace) -> int:
    infos = [c.info for c in codecs()]
    if args.json:
        print(json.dumps([describe(i) for i in infos], indent=2))
    else:
        print(table(infos))
    return 0
