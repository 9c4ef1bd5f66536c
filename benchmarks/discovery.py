"""Discovery server benchmark: closed-loop throughput and open-loop latency, with slow clients.

Runs the real server (``python -m vcall.discovery.server``) in its own process, unless
``--server HOST:PORT`` names one, and drives it from separate load-generator processes built
on raw asyncio protocols. Scenarios:

1. closed loop: ``--closed-conns`` connections (100), each sends QUERY and waits for the reply,
   as fast as it can; reports requests/s and latency.
2. open loop: ``--open-conns`` connections (1,000) share a fixed schedule of ``--rate`` QUERY/s
   (5,000); latency is measured from the *scheduled* send time, so queueing in the generator
   counts against the server (no coordinated omission).
3. the same open loop while ``--slow`` clients (1,000, from 127.0.0.2) trickle a REGISTER one
   byte at a time and reconnect whenever the server drops them.

With ``--store redis://HOST:PORT/DB`` the servers share that store, and ``--instances N``
(default 2 with a store) more scenarios run: closed-loop QUERY/s and REGISTER/s (REGISTER of
known nicks with their password: one scrypt verification and one store write each) against 1
and N instances, the load split evenly, and the propagation delay of a registration from one
instance to another (REGISTER answered on the first -> first QUERY that sees it on the second;
p50/p99 of ``--propagation-samples``). The store must be reachable and may be flushed of
``vcall:*`` keys by nobody else meanwhile.

Prints a table and writes JSON (``--json FILE``). Targets on a 2-core machine: >= 10,000
requests/s closed loop; p99 < 20 ms open loop; the same p99 with the slow clients; with Redis,
>= 20,000 QUERY/s per instance and propagation p99 <= 100 ms.
Usage: ``python -m benchmarks.discovery [--quick] [--json out.json]`` or
``vcall bench discovery ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import multiprocessing as mp
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from multiprocessing.connection import Connection
from typing import IO, Any, TypeVar, cast

import psutil

from benchmarks.cli import write_json
from vcall.discovery.client import DiscoveryClient
from vcall.discovery.codec import UserRecord, format_reply
from vcall.discovery.server import raise_nofile_limit

WARMUP = 0.5  # seconds of each run left out of the figures
USERS = 200
SLOW_PHASES = 10
STATS_INTERVAL = 1.0  # the server's stats log lines, for its event-loop lag
BOOST_NICE = -10
PASSWORD = "bench-password"


@dataclass(frozen=True, slots=True)
class LoadSpec:
    host: str
    port: int
    conns: int
    duration: float
    rate: float  # requests/s for this worker; 0 = closed loop
    first_user: int  # connection i queries user (first_user + i) % USERS
    verb: str = "QUERY"  # or "REGISTER" (the user's own record, with its password)


@dataclass(frozen=True, slots=True)
class Result:
    scenario: str
    conns: int
    slow: int
    offered_rps: float | None
    achieved_rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    server_cpu_pct: float | None = None  # of one core, over the run (None: external server)
    server_lag_max_ms: float | None = None  # the server's worst event-loop lag (its log)
    gen_stall_max_ms: float | None = None  # the open-loop generator's worst late wake-up
    slow_reconnects: int = 0


def _user(i: int) -> tuple[str, str, int]:
    return f"bench{i:04d}", f"10.{i // 250}.{i % 250}.1", 20000 + i


# --- load generator (runs in its own process) -----------------------------------------------


class _LoadConn(asyncio.Protocol):
    def __init__(self, gen: _Generator, index: int) -> None:
        nick, ip, port = _user(index % USERS)
        if gen.spec.verb == "REGISTER":
            self.request = f"REGISTER {nick} {ip} {port} {PASSWORD} V0".encode()
            self.expected = len(f"OK WELCOME {nick} {int(time.time())}")
        else:
            self.request = f"QUERY {nick}".encode()
            self.expected = len(format_reply(UserRecord(nick, ip, port, ("V0",))))
        self.gen = gen
        self.transport: asyncio.Transport | None = None
        self.got = 0
        self.sent_at = 0.0
        self.ready = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.ready.set_result(None)

    def send(self, scheduled: float) -> None:
        assert self.transport is not None
        self.sent_at = scheduled
        self.got = 0
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.got += len(data)
        if self.got >= self.expected:
            if self.got != self.expected:
                self.gen.errors += 1
            self.gen.done(self, time.perf_counter())

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.gen.finished:
            self.gen.errors += 1


class _Generator:
    def __init__(self, spec: LoadSpec, notify: Callable[[str], None]) -> None:
        self.spec = spec
        self.notify = notify  # "measuring" / "done": the parent samples the server's CPU
        self.latencies = array("d")
        self.errors = 0
        self.finished = False
        self.measure_from = 0.0
        self.end = 0.0
        self.idle: collections.deque[_LoadConn] = collections.deque()
        self.backlog: collections.deque[float] = collections.deque()
        self.completed = 0
        self.stall = 0.0  # worst late wake-up of the open-loop scheduler, s

    def done(self, conn: _LoadConn, now: float) -> None:
        if conn.sent_at >= self.measure_from:
            self.latencies.append(now - conn.sent_at)
        if now >= self.end:
            return
        if self.spec.rate == 0:
            conn.send(now)  # closed loop: next request at once
        elif self.backlog:
            conn.send(self.backlog.popleft())
        else:
            self.idle.append(conn)

    async def run(self) -> tuple[array[float], int, float, float]:
        loop = asyncio.get_running_loop()
        conns: list[_LoadConn] = []
        for i in range(self.spec.conns):
            index = self.spec.first_user + i
            _, proto = await loop.create_connection(
                lambda index=index: _LoadConn(self, index),  # type: ignore[misc]
                self.spec.host,
                self.spec.port,
            )
            conns.append(proto)
        start = time.perf_counter()
        self.measure_from = start + WARMUP
        self.end = start + self.spec.duration
        loop.call_later(WARMUP, self.notify, "measuring")
        loop.call_later(self.spec.duration, self.notify, "done")
        if self.spec.rate == 0:
            for conn in conns:
                conn.send(time.perf_counter())
        else:
            self.idle.extend(conns)
            await self._schedule(start)
        await asyncio.sleep(max(0.0, self.end - time.perf_counter()))
        self.finished = True
        await asyncio.sleep(0.2)  # let the last replies land
        for conn in conns:
            if conn.transport is not None:
                conn.transport.close()
        measured = self.end - self.measure_from
        return self.latencies, self.errors, measured, self.stall

    async def _schedule(self, start: float) -> None:
        interval = 1.0 / self.spec.rate
        due = start
        woke_due = start
        while True:
            now = time.perf_counter()
            if now >= self.end:
                return
            if now >= self.measure_from:
                # Late wake-ups of this scheduler count as latency (open loop): record the
                # worst, to tell the generator's own stalls from the server's.
                self.stall = max(self.stall, now - woke_due)
            while due <= now:
                if self.idle:
                    self.idle.popleft().send(due)
                else:
                    self.backlog.append(due)  # sent as soon as a connection frees up
                due += interval
            pause = max(0.0, min(due - time.perf_counter(), 0.001))
            woke_due = time.perf_counter() + pause + 0.001  # timers have 1 ms granularity
            await asyncio.sleep(pause)


T = TypeVar("T")


def _run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Generators run on uvloop when installed: more load per CPU, less noise in the figures."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def _load_worker(spec: LoadSpec, pipe: Connection, priority: bool) -> None:
    raise_nofile_limit()
    if priority:
        _boost(os.getpid())
    try:
        latencies, errors, measured, stall = _run_async(_Generator(spec, pipe.send).run())
        pipe.send((latencies.tobytes(), errors, measured, stall))
    except Exception as exc:
        pipe.send(exc)
    finally:
        pipe.close()


# --- slow clients (their own process) -------------------------------------------------------


class _SlowConn(asyncio.Protocol):
    """Trickles a REGISTER one byte per tick; the pool reconnects it when dropped."""

    def __init__(self, pool: _SlowPool, index: int) -> None:
        self.pool = pool
        self.index = index
        self.payload = f"REGISTER slow{index:05d} 10.0.0.1 8000 password V0#V1#V2#V3#V4".encode()
        self.pos = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.pool.live.add(self)

    def trickle(self) -> None:
        assert self.transport is not None
        i = self.pos % len(self.payload)
        self.transport.write(self.payload[i : i + 1])
        self.pos += 1

    def data_received(self, data: bytes) -> None:
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.live.discard(self)
        self.pool.lost(self.index)


class _SlowPool:
    def __init__(self, host: str, port: int, source: str) -> None:
        self.host, self.port, self.source = host, port, source
        self.live: set[_SlowConn] = set()
        self.reconnects = 0
        self.stopping = False
        self.loop = asyncio.get_running_loop()
        self.tasks: set[asyncio.Task[None]] = set()

    async def connect(self, index: int) -> None:
        while not self.stopping:
            try:
                await self.loop.create_connection(
                    lambda: _SlowConn(self, index), self.host, self.port,
                    local_addr=(self.source, 0),
                )  # fmt: skip
                return
            except OSError:
                await asyncio.sleep(0.5)

    def spawn(self, index: int) -> None:
        task = self.loop.create_task(self.connect(index))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def lost(self, index: int) -> None:
        if not self.stopping:
            self.reconnects += 1
            self.spawn(index)


async def _slow_clients(
    host: str, port: int, *, count: int, interval: float, source: str, pipe: Connection
) -> None:
    loop = asyncio.get_running_loop()
    pool = _SlowPool(host, port, source)
    for i in range(count):
        pool.spawn(i)
        if i % 50 == 49:
            await asyncio.sleep(0.01)  # do not flood the accept queue all at once
    pipe.send("ready")
    stop = loop.run_in_executor(None, pipe.recv)  # wait for "stop"
    tick = 0
    while not stop.done():
        # Each client sends one byte per interval, spread over ten sub-ticks (a real
        # attacker's clients are not synchronised).
        for conn in list(pool.live):
            if conn.index % SLOW_PHASES == tick % SLOW_PHASES:
                conn.trickle()
        tick += 1
        await asyncio.wait({stop}, timeout=interval / SLOW_PHASES)
    pool.stopping = True
    for conn in list(pool.live):
        if conn.transport is not None:
            conn.transport.abort()
    for task in list(pool.tasks):
        task.cancel()
    await asyncio.sleep(0.1)
    pipe.send(pool.reconnects)


def _slow_worker(host: str, port: int, count: int, interval: float, pipe: Connection) -> None:
    raise_nofile_limit()
    # On a real network the attacker's CPU is not the server's; on one 2-core box it is.
    # Niceness keeps this process from taking the server's or the load generator's CPU.
    os.nice(10)
    source = "127.0.0.2"  # another address than the legitimate load's
    _run_async(_slow_clients(host, port, count=count, interval=interval, source=source, pipe=pipe))
    pipe.close()


# --- orchestration --------------------------------------------------------------------------


@contextlib.contextmanager
def _server_process(
    args: argparse.Namespace,
) -> Iterator[tuple[str, int, int | None, Callable[[], str]]]:
    """(host, port, pid or None, a function returning the server's log so far)."""
    if args.server:
        host, _, port = args.server.rpartition(":")
        yield host, int(port), None, str
        return
    store = ["--store", args.store] if args.store else ["--db", ":memory:"]
    cmd = [
        sys.executable, "-m", "vcall.discovery.server", "--host", "127.0.0.1", "--port", "0",
        *store, "--max-connections", "100000", "--max-per-address", "100000",
        "--scrypt-n", "1024", "--stats-interval", str(STATS_INTERVAL),
        "--throttle-failures", "1000000",
    ]  # fmt: skip
    # The server's log goes to a file: a pipe nobody drains would fill up and block it.
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, stderr=log, text=True)
        if args.priority:
            _boost(proc.pid)
        try:
            deadline = time.monotonic() + 10
            while (match := re.search(r"listening on ([0-9.]+):(\d+)", _read(log))) is None:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start: {_read(log)}")
                time.sleep(0.05)
            yield match.group(1), int(match.group(2)), proc.pid, lambda: _read(log)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise


