"""CallManager in process: two managers through a real discovery server, with a recording fake
media session, to check exactly what call control asks of the media layer (the peer endpoint,
every set_sending from hold and pause) and the API's errors."""

from __future__ import annotations

import asyncio
import logging
import queue
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from pipeline.control import MediaMode, PeerEndpoint
from pipeline.errors import LocalProtocolError
from tests.call.agents import register_raw
from tests.fixtures.discovery import DiscoveryProcess
from vcall.call.events import (
    CallEnded,
    CallEvent,
    CallStarted,
    HoldChanged,
    IncomingCall,
    PauseChanged,
)
from vcall.call.manager import CallManager, CallUsageError
from vcall.call.media import MediaLike
from vcall.call.state import CallState
from vcall.discovery.client import DiscoveryClient


@dataclass(frozen=True)
class _Snapshot:
    """A stand-in for pipeline.stats.MediaStats: call control only needs to_dict()."""

    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.data)


class FakeMedia:
    """Records calls; declares a fixed rx port."""

    next_port = 41000

    def __init__(self) -> None:
        FakeMedia.next_port += 2
        self.port = FakeMedia.next_port
        self.calls: list[tuple[str, Any]] = []

    def open(self) -> int:
        self.calls.append(("open", None))
        return self.port

    def connect(self, peer: Any) -> None:
        self.calls.append(("connect", peer))

    def set_sending(self, enabled: bool) -> None:
        self.calls.append(("set_sending", enabled))

    def sdp(self) -> str:
        return ""

    def stats(self) -> _Snapshot:
        self.calls.append(("stats", None))
        return _Snapshot({"fake": True})

    def close(self) -> None:
        self.calls.append(("close", None))


class Peer:
    def __init__(
        self, nick: str, server: tuple[str, int], media: type[FakeMedia] = FakeMedia, **kw: Any
    ) -> None:
        self.events: queue.Queue[CallEvent] = queue.Queue()
        self.log: list[CallEvent] = []  # every event, in order (wait() skips some)
        self.media_cls = media
        self.medias: list[FakeMedia] = []
        self.manager = CallManager(
            nick=nick,
            password="pw",
            server=server,
            listen=("127.0.0.1", 0),
            media_factory=self._factory,
            on_event=self._on_event,
            **kw,
        )

    def _on_event(self, event: CallEvent) -> None:
        self.log.append(event)
        self.events.put(event)

    def _factory(self) -> MediaLike:
        media = self.media_cls()
        self.medias.append(media)
        return media

    def wait_hold(self, *, local: bool, remote: bool) -> None:
        while self.wait(HoldChanged) != HoldChanged(local, remote):
            pass

    def wait(self, kind: type, timeout: float = 10.0) -> Any:
        while True:
            event = self.events.get(timeout=timeout)
            if isinstance(event, kind):
                return event


@pytest.fixture
def pair(discovery_server: DiscoveryProcess) -> Iterator[tuple[Peer, Peer]]:
    alice = Peer("alice", discovery_server.address)
    bob = Peer("bob", discovery_server.address)
    try:
        alice.manager.start()
        bob.manager.start()
        yield alice, bob
    finally:
        alice.manager.close()
        bob.manager.close()


def test_media_is_driven_exactly(pair: tuple[Peer, Peer]) -> None:
    alice, bob = pair
    alice.manager.call("bob")
    assert bob.wait(IncomingCall).peer == "alice"
    assert bob.manager.state is CallState.RINGING
    bob.manager.accept()
    started = alice.wait(CallStarted)
    assert started.mode == "rtp" and '"mode": "rtp"' in started.to_json()
    assert bob.wait(CallStarted).mode == "rtp"
    # Each action waits for the other side to see it: otherwise bob's resume could overtake
    # alice's CALL_HOLD on the wire and the media would rightly see two more flow changes.
    bob.manager.hold()
    alice.wait_hold(local=False, remote=True)
    alice.manager.hold()
    bob.wait_hold(local=True, remote=True)
    bob.manager.resume()
    alice.wait_hold(local=True, remote=False)
    alice.manager.resume()
    bob.wait_hold(local=False, remote=False)
    alice.manager.hangup()  # returns once the media session is closed
    assert alice.wait(CallEnded).reason == "hangup"
    assert bob.wait(CallEnded).reason == "peer_hangup"
    bob.manager.close()
    (am,), (bm,) = alice.medias, bob.medias
    a_peer, b_peer = am.calls[1][1], bm.calls[1][1]
    assert isinstance(a_peer, PeerEndpoint) and a_peer.mode is MediaMode.RTP
    assert (a_peer.ip, a_peer.rx_port, a_peer.mode) == ("127.0.0.1", bm.port, "rtp")
    assert (b_peer.ip, b_peer.rx_port, b_peer.mode) == ("127.0.0.1", am.port, "rtp")
    assert a_peer.local_ssrc == b_peer.peer_ssrc != 0
    assert b_peer.local_ssrc == a_peer.peer_ssrc != 0
    # each side: open, connect, sending off at the first hold, on only when both resumed
    expected = [("set_sending", False), ("set_sending", True), ("stats", None), ("close", None)]
    assert [c[0] for c in am.calls[:2]] == ["open", "connect"]
    assert am.calls[2:] == expected and bm.calls[2:] == expected
    # the media's final stats, and what protected the call (issue 14: no keys here)
    assert alice.manager.last_stats == {
        "fake": True,
        "protection": "none: peer has no key in the directory",
    }
    assert a_peer.tx_key is None and a_peer.rx_key is None
    assert alice.manager.state is CallState.ENDED


