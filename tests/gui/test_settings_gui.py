"""The Settings window chooses the microphone and speaker (issue 12): real windows under Xvfb,
PortAudio listing the devices of a private PulseAudio server (tests/audio/conftest.py), the
choice remembered in the state file across a restart and used by the next call's AudioSpec
and ring; plus the pure precedence rule (flags / config file > Settings > default)."""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.audio.conftest import PulseServer
from tests.gui.harness import Client
from tests.gui.test_ring_gui import Recorder, speaker  # noqa: F401 - the speaker fixture
from vcall.config import Config, State, audio_choice_ok, load_state, start_audio, update_state
from vcall.gui import events as ev
from vcall.gui import i18n
from vcall.gui.settings import SettingsWindow, choices
from vcall.gui.worker import ClientWorker, parse_device_list

Shot = Callable[[str], np.ndarray]
NO_SERVER = {"server_host": "127.0.0.1", "server_port": 9}  # nothing here logs in


# ------------------------------------------------------------------------- pure rules


@pytest.mark.parametrize(
    ("configured", "remembered", "expected"),
    [
        ("device", "", "device"),  # nothing said anywhere: the system default
        ("device", "device:USB headset", "device:USB headset"),  # the window decides
        ("device", "off", "off"),
        ("device:pulse", "device:USB headset", "device:pulse"),  # a named device wins
        ("off", "device:USB headset", "off"),  # so does off
        ("tone:440", "device", "tone:440"),  # and a test source
        ("wav:/tmp/x.wav", "device:pulse", "wav:/tmp/x.wav"),
    ],
)
def test_flags_and_config_win_when_they_name_something(
    configured: str, remembered: str, expected: str
) -> None:
    assert start_audio(configured, remembered) == expected


def test_remembered_choices_are_checked_and_kept(tmp_path: Path) -> None:
    assert all(audio_choice_ok(c) for c in ("", "off", "device", "device:HDA Intel: ALC (hw:0)"))
    assert not any(
        audio_choice_ok(c) for c in ("device:", "tone:440", "wav:x", "device:a\nb", "x" * 301)
    )
    path = tmp_path / "state.json"
    update_state(path, nick="ann", audio_in="off", audio_out="device:pulse")
    assert load_state(path) == State(nick="ann", audio_in="off", audio_out="device:pulse")
    with pytest.raises(ValueError, match="audio_out"):
        update_state(path, audio_out="wav:/etc/passwd")
    # A hand-edited file: a bad choice alone is dropped, the rest stays.
    path.write_text(json.dumps({"nick": "ann", "audio_in": ["x"], "audio_out": "tone:1"}))
    assert load_state(path) == State(nick="ann")


def test_combobox_rows_keep_a_device_that_is_not_plugged_in() -> None:
    rows = choices(["pulse", "default"], "device:USB headset")
    assert rows == [
        ("System default", "device"),
        ("pulse", "device:pulse"),
        ("default", "device:default"),
        ("USB headset (not found)", "device:USB headset"),
        ("Off", "off"),
    ]
    assert [spec for _label, spec in choices([], "off")] == ["device", "off"]


def test_the_device_list_parser() -> None:
    raw = json.dumps(
        [
            {"index": 0, "name": "pulse", "inputs": 32, "outputs": 32},
            {"index": 1, "name": "HDMI 0", "inputs": 0, "outputs": 8},
            {"index": 2, "name": "USB mic", "inputs": 1, "outputs": 0},
            {"index": 3, "name": "pulse", "inputs": 2, "outputs": 2},  # a name twice: once
        ]
    ).encode()
    assert parse_device_list(raw) == (("pulse", "USB mic"), ("pulse", "HDMI 0"))
    assert parse_device_list(b"[]") == ((), ())
    for bad in (b"", b"{}", b"[1]", b'[{"name": 1, "inputs": 0, "outputs": 0}]', b"\xff",
                b'[{"name": "x", "inputs": true, "outputs": 0}]', b"[" * 100_000):  # fmt: skip
        with pytest.raises(ValueError):
            parse_device_list(bad)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.from_regex(rb"\A\[(\{.{0,40}\},?){0,3}\]\Z"))
def test_the_device_list_parser_raises_only_value_error(raw: bytes) -> None:
    try:
        inputs, outputs = parse_device_list(raw)
    except ValueError:
        return
    assert all(isinstance(name, str) for name in inputs + outputs)


def test_a_failed_listing_is_said_in_words() -> None:
    def broken() -> tuple[tuple[str, ...], tuple[str, ...]]:
        raise OSError("PortAudio not initialized")

    worker = ClientWorker(Config(), device_lister=broken)
    worker.start()
    try:
        worker.post(ev.ListAudioDevices())
        deadline = time.monotonic() + 5
        events: list[ev.Event] = []
        while not any(isinstance(e, ev.AudioDevicesListed) for e in events):
            assert time.monotonic() < deadline, events
            time.sleep(0.01)
            events += worker.drain()
    finally:
        worker.stop()
    listed = [e for e in events if isinstance(e, ev.AudioDevicesListed)]
    assert listed == [ev.AudioDevicesListed((), (), "PortAudio not initialized")]


# ----------------------------------------------------------------- real windows, real audio


def open_settings(client: Client) -> SettingsWindow:
    client.app.show_settings()
    window = client.app.info_window
    assert isinstance(window, SettingsWindow)
    # Asked, not answered: the list comes from the worker's thread (at once when PortAudio
    # has started already), never from this one.
    assert window.looking
    assert window.status.cget("text") == i18n._("Looking for devices…")
    client.pump_until(window.winfo_viewable, 5, "settings window mapped")
    client.pump_until(lambda: not window.looking, 20, "the device lists")
    return window


