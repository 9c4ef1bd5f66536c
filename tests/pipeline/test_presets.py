"""Quality presets: values, invariants and lookup errors."""

from __future__ import annotations

import dataclasses

import pytest

from pipeline.codecs.registry import get_codec
from pipeline.errors import LocalProtocolError
from pipeline.presets import (
    DEFAULT_PRESET,
    PRESET_NAMES,
    PRESETS,
    Preset,
    UnknownPresetError,
    get_preset,
)


def test_the_four_presets_exist_in_order_of_cost() -> None:
    assert PRESET_NAMES == ("low", "medium", "high", "max")
    pixels = [PRESETS[n].width * PRESETS[n].height for n in PRESET_NAMES]
    assert pixels == sorted(pixels)
    assert get_preset("high") == Preset("high", 1280, 720, 70, 30, 2_000_000)
    assert Preset("x", 1280, 720, 70, 30).bitrate_bps == 2_764_800  # 0.1 bit/pixel/frame
    assert get_preset("low").size == (320, 240)
    assert get_preset(DEFAULT_PRESET).name == DEFAULT_PRESET


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_presets_fit_rfc2435_and_classic_peers(name: str) -> None:
    preset = get_preset(name)
    get_codec("JPEG").info.check_size(preset.width, preset.height)
    assert preset.name == name
    assert preset.width % 8 == 0 and preset.height % 8 == 0
    assert preset.width <= 2040 and preset.height <= 2040
    assert isinstance(preset.fps, int)
    assert 1 <= preset.quality <= 100
    assert preset.frame_bytes == preset.width * preset.height * 3


def test_unknown_preset_names_the_valid_ones() -> None:
    with pytest.raises(UnknownPresetError, match="low, medium, high, max"):
        get_preset("ultra")
    with pytest.raises(ValueError):  # UnknownPresetError is a ValueError
        get_preset("")


def test_presets_are_frozen_and_validated() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_preset("low").quality = 99  # type: ignore[misc]
    with pytest.raises(ValueError, match=r"not in 1\.\.4096"):
        Preset("huge", 4104, 240, 50, 15)
    # The codec decides which sizes it can carry: RFC 2435 needs multiples of 8.
    odd = Preset("odd", 321, 240, 50, 15)
    with pytest.raises(LocalProtocolError, match="multiple of 8"):
        get_codec("JPEG").info.check_size(odd.width, odd.height)
    with pytest.raises(ValueError, match="quality"):
        Preset("q", 320, 240, 0, 15)
    with pytest.raises(ValueError, match="fps"):
        Preset("f", 320, 240, 50, 0)
    with pytest.raises(TypeError):
        PRESETS["new"] = Preset("new", 320, 240, 50, 15)  # type: ignore[index]
