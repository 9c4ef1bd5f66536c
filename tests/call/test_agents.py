"""Two (or three) real ``vcall agent`` processes through a real discovery server on loopback.

Control only (``--no-media``): these tests are about call control; the media path has its own
test. Timeouts are short (ring 1 s) so the file stays fast.
"""

from __future__ import annotations

import signal
import time

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


def test_silent_extension_peer_ends_within_3s(agents: AgentFactory) -> None:
    bob = agents("bob", *CTRL, "--auto-answer")
    alice = agents("alice", *CTRL, "--call", "bob")
    assert alice.wait("started")["mode"] == "rtp"
    bob.wait("started")
    time.sleep(0.6)  # a beat or two go by while the peer is alive
    stopped = time.monotonic()
    bob.signal(signal.SIGSTOP)
    try:
        t, ended = alice.wait_timed("ended", timeout=6)
    finally:
        bob.signal(signal.SIGCONT)
    assert ended["reason"] == "heartbeat_timeout"
    assert t - stopped < 3.0, f"noticed after {t - stopped:.2f} s"
    bob.signal(signal.SIGKILL)


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
