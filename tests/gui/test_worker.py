"""vcall.gui.worker with a fake call manager and fake media: command routing, event
translation, pause through the manager (never the media), and that failures come back as words
(no display, no network)."""

from __future__ import annotations

import os
import select
import threading
import time
from typing import Any

import pytest

from pipeline.presets import get_preset
from pipeline.stats import MediaStats, SessionInfo, summarise
from vcall.call import events as ce
from vcall.config import Config, State, load_state, save_state
from vcall.discovery.client import ServerUnreachable, WrongPassword
from vcall.gui import events as ev
from vcall.gui.worker import ClientWorker


class FakeMedia:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.v0 = False
        self._r, self._w = os.pipe()

    def notify_fd(self) -> int:
        return self._r

    def set_sending(self, enabled: bool) -> None:
        self.calls.append(("sending", enabled))

    def set_preset(self, name: str) -> None:
        self.calls.append(("preset", name))

    def set_source(self, spec: str) -> None:
        if spec == "file:/missing":
            raise FileNotFoundError("no such file: /missing")
        self.calls.append(("source", spec))

    def set_display_size(self, peer: tuple[int, int], me: tuple[int, int]) -> None:
        self.calls.append(("display", (peer, me)))

    def stats(self) -> MediaStats:
        info = SessionInfo(
            "connected", 5004, "rtp", "127.0.0.1:5006", True, get_preset("medium"), "pattern",
            "jpeg", 1.0, {}, (),
        )  # fmt: skip
        return summarise(info, {"display": {"fps_shown": 30.0}}, {})

    def sdp(self) -> str:
        if self.v0:
            raise RuntimeError("sdp() needs a session connected in rtp mode")
        return "v=0\r\nm=video 5004 RTP/AVP 26\r\n"

    def close(self) -> None:
        os.close(self._r)
        os.close(self._w)


class FakeManager:
    fail_start: Exception | None = None

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.on_event = kwargs["on_event"]
        self.actions: list[str] = []
        self.media: FakeMedia | None = None
        self.paused = False
        self.closed = False

    def start(self) -> None:
        if FakeManager.fail_start is not None:
            raise FakeManager.fail_start

    def _later(self, event: object) -> None:
        # CallManager delivers events from its own I/O thread.
        threading.Thread(target=self.on_event, args=(event,)).start()

    def call(self, nick: str) -> None:
        self.actions.append(f"call {nick}")
        if nick == "self":
            raise ValueError("cannot call yourself")
        self._later(ce.Outgoing(nick, "127.0.0.1", 1, True))

    def accept(self) -> None:
        self.actions.append("accept")

    def deny(self) -> None:
        self.actions.append("deny")

    def hold(self) -> None:
        self.actions.append("hold")

    def resume(self) -> None:
        self.actions.append("resume")

    def pause(self, paused: bool) -> None:
        # As CallManager: refused outside a call, PauseChanged (from its thread) on a change.
        self.actions.append(f"pause {paused}")
        if self.media is None:
            raise RuntimeError("pause is only possible in a call (state idle)")
        if paused != self.paused:
            self.paused = paused
            self._later(ce.PauseChanged(paused))

    def hangup(self) -> None:
        self.actions.append("hangup")

    def set_codecs(self, codecs: tuple[str, ...]) -> None:
        self.actions.append(f"codecs {','.join(codecs)}")

    def close(self) -> None:
        self.closed = True


def wait_for(worker: ClientWorker, kind: type, timeout: float = 5.0) -> list[ev.Event]:
    """Events until (and including) the first of ``kind``; fails after ``timeout``."""
    seen: list[ev.Event] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        select.select([worker.wake_fd], [], [], 0.1)
        for event in worker.drain():
            seen.append(event)
            if isinstance(event, kind):
                return seen
    raise AssertionError(f"no {kind.__name__} within {timeout} s; saw {seen}")


@pytest.fixture
def worker() -> Any:
    FakeManager.fail_start = None
    managers: list[FakeManager] = []

    def factory(**kwargs: Any) -> FakeManager:
        managers.append(FakeManager(**kwargs))
        return managers[-1]

    users = [ev.UserRow("bob", "127.0.0.1", 9000)]
    w = ClientWorker(Config(ring_timeout=7.0), manager_factory=factory, lister=lambda s: users)
    w.managers = managers  # type: ignore[attr-defined]
    w.start()
    yield w
    w.stop()
    assert not w.running