def _read(log: IO[str]) -> str:
    log.seek(0)
    return log.read()


def _run_load(
    ctx: Any, address: tuple[str, int] | list[tuple[str, int]], *, conns: int, duration: float,
    rate: float, workers: int, server: psutil.Process | list[psutil.Process] | None,
    priority: bool, verb: str = "QUERY",
) -> tuple[list[float], int, float, float | None, tuple[float, float], float]:  # fmt: skip
    """Run the load processes (worker w loads address w mod len(addresses)).

    Returns latencies (s), errors, measured seconds, the servers' CPU (%), the measured window
    in wall-clock time, and the generators' worst scheduler stall (s).
    """
    addresses = address if isinstance(address, list) else [address]
    workers = max(workers, len(addresses))
    pipes, procs = [], []
    for w in range(workers):
        host, port = addresses[w % len(addresses)]
        share = conns // workers + (1 if w < conns % workers else 0)
        spec = LoadSpec(host, port, share, duration, rate / workers, w * 1000, verb)
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_load_worker, args=(spec, child, priority), daemon=True)
        proc.start()
        child.close()
        pipes.append(parent)
        procs.append(proc)
    latencies: list[float] = []
    errors = 0
    measured = 0.0
    # Server CPU over the measured window only (not process start-up or connecting).
    cpu0, t0, wall0 = 0.0, time.monotonic(), time.time()
    gen_stall = 0.0
    for stage in ("measuring", "done"):
        for pipe in pipes:
            got = pipe.recv()
            if isinstance(got, Exception):
                raise got
            assert got == stage, got
        if stage == "measuring":
            cpu0, t0, wall0 = _cpu(server), time.monotonic(), time.time()
    window = (wall0, time.time())
    cpu_pct = (_cpu(server) - cpu0) / (time.monotonic() - t0) * 100 if server else None
    for pipe, proc in zip(pipes, procs, strict=True):
        got = pipe.recv()
        proc.join(30)
        if isinstance(got, Exception):
            raise got
        raw, errs, measured, stall = got
        gen_stall = max(gen_stall, stall)
        lat = array("d")
        lat.frombytes(raw)
        latencies.extend(lat)
        errors += errs
    return latencies, errors, measured, cpu_pct, window, gen_stall


