"""Command line of vcall: one entry point, one module per subcommand.

Each subcommand lives in its own module, which provides ``add_arguments(parser)`` and
``run(args) -> int``; this file only wires them together and imports them lazily, so that
``vcall discovery list`` does not pay for importing Tk or OpenCV.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Protocol, cast

# name -> (module, help). The module provides add_arguments() and run().
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "gui": ("vcall.gui.app", "open the client (the default with no subcommand)"),
    "demo": ("vcall.gui.demo", "two clients calling each other on the test pattern"),
    "discovery": ("vcall.discovery.cli", "talk to a discovery server (register, query, list)"),
    "agent": ("vcall.agent", "headless agent: register, answer or place a call, print events"),
    "bench": ("benchmarks.cli", "benchmarks (e2e, codec, jpeg, handoff, discovery, ui)"),
    "view": ("vcall.view", "show an RTP/JPEG stream sent by ffmpeg or GStreamer"),
    "codecs": ("vcall.codecs_cli", "list the codecs vcall can send and receive (--json)"),
}


class _Subcommand(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def _load(name: str) -> _Subcommand:
    return cast(_Subcommand, importlib.import_module(SUBCOMMANDS[name][0]))


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vcall", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if a in SUBCOMMANDS), None)
    for name, (_module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        if name == chosen:  # only the chosen subcommand's module is imported
            _load(name).add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not any(a in SUBCOMMANDS for a in args_list) and not {"-h", "--help"} & set(args_list):
        args_list.insert(0, "gui")
    # Options before the subcommand (-v) stay in front of it.
    parser = build_parser(args_list)
    args = parser.parse_args(args_list)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(processName)s %(name)s %(levelname)s: %(message)s",
    )
    if args.command is None:
        parser.print_help()
        return 2
    return _load(args.command).run(args)