def test_login_lists_users_and_passes_loopback_addresses(worker: Any) -> None:
    worker.post(ev.Login("alice", "pw", ("127.0.0.1", 8000)))
    seen = wait_for(worker, ev.UsersListed)
    assert isinstance(seen[0], ev.LoggedIn)
    assert seen[-1] == ev.UsersListed((ev.UserRow("bob", "127.0.0.1", 9000),))
    kwargs = worker.managers[0].kwargs
    assert kwargs["listen"] == ("127.0.0.1", 0) and kwargs["advertise_ip"] == "127.0.0.1"
    assert kwargs["ring_timeout"] == 7.0 and kwargs["server"] == ("127.0.0.1", 8000)
    assert kwargs["codecs"] == ("H264", "JPEG")  # no codec configured: vcall's default list


def test_the_configured_codec_is_the_managers_only_one() -> None:
    managers: list[FakeManager] = []

    def factory(**kwargs: Any) -> FakeManager:
        managers.append(FakeManager(**kwargs))
        return managers[-1]

    FakeManager.fail_start = None
    w = ClientWorker(Config(codec="JPEG"), manager_factory=factory, lister=lambda s: [])
    w.start()
    try:
        w.post(ev.Login("alice", "pw", ("127.0.0.1", 8000)))
        wait_for(w, ev.UsersListed)
        assert managers[0].kwargs["codecs"] == ("JPEG",)
    finally:
        w.stop()


@pytest.mark.parametrize(
    ("exc", "needle"),
    [(WrongPassword("x"), "Wrong password for alice"), (ServerUnreachable("x"), "down")],
)
def test_login_failure_words(worker: Any, exc: Exception, needle: str) -> None:
    FakeManager.fail_start = exc
    worker.post(ev.Login("alice", "pw", ("127.0.0.1", 8000)))
    seen = wait_for(worker, ev.LoginFailed)
    assert needle in seen[-1].message
    assert worker.managers[0].closed


def test_call_flow_pause_goes_through_the_manager(worker: Any) -> None:
    worker.post(ev.Login("alice", "pw", ("127.0.0.1", 8000)))
    wait_for(worker, ev.UsersListed)
    manager: FakeManager = worker.managers[0]
    worker.post(ev.SetDisplaySize((800, 450), (240, 135)))
    worker.post(ev.Dial("bob"))
    assert wait_for(worker, ev.Dialing)[-1] == ev.Dialing("bob")
    media = manager.media = FakeMedia()
    manager.on_event(ce.CallStarted("bob", "rtp", "H264", "127.0.0.1", 1, 2, True, "caller"))
    seen = wait_for(worker, ev.Connected)
    assert seen[-1] == ev.Connected("bob", "rtp", "H264")  # the negotiated codec, for the user
    attached = next(e for e in seen if isinstance(e, ev.MediaAttached))
    assert attached.session is media and attached.notify_fd != media.notify_fd()  # a dup
    os.close(attached.notify_fd)
    assert ("display", ((800, 450), (240, 135))) in media.calls  # size given before the call
    stats = wait_for(worker, ev.StatsUpdate)[-1].stats
    assert isinstance(stats, MediaStats) and stats.fps_shown == 30.0  # passed on as is

    # Pause and hold are the manager's to combine: the worker only asks, and reports what the
    # manager says (PauseChanged), whatever the hold does.
    worker.post(ev.SetSending(False))
    assert wait_for(worker, ev.SendingChanged)[-1] == ev.SendingChanged(False)
    manager.on_event(ce.HoldChanged(True, False))
    assert wait_for(worker, ev.HoldState)[-1] == ev.HoldState(True, False)
    worker.post(ev.SetSending(True))
    assert wait_for(worker, ev.SendingChanged)[-1] == ev.SendingChanged(True)
    worker.post(ev.SetSending(False))
    assert wait_for(worker, ev.SendingChanged)[-1] == ev.SendingChanged(False)
    manager.on_event(ce.HoldChanged(False, False))
    seen = wait_for(worker, ev.HoldState)
    assert seen[-1] == ev.HoldState(False, False)
    assert not any(isinstance(e, ev.SendingChanged) for e in seen)  # the hold ending says nothing
    assert [a for a in manager.actions if a.startswith("pause")] == [
        "pause True", "pause False", "pause True",
    ]  # fmt: skip

    worker.post(ev.SetPreset("high"))
    worker.post(ev.SetSource("file:/missing"))
    seen = wait_for(worker, ev.Notice)
    assert ev.PresetChanged("high") in seen and "/missing" in seen[-1].message
    assert ("preset", "high") in media.calls

    for command in (ev.Hold(), ev.Resume(), ev.Hangup()):
        worker.post(command)
    manager.on_event(ce.CallEnded("bob", "peer_hangup"))
    seen = wait_for(worker, ev.Ended)
    assert ev.MediaDetached() in seen and seen[-1] == ev.Ended("bob hung up.", False, "peer_hangup")
    assert [a for a in manager.actions if not a.startswith("pause")] == [
        "call bob", "hold", "resume", "hangup",
    ]  # fmt: skip
    assert not any(name == "sending" for name, _ in media.calls)  # never behind its back
    media.close()