_STATS_RE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*stats: .*loop lag max ([0-9.]+) ms", re.M
)


def _lag_max_ms(log: str, window: tuple[float, float]) -> float | None:
    """The server's worst event-loop lag over the window, from its "stats:" log lines."""
    lags = []
    for stamp, lag in _STATS_RE.findall(log):
        # asctime is local time; each line covers the STATS_INTERVAL before it: keep the
        # lines whose interval overlaps the window.
        t = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
        if window[0] < t < window[1] + STATS_INTERVAL:
            lags.append(float(lag))
    return max(lags) if lags else None


def _boost(pid: int) -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, pid, BOOST_NICE)
    except PermissionError:
        print(f"--priority: cannot renice {pid} (needs root); going on", file=sys.stderr)


def _cpu_pressure() -> float | None:
    """Share of the last 10 s in which runnable tasks waited for a CPU (Linux PSI), in %."""
    try:
        with open("/proc/pressure/cpu") as f:
            match = re.search(r"some avg10=([0-9.]+)", f.read())
    except OSError:
        return None
    return float(match.group(1)) if match else None


def _cpu(proc: psutil.Process | list[psutil.Process] | None) -> float:
    if proc is None:
        return 0.0
    if isinstance(proc, list):
        return sum(_cpu(p) for p in proc)
    times = proc.cpu_times()
    return float(times.user + times.system)


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def _result(
    name: str, *, conns: int, slow: int = 0, rate: float | None, lat: list[float], errors: int,
    measured: float, server_cpu: float | None = None,
) -> Result:  # fmt: skip
    lat.sort()
    ms = [v * 1000 for v in lat]
    return Result(
        scenario=name,
        conns=conns,
        slow=slow,
        offered_rps=rate,
        achieved_rps=round(len(lat) / measured, 1) if measured > 0 else 0.0,
        p50_ms=round(_percentile(ms, 50), 3),
        p90_ms=round(_percentile(ms, 90), 3),
        p99_ms=round(_percentile(ms, 99), 3),
        max_ms=round(ms[-1], 3) if ms else float("nan"),
        errors=errors,
        server_cpu_pct=None if server_cpu is None else round(server_cpu, 1),
    )


