"""The call screen's audio controls under Xvfb (issue 12), against a real call: the level meter
follows the microphone (a tone source) and dragging the volume slider changes what the call
plays (read back from the WAV the receiver's audio stage writes). Screenshots of both."""

from __future__ import annotations

import gc
import time
import tkinter as tk
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from pipeline.audio.sinks import read_write_times
from pipeline.audio.sources import read_wav
from pipeline.control import AudioSpec, MediaMode, PeerEndpoint, SetAudioVolume
from pipeline.session import MediaSession
from tests.gui.harness import crop
from vcall.gui.audio_controls import meter_fraction, volume_percent
from vcall.gui.call_screen import CallScreen
from vcall.gui.theme import apply_theme

Shot = Callable[[str], np.ndarray]
LOCAL = "127.0.0.1"
OK_GREEN = (0x1B, 0x5E, 0x20)  # theme "ok", light mode


def test_meter_and_percent_mapping() -> None:
    assert meter_fraction(None) == 0.0 and meter_fraction(float("nan")) == 0.0
    assert meter_fraction(-100.0) == 0.0 and meter_fraction(-60.0) == 0.0
    assert meter_fraction(-30.0) == pytest.approx(0.5) and meter_fraction(3.0) == 1.0
    assert meter_fraction(float("inf")) == 1.0 and meter_fraction(float("-inf")) == 0.0
    assert volume_percent(1.0) == 100 and volume_percent(9.0) == 150 and volume_percent(-1) == 0


@pytest.fixture
def screen(xvfb_display: str) -> Iterator[tuple[tk.Tk, CallScreen, list[float]]]:
    root = tk.Tk()
    apply_theme(root, "light")
    posted: list[float] = []  # what the client would post to the worker (ev.SetVolume)
    call = CallScreen(
        root, on_hangup=lambda: None, on_hold=lambda _h: None, on_pause=lambda _p: None,
        on_preset=lambda _n: None, on_source=lambda _s: None,
        on_display_size=lambda _a, _b: None, cameras=[], on_volume=posted.append,
    )  # fmt: skip
    call.pack(fill="both", expand=True)
    root.geometry("1200x600+0+0")
    for _ in range(20):
        root.update()
    yield root, call, posted
    root.destroy()
    del call, root
    gc.collect()


def _pump(root: tk.Tk, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        root.update()
        time.sleep(0.01)


def _drag(root: tk.Tk, slider: tk.Misc, to_value: float) -> None:
    """Press on the slider's handle and drag it to ``to_value``, as a user does."""
    x, y = slider.coords()  # type: ignore[attr-defined]
    target_x, _ = slider.coords(to_value)  # type: ignore[attr-defined]
    slider.event_generate("<Enter>", x=x, y=y)
    slider.event_generate("<ButtonPress-1>", x=x, y=y)
    step = -2 if target_x < x else 2
    for xx in range(x, target_x + step, step):
        slider.event_generate("<B1-Motion>", x=xx, y=y)
        root.update()
    slider.event_generate("<ButtonRelease-1>", x=target_x, y=y)
    root.update()


def _rms_db(pcm: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(pcm.astype(np.float64)))) / 32768))


def test_the_meter_follows_the_tone_and_the_slider_sets_the_played_level(
    screen: tuple[tk.Tk, CallScreen, list[float]], screenshot: Shot, tmp_path: Path
) -> None:
    root, call, posted = screen
    controls = call.audio_controls
    wav = tmp_path / "b_hears.wav"
    a = MediaSession(bind_ip=LOCAL, preset="low", audio=AudioSpec("tone:440", "null", False))
    b = MediaSession(
        bind_ip=LOCAL, preset="low", audio=AudioSpec("tone:1000", f"wavlog:{wav}", False)
    )
    try:
        port_a, port_b = a.open(), b.open()
        a.connect(PeerEndpoint(LOCAL, port_b, MediaMode.RTP, 11, 22, codec="JPEG"))
        b.connect(PeerEndpoint(LOCAL, port_a, MediaMode.RTP, 22, 11, codec="JPEG"))
        controls.set_level(b.stats().audio.input_dbfs)  # nothing captured yet: empty
        assert controls.level < 0.1
        # The test plays the worker: it samples b's stats off the Tk loop and hands the level
        # to the widget, as ClientApp does with each StatsUpdate.
        deadline = time.monotonic() + 10
        while controls.level < 0.6 and time.monotonic() < deadline:
            controls.set_level(b.stats().audio.input_dbfs)
            _pump(root, 0.1)
        assert controls.level == pytest.approx(meter_fraction(-13.0), abs=0.05)  # -10 dBFS sine
        shot = screenshot("meter")
        box = (
            controls.meter.winfo_rootx(), controls.meter.winfo_rooty(),
            controls.meter.winfo_width(), controls.meter.winfo_height(),
        )  # fmt: skip
        pixels = crop(shot, box).reshape(-1, 3).astype(int)
        green = (np.abs(pixels - np.array(OK_GREEN)).sum(axis=1) < 40).mean()
        assert 0.5 < green < 0.9, f"the bar fills {green:.0%} of the meter"
        _pump(root, 1.0)
        assert not posted
        heard_at = time.monotonic()
        _drag(root, controls.slider, 0.5)
        assert posted and posted[-1] == pytest.approx(0.5, abs=0.051)
        b._send(SetAudioVolume(posted[-1]), "audio")  # the worker's set_audio_volume (report)
        deadline = time.monotonic() + 5
        while b.stats().audio.volume != posted[-1] and time.monotonic() < deadline:
            _pump(root, 0.05)
        screenshot("volume-50")
        _pump(root, 1.5)
    finally:
        a.close()
        b.close()
    pcm, times = read_wav(str(wav)), read_write_times(str(wav))
    frame_at = int(np.searchsorted(times, heard_at))
    before, after = pcm[(frame_at - 40) * 960 : frame_at * 960], pcm[(frame_at + 40) * 960 :]
    expected = 20 * np.log10(posted[-1])
    assert abs((_rms_db(after) - _rms_db(before)) - expected) < 1.5
