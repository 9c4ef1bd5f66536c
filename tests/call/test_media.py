"""Two ``vcall agent`` processes with the real media pipeline on loopback: frames flow in both
directions, hold stops the sending, stats are sane; nothing (stage process, /dev/shm segment)
outlives an agent, even one killed with SIGKILL."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.call.agents import Agent, AgentFactory
from vcall.agent import EXIT_LOST

pytestmark = pytest.mark.usefixtures("no_leaks")

MEDIA = ("--preset", "low", "--source", "pattern")


def _stats(path: Path) -> dict[str, Any]:
    stats: dict[str, Any] = json.loads(path.read_text())
    return stats


@pytest.mark.parametrize(
    ("bob_args", "codec"),
    [((), "H264"), (("--codec", "jpeg"), "JPEG")],  # both default; the callee forces JPEG
)
def test_rtp_call_frames_flow_and_hold_stops_sending(
    agents: AgentFactory, tmp_path: Path, bob_args: tuple[str, ...], codec: str
) -> None:
    from pipeline.codecs.registry import get_codec
    from pipeline.wire.sdp import parse_sdp

    bob_json, alice_json = tmp_path / "bob.json", tmp_path / "alice.json"
    sdp_path = tmp_path / "alice.sdp"
    bob = agents("bob", *MEDIA, *bob_args, "--auto-answer", "--once", "--stats-json", str(bob_json))
    alice = agents(
        "alice", *MEDIA, "--call", "bob", "--hold-after", "2", "--seconds", "2.5",
        "--stats-json", str(alice_json), "--sdp", str(sdp_path),
    )  # fmt: skip
    started = alice.wait("started", timeout=20)
    assert started["media"] is True and started["mode"] == "rtp" and started["codec"] == codec
    assert alice.wait("sdp")["path"] == str(sdp_path)
    # What alice sends, to bob's declared port, in the negotiated codec.
    video = parse_sdp(sdp_path.read_text(), encodings=(codec,))
    assert (video.address, video.port, video.payload_type) == (
        "127.0.0.1", started["peer_rx_port"], get_codec(codec).info.payload_type,
    )  # fmt: skip
    bob_started = bob.wait("started", timeout=20)
    assert bob_started["media"] is True and bob_started["codec"] == codec
    bob.wait("hold", local=False, remote=True)
    assert alice.wait("ended")["reason"] == "hangup"
    assert bob.wait("ended")["reason"] == "peer_hangup"
    assert alice.exit_code() == 0 and bob.exit_code() == 0
    for path in (alice_json, bob_json):
        stats = _stats(path)
        assert stats["mode"] == "rtp" and stats["dead_stages"] == []
        assert stats["codec_name"] == codec  # the media took the codec call control negotiated
        assert stats["sending"] is False  # held at the end: both sides stopped sending
        receive = stats["stages"]["receive"]
        assert receive["counters"]["frames"] >= 5, receive  # ~2 s at 15 fps before the hold
        assert receive["rtp"]["wrong_source"] == 0  # the SSRCs from call control match
        assert stats["stages"]["send"]["counters"]["frames"] >= 5
        # RTCP reports go every few seconds: an RTT may not be known yet in so short a call
        assert stats["rtt_ms"] is None or 0 <= stats["rtt_ms"] < 1000
        assert stats["loss"]["lost_frames"] <= receive["counters"]["frames"]


def test_classic_v0_call_with_media(agents: AgentFactory, tmp_path: Path) -> None:
    bob_json = tmp_path / "bob.json"
    bob = agents(
        "bob", *MEDIA, "--auto-answer", "--once", "--classic", "--stats-json", str(bob_json)
    )
    alice = agents("alice", *MEDIA, "--call", "bob", "--seconds", "2")
    started = alice.wait("started", timeout=20)
    assert (started["mode"], started["codec"]) == ("v0", "JPEG")
    assert bob.wait("ended", timeout=20)["reason"] == "peer_hangup"
    assert bob.exit_code() == 0
    stats = _stats(bob_json)
    assert stats["mode"] == "v0"
    assert stats["stages"]["receive"]["counters"]["frames"] >= 5


def _media_call(agents: AgentFactory) -> tuple[Agent, Agent, list[psutil.Process]]:
    """alice calls bob, both with media; returns them and bob's stage processes."""
    bob = agents("bob", *MEDIA, "--auto-answer")
    alice = agents("alice", *MEDIA, "--call", "bob")
    alice.wait("started", timeout=20)
    bob.wait("started", timeout=20)
    stages = psutil.Process(bob.proc.pid).children(recursive=True)
    assert len(stages) >= 5  # capture, encode, send, receive, display
    return alice, bob, stages


def _assert_gone(stages: list[psutil.Process], timeout: float, why: str) -> None:
    # Orphans are re-parented to init, so no_leaks (this process's children) would miss them.
    _, alive = psutil.wait_procs(stages, timeout=timeout)
    running = [p for p in alive if _running(p)]  # a zombie has exited; init reaps it later
    assert not running, f"stage processes outlived {why}: {running}"


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_sigkilled_peer_with_media_leaves_nothing_behind(agents: AgentFactory) -> None:
    alice, bob, stages = _media_call(agents)
    bob.signal(signal.SIGKILL)
    assert alice.wait("ended")["reason"] == "connection_lost"
    assert alice.exit_code() == EXIT_LOST  # a caller's exit status says how its call ended
    _assert_gone(stages, 5, "their SIGKILLed controller")


def test_sigterm_during_a_media_call_leaves_no_process_or_segment(agents: AgentFactory) -> None:
    from tests.fixtures.leaks import vcall_segments

    alice, bob, stages = _media_call(agents)
    pids = {bob.proc.pid, *(p.pid for p in stages)}
    assert vcall_segments(pids)  # the stages share frames through /dev/shm
    bob.signal(signal.SIGTERM)
    assert bob.exit_code() == 0
    assert bob.wait("ended")["reason"] == "hangup"  # ended by the agent, not by its death
    assert bob.names()[-1] == "exit"
    assert alice.wait("ended")["reason"] == "peer_hangup"
    _assert_gone(stages, 3, "the agent's clean exit")  # it stopped them itself
    assert not vcall_segments(pids)