def connect(alice: Peer, bob: Peer) -> None:
    alice.manager.call("bob")
    bob.wait(IncomingCall)
    bob.manager.accept()
    alice.wait(CallStarted)
    bob.wait(CallStarted)


def sent(peer: Peer, call: int = 0) -> list[bool]:
    """Every set_sending the call's media was given, in order."""
    return [arg for name, arg in peer.medias[call].calls if name == "set_sending"]


def pauses(peer: Peer) -> list[bool]:
    return [e.paused for e in peer.log if isinstance(e, PauseChanged)]


def test_pause_outlasts_holds_and_the_session_alone_drives_sending(
    pair: tuple[Peer, Peer],
) -> None:
    alice, bob = pair
    connect(alice, bob)
    alice.manager.pause(True)  # sending stops at once
    alice.manager.pause(True)  # the same choice again: nothing at all
    alice.manager.hold()
    bob.wait_hold(local=False, remote=True)
    alice.manager.resume()  # the hold ends, the pause does not: still nothing sent
    bob.wait_hold(local=False, remote=False)
    bob.manager.hold()
    alice.wait_hold(local=False, remote=True)
    alice.manager.pause(False)  # un-pausing while held sends nothing
    bob.manager.resume()
    alice.wait_hold(local=False, remote=False)  # neither held nor paused: sending again
    alice.manager.pause(True)
    alice.manager.hangup()
    bob.wait(CallEnded)
    bob.manager.close()
    assert sent(alice) == [False, True, False]
    assert pauses(alice) == [True, False, True]
    # The pause is ours alone: the peer's media only follows the holds.
    assert sent(bob) == [False, True, False, True]
    assert pauses(bob) == []
    assert alice.medias[0].calls[-2:] == [("stats", None), ("close", None)]
    assert PauseChanged(True).to_json() == '{"event": "pause", "paused": true}'


def test_pause_only_in_a_call_and_never_carried_to_the_next(pair: tuple[Peer, Peer]) -> None:
    alice, bob = pair
    with pytest.raises(CallUsageError, match="only possible in a call"):
        alice.manager.pause(True)  # idle: refused, not remembered for the next call
    alice.manager.call("bob")
    bob.wait(IncomingCall)
    for manager in (alice.manager, bob.manager):  # dialling / ringing: not in a call yet
        with pytest.raises(CallUsageError):
            manager.pause(True)
    assert bob.manager.state is CallState.RINGING  # nothing changed
    bob.manager.accept()
    alice.wait(CallStarted)
    bob.manager.pause(True)
    alice.manager.hangup()
    bob.wait(CallEnded)
    with pytest.raises(CallUsageError):
        bob.manager.pause(False)  # ended
    connect(alice, bob)  # the next call starts un-paused: its media is never told to stop
    alice.manager.hangup()
    bob.wait(CallEnded)
    bob.manager.close()
    assert sent(bob, 0) == [False] and sent(bob, 1) == []
    assert [c[0] for c in bob.medias[1].calls] == ["open", "connect", "stats", "close"]
    assert pauses(bob) == [True] and pauses(alice) == []


