"""`vcall discovery register|query|list`: talk to a discovery server from a shell or a script.

Exit codes: 0 success, 1 a discovery error (message on stderr), 2 bad arguments. ``--json``
prints machine-readable output. The password of ``register`` comes from ``--password``, else
the ``VCALL_PASSWORD`` environment variable, else a prompt.

``--tls`` talks to the server's TLS port (vcall servers; a classic one is used in clear) and
pins its key on first use in ``--pins FILE`` (default: ``servers.json`` beside the client's
state); ``register --key`` sends this installation's key fingerprint (vcall/identity.py) and
``query`` prints a user's registered fingerprint. Issue 14.

``presence`` lists every user with its presence (vcall servers: ``VCALL_PRESENCE``), and
``offline NICK`` logs a nick out (``VCALL_OFFLINE``, password as for ``register``). Issue 15.
``session NICK`` opens a keep-alive session (``VCALL_SESSION``; prints the token and its
lifetime) and ``here NICK --token T`` sends one keep-alive (``VCALL_HERE``).
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from vcall.config import ConfigError, parse_server
from vcall.discovery.client import DiscoveryClient, DiscoveryError, ServerGroup, parse_servers
from vcall.discovery.tls import Pin, PinStore, PinStoreError
from vcall.identity import IdentityError, is_fingerprint, load_or_create_identity

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
    parser.add_argument(
        "--tls", action="store_true", help="use the server's TLS port, pinning its key"
    )
    parser.add_argument("--pins", type=Path, help="pinned server keys (default: servers.json)")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    reg = sub.add_parser("register", help="register or update a nick")
    reg.add_argument("nick")
    reg.add_argument("--ip", required=True, help="address peers should call")
    reg.add_argument("--port", type=int, required=True, help="TCP call-control port")
    reg.add_argument("--password", help="default: $VCALL_PASSWORD, else a prompt")
    reg.add_argument("--protocols", default="V0", help="e.g. V0#V2435 (default: V0)")
    reg.add_argument(
        "--key", action="store_true", help="register this installation's key (with --tls)"
    )
    query = sub.add_parser("query", help="look up one nick")
    query.add_argument("nick")
    sub.add_parser("list", help="list registered users")
    sub.add_parser("presence", help="list users with online/offline/unknown (vcall servers)")
    off = sub.add_parser("offline", help="log a nick out: shown offline until it registers")
    off.add_argument("nick")
    off.add_argument("--password", help="default: $VCALL_PASSWORD, else a prompt")
    ses = sub.add_parser("session", help="open a keep-alive session: prints a token")
    ses.add_argument("nick")
    ses.add_argument("--password", help="default: $VCALL_PASSWORD, else a prompt")
    pin = sub.add_parser(
        "pin", help="pin the server's key before the first contact (from its log, out of band)"
    )
    pin.add_argument("fingerprint", help="sha256:<64 hex>, as vcall-discovery prints it")
    here = sub.add_parser("here", help="one keep-alive with a session token")
    here.add_argument("nick")
    here.add_argument(
        "--token", help="from `session` (default: $VCALL_TOKEN: a token on the command line "
        "is visible to every local user in ps)"
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    servers = args.server
    group = ServerGroup(servers) if len(servers) > 1 else None
    try:
        host, port = servers[0]
        if args.action == "pin":
            return _pin(args, host, port)
        pins = PinStore(args.pins) if args.tls else None
        with DiscoveryClient(
            host, port, timeout=args.timeout, group=group, pins=pins, plain=not args.tls
        ) as client:
            if args.action == "register":
                password = _password(args)
                protocols = args.protocols.split("#")
                key = load_or_create_identity().fingerprint if args.key else None
                ts = client.register(
                    args.nick, args.ip, args.port, password, protocols, fingerprint=key
                )
                _out(args, {"nick": args.nick, "ts": ts}, f"registered {args.nick} at {ts:.0f}")
            elif args.action == "query":
                record = client.query(args.nick)
                text = f"{record.nick} {record.ip} {record.port} {'#'.join(record.protocols)}"
                if record.fingerprint is not None:
                    text += f" key {record.fingerprint}"
                _out(args, dataclasses.asdict(record), text)
            elif args.action == "presence":
                present = client.presence()
                lines = [
                    f"{e.nick:<32} {e.presence:<8} seen {e.age:>6} s ago  {e.ip} {e.port}"
                    for e in present
                ]
                _out(args, [dataclasses.asdict(e) for e in present], "\n".join(lines))
            elif args.action == "offline":
                account = client.offline(args.nick, _password(args))
                _out(args, {"nick": account, "offline": True}, f"{account} is now offline")
            elif args.action == "session":
                granted = client.open_session(args.nick, _password(args))
                text = f"token {granted.token} valid {granted.ttl} s"
                _out(args, {"token": granted.token, "ttl": granted.ttl}, text)
            elif args.action == "here":
                token = args.token or os.environ.get("VCALL_TOKEN")
                if not token:
                    raise ValueError("no token: give --token or set $VCALL_TOKEN")
                client.here(args.nick, token)
                _out(args, {"nick": args.nick, "here": True}, f"{args.nick} is here")
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
    except (DiscoveryError, IdentityError, PinStoreError, OSError) as exc:
        print(f"vcall discovery: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


def _pin(args: argparse.Namespace, host: str, port: int) -> int:
    """Pin ``host:port``'s key with its TLS port unknown (0): the first contact must then be TLS
    with that key (tls.py). Touches no network."""
    fingerprint = args.fingerprint.strip().lower()
    if not is_fingerprint(fingerprint):
        raise ValueError(f"not a key fingerprint: {args.fingerprint!r} (sha256:<64 hex digits>)")
    store = PinStore(args.pins)
    store.pin(host, port, Pin(fingerprint, 0))
    _out(args, {"server": f"{host}:{port}", "fingerprint": fingerprint},
         f"pinned {host}:{port} to {fingerprint} in {store.path}")  # fmt: skip
    return 0


def _password(args: argparse.Namespace) -> str:
    password: str | None = args.password or os.environ.get("VCALL_PASSWORD")
    return password or getpass.getpass(f"password for {args.nick}: ")


def _out(args: argparse.Namespace, data: object, text: str) -> None:
    if args.json:
        print(json.dumps(data))
    elif text:
        print(text)
