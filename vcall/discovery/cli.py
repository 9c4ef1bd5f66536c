"""`vcall discovery register|query|list`: talk to a discovery server from a shell or a script.

Exit codes: 0 success, 1 a discovery error (message on stderr), 2 bad arguments. ``--json``
prints machine-readable output. The password of ``register`` comes from ``--password``, else
the ``VCALL_PASSWORD`` environment variable, else a prompt.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import json
import os
import sys
from datetime import UTC, datetime

from vcall.config import ConfigError, parse_server
from vcall.discovery.client import DiscoveryClient, DiscoveryError, ServerGroup, parse_servers

DEFAULT_SERVER = "127.0.0.1:8000"


def server_arg(text: str) -> tuple[str, int]:
    """argparse type for a discovery server: ``HOST[:PORT]`` or ``[V6]:PORT`` (port 8000)."""
    try:
        host, port = parse_server(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if port == 0:  # a server to reach, not one to start on a free port
        raise argparse.ArgumentTypeError(f"server address {text!r}: port 0")
    return host, port


def servers_arg(text: str) -> tuple[tuple[str, int], ...]:
    """argparse type for one or more servers, ``a:8000,b:8000``, tried in that order."""
    try:
        servers = parse_servers(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    for host, port in servers:
        if port == 0:
            raise argparse.ArgumentTypeError(f"server address {host!r}: port 0")
    return servers


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server",
        type=servers_arg,
        default=os.environ.get("VCALL_SERVER", DEFAULT_SERVER),
        help=f"discovery server HOST:PORT, or several (A:P,B:P) tried in order "
        f"(default: $VCALL_SERVER or {DEFAULT_SERVER})",
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per request")
    parser.add_argument("--json", action="store_true", help="print JSON")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    reg = sub.add_parser("register", help="register or update a nick")
    reg.add_argument("nick")
    reg.add_argument("--ip", required=True, help="address peers should call")
    reg.add_argument("--port", type=int, required=True, help="TCP call-control port")
    reg.add_argument("--password", help="default: $VCALL_PASSWORD, else a prompt")
    reg.add_argument("--protocols", default="V0", help="e.g. V0#V2435 (default: V0)")
    query = sub.add_parser("query", help="look up one nick")
    query.add_argument("nick")
    sub.add_parser("list", help="list registered users")


def run(args: argparse.Namespace) -> int:
    servers = args.server
    group = ServerGroup(servers) if len(servers) > 1 else None
    try:
        host, port = servers[0]
        with DiscoveryClient(host, port, timeout=args.timeout, group=group) as client:
            if args.action == "register":
                password = args.password or os.environ.get("VCALL_PASSWORD")
                if not password:
                    password = getpass.getpass(f"password for {args.nick}: ")
                protocols = args.protocols.split("#")
                ts = client.register(args.nick, args.ip, args.port, password, protocols)
                _out(args, {"nick": args.nick, "ts": ts}, f"registered {args.nick} at {ts:.0f}")
            elif args.action == "query":
                record = client.query(args.nick)
                text = f"{record.nick} {record.ip} {record.port} {'#'.join(record.protocols)}"
                _out(args, dataclasses.asdict(record), text)
            else:
                entries = client.list_users()
                lines = [
                    f"{e.nick:<32} {e.ip:<39} {e.port:>5} "
                    f"{datetime.fromtimestamp(e.ts, UTC):%Y-%m-%d %H:%M:%S}Z"
                    for e in entries
                ]
                _out(args, [dataclasses.asdict(e) for e in entries], "\n".join(lines))
    except ValueError as exc:  # our own misuse: an invalid nick, ip, password...
        print(f"vcall discovery: {exc}", file=sys.stderr)
        return 2
    except DiscoveryError as exc:
        print(f"vcall discovery: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


def _out(args: argparse.Namespace, data: object, text: str) -> None:
    if args.json:
        print(json.dumps(data))
    elif text:
        print(text)