def _preload(host: str, port: int) -> None:
    with DiscoveryClient(host, port, timeout=30) as client:
        for i in range(USERS):
            nick, ip, uport = _user(i)
            client.register(nick, ip, uport, PASSWORD, ["V0"])


def _table(results: list[Result]) -> str:
    head = (
        f"{'scenario':<16} {'conns':>6} {'slow':>6} {'offered/s':>10} {'achieved/s':>11} "
        f"{'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} {'errors':>7} {'srv cpu':>8} "
        f"{'srv lag':>8} {'gen lag':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        offered = f"{r.offered_rps:.0f}" if r.offered_rps else "-"
        cpu = "-" if r.server_cpu_pct is None else f"{r.server_cpu_pct:.0f}%"
        lag = "-" if r.server_lag_max_ms is None else f"{r.server_lag_max_ms:.1f}"
        gen = "-" if r.gen_stall_max_ms is None else f"{r.gen_stall_max_ms:.1f}"
        lines.append(
            f"{r.scenario:<16} {r.conns:>6} {r.slow:>6} {offered:>10} {r.achieved_rps:>11.1f} "
            f"{r.p50_ms:>8.2f} {r.p90_ms:>8.2f} {r.p99_ms:>8.2f} {r.max_ms:>8.2f} {r.errors:>7} "
            f"{cpu:>8} {lag:>8} {gen:>8}"
        )
    load = os.getloadavg()[0]
    pressure = _cpu_pressure()
    waited = (
        "" if pressure is None else f", tasks waited for a CPU {pressure:.0f}% of the last 10 s"
    )
    lines.append(
        f"(srv cpu: server process, % of one core; srv lag: its worst event-loop lag, ms; "
        f"gen lag: the load generator's worst stall, ms; "
        f"load average now {load:.1f}{waited})"
    )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--server", help="HOST:PORT of a running server (default: start one)")
    add("--duration", type=float, default=10.0, help="seconds per scenario (default: 10)")
    add("--closed-conns", type=int, default=100)
    add("--open-conns", type=int, default=1000)
    add("--rate", type=float, default=5000.0, help="QUERY/s of the open loop")
    add("--slow", type=int, default=1000, help="slow clients in the last scenario")
    add("--slow-interval", type=float, default=0.3, help="s between a slow client's bytes")
    add("--workers", type=int, default=1, help="load-generator processes")
    add(
        "--priority", action="store_true",
        help=f"run the server and load generators at nice {BOOST_NICE} (root): on a shared "
        "machine, measure the server rather than its neighbours",
    )  # fmt: skip
    add("--store", help="servers share this store (redis://HOST:PORT/DB): adds scale-out runs")
    add("--instances", type=int, default=2, help="servers on the shared store (default: 2)")
    add("--propagation-samples", type=int, default=200, help="registrations timed across")
    add("--quick", action="store_true", help="tiny numbers: a smoke test")
    add("--json", metavar="FILE", help="write the results as JSON")


def run(args: argparse.Namespace) -> int:
    if args.quick:
        args.duration, args.closed_conns, args.open_conns = 1.0, 10, 50
        args.rate, args.slow, args.propagation_samples = 200.0, 20, 20
    raise_nofile_limit()
    ctx = mp.get_context("spawn")
    results: list[Result] = []
    load_before = os.getloadavg()
    pressure_before = _cpu_pressure()
    with _server_process(args) as (host, port, pid, server_log):
        server = psutil.Process(pid) if pid else None
        _preload(host, port)

        def scenario(name: str, conns: int, rate: float, slow: int = 0) -> Result:
            lat, errors, measured, cpu, window, stall = _run_load(
                ctx, (host, port), conns=conns, rate=rate,
                duration=args.duration, workers=args.workers, server=server,
                priority=args.priority,
            )  # fmt: skip
            if server is not None:  # wait for the stats line that covers the window's end
                time.sleep(max(0.0, window[1] + STATS_INTERVAL + 0.2 - time.time()))
            result = _result(
                name, conns=conns, slow=slow, rate=rate or None, lat=lat, errors=errors,
                measured=measured, server_cpu=cpu,
            )  # fmt: skip
            return replace(
                result,
                server_lag_max_ms=_lag_max_ms(server_log(), window),
                gen_stall_max_ms=round(stall * 1000, 1) if rate else None,
            )

        results.append(scenario("closed-loop", args.closed_conns, 0))
        results.append(scenario("open-loop", args.open_conns, args.rate))
        parent, child = ctx.Pipe()
        slow = ctx.Process(
            target=_slow_worker,
            args=(host, port, args.slow, args.slow_interval, child),
            daemon=True,
        )
        slow.start()
        child.close()
        try:
            parent.recv()  # "ready": all slow clients started connecting
            time.sleep(min(2.0, args.duration / 2))  # let them settle in
            with_slow = scenario("open-loop+slow", args.open_conns, args.rate, slow=args.slow)
            parent.send("stop")
            results.append(replace(with_slow, slow_reconnects=parent.recv()))
        finally:
            slow.join(30)
            if slow.is_alive():
                slow.kill()
        propagation: dict[str, float | int] | None = None
        if args.store and not args.server:
            first = (host, port, server)
            scale, propagation = _scale_out(args, ctx, first)
            results += scale
    print(_table(results))
    if propagation is not None:
        print(
            f"propagation between instances: p50 {propagation['p50_ms']:.2f} ms, "
            f"p99 {propagation['p99_ms']:.2f} ms, max {propagation['max_ms']:.2f} ms "
            f"({propagation['samples']} registrations)"
        )
    report = {
        "benchmark": "discovery",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            # Other work on the machine inflates latencies: the load average says how much.
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
            "cpu_pressure_before": pressure_before,
            "cpu_pressure_after": _cpu_pressure(),
        },
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "targets": {"closed_loop_rps": 10000, "open_loop_p99_ms": 20},
        "results": [asdict(r) for r in results],
        "propagation": propagation,
    }
    write_json(args.json, report)
    return 0