def test_local_misuse_raises_and_changes_nothing(pair: tuple[Peer, Peer]) -> None:
    alice, bob = pair
    for action in (alice.manager.hold, alice.manager.accept, alice.manager.hangup):
        with pytest.raises(CallUsageError):
            action()
    with pytest.raises(CallUsageError):
        alice.manager.call("alice")
    with pytest.raises(CallUsageError):
        alice.manager.call("bad nick")
    assert alice.manager.state is CallState.IDLE
    alice.manager.call("bob")
    bob.wait(IncomingCall)
    with pytest.raises(CallUsageError):
        alice.manager.call("bob")  # already calling
    with pytest.raises(CallUsageError):
        bob.manager.hold()  # ringing: not in a call yet
    assert bob.manager.state is CallState.RINGING
    bob.manager.deny()
    assert alice.wait(CallEnded).reason == "peer_denied"
    alice.manager.close()  # waits for the cleanup of the ended call
    assert alice.medias[0].calls[-1] == ("close", None)  # opened before CALLING, closed


def test_methods_refuse_to_run_on_the_event_thread(discovery_server: DiscoveryProcess) -> None:
    errors: list[Exception] = []
    done = threading.Event()
    manager: CallManager

    def on_event(event: CallEvent) -> None:
        for method in (manager.hangup, manager.close):
            try:
                method()
            except CallUsageError as exc:
                errors.append(exc)
        done.set()

    manager = CallManager(
        nick="carol", password="pw", server=discovery_server.address,
        listen=("127.0.0.1", 0), on_event=on_event,
    )  # fmt: skip
    try:
        manager.start()  # emits Registered from the loop thread
        assert done.wait(5)
        assert len(errors) == 2 and all("event thread" in str(e) for e in errors)
    finally:
        manager.close()
        manager.close()  # idempotent


class SlowOpenMedia(FakeMedia):
    """A media session whose open() takes a while (a pipeline starting its processes)."""

    def open(self) -> int:
        time.sleep(0.5)
        return super().open()


def test_close_during_accept_ends_the_call_and_the_action_fails_cleanly(
    discovery_server: DiscoveryProcess,
) -> None:
    alice = Peer("alice", discovery_server.address)
    bob = Peer("bob", discovery_server.address, media=SlowOpenMedia)
    outcome: list[BaseException | None] = []

    def accept() -> None:
        try:
            bob.manager.accept()
            outcome.append(None)
        except BaseException as exc:  # what the caller of accept() sees, whatever it is
            outcome.append(exc)

    try:
        alice.manager.start()
        bob.manager.start()
        alice.manager.call("bob")
        bob.wait(IncomingCall)
        worker = threading.Thread(target=accept)
        worker.start()
        time.sleep(0.1)  # accept() is inside the media open
        t0 = time.monotonic()
        bob.manager.close()
        worker.join(10)
        assert not worker.is_alive(), "accept() still blocked after close()"
        assert time.monotonic() - t0 < 10  # not API_TIMEOUT on a stopped loop
        # accept() lost the race: a local misuse error, never a cancellation or a loop error
        assert len(outcome) == 1 and isinstance(outcome[0], CallUsageError), outcome
        assert alice.wait(CallEnded).reason == "peer_denied"  # close() while ringing denies
        assert [c[0] for c in bob.medias[0].calls] == ["open", "stats", "close"]
        with pytest.raises(CallUsageError):
            bob.manager.hangup()  # closed
    finally:
        alice.manager.close()
        bob.manager.close()


def test_actions_racing_close_from_other_threads_only_raise_usage_errors(
    pair: tuple[Peer, Peer],
) -> None:
    alice, bob = pair
    alice.manager.call("bob")
    bob.wait(IncomingCall)
    bob.manager.accept()
    alice.wait(CallStarted)
    unexpected: list[BaseException] = []
    done = [0]  # actions that went through (hold/resume in the call)
    go = threading.Event()

    def hammer(action: Callable[[], None]) -> None:
        go.wait()
        for _ in range(100):
            try:
                action()
                done[0] += 1
            except CallUsageError:
                pass  # not allowed in this state, or the manager is closed
            except BaseException as exc:
                unexpected.append(exc)
                return

    actions = [alice.manager.hold, alice.manager.resume] * 2
    threads = [threading.Thread(target=hammer, args=(a,)) for a in actions]
    for t in threads:
        t.start()
    go.set()
    time.sleep(0.05)
    closers = [threading.Thread(target=alice.manager.close) for _ in range(2)]
    for t in closers:
        t.start()
    for t in threads + closers:
        t.join(15)
    assert not any(t.is_alive() for t in threads + closers)
    assert unexpected == []
    assert done[0] > 0  # the race really ran inside the call
    assert not alice.manager._thread.is_alive()
    assert bob.wait(CallEnded).reason == "peer_hangup"  # close() ended the call on the wire


