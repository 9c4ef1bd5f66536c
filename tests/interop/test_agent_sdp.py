"""`vcall agent --sdp` in a call between two real agents (SRTP, issue 14): the file is the
owner's only (0600), says RTP/SAVP and carries a key ``parse_sdp`` can read; the audio, on the
video's port in such a call, is not described (an SDP reader could not take both from one
port: pipeline/wire/sdp.py, docs/interop.md)."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.wire.sdp import parse_sdp
from tests.call.agents import AgentFactory
from tests.fixtures.discovery import start_discovery_process

pytestmark = pytest.mark.interop
MEDIA = ("--preset", "low", "--source", "pattern", "--codec", "jpeg")


@pytest.fixture
def agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentFactory]:
    server = start_discovery_process(tmp_path_factory.mktemp("discovery"))
    factory = AgentFactory(server.address)
    try:
        yield factory
    finally:
        factory.stop_all()
        code = server.stop()
    assert code == 0, server.log()
    for agent in factory.agents:  # no unhandled error anywhere in the agents
        assert b"Traceback" not in agent.stderr, agent.stderr.decode(errors="replace")[-3000:]


def test_agent_writes_a_private_srtp_sdp(agents: AgentFactory, tmp_path: Path) -> None:
    sdp = tmp_path / "alice.sdp"
    agents("bob", *MEDIA, "--auto-answer", "--once", "--audio-in", "tone:440")
    alice = agents(
        "alice", *MEDIA, "--call", "bob", "--seconds", "1", "--sdp", str(sdp),
        "--audio-in", "tone:660",
    )  # fmt: skip
    started = alice.wait("started", timeout=20)
    assert alice.wait("sdp")["path"] == str(sdp)
    assert stat.S_IMODE(sdp.stat().st_mode) == 0o600
    text = sdp.read_text()
    assert "m=video" in text and "RTP/SAVP" in text and "RTP/AVP" not in text
    assert "m=audio" not in text
    video = parse_sdp(text)
    assert (video.port, video.payload_type) == (started["peer_rx_port"], 26)
    assert video.srtp_key is not None and len(video.srtp_key) == 30
    assert alice.wait("ended", timeout=20)["reason"] == "hangup"
    assert alice.exit_code() == 0
