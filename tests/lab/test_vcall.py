"""Real vcall through the lab: a discovery server and ``alice`` in A, ``bob`` in B, a short call
with the media pipeline on the clean profile; every packet crosses the router's impairer."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from benchmarks.netlab.lab import A_IP, Host, Lab
from tests.lab.conftest import LabFactory

pytestmark = pytest.mark.lab

DISCOVERY_PORT = 8000  # the namespaces are new: nothing else listens in them
MEDIA = ("--preset", "low", "--source", "pattern")


class LabAgent:
    """``python -m vcall agent`` inside a lab host; its JSON-line events collected by a thread."""

    def __init__(self, lab: Lab, host: Host, nick: str, *extra: str) -> None:
        self.nick = nick
        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        argv = [
            "-m", "vcall", "agent", "--nick", nick, "--password", f"pw-{nick}",
            "--server", f"{A_IP}:{DISCOVERY_PORT}", "--listen-ip", lab.address(host), *extra,
        ]  # fmt: skip
        self.proc = lab.python(
            host, argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.stderr = b""
        self._threads = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.events.append(json.loads(line))
                self._cond.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def wait(self, name: str, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.events:
                    if event["event"] == name:
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    for thread in self._threads:
                        thread.join(0.5)
                    raise AssertionError(
                        f"{self.nick}: no {name} in {timeout} s; events: {self.events}\n"
                        f"stderr: {self.stderr.decode(errors='replace')[-3000:]}"
                    )
                self._cond.wait(left)


def _start_discovery(lab: Lab, tmp_path: Path) -> Path:
    log = tmp_path / "discovery.log"
    with open(log, "wb") as out:
        server = lab.python(
            Host.A,
            ["-m", "vcall.discovery.server", "--host", A_IP, "--port", str(DISCOVERY_PORT),
             "--db", str(tmp_path / "discovery.sqlite3")],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out,
        )  # fmt: skip
    deadline = time.monotonic() + 15
    while f"listening on {A_IP}:{DISCOVERY_PORT}" not in log.read_text(errors="replace"):
        assert server.poll() is None, log.read_text(errors="replace")
        assert time.monotonic() < deadline, log.read_text(errors="replace")
        time.sleep(0.05)
    return log


def test_a_vcall_call_between_a_and_b_goes_through_the_router(
    make_lab: LabFactory, tmp_path: Path
) -> None:
    lab = make_lab()
    _start_discovery(lab, tmp_path)
    bob_json, alice_json = tmp_path / "bob.json", tmp_path / "alice.json"
    bob = LabAgent(lab, Host.B, "bob", *MEDIA, "--auto-answer", "--once",
                   "--stats-json", str(bob_json))  # fmt: skip
    bob.wait("registered")
    alice = LabAgent(lab, Host.A, "alice", *MEDIA, "--call", "bob", "--seconds", "2",
                     "--stats-json", str(alice_json))  # fmt: skip
    started = alice.wait("started")
    assert started["media"] is True and started["mode"] == "rtp"
    assert bob.wait("incoming")["peer"] == "alice"
    assert alice.wait("ended")["reason"] == "hangup"
    assert bob.wait("ended")["reason"] == "peer_hangup"
    assert alice.proc.wait(10) == 0 and bob.proc.wait(10) == 0
    for agent, path in ((alice, alice_json), (bob, bob_json)):
        assert b"Traceback" not in agent.stderr, agent.stderr.decode(errors="replace")
        stats = json.loads(path.read_text())
        assert stats["mode"] == "rtp" and stats["dead_stages"] == []
        assert stats["stages"]["receive"]["counters"]["frames"] >= 5, stats["stages"]["receive"]
        assert stats["stages"]["receive"]["rtp"]["wrong_source"] == 0
    counts = lab.impairer_stats()
    # Call control, discovery (bob's registration) and media, both ways, all through R.
    assert counts["a_to_b"]["released"] > 50 and counts["b_to_a"]["released"] > 50, counts
