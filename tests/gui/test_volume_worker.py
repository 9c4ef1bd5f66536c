"""The speaker volume through the worker (issue 12): the slider's SetVolume reaches the running
call's media session off the Tk thread, and the next call starts at it (``[audio] volume``)."""

from __future__ import annotations

import os
import time
from typing import Any

from pipeline.control import AudioSpec
from tests.gui.test_worker import FakeManager, FakeMedia, wait_for
from vcall.call import events as ce
from vcall.config import Config, ConfigError, parse_config
from vcall.gui import events as ev
from vcall.gui.worker import ClientWorker


class VolumeMedia(FakeMedia):
    def set_audio_volume(self, volume: float) -> None:
        self.calls.append(("volume", volume))


def test_set_volume_reaches_the_session_and_the_next_calls_spec() -> None:
    managers: list[FakeManager] = []

    def factory(**kwargs: Any) -> FakeManager:
        managers.append(FakeManager(**kwargs))
        return managers[-1]

    FakeManager.fail_start = None
    config = Config(audio_in="tone:440", audio_out="null", audio_volume=0.8)
    w = ClientWorker(config, manager_factory=factory, lister=lambda s: [])
    specs: list[AudioSpec] = []
    w._media_factory = lambda **kw: specs.append(kw["audio"])  # what a call would open
    w.start()
    try:
        w.post(ev.Login("alice", "pw", ("127.0.0.1", 8000)))
        wait_for(w, ev.UsersListed)
        manager = managers[0]
        manager.kwargs["media_factory"]()
        assert specs[-1].volume == 0.8  # the configured volume
        media = manager.media = VolumeMedia()
        manager.on_event(ce.CallStarted("bob", "rtp", "H264", "127.0.0.1", 1, 2, True, "caller"))
        attached = next(e for e in wait_for(w, ev.MediaAttached) if isinstance(e, ev.MediaAttached))
        os.close(attached.notify_fd)
        w.post(ev.SetVolume(0.5))
        w.post(ev.SetVolume(7.0))  # clamped
        deadline = time.monotonic() + 5
        while len([c for c in media.calls if c[0] == "volume"]) < 2:
            assert time.monotonic() < deadline, media.calls
            time.sleep(0.01)
        assert [c for c in media.calls if c[0] == "volume"] == [("volume", 0.5), ("volume", 1.5)]
        manager.kwargs["media_factory"]()
        assert specs[-1].volume == 1.5  # the next call starts at the slider's value
    finally:
        w.stop()


def test_the_volume_setting_is_a_percentage() -> None:
    assert parse_config({"audio": {"volume": 150}}).audio_volume == 1.5
    assert parse_config({"audio": {"volume": 0}}).audio_volume == 0.0
    for bad in (151, -1, "loud", True):
        try:
            parse_config({"audio": {"volume": bad}})
        except ConfigError as exc:
            assert "audio.volume" in str(exc)
        else:
            raise AssertionError(f"{bad!r} accepted")
