"""Quality presets: the resolution, quality and frame rate a call sends at.

API::

    @dataclass(frozen=True, slots=True)
    class Preset:
        name: str; width: int; height: int; quality: int; fps: int; bitrate: int = 0
        bitrate_bps -> int               # bitrate, or 0.1 bit per pixel per frame
        size -> tuple[int, int]          # (width, height)
        frame_bytes -> int               # bytes of one BGR frame (width * height * 3)
    PRESETS: Mapping[str, Preset]        # "low", "medium", "high", "max" (in that order)
    PRESET_NAMES: tuple[str, ...]
    DEFAULT_PRESET = "medium"
    def get_preset(name: str) -> Preset  # UnknownPresetError (a ValueError) names the valid ones

Guarantees: width and height are in 1..4096, quality in 1..100 and fps an integer in 1..120
(classic V0 receivers crash on ``25.0``). ``quality`` is the codec's own quality knob (JPEG: the
IJG quality). What sizes a codec can carry is the codec's business
(``CodecInfo.check_size``: RFC 2435 needs multiples of 8 up to 2040; the media session checks a
preset against its codec); the four presets below fit every registered codec.

Why these values: low (320x240 q50 15 fps) keeps a classic V0 datagram at a few KB, safe for
receivers that read 8 KB; medium (640x480 q70 30 fps) is the classic clients' own size;
high (1280x720 q70 30 fps) is the size the latency targets are set for; max (1920x1080 q80
30 fps) uses q80 rather than q85 because above 80 a JPEG grows quickly (1.32x from q80 to q85 on
the jpeg benchmark's camera-like 1080p image: 240 KB -> 315 KB) for a difference hard to see at
1080p, and every byte costs RTP packets, bandwidth and decode time at 30 frames/s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from pipeline.errors import LocalProtocolError

MAX_DIMENSION = 4096


class UnknownPresetError(LocalProtocolError):
    """A preset name that is not one of PRESET_NAMES (a local misuse)."""


@dataclass(frozen=True, slots=True)
class Preset:
    name: str
    width: int
    height: int
    quality: int
    fps: int
    bitrate: int = 0  # bit/s for bitrate-driven codecs (H.264); 0: derived from the size

    @property
    def bitrate_bps(self) -> int:
        """The target bitrate: ``bitrate``, or 0.1 bit per pixel per frame (about what H.264
        needs for camera-like 720p30 at PSNR-Y 42 dB, measured with libx264 ultrafast)."""
        return self.bitrate or max(100_000, self.width * self.height * self.fps // 10)

    def __post_init__(self) -> None:
        for dim in (self.width, self.height):
            if not 0 < dim <= MAX_DIMENSION:
                raise ValueError(f"preset {self.name}: {dim} not in 1..{MAX_DIMENSION}")
        if not 1 <= self.quality <= 100:
            raise ValueError(f"preset {self.name}: quality {self.quality} not in 1..100")
        if not 1 <= self.fps <= 120:
            raise ValueError(f"preset {self.name}: fps {self.fps} not in 1..120")

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return (self.width, self.height)

    @property
    def frame_bytes(self) -> int:
        """Bytes of one BGR uint8 frame at this preset."""
        return self.width * self.height * 3


PRESETS: Mapping[str, Preset] = MappingProxyType(
    {
        p.name: p
        for p in (
            Preset("low", 320, 240, 50, 15, 300_000),
            Preset("medium", 640, 480, 70, 30, 800_000),
            Preset("high", 1280, 720, 70, 30, 2_000_000),
            Preset("max", 1920, 1080, 80, 30, 3_500_000),
        )
    }
)
PRESET_NAMES: tuple[str, ...] = tuple(PRESETS)
DEFAULT_PRESET = "medium"


def get_preset(name: str) -> Preset:
    """The preset called ``name``; UnknownPresetError lists the valid names otherwise."""
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise UnknownPresetError(
            f"unknown preset {name!r}; choose one of: {', '.join(PRESET_NAMES)}"
        ) from None
