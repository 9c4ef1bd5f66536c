"""Presence and LAN discovery benchmark (issue 15): what a user waits for, measured for real.

1. ``VCALL_PRESENCE`` round trip against a real ``vcall-discovery`` process holding
   ``--users`` accounts (1,000 and 10,000 by default; written straight into its SQLite file
   before it starts, so that no scrypt work is needed to fill it): p50/p99/max over
   ``--samples`` requests, reply size, and the client-side parse time.
2. Goodbye to offline: ``VCALL_OFFLINE`` answered -> the next ``VCALL_PRESENCE`` shows the user
   offline (the server answers from memory, so this is one round trip plus one scrypt check).
3. Keep-alive cost (issue 15 presence, issue 13 sizing): the same keep-alive sent as a
   re-REGISTER (one scrypt check at the default N=16384) and as ``VCALL_HERE`` (a session
   token: a SHA-256 and a store write), ``--keepalive-clients`` connections in a closed loop
   against a real server process on SQLite and, when ``redis-server`` is installed, on a
   private Redis; keep-alives/s and the server process's CPU time per keep-alive.
4. mDNS on loopback: an :class:`~vcall.discovery.mdns.Advertiser` started -> a
   :class:`~vcall.discovery.mdns.DirectoryBrowser` lists it (RFC 6762 probing takes ~1.5 s),
   and closed -> gone from the list (the goodbye); ``--rounds`` times.

Prints a table and writes JSON (``--json FILE``). Usage:
``python -m benchmarks.presence [--users 1000,10000] [--samples 50] [--rounds 3]
[--keepalive-clients 8] [--heres 4000] [--registers 120] [--json FILE]``.
The GUI's figure (a client that quits shows offline in the other's list within the list
interval, 3 s) is printed by ``tests/gui/test_presence_gui.py`` (``pytest -s``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from pipeline.stats import percentile
from vcall.discovery.backend import open_store
from vcall.discovery.client import DiscoveryClient
from vcall.discovery.codec import Presence, Verb, parse_reply
from vcall.discovery.mdns import Advertiser, DirectoryBrowser
from vcall.discovery.store import Credential, ScryptParams, Store, StoredUser, hash_password
from vcall.discovery.throttle import ThrottlePolicy


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"p50_ms": statistics.median(ordered) * 1e3, "p99_ms": percentile(ordered, 99) * 1e3,
            "max_ms": ordered[-1] * 1e3}  # fmt: skip


def _fill(path: Path, users: int) -> None:
    cred = hash_password("pw", ScryptParams(n=1 << 10))
    store = Store(path)
    now = time.time()
    try:
        for i in range(users):
            protocols = ("V0", "V2435") if i % 2 else ("V0",)
            ip = f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"
            store.upsert(StoredUser(f"user{i}", ip, 4000 + i % 1000, protocols, now - i, cred))
    finally:
        store.close()


class _Listening:
    """A private server process on a free loopback port, up once it accepts TCP connections
    (within ``timeout`` s, else RuntimeError); ``stop`` ends it (SIGTERM, then SIGKILL)."""

    def __init__(self, argv: Callable[[int], list[str]], what: str, timeout: float) -> None:
        self.port = _free_port()
        self.proc = subprocess.Popen(
            argv(self.port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{what} did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class _Server(_Listening):
    def __init__(self, db: Path | str) -> None:
        store = db if isinstance(db, str) else f"sqlite:{db}"
        super().__init__(
            lambda port: [
                sys.executable, "-m", "vcall.discovery.server", "--port", str(port),
                "--store", store, "--no-tls", "--scrypt-n", "1024",
                "--max-per-address", "100000",
            ],
            "the discovery server", 20,
        )  # fmt: skip


def bench_presence(users: int, samples: int, folder: Path) -> dict[str, Any]:
    db = folder / f"presence-{users}.sqlite3"
    _fill(db, users)
    server = _Server(db)
    try:
        times: list[float] = []
        with DiscoveryClient("127.0.0.1", server.port, plain=True, timeout=10) as client:
            client.presence()  # warm: connection, first build
            for _ in range(samples):
                start = time.perf_counter()
                entries = client.presence()
                times.append(time.perf_counter() - start)
                time.sleep(0.02)
            assert len(entries) == users
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                sock.sendall(b"VCALL_PRESENCE\n")
                raw = b""
                while not raw.endswith(b"#"):
                    chunk = sock.recv(1 << 20)
                    if not chunk:
                        break
                    raw += chunk
            start = time.perf_counter()
            parse_reply(raw, Verb.VCALL_PRESENCE, final=True)
            parse_s = time.perf_counter() - start
            client.register("user1", "10.0.0.1", 4001, "pw", ["V0", "V2435"])
            start = time.perf_counter()
            client.offline("user1", "pw")
            seen = {e.nick: e.presence for e in client.presence()}
            goodbye_s = time.perf_counter() - start
            assert seen["user1"] is Presence.OFFLINE
    finally:
        server.stop()
    return {"users": users, "samples": samples, "reply_bytes": len(raw),
            "client_parse_ms": parse_s * 1e3, "goodbye_to_offline_ms": goodbye_s * 1e3,
            **_percentiles(times)}  # fmt: skip


class _Redis(_Listening):
    """A private ``redis-server`` on a free loopback port (no persistence)."""

    def __init__(self, folder: Path) -> None:
        super().__init__(
            lambda port: [
                "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(folder),
            ],
            "redis-server", 10,
        )  # fmt: skip
        self.url = f"redis://127.0.0.1:{self.port}/0"


def _fill_store(spec: str, users: int, credential: Credential) -> None:
    """``users`` accounts ``ka<i>`` with the password "pw" hashed at the default scrypt cost."""

    class _Sink:
        def changed(self, user: StoredUser) -> None:
            pass

        def reloaded(self, users: list[StoredUser]) -> None:
            pass

    async def fill() -> None:
        store = open_store(spec, ThrottlePolicy())
        await store.start(_Sink())
        try:
            now = time.time()
            for i in range(users):
                protocols = ("V0", "V2435")
                user = StoredUser(f"ka{i}", "10.0.0.1", 4000 + i, protocols, now, credential)
                await store.create(user)
        finally:
            await store.close()

    asyncio.run(fill())


def _closed_loop(
    port: int, clients: int, total: int, request: Callable[[DiscoveryClient, int], None]
) -> float:
    """``total`` requests over ``clients`` connections (one thread each); wall seconds."""
    errors: list[BaseException] = []

    def run(worker: int) -> None:
        try:
            with DiscoveryClient("127.0.0.1", port, plain=True, timeout=30) as client:
                for i in range(worker, total, clients):
                    request(client, i)
        except BaseException as exc:  # reported after the join
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - start


def _cpu_s(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def bench_keepalive(
    spec: str,
    label: str,
    *,
    clients: int,
    heres: int,
    registers: int,
    credential: Credential,
    store_pid: int | None = None,
    users: int = 64,
) -> dict[str, Any]:
    """Keep-alives as re-REGISTER vs VCALL_HERE against one server on ``spec`` holding
    ``users`` accounts (at least ``clients``); with ``store_pid`` (redis-server), that
    process's CPU per VCALL_HERE too."""
    users = max(clients, users)
    _fill_store(spec, users, credential)
    server = _Server(spec)
    try:
        proc = psutil.Process(server.proc.pid)
        store = psutil.Process(store_pid) if store_pid else None
        tokens: dict[int, str] = {}

        def register(client: DiscoveryClient, i: int) -> None:
            u = i % users
            client.register(f"ka{u}", "10.0.0.1", 4000 + u, "pw", ["V0", "V2435"])

        def session(client: DiscoveryClient, i: int) -> None:
            tokens[i] = client.open_session(f"ka{i}", "pw").token

        def here(client: DiscoveryClient, i: int) -> None:
            u = i % users
            client.here(f"ka{u}", tokens[u])

        cpu = _cpu_s(proc)
        register_s = _closed_loop(server.port, clients, registers, register)
        register_cpu = _cpu_s(proc) - cpu
        _closed_loop(server.port, clients, users, session)  # one scrypt each, not measured
        cpu = _cpu_s(proc)
        store_cpu = _cpu_s(store) if store else 0.0
        here_s = _closed_loop(server.port, clients, heres, here)
        here_cpu = _cpu_s(proc) - cpu
        store_cpu = _cpu_s(store) - store_cpu if store else 0.0
    finally:
        server.stop()
    return {
        "store": label, "clients": clients, "users": users, "scrypt_n": credential.n,
        "register_keepalives": registers, "register_per_s": registers / register_s,
        "register_cpu_ms": register_cpu / registers * 1e3,
        "here_keepalives": heres, "here_per_s": heres / here_s,
        "here_cpu_ms": here_cpu / heres * 1e3,
        "here_store_cpu_ms": store_cpu / heres * 1e3 if store else None,
        "cpu_ratio": (register_cpu / registers) / max(1e-9, here_cpu / heres),
    }  # fmt: skip