def test_an_action_preempted_before_it_reaches_the_loop_does_not_race_close(
    pair: tuple[Peer, Peer], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Deterministic form of the race: the action's thread is preempted between checking that
    # the manager is open and queueing its coroutine, while close() runs in another thread.
    alice, _ = pair
    real_submit = asyncio.run_coroutine_threadsafe

    def preempted_submit(coro: Any, loop: asyncio.AbstractEventLoop) -> Any:
        if threading.current_thread().name == "preempted":
            time.sleep(0.5)
        return real_submit(coro, loop)

    monkeypatch.setattr(asyncio, "run_coroutine_threadsafe", preempted_submit)
    outcome: list[BaseException | None] = []

    def hold() -> None:
        try:
            alice.manager.hold()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=hold, name="preempted")
    worker.start()
    time.sleep(0.1)  # the worker is between the check and the submission
    alice.manager.close()
    worker.join(10)
    assert not worker.is_alive()
    # Not in a call: hold is refused; never "Event loop is closed" or a wait on a stopped loop.
    assert len(outcome) == 1 and isinstance(outcome[0], CallUsageError), outcome


def test_listening_on_all_addresses_registers_the_address_towards_the_server(
    discovery_server: DiscoveryProcess,
) -> None:
    # The server named by a host name: resolved (off the loop) to pick the address to register.
    manager = CallManager(
        nick="dora", password="pw", server=("localhost", discovery_server.port),
        listen=("0.0.0.0", 0), on_event=lambda event: None,
    )  # fmt: skip
    try:
        manager.start()
        assert manager.registered_ip == "127.0.0.1" and manager.registered_port > 0
        with DiscoveryClient(*discovery_server.address) as client:
            record = client.query("dora")
        assert (record.ip, record.port) == ("127.0.0.1", manager.registered_port)
    finally:
        manager.close()


def test_a_failing_reader_ends_the_call_instead_of_leaving_it_deaf(
    pair: tuple[Peer, Peer], monkeypatch: pytest.MonkeyPatch
) -> None:
    from vcall.call.codec import CallHold
    from vcall.call.session import CallSession

    alice, bob = pair
    real = CallSession._on_peer_message

    def broken(self: CallSession, msg: Any, *, fresh: bool) -> None:
        if isinstance(msg, CallHold) and self.config.nick == "alice":
            raise RuntimeError("a bug in handling CALL_HOLD")
        real(self, msg, fresh=fresh)

    monkeypatch.setattr(CallSession, "_on_peer_message", broken)
    alice.manager.call("bob")
    bob.wait(IncomingCall)
    bob.manager.accept()
    alice.wait(CallStarted)
    bob.manager.hold()
    ended = alice.wait(CallEnded)
    assert ended.reason == "failed" and "a bug in handling CALL_HOLD" in ended.detail
    assert bob.wait(CallEnded).reason == "connection_lost"  # alice released the connection
    assert alice.manager.state is CallState.ENDED
    alice.manager.close()  # waits for the cleanup of the ended call
    assert alice.medias[0].calls[-1] == ("close", None)


def test_a_failing_call_task_ends_the_call(
    pair: tuple[Peer, Peer], monkeypatch: pytest.MonkeyPatch
) -> None:
    from vcall.call.heartbeat import Heartbeat

    real = Heartbeat.send_due
    failed = threading.Lock()  # only the first side to beat fails

    def broken(self: Heartbeat, now: float) -> bool:
        if failed.acquire(blocking=False):
            raise RuntimeError("a bug in the heartbeat")
        return real(self, now)

    monkeypatch.setattr(Heartbeat, "send_due", broken)
    alice, bob = pair
    alice.manager.call("bob")
    bob.wait(IncomingCall)
    bob.manager.accept()
    ends = sorted((p.wait(CallEnded) for p in (alice, bob)), key=lambda e: e.reason)
    assert [e.reason for e in ends] == ["connection_lost", "failed"]
    assert "a bug in the heartbeat" in ends[1].detail


# -- video codec negotiation (docs/protocol.md 4.1) ----------------------------------------

H264, JPEG = ("H264",), ("JPEG",)
CLASSIC = ("V0",)


