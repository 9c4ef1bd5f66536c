"""`vcall` / `vcall gui`: open the Tk client.

Reads the configuration (:mod:`vcall.config`; flags override the file). With no server
configured, and no remote server remembered, it uses this machine's directory
(:mod:`vcall.gui.directory`): the first ``vcall`` serves it on 127.0.0.1:8000
(``--directory-port``) with its users kept in a file, later ones log in to it, so two clients
on one machine see each other and the client works out of the box on a fresh machine.
SIGTERM closes the window properly (hang up, unregister, stop the pipeline).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import tkinter as tk
from pathlib import Path

from vcall.config import (
    LANGUAGE_CHOICES,
    THEME_CHOICES,
    Config,
    ConfigError,
    apply_overrides,
    format_server,
    load_config,
    parse_server,
    port_arg,
    remembered_server,
    seconds_arg,
)
from vcall.gui.client import AppOptions, ClientApp
from vcall.gui.directory import LOCAL_DIRECTORY_PORT, LocalDirectory

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ command


def _remote(server_text: str) -> bool:
    """A remembered server that is not on this machine (an embedded one's port is stale)."""
    try:
        host, _port = parse_server(server_text)
    except ConfigError:
        return False
    return host not in {"localhost", "::1"} and not host.startswith("127.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="config file (default: the user's)")
    parser.add_argument(
        "--server",
        help="discovery server HOST[:PORT], or several comma-separated, tried in order when one "
        "stops answering (default: embedded)",
    )
    parser.add_argument("--nick", default="", help="prefill the nick")
    parser.add_argument("--password", default="", help="prefill the password")
    parser.add_argument("--listen-port", type=port_arg, help="TCP call-control port")
    parser.add_argument("--media-port", type=port_arg, help="UDP port video is received on")
    parser.add_argument("--advertise-ip", help="address registered with the server")
    parser.add_argument("--source", help='video source: "pattern", "camera:0", "file:PATH"')
    parser.add_argument("--preset", help="quality: low, medium, high, max")
    parser.add_argument("--codec", help="use only this video codec: h264 or jpeg (any case)")
    parser.add_argument("--ring-timeout", type=seconds_arg, help="seconds an incoming call rings")
    parser.add_argument(
        "--audio-in",
        metavar="SPEC",
        help="microphone: device[:NAME], tone:HZ, file:PATH.wav, silence, or off "
        "(default: [audio] input, else the one chosen in Settings, else device; anything but "
        "plain device wins over Settings; vcall devices lists them)",
    )
    parser.add_argument(
        "--audio-out",
        metavar="SPEC",
        help="speaker: device[:NAME], wav:PATH, null, or off "
        "(default: [audio] output, else the one chosen in Settings, else device; anything "
        "but plain device wins over Settings)",
    )
    parser.add_argument(
        "--theme", choices=THEME_CHOICES, help="look: light, dark, or system (follow the desktop)"
    )
    parser.add_argument(
        "--directory-port",
        type=port_arg,
        default=LOCAL_DIRECTORY_PORT,
        help="with no server configured: the loopback port of this machine's directory, "
        f"served by the first vcall started (default {LOCAL_DIRECTORY_PORT})",
    )
    parser.add_argument(
        "--language",
        choices=LANGUAGE_CHOICES,
        help="language of the window: en, es, or system (the locale; the default)",
    )
    parser.add_argument("--auto-login", action="store_true", help="log in at start")
    parser.add_argument("--auto-accept", action="store_true", help="accept incoming calls")
    parser.add_argument("--call", default="", metavar="NICK", help="call NICK once logged in")
    parser.add_argument("--geometry", help="Tk window geometry, e.g. 1100x640+0+0")
    parser.add_argument("--title", default="vcall", help="window title")
    parser.add_argument("--state-file", type=Path, help=argparse.SUPPRESS)
    # The demo's clients: exit when the demo (this pid) dies, even by SIGKILL.
    parser.add_argument("--die-with-parent", type=int, default=0, help=argparse.SUPPRESS)


def build_config(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    host = port = None
    fallbacks = None
    if args.server:
        first, *rest = [part for part in args.server.split(",") if part.strip()] or [""]
        host, port = parse_server(first)
        fallbacks = rest or None  # more servers: the failover list (else the file's)
    return apply_overrides(
        config,
        server_host=host,
        server_port=port,
        server_fallbacks=fallbacks,
        listen_port=args.listen_port,
        media_port=args.media_port,
        advertise_ip=args.advertise_ip,
        source=args.source,
        preset=args.preset,
        codec=args.codec,
        ring_timeout=args.ring_timeout,
        theme=args.theme,
        audio_in=args.audio_in,
        audio_out=args.audio_out,
        language=args.language,
    )


def run(args: argparse.Namespace) -> int:
    if args.die_with_parent:
        from pipeline.ipc.lifecycle import set_parent_death_signal  # noqa: PLC0415

        set_parent_death_signal(signal.SIGTERM)
        if os.getppid() != args.die_with_parent:  # the parent died before prctl
            return 1
    try:
        config = build_config(args)
    except ConfigError as exc:
        logger.error("%s", exc)
        return 2
    try:
        root = tk.Tk(className="vcall")
    except tk.TclError as exc:
        logger.error("cannot open a window (is DISPLAY set?): %s", exc)
        return 1
    embedded = None
    server_text = ""
    remembered = remembered_server(args.state_file)  # no keyring wait on the Tk thread
    if config.server is None and not _remote(remembered):
        embedded = LocalDirectory(args.directory_port)
        try:
            server_text = format_server(*embedded.open())
        except OSError as exc:  # no loopback port to be had: the user can still type one
            logger.error("cannot start the embedded discovery server: %s", exc)
            embedded = None
    if args.geometry:
        root.geometry(args.geometry)
    options = AppOptions(
        nick=args.nick,
        password=args.password,
        server_text=server_text,
        auto_login=args.auto_login,
        auto_accept=args.auto_accept,
        auto_call=args.call,
        title=args.title,
        state_file=args.state_file,
    )
    app = ClientApp(root, config, options)
    # SIGTERM closes the window properly (hang up, unregister, stop the pipeline). Python runs
    # the handler between Tk events; the handler only schedules the exit.
    signal.signal(signal.SIGTERM, lambda _s, _f: root.after(0, app.exit))
    try:
        root.mainloop()
    except KeyboardInterrupt:
        pass
    finally:
        app.worker.stop()
        with contextlib.suppress(tk.TclError):
            root.destroy()
        if embedded is not None:
            embedded.close()
    return 0
