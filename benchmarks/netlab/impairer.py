"""The impairer process: runs inside the router namespace R and owns all A <-> B forwarding.

Packet path (set up by ``lab.py``)::

    A --veth--> R: policy rule "iif r-a/r-b lookup table 100" -> default dev tun0
                -> this process reads the IP packet from tun0, keeps it as long as the
                   impairment says (or drops it), writes it back into tun0
                -> R's main table routes it out of r-b (or r-a), through tc tbf if rate-limited
                -> B

R forwards between interfaces (ip_forward is on in R alone), but every packet arriving from A
or B is routed into the TUN device, and a rule after that blackholes what the TUN route does not
take: there is no path from A to B that bypasses this process. When it is not running, the
persistent TUN device has no carrier and A and B cannot reach each other at all.

Usage (the lab starts it)::

    python -m benchmarks.netlab.impairer --tun tun0 --a-net 10.203.1.0/30 \
        --b-net 10.203.2.0/30 --seed 0

Control: JSON lines on stdin, one reply line per command on stdout (``control.py``). It exits 0
on ``quit`` or end-of-file on stdin (the owner died or closed the pipe), 1 if the TUN device
cannot be opened.

Guarantees:
- A datagram or command that makes no sense is counted (``unroutable``) or answered with an
  error reply; nothing from the network or the pipe ends the loop.
- Packets are released at most about a millisecond after their due time (the poll timeout's
  resolution); the loop reads the clock in one place, ``time.monotonic``.
"""

from __future__ import annotations

import argparse
import fcntl
import ipaddress
import logging
import os
import selectors
import signal
import struct
import sys
import time
from types import FrameType
from typing import Any

from benchmarks.netlab.control import (
    Configure,
    ControlError,
    CutLink,
    LineReader,
    Quit,
    StatsRequest,
    decode_command,
    encode_reply,
)
from benchmarks.netlab.impairment import ImpairmentCore
from benchmarks.netlab.profiles import Direction

logger = logging.getLogger(__name__)

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MAX_PACKET = 65_535
READ_BURST = 256  # packets read per wake-up before the due ones are released


def open_tun(name: str) -> int:
    """Attach to the TUN device ``name`` (IP packets, no packet-information header)."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    os.set_blocking(fd, False)
    return fd


class Classifier:
    """Which direction an IPv4 packet travels, from its destination address."""

    def __init__(self, a_net: ipaddress.IPv4Network, b_net: ipaddress.IPv4Network) -> None:
        self._a = (int(a_net.network_address), int(a_net.netmask))
        self._b = (int(b_net.network_address), int(b_net.netmask))

    def __call__(self, packet: bytes) -> Direction | None:
        if len(packet) < 20 or packet[0] >> 4 != 4:
            return None
        dst = int.from_bytes(packet[16:20], "big")
        if dst & self._b[1] == self._b[0]:
            return Direction.A_TO_B
        if dst & self._a[1] == self._a[0]:
            return Direction.B_TO_A
        return None


class Impairer:
    """The loop: TUN in, core, TUN out; commands on ``control_in``, replies on ``control_out``."""

    def __init__(
        self,
        tun_fd: int,
        control_in: int,
        control_out: int,
        core: ImpairmentCore,
        classify: Classifier,
    ) -> None:
        self.tun_fd = tun_fd
        self.control_in = control_in
        self.control_out = control_out
        self.core = core
        self.classify = classify
        self.unroutable = 0
        self.write_errors = 0
        self.bad_commands = 0
        self._lines = LineReader()
        self._running = True

    def reply(self, fields: dict[str, Any]) -> None:
        os.write(self.control_out, encode_reply(fields))

    def run(self) -> int:
        with selectors.DefaultSelector() as sel:
            sel.register(self.tun_fd, selectors.EVENT_READ, "tun")
            sel.register(self.control_in, selectors.EVENT_READ, "control")
            while self._running:
                due = self.core.next_release()
                timeout = None if due is None else max(0.0, due - time.monotonic())
                for key, _ in sel.select(timeout):
                    if key.data == "tun":
                        self._read_tun()
                    else:
                        self._read_control()
                self._release(time.monotonic())
        return 0

    def _read_tun(self) -> None:
        now = time.monotonic()
        for _ in range(READ_BURST):
            try:
                packet = os.read(self.tun_fd, MAX_PACKET)
            except BlockingIOError:
                return
            direction = self.classify(packet)
            if direction is None:
                self.unroutable += 1
                continue
            self.core.submit(direction, packet, now)

    def _release(self, now: float) -> None:
        for _, packet in self.core.release_due(now):
            try:
                os.write(self.tun_fd, packet)
            except OSError as exc:
                self.write_errors += 1
                logger.debug("tun write failed: %s", exc)

    def _read_control(self) -> None:
        data = os.read(self.control_in, 65_536)
        if not data:
            logger.info("control pipe closed: exiting")
            self._running = False
            return
        try:
            lines = self._lines.feed(data)
        except ControlError as exc:
            self.bad_commands += 1
            self.reply({"ok": False, "error": str(exc)})
            return
        for line in lines:
            self._command(line)

    def _command(self, line: bytes) -> None:
        try:
            cmd = decode_command(line)
        except ControlError as exc:
            self.bad_commands += 1
            self.reply({"ok": False, "error": str(exc)})
            return
        if isinstance(cmd, Configure):
            self.core.configure(cmd.direction, cmd.impairment)
            self.reply({"ok": True})
        elif isinstance(cmd, CutLink):
            start = time.monotonic()
            end = start + cmd.seconds
            for direction in cmd.directions:
                self.core.cut(direction, start, end)
            self.reply({"ok": True, "start": start, "end": end})
        elif isinstance(cmd, StatsRequest):
            stats = self.core.to_dict() | {
                "unroutable": self.unroutable,
                "write_errors": self.write_errors,
                "bad_commands": self.bad_commands,
            }
            self.reply({"ok": True, "stats": stats})
        elif isinstance(cmd, Quit):
            self.reply({"ok": True})
            self._running = False


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.netlab.impairer")
    parser.add_argument("--tun", required=True, help="TUN device to attach to")
    parser.add_argument("--a-net", type=ipaddress.IPv4Network, required=True, help="A's subnet")
    parser.add_argument("--b-net", type=ipaddress.IPv4Network, required=True, help="B's subnet")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the impairments")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="impairer: %(message)s")
    try:
        tun_fd = open_tun(args.tun)
    except OSError as exc:
        print(f"impairer: cannot attach to TUN device {args.tun}: {exc}", file=sys.stderr)
        return 1
    impairer = Impairer(
        tun_fd,
        sys.stdin.fileno(),
        sys.stdout.fileno(),
        ImpairmentCore(args.seed),
        Classifier(args.a_net, args.b_net),
    )
    # Ctrl-C in a terminal reaches the whole process group: leave the stopping to the lab,
    # which owns the order of things; SIGTERM (the lab's fallback) ends the loop cleanly.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    impairer.reply({"ok": True, "ready": args.tun})
    try:
        return impairer.run()
    finally:
        os.close(tun_fd)


if __name__ == "__main__":
    sys.exit(main())