@pytest.mark.parametrize(
    ("alice_kw", "bob_kw", "codec", "mode"),
    [
        ({}, {}, "H264", "rtp"),  # both default: H264 first on both lists
        ({"codecs": JPEG}, {}, "JPEG", "rtp"),  # caller forces JPEG
        ({}, {"codecs": JPEG}, "JPEG", "rtp"),  # callee forces JPEG
        ({"codecs": H264}, {"codecs": JPEG}, "JPEG", "rtp"),  # nothing in common: JPEG
        ({}, {"codecs": H264}, "H264", "rtp"),
        ({"codecs": ("JPEG", "H264")}, {}, "H264", "rtp"),  # the callee's preference decides
        ({}, {"protocols": CLASSIC}, "JPEG", "v0"),  # classic callee
        ({"protocols": CLASSIC, "codecs": H264}, {}, "JPEG", "v0"),  # classic caller
    ],
)
def test_both_sides_use_the_negotiated_codec(
    discovery_server: DiscoveryProcess,
    alice_kw: dict[str, Any],
    bob_kw: dict[str, Any],
    codec: str,
    mode: str,
) -> None:
    alice = Peer("alice", discovery_server.address, **alice_kw)
    bob = Peer("bob", discovery_server.address, **bob_kw)
    try:
        alice.manager.start()
        bob.manager.start()
        connect(alice, bob)
        started = [next(e for e in p.log if isinstance(e, CallStarted)) for p in (alice, bob)]
        alice.manager.hangup()
        bob.wait(CallEnded)
    finally:
        alice.manager.close()
        bob.manager.close()
    endpoints = [p.medias[0].calls[1][1] for p in (alice, bob)]
    assert [(e.codec, str(e.mode)) for e in endpoints] == [(codec, mode)] * 2
    assert [(s.codec, s.mode) for s in started] == [(codec, mode)] * 2
    assert f'"codec": "{codec}"' in started[0].to_json()


@pytest.mark.parametrize(
    "codecs", [(), ("h264",), ("H.264",), ("X" * 17,), ("JPEG", "JPEG"), "JPEG", ("A",) * 9]
)
def test_bad_codec_names_are_refused_at_once(
    discovery_server: DiscoveryProcess, codecs: Any
) -> None:
    with pytest.raises(LocalProtocolError):
        CallManager(
            nick="alice", password="pw", server=discovery_server.address,
            on_event=lambda event: None, codecs=codecs,
        )  # fmt: skip


def _read_line(reader: Any) -> bytes:
    """The next extension-mode message (LF-terminated) but heartbeats."""
    while True:
        line: bytes = reader.readline()
        assert line.endswith(b"\n"), f"EOF after {line!r}"
        if not line.startswith(b"CALL_ALIVE"):
            return line


@pytest.mark.parametrize(
    ("answer", "codec", "warned"),
    [
        (b"", "JPEG", False),  # vcall before codec negotiation: no token, JPEG
        (b" codecs=H264", "H264", False),
        (b" codecs=jpeg", "JPEG", False),
        (b" codecs=VP8", "JPEG", True),  # not offered: the peer's error, the call goes on
        (b" codecs=H264,JPEG", "JPEG", True),  # a choice names one codec
        (b" codecs=H.264", "JPEG", False),  # malformed: as if absent
    ],
)
def test_caller_takes_the_callees_answer_or_falls_back_to_jpeg(
    discovery_server: DiscoveryProcess,
    caplog: pytest.LogCaptureFixture,
    answer: bytes,
    codec: str,
    warned: bool,
) -> None:
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(10)
    alice = Peer("alice", discovery_server.address)
    try:
        register_raw(discovery_server.address, "old", srv.getsockname()[1], ["V0", "V2435"])
        alice.manager.start()
        with caplog.at_level(logging.WARNING, logger="vcall.call.session"):
            alice.manager.call("old")
            conn, _ = srv.accept()
            conn.settimeout(5)
            with conn, conn.makefile("rb") as reader:
                calling = _read_line(reader)
                assert re.fullmatch(rb"CALLING alice \d+ V2435 [0-9a-f]{8} codecs=H264,JPEG "
                                   rb"features=media-state\n",
                                    calling), calling  # fmt: skip
                conn.sendall(b"CALL_ACCEPTED old 40010 V2435 0000abcd" + answer + b"\n")
                started = alice.wait(CallStarted)
                alice.manager.hangup()
                assert _read_line(reader) == b"CALL_END alice\n"
    finally:
        alice.manager.close()
        srv.close()
    peer = alice.medias[0].calls[1][1]
    assert (peer.mode, peer.peer_ssrc, peer.codec) == (MediaMode.RTP, 0xABCD, codec)
    assert (started.mode, started.codec) == ("rtp", codec)
    warnings = [r for r in caplog.records if "not one of our offer" in r.getMessage()]
    assert bool(warnings) is warned