def bench_mdns(rounds: int) -> dict[str, Any]:
    browser = DirectoryBrowser(interfaces=["127.0.0.1"])
    browser.start()
    found_s: list[float] = []
    gone_s: list[float] = []
    try:
        for _ in range(rounds):
            name = f"bench-{uuid.uuid4().hex[:8]}"
            advert = Advertiser(name, "127.0.0.1", _free_port(), None)
            start = time.monotonic()
            advert.start()
            while not any(d.name == name for d in browser.found()):
                if time.monotonic() - start > 15:
                    raise RuntimeError("the announcement was not seen")
                time.sleep(0.01)
            found_s.append(time.monotonic() - start)
            start = time.monotonic()
            advert.close()
            while any(d.name == name for d in browser.found()):
                if time.monotonic() - start > 15:
                    raise RuntimeError("the goodbye was not seen")
                time.sleep(0.01)
            gone_s.append(time.monotonic() - start)
    finally:
        browser.close()
    return {"rounds": rounds, "announce_to_found_s": found_s, "close_to_gone_s": gone_s}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.presence", description=__doc__)
    parser.add_argument("--users", default="1000,10000", help="account counts, comma-separated")
    parser.add_argument("--samples", type=int, default=50, help="VCALL_PRESENCE requests each")
    parser.add_argument("--rounds", type=int, default=3, help="mDNS announce/withdraw rounds")
    parser.add_argument("--keepalive-clients", type=int, default=8, help="connections")
    parser.add_argument("--heres", type=int, default=4000, help="VCALL_HERE keep-alives")
    parser.add_argument("--registers", type=int, default=120, help="re-REGISTER keep-alives")
    parser.add_argument("--skip-list", action="store_true", help="keep-alive and mDNS only")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {
        "load_avg": os.getloadavg(), "presence": [], "keepalive": [], "mdns": None,
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="vcall-bench-presence-") as tmp:
        credential = hash_password("pw")  # the default cost (N=16384): what REGISTER pays
        specs: list[tuple[str, str]] = [(f"sqlite:{Path(tmp) / 'ka.sqlite3'}", "sqlite")]
        redis = _Redis(Path(tmp)) if shutil.which("redis-server") else None
        if redis is not None:
            specs.append((redis.url, "redis"))
        try:
            for spec, label in specs:
                row = bench_keepalive(
                    spec, label, clients=args.keepalive_clients, heres=args.heres,
                    registers=args.registers, credential=credential,
                    store_pid=redis.proc.pid if redis is not None and label == "redis" else None,
                )  # fmt: skip
                results["keepalive"].append(row)
                print(
                    f"keep-alive on {label}, {row['clients']} connections: re-REGISTER "
                    f"{row['register_per_s']:.0f}/s, {row['register_cpu_ms']:.2f} ms CPU each; "
                    f"VCALL_HERE {row['here_per_s']:.0f}/s, {row['here_cpu_ms']:.3f} ms CPU "
                    f"each ({row['cpu_ratio']:.0f}x less)"
                    + (
                        f", redis-server {row['here_store_cpu_ms']:.3f} ms CPU each"
                        if row["here_store_cpu_ms"] is not None
                        else ""
                    )
                )
        finally:
            if redis is not None:
                redis.stop()
        for count in () if args.skip_list else (int(n) for n in args.users.split(",")):
            row = bench_presence(count, args.samples, Path(tmp))
            results["presence"].append(row)
            print(
                f"VCALL_PRESENCE, {row['users']:>6} users: p50 {row['p50_ms']:.1f} ms, "
                f"p99 {row['p99_ms']:.1f} ms, max {row['max_ms']:.1f} ms, "
                f"{row['reply_bytes']} bytes, client parse {row['client_parse_ms']:.1f} ms, "
                f"goodbye -> offline {row['goodbye_to_offline_ms']:.1f} ms"
            )
    mdns = bench_mdns(args.rounds)
    results["mdns"] = mdns
    print(
        "mDNS on loopback: announce -> found "
        + ", ".join(f"{s:.2f}" for s in mdns["announce_to_found_s"])
        + " s; close -> gone "
        + ", ".join(f"{s:.2f}" for s in mdns["close_to_gone_s"])
        + " s"
    )
    print(f"load average {results['load_avg'][0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
