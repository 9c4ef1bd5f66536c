"""The impairment lab: hosts A and B on either side of a router R that damages their traffic.

Topology (three network namespaces, names ``vclab<pid>-<n>-a|r|b``)::

    A [to-r .1.1] ===veth=== [to-a .1.2]  R  [to-b .2.2] ===veth=== [to-r .2.1] B
                                          |
                          impair0 (TUN) <-> the impairer process, inside R

    A's side is 10.203.1.0/30, B's side 10.203.2.0/30 (A = 10.203.1.1, B = 10.203.2.1).

A's and B's only route is their default route via R. In R, policy rules send every packet
that arrives on ``to-a`` or ``to-b`` into the TUN device ``impair0``; the impairer process
(``impairer.py``) reads it, applies the direction's :class:`~profiles.Impairment`, and writes
it back; R's main table then routes it out of the other veth. Rate limits are ``tc tbf`` on R's
veth toward the receiver (queue about ``queue_ms`` long, tail drop). IPv6 is off in all three
namespaces, so the only traffic is what the test sends (plus ARP, which R answers itself).

Why a TUN device and not a raw-socket bridge: the kernel keeps doing what it does well (ARP,
checksums, routing, tbf), the impairer sees exactly one IP packet per read, and A and B are
ordinary routed hosts on separate subnets, as on the Internet. R has ip_forward on (in R only),
but a rule after the TUN rule blackholes anything the TUN route does not take, so no packet
can cross R without passing the impairer: with the impairer stopped, A and B cannot talk.

Usage::

    with Lab(get_profile("loss1_20ms"), seed=1) as lab:
        rx = lab.socket(Host.B)                     # a UDP socket inside B
        agent = lab.python(Host.A, ["-m", "vcall", "agent", ...])  # or lab.popen(host, argv)
        timeline = lab.start_timeline()             # the profile's rate steps and cuts
        lab.cut(1.0)                                # or by hand, while running

Guarantees:
- When the lab closes (``close()``, the end of a ``with``, a failing test's fixture teardown)
  every process it started and every process left in its namespaces is killed, every socket
  made by :meth:`Lab.socket` is closed, and the namespaces (with their veths and TUN device)
  are deleted; ``close()`` is idempotent and raises :class:`LabError` if something remained.
- If the owning process dies without closing (SIGKILL included): programs started with
  :meth:`Lab.popen` and the impairer die with it (PR_SET_PDEATHSIG), the reaper process
  (``reaper.py``) deletes the namespaces, and as a last resort every new lab first removes
  the ``vclab*`` namespaces whose owner pid is dead.
- No network object is created outside the three namespaces: no interface, route, qdisc or
  sysctl of the caller's namespace is touched, and all addresses are 10.203.x.y inside them.
  (Outside them there are only processes: the reaper, and ``ip``/``tc`` for a moment.)
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from enum import StrEnum
from types import TracebackType
from typing import Any, TypeVar

from benchmarks.netlab import namespaces
from benchmarks.netlab.client import ImpairerClient
from benchmarks.netlab.control import Configure, CutLink, StatsRequest
from benchmarks.netlab.errors import LabError, LabUnavailableError
from benchmarks.netlab.profiles import (
    BOTH,
    CLEAN,
    Cut,
    Direction,
    Impairment,
    Profile,
    RateLimit,
    RateStep,
)
from benchmarks.netlab.timeline import AppliedEvent, CutWindow, TimedAction, Timeline

__all__ = [
    "AppliedEvent", "CutWindow", "Host", "Lab", "LabError", "LabUnavailableError", "Timeline",
    "unavailable_reason",
]  # fmt: skip

logger = logging.getLogger(__name__)

T = TypeVar("T")

A_NET, B_NET = "10.203.1.0/30", "10.203.2.0/30"
A_IP, R_A_IP = "10.203.1.1", "10.203.1.2"
B_IP, R_B_IP = "10.203.2.1", "10.203.2.2"
TUN = "impair0"
TUN_TABLE = 100
START_TIMEOUT = 10.0  # s for the impairer to attach to its TUN device
STOP_TIMEOUT = namespaces.STOP_TIMEOUT  # s between SIGTERM and SIGKILL for its processes

_lab_numbers = itertools.count()


class Host(StrEnum):
    A = "a"
    R = "r"
    B = "b"


ADDRESSES = {Host.A: A_IP, Host.B: B_IP}
# The router's interface toward the receiver of each direction: where its rate limit goes.
EGRESS = {Direction.A_TO_B: "to-b", Direction.B_TO_A: "to-a"}


def unavailable_reason() -> str | None:
    """Why the lab cannot run here, or None. The lab's only legitimate reason to be skipped."""
    if os.geteuid() != 0:
        return (
            "the impairment lab needs root (euid 0) to create network namespaces; "
            f"this process runs with euid {os.geteuid()}"
        )
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return (
                f"the impairment lab needs the `{tool}` command (Debian package iproute2), "
                f"not found on PATH={os.environ.get('PATH', '')}"
            )
    return None


