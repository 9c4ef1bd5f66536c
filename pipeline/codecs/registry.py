"""The codec registry: every codec vcall can send or receive, by name.

API::

    def register(codec: Codec) -> Codec          # ValueError if the name or payload type is taken
    def get_codec(name: str) -> Codec            # UnknownCodecError (a LocalProtocolError)
    def codecs() -> tuple[Codec, ...]            # in registration order
    def for_mode(mode: MediaMode, kind: MediaKind = MediaKind.VIDEO) -> Codec
                                                 # the preferred codec a call mode carries
    DEFAULT_VIDEO = "JPEG"

After aiortc's ``codecs/__init__.py`` table and aioquic's ``register_congestion_control``: a codec
is one module and one ``register`` line below. Names are matched without regard to case
(``jpeg`` is ``JPEG``). Payload types must be unique among the registered codecs, so that the
stream layer can route by payload type.
"""

from __future__ import annotations

from pipeline.codecs.base import Codec, MediaKind
from pipeline.codecs.h264.codec import H264VideoCodec
from pipeline.codecs.jpeg.codec import JpegVideoCodec
from pipeline.codecs.opus.codec import OpusAudioCodec
from pipeline.control import MediaMode
from pipeline.errors import LocalProtocolError

DEFAULT_VIDEO = "JPEG"

_CODECS: dict[str, Codec] = {}


class UnknownCodecError(LocalProtocolError):
    """A codec name that is not registered."""


def register(codec: Codec) -> Codec:
    """Add ``codec``; ValueError if its name or payload type is already registered."""
    key = codec.info.name.upper()
    if key in _CODECS:
        raise ValueError(f"codec {codec.info.name} is already registered")
    if any(c.info.payload_type == codec.info.payload_type for c in _CODECS.values()):
        raise ValueError(f"payload type {codec.info.payload_type} is already taken")
    _CODECS[key] = codec
    return codec


def get_codec(name: str) -> Codec:
    """The codec called ``name`` (any case); UnknownCodecError names the registered ones."""
    try:
        return _CODECS[name.upper()]
    except (KeyError, AttributeError):
        known = ", ".join(c.info.name for c in _CODECS.values())
        raise UnknownCodecError(f"unknown codec {name!r}; registered: {known}") from None


def codecs() -> tuple[Codec, ...]:
    return tuple(_CODECS.values())


def for_mode(mode: MediaMode, kind: MediaKind = MediaKind.VIDEO) -> Codec:
    """The first registered codec of ``kind`` that ``mode`` carries (V0: JPEG, always)."""
    for codec in _CODECS.values():
        if codec.info.kind is kind and mode in codec.info.modes:
            return codec
    raise UnknownCodecError(f"no {kind} codec for mode {mode}")


# The table: one line per codec.
register(JpegVideoCodec())
register(H264VideoCodec())
register(OpusAudioCodec())
