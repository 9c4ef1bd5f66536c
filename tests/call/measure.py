"""Measure call-control timings with real agents: ``python -m tests.call.measure [-n N]``.

Prints a table (median / max, seconds) of: call set-up (caller's ``outgoing`` -> ``started``,
auto-answering callee, no media), a SIGKILLed peer noticed (kill -> ``ended``), and a silent
extension peer noticed (SIGSTOP -> ``ended``). Not a test: figures depend on the machine's load.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import tempfile
import time
from pathlib import Path

from tests.call.agents import AgentFactory
from tests.fixtures.discovery import start_discovery_process


def measure(rounds: int) -> dict[str, list[float]]:
    server = start_discovery_process(Path(tempfile.mkdtemp(prefix="vcall-measure-")))
    agents = AgentFactory(server.address)
    out: dict[str, list[float]] = {
        "setup_s": [],
        "sigkill_to_ended_s": [],
        "sigstop_to_ended_s": [],
    }
    try:
        for i in range(rounds):
            callee = agents(f"callee{i}", "--no-media", "--auto-answer")
            caller = agents(f"caller{i}", "--no-media", "--call", f"callee{i}")
            t_out, _ = caller.wait_timed("outgoing")
            t_start, _ = caller.wait_timed("started")
            out["setup_s"].append(t_start - t_out)
            callee.wait("started")
            time.sleep(0.3)
            t_kill = time.monotonic()
            callee.signal(signal.SIGKILL)
            t_end, ended = caller.wait_timed("ended")
            assert ended["reason"] == "connection_lost", ended
            out["sigkill_to_ended_s"].append(t_end - t_kill)

            callee = agents(f"quiet{i}", "--no-media", "--auto-answer")
            # Grace = timeout: measures how fast silence is noticed (reconnecting, then ended).
            caller = agents(f"caller{i}", "--no-media", "--call", f"quiet{i}", "--grace", "2")
            caller.wait("started")
            callee.wait("started")
            time.sleep(0.6)
            t_stop = time.monotonic()
            callee.signal(signal.SIGSTOP)
            t_end, ended = caller.wait_timed("ended")
            callee.signal(signal.SIGCONT)
            assert ended["reason"] == "heartbeat_timeout", ended
            out["sigstop_to_ended_s"].append(t_end - t_stop)
    finally:
        agents.stop_all()
        server.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5, help="rounds")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    args = parser.parse_args()
    figures = measure(args.n)
    print(f"{'figure':<22} {'median':>8} {'max':>8}   n={args.n}")
    for name, values in figures.items():
        print(f"{name:<22} {statistics.median(values):8.3f} {max(values):8.3f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
