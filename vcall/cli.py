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
    "bench": (
        "benchmarks.cli",
        "benchmarks (e2e, codec, jpeg, handoff, discovery, ui, network, audio, avsync)",
    ),
    "view": ("vcall.view", "show an RTP/JPEG stream sent by ffmpeg or GStreamer"),
    "codecs": ("vcall.codecs_cli", "list the codecs vcall can send and receive (--json)"),
    "devices": ("vcall.devices", "list the sound devices for audio in and out (--json)"),
}


class _Subcommand(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def _load(name: str) -> _Subcommand:
    return cast(_Subcommand, importlib.import_module(SUBCOMMANDS[name][0]))


DESCRIPTION = "vcall: 1:1 video calls (Tk client, discovery server, call control, RTP video)."
EPILOG = """\
With no COMMAND, vcall opens the client (vcall gui).
'vcall COMMAND --help' describes each command.
The discovery server is a program of its own: 'vcall-discovery --help'."""
TOP_OPTIONS = {"-v", "--verbose", "-vv", "-vvv"}  # options that come before the COMMAND


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    from vcall import __version__  # noqa: PLC0415 - the package, not a subcommand module

    parser = argparse.ArgumentParser(
        prog="vcall",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # the epilog's lines as written
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    parser.add_argument(
        "--version", action="version", version=f"vcall {__version__}", help="print the version"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if a in SUBCOMMANDS), None)
    for name, (_module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        if name == chosen:  # only the chosen subcommand's module is imported
            _load(name).add_arguments(p)
    return parser


def _defaults_to_gui(args: Sequence[str]) -> bool:
    """``vcall`` and ``vcall --nick bob ...`` open the client; ``vcall -h``, ``--version``
    and a mistyped command word (``vcall stats``: "invalid choice") do not."""
    if any(a in SUBCOMMANDS for a in args) or {"-h", "--help", "--version"} & set(args):
        return False
    first = next((a for a in args if a not in TOP_OPTIONS), None)
    return first is None or first.startswith("-")


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if _defaults_to_gui(args_list):
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