def test_pause_refused_by_the_manager_becomes_a_notice(worker: Any) -> None:
    worker.post(ev.Login("alice", "pw", ("127.0.0.1", 8000)))
    wait_for(worker, ev.UsersListed)
    worker.post(ev.SetSending(False))  # no call: the manager refuses
    seen = wait_for(worker, ev.Notice)
    assert seen[-1].error and "only possible in a call" in seen[-1].message
    assert not any(isinstance(e, ev.SendingChanged) for e in seen)
    assert worker.managers[0].actions == ["pause True"]


def test_a_silent_peer_shows_reconnecting_then_back(worker: Any) -> None:
    worker.post(ev.Login("alice", "pw", ("127.0.0.1", 8000)))
    wait_for(worker, ev.UsersListed)
    manager: FakeManager = worker.managers[0]
    manager.on_event(ce.CallStarted("bob", "rtp", "H264", "127.0.0.1", 1, 2, True, "caller"))
    manager.on_event(ce.LinkChanged("bob", True, 2.0))
    seen = wait_for(worker, ev.Notice)
    assert seen[-1] == ev.Notice("No answer from bob: reconnecting…", error=True)
    manager.on_event(ce.LinkChanged("bob", False, 3.1))
    assert wait_for(worker, ev.Notice)[-1] == ev.Notice("bob is back.")


def test_incoming_ring_and_refused_dial(worker: Any) -> None:
    worker.post(ev.Login("alice", "pw", ("127.0.0.1", 8000)))
    wait_for(worker, ev.UsersListed)
    manager: FakeManager = worker.managers[0]
    manager.on_event(ce.IncomingCall("carol", "127.0.0.1", False))
    assert wait_for(worker, ev.Ringing)[-1] == ev.Ringing("carol", 7.0)
    worker.post(ev.Deny())
    manager.on_event(ce.CallEnded("carol", "denied"))
    assert "declined the call from carol" in wait_for(worker, ev.Ended)[-1].message
    worker.post(ev.Dial("self"))
    seen = wait_for(worker, ev.Ended)
    assert seen[-1] == ev.Ended("Cannot call yourself", error=True, reason="failed")


def test_commands_before_login_become_notices(worker: Any) -> None:
    worker.post(ev.Hangup())
    assert "not logged in" in wait_for(worker, ev.Notice)[-1].message.lower()


def test_display_sizes_coalesce() -> None:
    w = ClientWorker(Config())  # not started: commands stay queued
    for i in range(50):
        w.post(ev.SetDisplaySize((i, i), (1, 1)))
    w.post(ev.Refresh())
    w.post(ev.SetDisplaySize((99, 99), (1, 1)))
    assert list(w._commands) == [ev.Refresh(), ev.SetDisplaySize((99, 99), (1, 1))]
    w.stop()


def test_stop_closes_manager_and_reports(worker: Any) -> None:
    worker.post(ev.Login("alice", "pw", ("127.0.0.1", 8000)))
    wait_for(worker, ev.UsersListed)
    worker.post(ev.Shutdown())
    wait_for(worker, ev.WorkerStopped)
    assert worker.managers[0].closed


