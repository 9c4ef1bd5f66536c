"""Two (or three) real ``vcall agent`` processes through a real discovery server on loopback.

Control only (``--no-media``): these tests are about call control; the media path has its own
test (``test_media.py``), except for ``--stats-interval``, which samples a real media session.
Timeouts are short (ring 1 s) so the file stays fast.
"""

from __future__ import annotations

import json
import signal
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from tests.call.agents import AgentFactory

CTRL = ("--no-media",)


def test_call_accept_hold_resume_from_each_side_and_caller_hangs_up(agents: AgentFactory) -> None:
    bob = agents("bob", *CTRL, "--auto-answer")
    alice = agents("alice", *CTRL, "--call", "bob")
    started = alice.wait("started")
    assert started["mode"] == "rtp" and started["role"] == "caller" and not started["media"]
    assert started["codec"] == "H264"  # both default: H264 is first on both lists
    assert alice.wait("outgoing")["extension"] is True
    assert bob.wait("incoming", peer="alice")["extension"] is True
    assert bob.wait("started")["peer_rx_port"] == started["local_rx_port"]

    bob.send("hold")
    alice.wait("hold", local=False, remote=True)
    bob.wait("hold", local=True, remote=False)
    alice.send("hold")
    alice.wait("hold", local=True, remote=True)
    bob.wait("hold", local=True, remote=True)
    bob.send("resume")
    alice.wait("hold", local=True, remote=False)
    alice.send("resume")
    bob.wait("hold", local=False, remote=False)
    alice.wait("hold", local=False, remote=False)
    alice.send("resume")  # not held: a local misuse, reported, the call goes on
    assert "not allowed" in alice.wait("error")["message"]

    alice.send("hangup")
    assert alice.wait("ended")["reason"] == "hangup"
    assert bob.wait("ended")["reason"] == "peer_hangup"
    assert alice.exit_code() == 0  # a caller exits when its call ends
    assert bob.wait("state", old="in_call", new="ended")


def test_callee_hangs_up(agents: AgentFactory) -> None:
    bob = agents("bob", *CTRL, "--auto-answer")
    alice = agents("alice", *CTRL, "--call", "bob")
    bob.wait("started")
    alice.wait("started")
    bob.send("hangup")
    assert bob.wait("ended")["reason"] == "hangup"
    assert alice.wait("ended")["reason"] == "peer_hangup"
    assert alice.exit_code() == 0


def test_deny(agents: AgentFactory) -> None:
    bob = agents("bob", *CTRL, "--auto-deny")
    alice = agents("alice", *CTRL, "--call", "bob")
    assert alice.wait("ended")["reason"] == "peer_denied"
    assert bob.wait("ended")["reason"] == "denied"
    assert not alice.has("started") and not bob.has("started")


def test_busy_while_ringing_and_while_in_call(agents: AgentFactory) -> None:
    bob = agents("bob", *CTRL)  # answers by command
    alice = agents("alice", *CTRL, "--call", "bob")
    bob.wait("incoming", peer="alice")
    carol = agents("carol", *CTRL, "--call", "bob")
    assert carol.wait("ended")["reason"] == "busy"
    bob.send("accept")
    alice.wait("started")
    dave = agents("dave", *CTRL, "--call", "bob")
    assert dave.wait("ended")["reason"] == "busy"
    assert not bob.has("incoming", peer="carol") and not bob.has("incoming", peer="dave")
    bob.send("hangup")
    alice.wait("ended", reason="peer_hangup")


def test_ring_timeout_denies(agents: AgentFactory) -> None:
    bob = agents("bob", *CTRL, "--ring-timeout", "1")
    alice = agents("alice", *CTRL, "--call", "bob")
    ended = bob.wait("ended")
    assert ended["reason"] == "ring_timeout" and "1 s" in ended["detail"]
    assert alice.wait("ended")["reason"] == "peer_denied"


def test_answer_timeout_gives_up_with_a_clear_reason(agents: AgentFactory) -> None:
    bob = agents("bob", *CTRL)
    alice = agents("alice", *CTRL, "--call", "bob", "--answer-timeout", "1")
    ended = alice.wait("ended")
    assert ended["reason"] == "answer_timeout" and "did not answer within 1 s" in ended["detail"]
    assert bob.wait("ended")["reason"] == "peer_hangup"  # the caller cancelled with CALL_END


def test_unknown_user_and_refused_connection(agents: AgentFactory) -> None:
    from tests.call.agents import register_raw
    from tests.fixtures.discovery import free_port

    alice = agents("alice", *CTRL)
    alice.send("call nobody")
    ended = alice.wait("ended")
    assert ended["reason"] == "failed" and "lookup of nobody" in ended["detail"]
    register_raw(agents.server, "ghost", free_port(), ["V0"])  # nobody listens there
    alice.send("call ghost")
    ended = alice.wait("ended", peer="ghost")
    assert ended["reason"] == "failed" and "refused" in ended["detail"]