@pytest.mark.gui
@pytest.mark.usefixtures("no_leaks")
@pytest.mark.skipif(
    not (shutil.which("pulseaudio") and shutil.which("parec")),
    reason="needs pulseaudio and parec (apt-get install pulseaudio pulseaudio-utils)",
)
def test_choose_a_speaker_keep_it_across_a_restart_and_use_it(
    xvfb_display: str,
    tmp_path: Path,
    speaker: PulseServer,  # noqa: F811 - the fixture imported above
    screenshot: Shot,
) -> None:
    state = tmp_path / "state.json"
    # PortAudio must not start in the client's process (its media stages are forked from it):
    # the list comes from a child. (Other tests of this run may have started it already.)
    portaudio_before = "sounddevice" in sys.modules
    # The config file (or --audio-in) names a test microphone: it wins, and the window says so.
    config = Config(**NO_SERVER, theme="light", audio_in="tone:440")
    client = Client(config, state, geometry="900x600+0+0")
    try:
        app = client.app
        window = open_settings(client)
        # PortAudio's own list, through the private PulseAudio server (ALSA's pulse plugin).
        assert "pulse" in window.speaker.labels and "pulse" in window.microphone.labels
        assert window.speaker.labels[0] == "System default" and window.speaker.labels[-1] == "Off"
        assert window.speaker.spec == "device" and window.microphone.spec == "device"
        assert "microphones" in window.status.cget("text")
        assert dict(window.rows)["State file"] == str(state)
        assert "--audio-in: tone:440" in window.pinned_note.cget("text")
        window.speaker.choose("pulse")
        window.microphone.choose("Off")
        client.pump(0.1)  # redrawn
        assert (window.speaker.box.get(), window.microphone.box.get()) == ("pulse", "Off")
        screenshot("settings-light")
        window.speaker.box.focus_force()
        client.key("<Return>")  # Enter applies
        client.pump_until(lambda: app.audio_choice == ("off", "device:pulse"), 5, "applied")
        assert "next call" in window.status.cget("text")
        spec = app.worker._audio_spec()  # the pinned tone, the chosen speaker
        assert (spec.source, spec.sink) == ("tone:440", "device:pulse")
        assert app.ringer is not None and app.ringer.sink_spec == "device:pulse"
        client.key("<Escape>")
        assert not window.winfo_exists() and not app._exiting
    finally:
        client.close()
    assert load_state(state).audio_out == "device:pulse"

    # A new client on the same state file (dark this time): the choice is back, shown and used.
    client = Client(Config(**NO_SERVER, theme="dark"), state, geometry="900x600+0+0")
    recorder = Recorder(speaker, tmp_path / "heard.raw")
    try:
        app = client.app
        assert app.audio_choice == ("off", "device:pulse")
        window = open_settings(client)
        assert window.speaker.box.get() == "pulse" and window.microphone.box.get() == "Off"
        client.pump(0.1)
        screenshot("settings-dark")
        client.click(window.refresh_button)  # lists again (a headset plugged in since)
        assert window.looking and "Looking for devices" in window.status.cget("text")
        client.pump_until(lambda: not window.looking, 20, "the device lists again")
        assert "pulse" in window.speaker.labels and window.speaker.box.get() == "pulse"
        assert app.worker._audio_spec() is None  # the microphone is off: a video-only call
        window.microphone.choose("System default")
        client.click(window.apply_button)
        client.pump_until(lambda: app.audio_choice == ("device", "device:pulse"), 5, "applied")
        spec = app.worker._audio_spec()  # what the next call's media session is given
        assert (spec.source, spec.sink) == ("device", "device:pulse")
        # ...and the ring plays through it, heard on the server's monitor.
        app._tone("ring")
        recorder.wait_loud(client, 0, "the ring through the chosen speaker")
        assert app.ringer is not None and app.ringer.fallback is None
        app._tone("")
        # Off: no ring tone, the bell instead; and a device gone by call time: the default.
        window.speaker.choose("Off")
        client.click(window.apply_button)
        client.pump_until(lambda: app.ringer is None, 5, "speaker off")
        assert app._bell_needed() and app.worker._audio_spec() is None
        app.worker.post(ev.SetAudioDevices("device:USB headset", "device"))
        client.pump_until(lambda: app.audio_choice[0] == "device:USB headset", 5, "applied")
        spec = app.worker._audio_spec()
        assert (spec.source, spec.sink) == ("device", "device")
        client.pump_until(
            lambda: "USB headset is not connected" in app.model.message, 5, "the fallback said"
        )
        assert app.model.message_error
        window.destroy()
        assert portaudio_before or "sounddevice" not in sys.modules
    finally:
        recorder.stop()
        client.close()


@pytest.mark.gui
@pytest.mark.usefixtures("no_leaks")
def test_the_settings_window_in_spanish(
    xvfb_display: str, tmp_path: Path, screenshot: Shot
) -> None:
    client = Client(Config(**NO_SERVER, language="es"), tmp_path / "s.json", "900x600+0+0")
    try:
        window = open_settings(client)
        assert window.title() == "Ajustes" and window.apply_button.cget("text") == "Aplicar"
        assert window.speaker.labels[0] == "Predeterminado del sistema"
        assert window.microphone.labels[-1] == "Desactivado"
        assert "Servidor de descubrimiento" in dict(window.rows)
        assert window.status.cget("text").startswith(("Encontrados", "No se pueden"))
        client.pump(0.1)
        screenshot("settings-es")
        client.key("<Escape>")
        assert not window.winfo_exists()
    finally:
        client.close()
        i18n.install("en")  # widgets built later in this process speak English again
