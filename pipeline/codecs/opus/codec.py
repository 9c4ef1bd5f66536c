"""Opus as a vcall codec: 48 kHz mono, 20 ms frames; libopus through PyAV, RTP per RFC 7587.

API::

    OPUS_INFO: CodecInfo          # "opus", audio, PT 111, 48 kHz, rtpmap opus/48000/2 (RFC 7587 7),
                                  # fmtp minptime=10;useinbandfec=1, rtp only
    SAMPLE_RATE = 48000; FRAME_SAMPLES = 960   # 20 ms
    class OpusAudioCodec(Codec): info; audio_encoder(...); audio_decoder(backend);
                                 packetizer(max_payload); depacketizer()
                                 # encoder()/decoder() (the video seam) raise EncodeError
    class OpusEncoder:            # encode(pcm (960,) int16) -> list[bytes]; EncodeError
        bitrate; fec; packet_loss; backend = "pyav"
    class OpusDecoder:            # decode(packet) -> (n,) int16; conceal(samples) -> int16;
                                  # recover(next_packet, samples) -> int16; backend
                                  # OpusPacketError (a CodecError) on a peer's bad packet

Audio frames are numpy int16 arrays of shape (samples,), mono at 48 kHz (the shape the audio
pipeline's sources, sinks and processing use). The RTP clock is 48 kHz whatever the audio
bandwidth (RFC 7587 4.1), and the rtpmap always says 2 channels (RFC 7587 7); we send mono.

Encoder (libopus through PyAV): ``application=voip``, ``frame_duration=20``, VBR, in-band FEC
(``fec=1``) with an expected ``packet_loss`` percentage (libopus spends FEC bits only when it is
non-zero); those are the options FFmpeg's libopus wrapper exposes. DTX is not among them (the
option is left unused by this FFmpeg 8 build, checked in the tests), so vcall sends every frame.

Decoder: ``libopus`` (Debian's libopus0 through :mod:`.libopus`) is preferred because it does
libopus's real packet-loss concealment and FEC recovery, which FFmpeg's API cannot ask for.
Without it the ``pyav`` decoder decodes and conceals by repeating the last frame at half the
level per loss, then silence: a fade, said so here and in ``backend``.
"""

from __future__ import annotations

import logging
from typing import NoReturn

import av
import numpy as np

from pipeline.codecs.base import (
    Codec,
    CodecInfo,
    EncodeError,
    MediaKind,
)
from pipeline.codecs.opus.libopus import I16Array, LibopusDecoder, load
from pipeline.codecs.opus.rfc7587 import OpusDepacketizer, OpusPacketizer
from pipeline.codecs.opus.toc import MAX_DURATION, OpusPacketError, parse_packet
from pipeline.control import MediaMode

logger = logging.getLogger(__name__)

PT_OPUS = 111
SAMPLE_RATE = 48_000
FRAME_SAMPLES = 960  # 20 ms
DEFAULT_BITRATE = 32_000  # bit/s: wideband speech with room for FEC
DEFAULT_PACKET_LOSS = 10  # % expected loss told to the encoder (sizes the FEC)

OPUS_INFO = CodecInfo(
    name="opus",
    kind=MediaKind.AUDIO,
    payload_type=PT_OPUS,
    clock_rate=SAMPLE_RATE,
    channels=2,
    fmtp="minptime=10;useinbandfec=1",
    payload_format="RFC 7587",
    modes=(MediaMode.RTP,),
    intra_only=False,
    keyframe_requests=False,
    max_dimension=0,
)


class OpusEncoder:
    """Mono int16 PCM at 48 kHz, 20 ms at a time, in; Opus packets out (libopus via PyAV)."""

    backend = "pyav"

    def __init__(
        self,
        bitrate: int = DEFAULT_BITRATE,
        *,
        fec: bool = True,
        packet_loss: int = DEFAULT_PACKET_LOSS,
    ) -> None:
        if not 6_000 <= bitrate <= 510_000:
            raise EncodeError(f"Opus bitrate {bitrate} outside 6000..510000 bit/s")
        if not 0 <= packet_loss <= 100:
            raise EncodeError(f"packet loss {packet_loss} outside 0..100 %")
        self.bitrate, self.fec, self.packet_loss = bitrate, fec, packet_loss
        ctx = av.CodecContext.create("libopus", "w")
        assert isinstance(ctx, av.AudioCodecContext)
        ctx.sample_rate = SAMPLE_RATE
        ctx.layout = "mono"
        ctx.format = "s16"
        ctx.bit_rate = bitrate
        ctx.options = {
            "application": "voip",
            "frame_duration": "20",
            "fec": "1" if fec else "0",
            "packet_loss": str(packet_loss),
        }
        ctx.open()
        self.unused_options = dict(ctx.options)  # what FFmpeg did not take (empty here)
        self._ctx = ctx
        self._pts = 0

    def encode(self, pcm: I16Array) -> list[bytes]:
        """Encode one (960,) int16 frame; the packets it completed (one per frame with libopus).
        EncodeError for another shape or dtype."""
        if pcm.shape != (FRAME_SAMPLES,) or pcm.dtype != np.int16:
            raise EncodeError(
                f"Opus frames are ({FRAME_SAMPLES},) int16, not {pcm.shape} {pcm.dtype}"
            )
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        self._pts += FRAME_SAMPLES
        return [bytes(p) for p in self._ctx.encode(frame)]