class Lab:
    """One lab: three namespaces, the impairer, and everything started in them.

    Create it from a thread that outlives the processes it starts (see namespaces.exec_argv).
    """

    def __init__(
        self, profile: Profile = CLEAN, *, seed: int = 0, stop_timeout: float = STOP_TIMEOUT
    ) -> None:
        """Build the lab with ``profile`` applied (its timed events wait for start_timeline);
        ``seed`` seeds the impairer; ``stop_timeout`` is how long close() waits after SIGTERM
        before SIGKILL. Raises LabUnavailableError (see unavailable_reason) or LabError."""
        reason = unavailable_reason()
        if reason is not None:
            raise LabUnavailableError(reason)
        for tool in ("setpriv",):
            if shutil.which(tool) is None:
                raise LabError(f"the lab needs `{tool}` (Debian package util-linux)")
        if not os.path.exists("/dev/net/tun"):
            raise LabError("the lab needs /dev/net/tun (the tun kernel module)")
        self.seed = seed
        self.profile = profile
        self.stop_timeout = stop_timeout
        number = next(_lab_numbers)
        self.names = {h: f"{namespaces.PREFIX}{os.getpid()}-{number}-{h.value}" for h in Host}
        self._procs: list[subprocess.Popen[Any]] = []
        self._sockets: list[socket.socket] = []
        self._timelines: list[Timeline] = []
        self._rates: dict[Direction, RateLimit | None] = dict.fromkeys(BOTH)
        self._impairer: ImpairerClient | None = None
        self._reaper: subprocess.Popen[bytes] | None = None
        self._closed = False
        removed = namespaces.remove_stale()
        if removed:
            logger.warning("removed stale lab namespaces: %s", ", ".join(removed))
        try:
            self._start_reaper()
            self._build()
            self._start_impairer()
            self.apply(profile)
        except BaseException:
            with contextlib.suppress(LabError):
                self.close()
            raise

    # --- building ---------------------------------------------------------------------------

    def _start_reaper(self) -> None:
        # Its own session (no terminal signal reaches it) and no death signal: it must outlive
        # us. Its stdin is the pipe whose end-of-file tells it we are gone.
        self._reaper = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.netlab.reaper", *self.names.values()],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _build(self) -> None:
        a, r, b = (self.names[h] for h in (Host.A, Host.R, Host.B))
        for name in (a, r, b):
            # Our pid in the name, so a leftover of a dead process that had our pid (or of
            # nobody alive): never of a lab of ours, whose numbers are all different.
            namespaces.destroy(name)
        namespaces.ip_batch([f"netns add {n}" for n in (a, r, b)])
        host_sysctls = "\n".join(
            [
                "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6",
                "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6",
                "echo 0 > /proc/sys/net/ipv4/ip_forward",
            ]
        )
        # IPv4 settings of a new namespace are copied from the initial one: set what matters.
        router_sysctls = "\n".join(
            [
                "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6",
                "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6",
                "echo 1 > /proc/sys/net/ipv4/ip_forward",
                "for c in all default; do",
                "  echo 0 > /proc/sys/net/ipv4/conf/$c/rp_filter",
                "  echo 0 > /proc/sys/net/ipv4/conf/$c/send_redirects",
                "done",
            ]
        )
        for name, script in ((a, host_sysctls), (r, router_sysctls), (b, host_sysctls)):
            namespaces.run(["ip", "netns", "exec", name, "sh", "-ec", script])
        namespaces.ip_batch(
            [
                f"link add to-a type veth peer name to-r netns {a}",
                f"link add to-b type veth peer name to-r netns {b}",
                f"tuntap add dev {TUN} mode tun",
                f"addr add {R_A_IP}/30 dev to-a",
                f"addr add {R_B_IP}/30 dev to-b",
                "link set lo up",
                "link set to-a up",
                "link set to-b up",
                f"link set {TUN} up",
                f"route add default dev {TUN} table {TUN_TABLE}",
                f"rule add iif to-a lookup {TUN_TABLE} pref 100",
                f"rule add iif to-b lookup {TUN_TABLE} pref 100",
                # What table 100 does not take (no TUN route) must not fall through to main.
                "rule add iif to-a blackhole pref 101",
                "rule add iif to-b blackhole pref 101",
            ],
            netns=r,
        )
        for name, ip, gateway in ((a, A_IP, R_A_IP), (b, B_IP, R_B_IP)):
            namespaces.ip_batch(
                [
                    f"addr add {ip}/30 dev to-r",
                    "link set lo up",
                    "link set to-r up",
                    f"route add default via {gateway}",
                ],
                netns=name,
            )

    def _start_impairer(self) -> None:
        # Owned by ImpairerClient, which closes it in stop(); unnamed, so nothing to remove.
        log = tempfile.TemporaryFile(prefix="vclab-impairer-")  # noqa: SIM115
        argv = [
            sys.executable, "-m", "benchmarks.netlab.impairer", "--tun", TUN,
            "--a-net", A_NET, "--b-net", B_NET, "--seed", str(self.seed),
        ]  # fmt: skip
        try:
            proc = subprocess.Popen(
                namespaces.exec_argv(self.names[Host.R], argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        except OSError:
            log.close()
            raise
        self._impairer = ImpairerClient(proc, log)
        ready = self._impairer.read_reply(START_TIMEOUT)
        if ready.get("ready") != TUN:
            raise LabError(f"impairer: unexpected first line {ready!r}")

    # --- conditions -------------------------------------------------------------------------

    def _control(self) -> ImpairerClient:
        if self._impairer is None or self._closed:
            raise LabError("the lab is closed")
        return self._impairer

    def apply(self, profile: Profile) -> None:
        """Set both directions' impairment and rate limit (timed events: start_timeline)."""
        for direction in BOTH:
            link = profile.link(direction)
            self.set_impairment(direction, link.impairment)
            self.set_rate(direction, link.rate)
        self.profile = profile

    def set_impairment(self, direction: Direction, impairment: Impairment) -> None:
        self._control().request(Configure(direction, impairment))

    def set_rate(self, direction: Direction, rate: RateLimit | None) -> None:
        """Rate-limit a direction (``tc qdisc replace``, which empties the queue), or lift the
        limit with None."""
        dev = EGRESS[direction]
        router = self.names[Host.R]
        if rate is None:
            if self._rates[direction] is not None:
                namespaces.run(["tc", "-n", router, "qdisc", "del", "dev", dev, "root"])
        else:
            namespaces.run(
                ["tc", "-n", router, "qdisc", "replace", "dev", dev, "root", *_tbf(rate)]
            )
        self._rates[direction] = rate

    def change_rate(self, direction: Direction, rate_bps: int) -> None:
        """Change a limited direction's rate mid-run (``tc qdisc change``: packets already
        queued stay, drained at the new rate); the queue keeps its length in milliseconds."""
        current = self._rates[direction]
        if current is None:
            raise LabError(f"{direction} has no rate limit to change (set_rate first)")
        rate = RateLimit(rate_bps, current.queue_ms)
        dev = EGRESS[direction]
        namespaces.run(
            ["tc", "-n", self.names[Host.R], "qdisc", "change", "dev", dev, "root", *_tbf(rate)]
        )
        self._rates[direction] = rate

    def cut(self, seconds: float, directions: Sequence[Direction] = BOTH) -> CutWindow:
        """Drop everything in ``directions`` for ``seconds`` from now (0 ends a cut)."""
        reply = self._control().request(CutLink(tuple(directions), seconds))
        return CutWindow(float(reply["start"]), float(reply["end"]))

    def start_timeline(self, profile: Profile | None = None) -> Timeline:
        """Play the profile's rate steps and cuts (default: the applied profile's) from now."""
        profile = profile or self.profile
        actions: list[TimedAction] = []
        for step in profile.steps:

            def change(step: RateStep = step) -> None:
                self.change_rate(step.direction, step.rate_bps)

            what = f"{step.direction} rate {step.rate_bps} bit/s"
            actions.append(TimedAction(step.at_s, what, change))
        for cut in profile.cuts:

            def do_cut(cut: Cut = cut) -> CutWindow:
                return self.cut(cut.duration_s, cut.directions)

            actions.append(TimedAction(cut.at_s, f"cut {cut.duration_s} s", do_cut))
        timeline = Timeline(actions)
        self._timelines.append(timeline)
        return timeline

    def impairer_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self._control().request(StatsRequest())["stats"]
        return stats

    def tc_stats(self, direction: Direction) -> str:
        """``tc -s qdisc show`` of the direction's rate-limited interface (for reports)."""
        dev = EGRESS[direction]
        return namespaces.run(["tc", "-n", self.names[Host.R], "-s", "qdisc", "show", "dev", dev])

    # --- hosts ------------------------------------------------------------------------------

    @staticmethod
    def address(host: Host) -> str:
        """A's or B's address (R has one per side: R_A_IP, R_B_IP)."""
        return ADDRESSES[host]

    def popen(self, host: Host, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside ``host`` (subprocess.Popen keywords pass through). The lab
        stops it at close (SIGTERM, then SIGKILL); it dies with the calling thread."""
        self._control()
        proc: subprocess.Popen[Any] = subprocess.Popen(
            namespaces.exec_argv(self.names[host], argv), **kwargs
        )
        self._procs.append(proc)
        return proc

    def python(self, host: Host, args: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """``popen`` of this interpreter (so ``-m vcall ...`` runs the same code)."""
        return self.popen(host, [sys.executable, *args], **kwargs)

    def run_in(self, host: Host, fn: Callable[[], T]) -> T:
        """Call ``fn`` in this process with the host's network namespace (sockets it makes
        live there); the caller owns what it creates."""
        self._control()
        return namespaces.in_netns(self.names[host], fn)

    def socket(
        self,
        host: Host,
        kind: socket.SocketKind = socket.SOCK_DGRAM,
        bind_port: int | None = 0,
    ) -> socket.socket:
        """An IPv4 socket inside ``host``, bound to its address (port 0: any) unless
        ``bind_port`` is None. Closed by the lab at close."""
        address = ADDRESSES[host]

        def make() -> socket.socket:
            sock = socket.socket(socket.AF_INET, kind)
            if bind_port is not None:
                sock.bind((address, bind_port))
            return sock

        sock = self.run_in(host, make)
        self._sockets.append(sock)
        return sock

    # --- closing ----------------------------------------------------------------------------

    @property
    def impairer_process(self) -> subprocess.Popen[bytes] | None:
        return self._impairer.proc if self._impairer is not None else None

    def impairer_log(self) -> str:
        return self._impairer.log_text() if self._impairer is not None else ""

    def close(self) -> None:
        """Stop everything and delete the namespaces (see the module's guarantees)."""
        if self._closed:
            return
        self._closed = True
        problems: list[str] = []
        for timeline in self._timelines:
            timeline.cancel()
        for proc in self._procs:
            namespaces.stop_process(proc, self.stop_timeout)
        if self._impairer is not None:
            self._impairer.stop()
        for sock in self._sockets:
            sock.close()
        for name in self.names.values():
            try:
                namespaces.destroy(name)
            except namespaces.NetnsError as exc:
                problems.append(str(exc))
        if self._reaper is not None:
            assert self._reaper.stdin is not None
            with contextlib.suppress(OSError):
                if not problems:  # else no "done": the reaper has its own try at removal
                    self._reaper.stdin.write(b"done")
                self._reaper.stdin.close()
            try:
                self._reaper.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._reaper.kill()
                self._reaper.wait()
                problems.append("the reaper did not exit")
        if problems:
            raise LabError("lab not fully removed: " + "; ".join(problems))

    def __enter__(self) -> Lab:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _tbf(rate: RateLimit) -> list[str]:
    return [
        "tbf",
        "rate", f"{rate.rate_bps}bit",
        "burst", str(rate.burst_bytes),
        "latency", f"{rate.queue_ms:g}ms",
    ]  # fmt: skip