def test_save_sdp(worker: Any, tmp_path: Any) -> None:
    target = tmp_path / "call.sdp"
    worker.post(ev.SaveSdp(str(target)))
    assert "No call in progress" in wait_for(worker, ev.Notice)[-1].message
    worker.post(ev.Login("alice", "pw", ("127.0.0.1", 8000)))
    wait_for(worker, ev.UsersListed)
    manager: FakeManager = worker.managers[0]
    media = manager.media = FakeMedia()
    manager.on_event(ce.CallStarted("bob", "rtp", "H264", "127.0.0.1", 1, 2, True, "caller"))
    attached = next(e for e in wait_for(worker, ev.Connected) if isinstance(e, ev.MediaAttached))
    os.close(attached.notify_fd)
    worker.post(ev.SaveSdp(str(target)))
    notice = wait_for(worker, ev.Notice)[-1]
    assert notice == ev.Notice(f"SDP saved to {target}.")
    assert target.read_bytes() == b"v=0\r\nm=video 5004 RTP/AVP 26\r\n"
    assert target.stat().st_mode & 0o777 == 0o600  # an SRTP call's SDP holds its key
    worker.post(ev.SaveSdp(str(tmp_path / "missing-dir" / "x.sdp")))
    assert "Cannot write" in wait_for(worker, ev.Notice)[-1].message
    media.v0 = True
    worker.post(ev.SaveSdp(str(target)))
    assert "only for RTP calls" in wait_for(worker, ev.Notice)[-1].message
    media.close()


def test_codec_preference_reaches_the_manager_and_is_remembered(tmp_path: Any) -> None:
    managers: list[FakeManager] = []

    def factory(**kwargs: Any) -> FakeManager:
        managers.append(FakeManager(**kwargs))
        return managers[-1]

    FakeManager.fail_start = None
    state = tmp_path / "state.json"
    save_state(State("alice", "127.0.0.1:8000"), state)
    w = ClientWorker(
        Config(), manager_factory=factory, lister=lambda s: [], codecs=("H264",), state_file=state
    )
    w.start()
    try:
        # Before login: kept for the manager the login makes (the start value until then).
        w.post(ev.SetCodecPreference(("JPEG",)))
        assert wait_for(w, ev.CodecPreferenceChanged)[-1] == ev.CodecPreferenceChanged(("JPEG",))
        w.post(ev.Login("alice", "pw", ("127.0.0.1", 8000)))
        wait_for(w, ev.UsersListed)
        manager = managers[0]
        assert manager.kwargs["codecs"] == ("JPEG",)
        # Logged in: straight to the manager (which applies it from the next call on).
        w.post(ev.SetCodecPreference(("H264", "JPEG")))
        seen = wait_for(w, ev.CodecPreferenceChanged)
        assert seen[-1] == ev.CodecPreferenceChanged(("H264", "JPEG"))
        assert manager.actions == ["codecs H264,JPEG"]
        # Remembered for the next start; the nick and server stay.
        assert load_state(state) == State("alice", "127.0.0.1:8000", codecs=("H264", "JPEG"))
        # A bad list is refused as a whole: a notice, nothing applied, nothing remembered.
        w.post(ev.SetCodecPreference(("h264",)))
        seen = wait_for(w, ev.Notice)
        assert seen[-1].error and not any(isinstance(e, ev.CodecPreferenceChanged) for e in seen)
        assert manager.actions == ["codecs H264,JPEG"]
        assert load_state(state).codecs == ("H264", "JPEG")
        # The next login's manager starts with the newest choice.
        w.post(ev.Logout())
        wait_for(w, ev.LoggedOut)
        w.post(ev.Login("alice", "pw", ("127.0.0.1", 8000)))
        wait_for(w, ev.UsersListed)
        assert managers[1].kwargs["codecs"] == ("H264", "JPEG")
    finally:
        w.stop()


def test_the_start_codecs_reach_the_first_manager() -> None:
    managers: list[FakeManager] = []

    def factory(**kwargs: Any) -> FakeManager:
        managers.append(FakeManager(**kwargs))
        return managers[-1]

    FakeManager.fail_start = None
    # The app resolves flag > file > remembered; the worker takes the result as given.
    w = ClientWorker(
        Config(codec="H264"), manager_factory=factory, lister=lambda s: [], codecs=("JPEG",)
    )
    w.start()
    try:
        w.post(ev.Login("alice", "pw", ("127.0.0.1", 8000)))
        wait_for(w, ev.UsersListed)
        assert managers[0].kwargs["codecs"] == ("JPEG",)
    finally:
        w.stop()
