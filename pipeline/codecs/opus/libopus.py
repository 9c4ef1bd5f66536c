"""The few libopus decoder calls PyAV does not reach: packet-loss concealment and in-band FEC.

API::

    def load() -> ctypes.CDLL | None         # Debian's libopus0 (libopus.so.0), None if absent
    class LibopusDecoder:                    # 48 kHz, mono or stereo, int16 interleaved
        def __init__(self, channels: int = 1) -> None        # OSError if libopus is missing
        def decode(packet: bytes, max_samples: int) -> NDArray[int16]   # OpusPacketError
        def conceal(samples: int) -> NDArray[int16]           # PLC (opus_decode with no data)
        def recover(next_packet: bytes, samples: int) -> NDArray[int16]  # FEC from the next
        def close() -> None

Why a binding of its own: FFmpeg's decode API (and so PyAV) reads an empty packet as "end of
stream", so it cannot ask libopus to conceal a lost packet, nor to decode the in-band FEC copy
of a lost frame that the next packet carries (``decode_fec=1``, RFC 6716 2.1.7). These are three
C functions of libopus's stable API (opus_decoder_create/opus_decode/opus_decoder_destroy), called
through ctypes on Debian's ``libopus0``. Everything else (the encoder) goes through PyAV.

Guarantees: a negative libopus return becomes ``OpusPacketError``; buffers are sized by the
caller's cap (at most 120 ms), never by the packet.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

import numpy as np
import numpy.typing as npt

from pipeline.codecs.opus.toc import MAX_DURATION, OpusPacketError

logger = logging.getLogger(__name__)

I16Array = npt.NDArray[np.int16]
SAMPLE_RATE = 48_000
_LIB: list[ctypes.CDLL | None] = []


def load() -> ctypes.CDLL | None:
    """libopus from the system (Debian's libopus0), loaded once; None if it is not installed."""
    if not _LIB:
        name = ctypes.util.find_library("opus") or "libopus.so.0"
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            logger.info("libopus not found: Opus loss concealment falls back to a fade")
            _LIB.append(None)
            return None
        lib.opus_decoder_create.restype = ctypes.c_void_p
        lib.opus_decoder_create.argtypes = [
            ctypes.c_int32,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_int),
        ]
        lib.opus_decode.restype = ctypes.c_int
        lib.opus_decode.argtypes = [
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.c_int32,
            ctypes.POINTER(ctypes.c_int16),
            ctypes.c_int,
            ctypes.c_int,
        ]
        lib.opus_decoder_destroy.restype = None
        lib.opus_decoder_destroy.argtypes = [ctypes.c_void_p]
        lib.opus_strerror.restype = ctypes.c_char_p
        lib.opus_strerror.argtypes = [ctypes.c_int]
        _LIB.append(lib)
    return _LIB[0]


class LibopusDecoder:
    """One libopus decoder state at 48 kHz (decode, conceal and FEC share it, as they must)."""

    backend = "libopus"

    def __init__(self, channels: int = 1) -> None:
        lib = load()
        if lib is None:
            raise OSError("libopus.so.0 is not installed (Debian: libopus0)")
        if channels not in (1, 2):
            raise ValueError(f"channels must be 1 or 2, not {channels}")
        self._lib = lib
        self.channels = channels
        error = ctypes.c_int(0)
        self._state: int | None = lib.opus_decoder_create(SAMPLE_RATE, channels, error)
        if error.value != 0 or not self._state:
            raise OSError(f"opus_decoder_create failed: {self._message(error.value)}")
        self._pcm = np.zeros(MAX_DURATION * channels, np.int16)

    def _message(self, code: int) -> str:
        text: bytes | None = self._lib.opus_strerror(code)
        return text.decode() if text else str(code)

    def _call(self, data: bytes | None, samples: int, fec: int) -> I16Array:
        if self._state is None:
            raise ValueError("decoder is closed")
        samples = max(0, min(samples, MAX_DURATION))
        out = self._pcm.ctypes.data_as(ctypes.POINTER(ctypes.c_int16))
        n = self._lib.opus_decode(self._state, data, len(data) if data else 0, out, samples, fec)
        if n < 0:
            raise OpusPacketError(f"libopus: {self._message(n)}")
        return self._pcm[: n * self.channels].copy()

    def decode(self, packet: bytes, max_samples: int = MAX_DURATION) -> I16Array:
        """Decode one packet into interleaved int16 samples; OpusPacketError if libopus refuses."""
        if not packet:
            raise OpusPacketError("empty Opus packet")
        return self._call(bytes(packet), max_samples, 0)

    def conceal(self, samples: int) -> I16Array:
        """``samples`` of libopus's own concealment for a lost packet (a multiple of 2.5 ms)."""
        return self._call(None, samples, 0)

    def recover(self, next_packet: bytes, samples: int) -> I16Array:
        """The lost packet's audio from the FEC data in ``next_packet`` (RFC 6716 2.1.7); the
        decoder conceals instead when ``next_packet`` carries none. OpusPacketError."""
        if not next_packet:
            raise OpusPacketError("empty Opus packet")
        return self._call(bytes(next_packet), samples, 1)

    def close(self) -> None:
        if self._state is not None:
            self._lib.opus_decoder_destroy(self._state)
            self._state = None

    def __del__(self) -> None:
        self.close()