@pytest.mark.parametrize(
    ("offer", "reply", "codec"),
    [
        (b"", b"", "JPEG"),  # an older vcall caller: JPEG, and no token in the answer
        (b" codecs=JPEG,H264", b" codecs=H264", "H264"),  # our preference decides
        (b" codecs=VP8", b" codecs=JPEG", "JPEG"),  # nothing in common
        (b" codecs=,", b"", "JPEG"),  # malformed: as if absent
    ],
)
def test_callee_answers_an_offer_only(
    discovery_server: DiscoveryProcess, offer: bytes, reply: bytes, codec: str
) -> None:
    bob = Peer("bob", discovery_server.address)
    try:
        bob.manager.start()
        port = bob.manager.registered_port
        # A caller must be in the directory, from the address it calls from (issue 14).
        with DiscoveryClient(*discovery_server.address) as client:
            client.register("old", "127.0.0.1", 40012, "pw-old", ["V0", "V2435"])
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as conn,
            conn.makefile("rb") as reader,
        ):
            conn.sendall(b"CALLING old 40012 V2435 0000abcd" + offer + b"\n")
            bob.wait(IncomingCall)
            bob.manager.accept()
            accepted = _read_line(reader)
            assert re.fullmatch(rb"CALL_ACCEPTED bob \d+ V2435 [0-9a-f]{8}" + reply + b"\n",
                                accepted), accepted  # fmt: skip
            started = bob.wait(CallStarted)
            bob.manager.hangup()
    finally:
        bob.manager.close()
    peer = bob.medias[0].calls[1][1]
    assert (peer.mode, peer.peer_ssrc, peer.codec) == (MediaMode.RTP, 0xABCD, codec)
    assert started.codec == codec


def test_set_codecs_applies_to_the_calls_that_begin_afterwards(pair: tuple[Peer, Peer]) -> None:
    alice, bob = pair

    def endpoint_codecs(call: int) -> list[str]:
        return [p.medias[call].calls[1][1].codec for p in (alice, bob)]

    def hang_up() -> None:
        alice.manager.hangup()
        bob.wait(CallEnded)
        alice.wait(CallEnded)

    connect(alice, bob)  # both default: H264
    alice.manager.set_codecs(("JPEG",))  # in a call: that call keeps its codec
    assert alice.manager.codecs == ("JPEG",)
    assert alice.manager.state is CallState.IN_CALL
    hang_up()
    assert endpoint_codecs(0) == ["H264", "H264"]
    assert [c[0] for c in alice.medias[0].calls].count("connect") == 1  # never re-negotiated

    connect(alice, bob)  # the next call offers JPEG only
    started = [next(e for e in reversed(p.log) if isinstance(e, CallStarted)) for p in (alice, bob)]
    hang_up()
    assert endpoint_codecs(1) == ["JPEG", "JPEG"]
    assert [s.codec for s in started] == ["JPEG", "JPEG"]

    # A call that rings already began: the callee answers with the preference it had then.
    alice.manager.set_codecs(["H264", "JPEG"])  # any sequence, kept as a tuple
    alice.manager.call("bob")
    bob.wait(IncomingCall)
    bob.manager.set_codecs(("JPEG",))
    bob.manager.accept()
    alice.wait(CallStarted)
    bob.wait(CallStarted)
    hang_up()
    assert endpoint_codecs(2) == ["H264", "H264"]
    assert (alice.manager.codecs, bob.manager.codecs) == (("H264", "JPEG"), ("JPEG",))


@pytest.mark.parametrize("codecs", [(), ("h264",), "JPEG", ("JPEG", "JPEG"), ("A",) * 9])
def test_set_codecs_refuses_bad_names_and_changes_nothing(
    discovery_server: DiscoveryProcess, codecs: Any
) -> None:
    manager = CallManager(
        nick="alice", password="pw", server=discovery_server.address,
        on_event=lambda event: None, codecs=("JPEG",),
    )  # fmt: skip
    try:
        manager.set_codecs(("H264",))  # before start() too: it is only a preference
        with pytest.raises(LocalProtocolError):
            manager.set_codecs(codecs)
        assert manager.codecs == ("H264",) and manager.config.codecs == ("H264",)
    finally:
        manager.close()