def test_wrong_password_exits_nonzero(agents: AgentFactory) -> None:
    agents("bob", *CTRL).send("quit")
    impostor = agents("bob", *CTRL, "--password", "wrong", wait_registered=False)
    assert impostor.exit_code() == 1
    impostor.stop()  # joins the stderr reader
    assert b"registration failed" in impostor.stderr and b"WRONG_PASS" in impostor.stderr
    assert impostor.has("error")


def test_password_from_the_environment_stays_out_of_ps(agents: AgentFactory) -> None:
    import psutil

    agents("bob", *CTRL).send("quit")  # bob's password is now pw-bob
    same = agents("bob", *CTRL, env={"VCALL_PASSWORD": "pw-bob"})  # registered: the env's value
    assert not any("pw-bob" in arg for arg in psutil.Process(same.proc.pid).cmdline())
    same.send("quit")
    assert same.exit_code() == 0
    wrong = agents("bob", *CTRL, env={"VCALL_PASSWORD": "wrong"}, wait_registered=False)
    assert wrong.exit_code() == 1
    none = agents("bob", *CTRL, env={}, wait_registered=False)  # neither flag nor variable
    assert none.exit_code() == 2
    wrong.stop()
    none.stop()
    assert b"WRONG_PASS" in wrong.stderr
    assert b"VCALL_PASSWORD" in none.stderr and not none.has("registered")


def test_peer_sigkill_ends_the_call_within_1s(agents: AgentFactory) -> None:
    bob = agents("bob", *CTRL, "--auto-answer")
    alice = agents("alice", *CTRL, "--call", "bob")
    alice.wait("started")
    bob.wait("started")
    killed = time.monotonic()
    bob.signal(signal.SIGKILL)
    t, ended = alice.wait_timed("ended")
    assert ended["reason"] == "connection_lost"
    assert t - killed < 1.0, f"noticed after {t - killed:.2f} s"


def test_silent_extension_peer_is_reconnecting_within_3s_and_ends_after_the_grace(
    agents: AgentFactory,
) -> None:
    bob = agents("bob", *CTRL, "--auto-answer")
    alice = agents("alice", *CTRL, "--call", "bob", "--grace", "4")
    assert alice.wait("started")["mode"] == "rtp"
    bob.wait("started")
    time.sleep(0.6)  # a beat or two go by while the peer is alive
    stopped = time.monotonic()
    bob.signal(signal.SIGSTOP)
    try:
        t_link, link = alice.wait_timed("link", timeout=6, reconnecting=True)
        t_end, ended = alice.wait_timed("ended", timeout=8)
    finally:
        bob.signal(signal.SIGCONT)
    assert t_link - stopped < 3.0, f"reconnecting after {t_link - stopped:.2f} s"
    assert link["peer"] == "bob" and link["silence_s"] >= 2.0
    assert ended["reason"] == "heartbeat_timeout"
    # The silence began at bob's last beat, up to one interval (0.5 s) before the SIGSTOP.
    assert 3.4 <= t_end - stopped < 5.5, f"ended after {t_end - stopped:.2f} s"
    bob.signal(signal.SIGKILL)


def test_an_outage_shorter_than_the_grace_does_not_end_the_call(agents: AgentFactory) -> None:
    """A 3 s silence (the peer frozen: no heartbeat, no media, TCP still up) used to end the
    call after 2 s; now the call says it is reconnecting, and goes on when the peer is back."""
    bob = agents("bob", *CTRL, "--auto-answer")
    alice = agents("alice", *CTRL, "--call", "bob")
    alice.wait("started")
    bob.wait("started")
    time.sleep(0.6)
    bob.signal(signal.SIGSTOP)
    try:
        alice.wait("link", timeout=6, reconnecting=True)
        time.sleep(1.0)  # about 3 s of silence in all
    finally:
        bob.signal(signal.SIGCONT)
    back = alice.wait("link", timeout=6, reconnecting=False)
    assert back["silence_s"] >= 2.0
    alice.send("hangup")
    assert alice.wait("ended")["reason"] == "hangup"
    assert bob.wait("ended")["reason"] == "peer_hangup"


def test_sigterm_ends_the_call_cleanly(agents: AgentFactory) -> None:
    bob = agents("bob", *CTRL, "--auto-answer")
    alice = agents("alice", *CTRL, "--call", "bob")
    alice.wait("started")
    bob.wait("started")
    bob.signal(signal.SIGTERM)
    assert bob.exit_code() == 0
    assert bob.wait("ended")["reason"] == "hangup"
    assert alice.wait("ended")["reason"] == "peer_hangup"


def test_two_classic_agents_speak_v0(agents: AgentFactory) -> None:
    bob = agents("bob", *CTRL, "--auto-answer", "--classic")
    alice = agents("alice", *CTRL, "--call", "bob", "--seconds", "1", "--hold-after", "0.2")
    assert alice.wait("outgoing")["extension"] is False
    assert alice.wait("started")["mode"] == "v0"
    assert bob.wait("started")["mode"] == "v0"
    bob.wait("hold", local=False, remote=True)  # --hold-after 0.2
    assert alice.wait("ended")["reason"] == "hangup"  # --seconds 1
    assert bob.wait("ended")["reason"] == "peer_hangup"