def _scale_out(
    args: argparse.Namespace, ctx: Any, first: tuple[str, int, psutil.Process | None]
) -> tuple[list[Result], dict[str, float | int] | None]:
    """QUERY/s and REGISTER/s on 1 and N instances of a shared store; propagation delay."""
    results: list[Result] = []
    with contextlib.ExitStack() as stack:
        instances = [first]
        for _ in range(1, max(1, args.instances)):
            h, p, pid, _log = stack.enter_context(_server_process(args))
            instances.append((h, p, psutil.Process(pid) if pid else None))
        for count in sorted({1, len(instances)}):
            group = instances[:count]
            addresses = [(h, p) for h, p, _ in group]
            procs = [proc for _, _, proc in group if proc is not None]
            for verb in ("QUERY", "REGISTER"):
                lat, errors, measured, cpu, _window, _stall = _run_load(
                    ctx, addresses, conns=args.closed_conns, rate=0, duration=args.duration,
                    workers=args.workers, server=procs, priority=args.priority, verb=verb,
                )  # fmt: skip
                name = f"{verb.lower()} x{count}"
                result = _result(
                    name, conns=args.closed_conns, rate=None, lat=lat, errors=errors,
                    measured=measured, server_cpu=cpu,
                )  # fmt: skip
                results.append(result)
        propagation = None
        if len(instances) > 1:
            a, b = instances[0][:2], instances[1][:2]
            propagation = _propagation(a, b, args.propagation_samples)
    return results, propagation


