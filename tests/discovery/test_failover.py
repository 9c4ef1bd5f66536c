"""vcall clients with several discovery servers: in order, on to the next when one stops."""

from __future__ import annotations

import os
import queue
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.discovery.redis_server import RedisProcess
from tests.fixtures.discovery import DiscoveryProcess, free_port, start_discovery_process
from vcall.call.events import CallEnded, CallEvent, CallStarted, IncomingCall, Registered
from vcall.call.manager import CallManager
from vcall.config import ConfigError
from vcall.discovery.client import (
    DiscoveryClient,
    ServerGroup,
    ServerUnreachable,
    UserRecord,
    parse_servers,
    use_servers,
)

pytestmark = pytest.mark.usefixtures("no_leaks")

FAST = ["--scrypt-n", "1024", "--gap-timeout", "0.05"]


def test_parse_servers() -> None:
    assert parse_servers("a:1,b,[::1]:3, a:1") == (("a", 1), ("b", 8000), ("::1", 3))
    for bad in ("", "a:1,,b", "a:x", "a:1,[::1"):
        with pytest.raises(ConfigError):
            parse_servers(bad)
    with pytest.raises(ConfigError, match="at most"):
        parse_servers(",".join(f"h{i}" for i in range(17)))


def test_group_order_follows_the_last_answer() -> None:
    group = ServerGroup([("a", 1), ("b", 2), ("c", 3)])
    assert group.order() == [("a", 1), ("b", 2), ("c", 3)]
    group.answered(("c", 3))
    assert group.order() == [("c", 3), ("a", 1), ("b", 2)] and group.current == ("c", 3)
    group.answered(("zz", 9))  # not a member: no change
    assert group.current == ("c", 3)
    with pytest.raises(ValueError):
        ServerGroup([])


@pytest.fixture
def pair(tmp_path: Path, redis_server: RedisProcess) -> Iterator[list[DiscoveryProcess]]:
    procs: list[DiscoveryProcess] = []
    try:
        for name in ("a", "b"):
            args = [*FAST, "--store", redis_server.url]
            procs.append(start_discovery_process(tmp_path, args, name=name))
        yield procs
    finally:
        for proc in procs:
            if proc.proc is not None and proc.proc.poll() is None:
                os.kill(proc.proc.pid, signal.SIGCONT)
        codes = [proc.stop() for proc in procs]
        assert codes == [0] * len(procs)


def test_a_dead_first_server_is_skipped(pair: list[DiscoveryProcess]) -> None:
    a, b = pair
    dead = ("127.0.0.1", free_port())
    group = ServerGroup([dead, a.address, b.address])
    with DiscoveryClient(*dead, group=group) as client:
        client.register("d", "10.0.0.1", 1, "pw", ["V0"])
        assert group.current == a.address
        a.stop()  # a graceful stop: the next request moves on to b
        assert client.query("d") == UserRecord("d", "10.0.0.1", 1, ("V0",))
        assert group.current == b.address


def test_a_server_that_stops_answering_is_left_within_the_failover_time(
    pair: list[DiscoveryProcess],
) -> None:
    a, b = pair
    group = ServerGroup([a.address, b.address], failover_after=1.0)
    with DiscoveryClient(*a.address, group=group, timeout=5.0) as client:
        client.register("s", "10.0.0.2", 2, "pw", ["V0"])
        assert a.proc is not None
        os.kill(a.proc.pid, signal.SIGSTOP)  # accepts (the kernel does), never answers
        start = time.monotonic()
        assert client.query("s").ip == "10.0.0.2"
        took = time.monotonic() - start
        print(f"failover to the second instance: {took * 1000:.0f} ms")
        assert group.current == b.address
        # Later requests go straight to b: no second wait.
        start = time.monotonic()
        assert client.query("s").port == 2
        assert time.monotonic() - start < 0.5
    os.kill(a.proc.pid, signal.SIGCONT)


def test_all_down_names_the_last_one(pair: list[DiscoveryProcess]) -> None:
    a, b = pair
    group = ServerGroup([a.address, b.address])
    a.stop()
    b.stop()
    with (
        DiscoveryClient(*a.address, group=group) as client,
        pytest.raises(ServerUnreachable, match=str(b.port)),
    ):
        client.query("x")


class _NoMedia:
    """Call control only: the media layer is not what this test is about."""

    def open(self) -> int:
        return 9

    def connect(self, peer: Any) -> None:
        pass

    def set_sending(self, enabled: bool) -> None:
        pass

    def sdp(self) -> str:
        return ""

    def stats(self) -> Any:
        return None

    def close(self) -> None:
        pass


class _Peer:
    def __init__(self, nick: str, server: tuple[str, int]) -> None:
        self.events: queue.Queue[CallEvent] = queue.Queue()
        self.log: list[CallEvent] = []
        self.manager = CallManager(
            nick=nick, password="pw", server=server, listen=("127.0.0.1", 0),
            media_factory=_NoMedia, on_event=self._on_event,
        )  # fmt: skip

    def _on_event(self, event: CallEvent) -> None:
        self.log.append(event)
        self.events.put(event)

    def wait(self, kind: type, timeout: float = 10.0) -> Any:
        while True:
            event = self.events.get(timeout=timeout)
            if isinstance(event, kind):
                return event