def test_codec_flag_restricts_the_negotiation(agents: AgentFactory) -> None:
    bob = agents("bob", *CTRL, "--auto-answer", "--codec", "jpeg")
    alice = agents("alice", *CTRL, "--call", "bob", "--seconds", "0.2")
    assert alice.wait("started")["codec"] == "JPEG"
    assert bob.wait("started")["codec"] == "JPEG"
    assert alice.wait("ended")["reason"] == "hangup"
    bad = agents("carol", *CTRL, "--codec", "vp8", wait_registered=False)
    assert bad.exit_code() == 2
    bad.stop()
    assert b"unknown codec 'vp8'" in bad.stderr and not bad.has("registered")


def test_unreachable_server_exits_nonzero_with_a_message(agents: AgentFactory) -> None:
    from tests.fixtures.discovery import free_port

    agent = agents("bob", *CTRL, "--server", f"127.0.0.1:{free_port()}", wait_registered=False)
    assert agent.exit_code() == 1
    agent.stop()  # joins the stderr reader
    assert b"registration failed" in agent.stderr and b"127.0.0.1" in agent.stderr


def test_connect_timeout_gives_a_clear_reason(agents: AgentFactory) -> None:
    import socket

    from tests.call.agents import register_raw

    # A listener whose accept queue is full drops further SYNs: connects hang, then time out.
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    filler = socket.create_connection(srv.getsockname(), timeout=2)
    try:
        register_raw(agents.server, "stuck", srv.getsockname()[1], ["V0"])
        alice = agents("alice", *CTRL, "--call", "stuck", "--connect-timeout", "0.5")
        ended = alice.wait("ended")
        assert ended["reason"] == "failed"
        assert ended["detail"].startswith("connect timeout") and "0.5 s" in ended["detail"]
    finally:
        filler.close()
        srv.close()


def test_bad_media_options_exit_2_before_registering(agents: AgentFactory) -> None:
    agent = agents("bob", "--preset", "nope", wait_registered=False)
    assert agent.exit_code() == 2
    agent.stop()
    assert b"unknown preset" in agent.stderr and not agent.has("registered")


def _json_lines(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A --stats-interval file: (the samples, the final document), each line parsed alone."""
    lines = path.read_text().splitlines()
    assert lines, f"{path} is empty"
    parsed = [json.loads(line) for line in lines]
    return parsed[:-1], parsed[-1]


@pytest.mark.usefixtures("no_leaks")
def test_stats_interval_writes_samples_then_the_final_document(
    agents: AgentFactory, tmp_path: Path
) -> None:
    media = ("--preset", "low", "--source", "pattern", "--stats-interval", "0.5")
    bob_file, alice_file = tmp_path / "bob.jsonl", tmp_path / "alice.jsonl"
    bob = agents("bob", *media, "--auto-answer", "--stats-json", str(bob_file))
    alice = agents("alice", *media, "--call", "bob", "--stats-json", str(alice_file))
    started, _ = alice.wait_timed("started", timeout=20)
    bob.wait("started", timeout=20)
    time.sleep(max(0.0, started + 3.5 - time.monotonic()))
    # bob is stopped mid-call: its samples still end with the final document, and the
    # sampler thread does not keep it from exiting; alice's call ends the ordinary way.
    bob.signal(signal.SIGTERM)
    assert bob.exit_code() == 0
    assert alice.wait("ended")["reason"] == "peer_hangup"
    assert alice.exit_code() == 0
    for path in (bob_file, alice_file):
        samples, final = _json_lines(path)
        assert len(samples) >= 5, samples  # ~3.5 s at 0.5 s
        times = [s["t"] for s in samples]
        assert 0.4 < times[0] < 1.5
        assert all(0.25 < b - a < 1.5 for a, b in pairwise(times)), times
        assert all("stages" not in s and s["state"] == "open" for s in samples)
        shown = [s["freezes"]["frames_shown"] for s in samples]
        assert shown == sorted(shown) and shown[-1] > shown[0] + 10, shown  # ~15 fps
        assert all(s["freezes"]["since_last_frame_ms"] is not None for s in samples[2:])
        # The final document: the whole of MediaStats.to_dict(), stages included.
        assert "t" not in final and final["mode"] == "rtp"
        assert set(final["stages"]) >= {"capture", "encode", "send", "receive", "display"}
        assert final["freezes"]["frames_shown"] >= shown[-1]


def test_stats_interval_needs_a_file_and_a_positive_period(agents: AgentFactory) -> None:
    lonely = agents("bob", *CTRL, "--stats-interval", "1", wait_registered=False)
    zero = agents("bob", *CTRL, "--stats-json", "x.json", "--stats-interval", "0",
                  wait_registered=False)  # fmt: skip
    assert lonely.exit_code() == 2 and zero.exit_code() == 2
    lonely.stop()
    zero.stop()
    assert b"--stats-interval needs --stats-json" in lonely.stderr
    assert b"must be a positive number of seconds" in zero.stderr
    assert not lonely.has("registered") and not zero.has("registered")