def _propagation(a: tuple[str, int], b: tuple[str, int], samples: int) -> dict[str, float | int]:
    """Seconds from a REGISTER's reply on ``a`` to the first QUERY on ``b`` that sees it."""
    delays: list[float] = []
    stamp = f"{os.getpid() % 10000}x{int(time.time()) % 100000}"
    with (
        socket.create_connection(a, timeout=10) as sa,
        socket.create_connection(b, timeout=10) as sb,
    ):
        for sock in (sa, sb):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(samples):
            nick = f"prop{stamp}-{i}"
            port = 1 + i % 60000
            sa.sendall(f"REGISTER {nick} 10.9.9.9 {port} {PASSWORD} V0".encode())
            if not sa.recv(4096).startswith(b"OK WELCOME"):
                raise RuntimeError("propagation: REGISTER refused")
            done = time.perf_counter()
            want = format_reply(UserRecord(nick, "10.9.9.9", port, ("V0",)))
            while True:
                sb.sendall(f"QUERY {nick}".encode())
                reply = sb.recv(4096)
                if reply == want:
                    delays.append(time.perf_counter() - done)
                    break
                if time.perf_counter() - done > 10:
                    raise RuntimeError(f"propagation: {nick} never reached {b}")
    delays.sort()
    ms = [d * 1000 for d in delays]
    return {
        "samples": len(ms),
        "p50_ms": round(_percentile(ms, 50), 3),
        "p99_ms": round(_percentile(ms, 99), 3),
        "max_ms": round(ms[-1], 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.discovery", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