class _PyavOpusDecoder:
    """FFmpeg's libopus decoder; concealment is a fade of the last frame (no PLC through FFmpeg)."""

    backend = "pyav"

    def __init__(self) -> None:
        ctx = av.CodecContext.create("libopus", "r")
        assert isinstance(ctx, av.AudioCodecContext)
        ctx.sample_rate = SAMPLE_RATE
        ctx.layout = "mono"
        ctx.open()
        self._ctx = ctx
        self._last = np.zeros(FRAME_SAMPLES, np.int16)
        self._losses = 0

    def decode(self, packet: bytes) -> I16Array:
        parse_packet(packet)
        try:
            frames = self._ctx.decode(av.Packet(packet))
        except av.FFmpegError as exc:
            raise OpusPacketError(f"FFmpeg: {exc}") from exc
        parts = [np.asarray(f.to_ndarray(), np.float32).reshape(-1) for f in frames]
        pcm = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        if pcm.dtype.kind == "f" and frames and frames[0].format.name.startswith("flt"):
            pcm = pcm * 32767.0
        out = np.clip(pcm, -32768, 32767).astype(np.int16)
        self._last, self._losses = out[-FRAME_SAMPLES:], 0
        return out

    def conceal(self, samples: int) -> I16Array:
        self._losses += 1
        gain = 0.5**self._losses if self._losses <= 4 else 0.0
        reps = -(-samples // max(1, len(self._last)))
        return (np.tile(self._last, reps)[:samples] * gain).astype(np.int16)

    def recover(self, next_packet: bytes, samples: int) -> I16Array:
        return self.conceal(samples)  # FFmpeg cannot read the FEC copy


class OpusDecoder:
    """Opus packets in, mono int16 at 48 kHz out, with loss concealment and FEC recovery."""

    def __init__(self, backend: str = "auto") -> None:
        if backend not in ("auto", "libopus", "pyav"):
            raise ValueError(f"Opus decoder backend must be auto, libopus or pyav: {backend!r}")
        if backend == "libopus" or (backend == "auto" and load() is not None):
            self._impl: LibopusDecoder | _PyavOpusDecoder = LibopusDecoder(1)
        else:
            self._impl = _PyavOpusDecoder()
        self.backend: str = self._impl.backend

    def decode(self, packet: bytes) -> I16Array:
        """One packet's samples (its own duration, up to 120 ms). OpusPacketError on garbage:
        checked against RFC 6716 3.4 first, then libopus's verdict."""
        toc = parse_packet(packet)
        if isinstance(self._impl, LibopusDecoder):
            return self._impl.decode(packet, min(toc.samples, MAX_DURATION))
        return self._impl.decode(packet)

    def conceal(self, samples: int = FRAME_SAMPLES) -> I16Array:
        """``samples`` of concealment for a lost packet (libopus PLC, or the pyav fade)."""
        return self._impl.conceal(samples)

    def recover(self, next_packet: bytes, samples: int = FRAME_SAMPLES) -> I16Array:
        """The lost packet before ``next_packet`` rebuilt from its in-band FEC (libopus), else
        concealed. Decode ``next_packet`` itself afterwards. OpusPacketError on garbage."""
        parse_packet(next_packet)
        return self._impl.recover(next_packet, samples)


class OpusAudioCodec(Codec):
    """Opus in the codec registry (RFC 7587); an audio codec, so the video factories refuse."""

    info = OPUS_INFO

    def encoder(self, backend: str = "auto") -> NoReturn:
        raise EncodeError("opus is an audio codec: use audio_encoder()")

    def decoder(self, backend: str = "auto") -> NoReturn:
        raise EncodeError("opus is an audio codec: use audio_decoder()")

    def audio_encoder(
        self,
        bitrate: int = DEFAULT_BITRATE,
        *,
        fec: bool = True,
        packet_loss: int = DEFAULT_PACKET_LOSS,
    ) -> OpusEncoder:
        return OpusEncoder(bitrate, fec=fec, packet_loss=packet_loss)

    def audio_decoder(self, backend: str = "auto") -> OpusDecoder:
        return OpusDecoder(backend)

    def packetizer(self, max_payload: int) -> OpusPacketizer:
        return OpusPacketizer(max_payload)

    def depacketizer(self) -> OpusDepacketizer:
        return OpusDepacketizer()