def test_calls_survive_and_managers_fail_over(pair: list[DiscoveryProcess]) -> None:
    a, b = pair
    group = use_servers([a.address, b.address])  # as `vcall agent --server a,b` does
    peers = [_Peer(nick, group.current) for nick in ("alice", "bob", "carol")]
    try:
        for p in peers:
            p.manager.start()
            p.wait(Registered)
        alice, bob, carol = peers
        alice.manager.call("bob")
        bob.wait(IncomingCall)
        bob.manager.accept()
        alice.wait(CallStarted)
        bob.wait(CallStarted)
        a.stop()  # the first discovery server goes away during the call
        time.sleep(1.0)
        assert not any(isinstance(e, CallEnded) for p in (alice, bob) for e in p.log)
        alice.manager.hangup()
        alice.wait(CallEnded)
        # A new call needs a QUERY: it goes to b.
        alice.manager.call("carol")
        carol.wait(IncomingCall)
        carol.manager.accept()
        alice.wait(CallStarted)
        assert group.current == b.address
    finally:
        for p in peers:
            p.manager.close()
        use_servers([a.address])  # forget the group
        use_servers([b.address])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a:1,b:2", (("a", 1), ("b", 2))),
        ("h", (("h", 8000),)),
        ("[::1]:9,h:1", (("::1", 9), ("h", 1))),
        ("a:1,b:0", None),
        ("a:1,", None),
    ],
)
def test_servers_argument(text: str, expected: tuple[tuple[str, int], ...] | None) -> None:
    import argparse

    from vcall.discovery.cli import servers_arg

    if expected is None:
        with pytest.raises(argparse.ArgumentTypeError):
            servers_arg(text)
    else:
        assert servers_arg(text) == expected


def test_cli_with_several_servers(pair: list[DiscoveryProcess]) -> None:
    import subprocess
    import sys

    a, b = pair
    a.stop()
    servers = f"127.0.0.1:{a.port},127.0.0.1:{b.port}"
    env = {**os.environ, "VCALL_PASSWORD": "pw"}
    done = subprocess.run(
        [sys.executable, "-m", "vcall", "discovery", "--server", servers, "--json",
         "register", "cli", "--ip", "10.0.0.3", "--port", "3"],
        capture_output=True, text=True, timeout=30, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert '"nick": "cli"' in done.stdout


def test_config_fallbacks() -> None:
    from vcall.config import parse_config

    config = parse_config({"server": {"host": "a", "fallbacks": ["b:1", "[::1]:2"]}})
    assert config.server == ("a", 8000)
    assert config.server_fallbacks == (("b", 1), ("::1", 2))
    for bad in ("b:1", ["b:x"], [1]):
        with pytest.raises(ConfigError):
            parse_config({"server": {"host": "a", "fallbacks": bad}})


def test_gui_worker_fails_over_to_the_configured_fallback(pair: list[DiscoveryProcess]) -> None:
    from vcall.config import Config
    from vcall.gui import events as ev
    from vcall.gui.worker import ClientWorker

    a, b = pair
    config = Config(server_host=a.host, server_port=a.port, server_fallbacks=(b.address,))
    worker = ClientWorker(config)
    worker.start()
    seen: list[ev.Event] = []

    def wait_for(kind: type, timeout: float = 10.0) -> ev.Event:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen.extend(worker.drain())
            for event in seen:
                if isinstance(event, kind):
                    seen.remove(event)
                    return event
            time.sleep(0.02)
        raise AssertionError(f"no {kind.__name__} in {seen}")

    try:
        worker.post(ev.Login("alice", "pw", a.address))
        wait_for(ev.LoggedIn)
        wait_for(ev.UsersListed)
        a.stop()
        worker.post(ev.Refresh())
        listed = wait_for(ev.UsersListed)
        assert isinstance(listed, ev.UsersListed)
        assert [u.nick for u in listed.users] == ["alice"]
        assert not [e for e in seen if isinstance(e, ev.Notice) and e.error]
    finally:
        worker.stop()  # logs out (closes the call manager) and joins the thread
        use_servers([a.address])
        use_servers([b.address])


def test_agents_keep_their_call_when_the_first_server_goes(pair: list[DiscoveryProcess]) -> None:
    from tests.call.agents import Agent

    a, b = pair
    servers = f"127.0.0.1:{a.port},127.0.0.1:{b.port}"
    agents: list[Agent] = []

    def agent(nick: str, *extra: str) -> Agent:
        # The second --server wins: the harness passes one address first.
        agents.append(Agent(nick, a.address, "--server", servers, "--no-media", *extra))
        return agents[-1]

    try:
        agent("bob", "--auto-answer").registered()
        alice = agent("alice", "--call", "bob", "--seconds", "3", "--once")
        alice.wait("started")
        a.stop()  # the first server goes away while the call runs
        assert alice.exit_code(timeout=15) == 0  # the call lasted its 3 s and was hung up
        assert alice.wait("ended")["reason"] == "hangup"
        # A new agent with the same list registers on the second server.
        agent("carol").registered()
        with DiscoveryClient(*b.address) as client:
            assert client.query("carol").nick == "carol"
    finally:
        for one in agents:
            one.stop()
