"""Real vcall through the lab: a discovery server and ``alice`` in A, ``bob`` in B, a short call
with the media pipeline on the clean profile; every packet crosses the router's impairer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.netlab.lab import Host
from benchmarks.network import LabAgent, start_discovery
from tests.lab.conftest import LabFactory

pytestmark = pytest.mark.lab

WAIT_S = 20.0
MEDIA = ("--preset", "low", "--source", "pattern")


def test_a_vcall_call_between_a_and_b_goes_through_the_router(
    make_lab: LabFactory, tmp_path: Path
) -> None:
    lab = make_lab()
    start_discovery(lab, tmp_path)
    bob_json, alice_json = tmp_path / "bob.json", tmp_path / "alice.json"
    bob = LabAgent(lab, Host.B, "bob", [*MEDIA, "--auto-answer", "--once",
                   "--stats-json", str(bob_json)], home=tmp_path)  # fmt: skip
    bob.wait("registered", WAIT_S)
    alice = LabAgent(lab, Host.A, "alice", [*MEDIA, "--call", "bob", "--seconds", "2",
                     "--stats-json", str(alice_json)], home=tmp_path)  # fmt: skip
    started = alice.wait("started", WAIT_S)
    assert started["media"] is True and started["mode"] == "rtp"
    assert bob.wait("incoming", WAIT_S)["peer"] == "alice"
    assert alice.wait("ended", WAIT_S)["reason"] == "hangup"
    assert bob.wait("ended", WAIT_S)["reason"] == "peer_hangup"
    assert alice.finish(10) == 0 and bob.finish(10) == 0
    for agent, path in ((alice, alice_json), (bob, bob_json)):
        assert b"Traceback" not in agent.stderr, agent.stderr.decode(errors="replace")
        stats = json.loads(path.read_text())
        assert stats["mode"] == "rtp" and stats["dead_stages"] == []
        assert stats["stages"]["receive"]["counters"]["frames"] >= 5, stats["stages"]["receive"]
        assert stats["stages"]["receive"]["rtp"]["wrong_source"] == 0
    counts = lab.impairer_stats()
    # Call control, discovery (bob's registration) and media, both ways, all through R.
    assert counts["a_to_b"]["released"] > 50 and counts["b_to_a"]["released"] > 50, counts
