"""``vcall agent`` as a command: a caller's exit status says how its call ended (issue 15), and
``--stats-json`` without ``--once`` writes each call's own statistics (fault 6). Real agent
processes through a real discovery server; a raw-socket classic callee where a peer must answer
in a way a vcall agent never does."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from tests.call.agents import Agent, AgentFactory, RawListener, recv_until_quiet, register_raw
from vcall.agent import (
    EXIT_BUSY,
    EXIT_CODES,
    EXIT_DENIED,
    EXIT_FAILED,
    EXIT_LOST,
    EXIT_OK,
    EXIT_UNANSWERED,
    caller_exit_code,
)
from vcall.call.state import EndReason

CTRL = ("--no-media",)


def test_every_end_reason_has_an_exit_code() -> None:
    caller_reasons = set(EndReason) - {EndReason.DENIED, EndReason.RING_TIMEOUT}  # callee's
    assert {r.value for r in caller_reasons} <= set(EXIT_CODES)
    assert caller_exit_code("something new") == EXIT_FAILED
    assert caller_exit_code("connection_lost", started=True) == EXIT_LOST
    assert caller_exit_code("connection_lost", started=False) == EXIT_FAILED
    codes = {EXIT_OK, EXIT_DENIED, EXIT_BUSY, EXIT_UNANSWERED, EXIT_FAILED, EXIT_LOST}
    assert len(codes) == 6 and not codes & {1, 2}  # 1 and 2: registration, usage


def test_caller_exit_ok_denied_unanswered_failed(agents: AgentFactory) -> None:
    agents("bob", *CTRL, "--auto-answer")
    ok = agents("alice", *CTRL, "--call", "bob", "--seconds", "0.5", "--once")
    assert ok.exit_code() == EXIT_OK
    agents("carol", *CTRL, "--auto-deny")
    denied = agents("dave", *CTRL, "--call", "carol", "--once")
    assert denied.exit_code() == EXIT_DENIED
    agents("erin", *CTRL)  # never answers
    unanswered = agents("frank", *CTRL, "--call", "erin", "--once", "--answer-timeout", "1")
    assert unanswered.exit_code() == EXIT_UNANSWERED
    failed = agents("gina", *CTRL, "--call", "nobody", "--once")
    assert failed.exit_code() == EXIT_FAILED
    assert failed.wait("ended")["reason"] == "failed"


def test_caller_exit_busy(agents: AgentFactory) -> None:
    listener = RawListener()

    def busy_callee(conn: socket.socket) -> None:
        recv_until_quiet(conn, quiet=0.2, total=2.0)
        conn.sendall(b"CALL_BUSY")
        conn.close()

    listener.on_accept = busy_callee
    try:
        register_raw(agents.server, "mino", listener.port, ["V0"])
        alice = agents("alice", *CTRL, "--call", "mino", "--once")
        assert alice.exit_code() == EXIT_BUSY
    finally:
        listener.close()


def test_agent_help_documents_the_exit_codes(agents: AgentFactory) -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "vcall", "agent", "--help"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    text = " ".join(out.split())
    assert "3 denied, 4 busy, 5 not answered, 6 failed (could not be set up), 7 lost" in text


def nth_event(agent: Agent, name: str, count: int, timeout: float = 20.0) -> float:
    """When ``agent`` printed its ``count``-th ``name`` event (time.monotonic())."""
    deadline = time.monotonic() + timeout
    while True:
        times = [t for t, e in list(agent.events) if e.get("event") == name]
        if len(times) >= count:
            return times[count - 1]
        assert time.monotonic() < deadline, f"no {name} #{count}: {agent.names()}"
        time.sleep(0.05)


@pytest.mark.usefixtures("no_leaks")
def test_stats_json_without_once_holds_each_calls_own_stats(
    agents: AgentFactory, tmp_path: Path
) -> None:
    media = ("--preset", "low", "--source", "pattern")
    agents("bob", *media, "--auto-answer")
    stats = tmp_path / "alice.json"
    alice = agents("alice", *media, "--stats-json", str(stats))
    documents = []
    for count, seconds in enumerate((3.0, 1.0), start=1):  # a long call, then a short one
        alice.send("call bob")
        started = nth_event(alice, "started", count)
        time.sleep(max(0.0, started + seconds - time.monotonic()))
        alice.send("hangup")
        nth_event(alice, "ended", count)
        time.sleep(0.5)  # the file is written right after the ended event is printed
        documents.append(json.loads(stats.read_text()))
    first, second = documents
    shown = [d["freezes"]["frames_shown"] for d in documents]
    assert first != second
    assert shown[0] > 20 and 0 < shown[1] < shown[0], shown  # ~15 fps for 3 s, then for 1 s
    alice.send("quit")
    assert alice.exit_code() == 0
