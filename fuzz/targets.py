"""One fuzz target per parser of peer or user input, each checking the parser's own promise.

A target takes the fuzzer's bytes, feeds them to one parser and fails (raises
:class:`ContractBrokenError`, or lets an unexpected exception escape) when the parser breaks
what its module promises: raising an exception type it does not document, or a round trip that
does not hold. The promised errors are caught and ignored: garbage is supposed to give them.

``TARGETS`` maps a name to ``(function, modules)``: the modules are instrumented for coverage
by ``fuzz/run.py`` (atheris) before import. Nothing here imports atheris, so the same targets
run under the hypothesis-based replay too (``fuzz/run.py NAME --hypothesis``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable


class ContractBrokenError(AssertionError):
    """The parser broke its documented promise on this input."""


def _fdp_split(data: bytes) -> tuple[int, bytes]:
    """The first byte as a small selector, the rest as the payload."""
    return (data[0] if data else 0), data[1:]


def rtp(data: bytes) -> None:
    """pipeline.wire.rtp: RtpPacket.parse raises only RtpError; serialise/parse round-trips."""
    from pipeline.wire.rtp import RtpError, RtpPacket  # noqa: PLC0415

    try:
        packet = RtpPacket.parse(data)
    except RtpError:
        return
    again = RtpPacket.parse(packet.serialize())
    if again != packet:
        raise ContractBrokenError(f"RTP round trip changed {packet!r} into {again!r}")


def rtcp(data: bytes) -> None:
    """pipeline.wire.rtcp: parse_rtcp raises only RtcpError; parse -> serialise -> parse holds."""
    from pipeline.wire.rtcp import RtcpError, parse_rtcp, serialize_rtcp  # noqa: PLC0415

    try:
        packets = parse_rtcp(data)
    except RtcpError:
        return
    again = parse_rtcp(serialize_rtcp(packets))
    if again != packets:
        raise ContractBrokenError(f"RTCP round trip changed {packets!r} into {again!r}")


def v0(data: bytes) -> None:
    """pipeline.wire.v0: decode_v0 raises only V0Error."""
    from pipeline.wire.v0 import V0Error, decode_v0  # noqa: PLC0415

    with contextlib.suppress(V0Error):
        decode_v0(data)


def sdp(data: bytes) -> None:
    """pipeline.wire.sdp: parse_sdp raises only SdpError on any text."""
    from pipeline.wire.sdp import SdpError, parse_sdp  # noqa: PLC0415

    selector, rest = _fdp_split(data)
    encodings = ("JPEG",) if selector % 2 == 0 else ("JPEG", "H264")
    with contextlib.suppress(SdpError):
        parse_sdp(rest.decode("utf-8", "surrogateescape"), encodings)


def rtp_receive(data: bytes) -> None:
    """pipeline.transport.stream: RtpReceiver.push never raises (JPEG and H.264 depacketizers).

    The input is a run of datagrams, each prefixed by a one-byte length."""
    from pipeline.codecs.registry import get_codec  # noqa: PLC0415
    from pipeline.transport.stream import RtpReceiver  # noqa: PLC0415

    receiver = RtpReceiver()
    for name, pt in (("JPEG", 26), ("H264", 96)):
        codec = get_codec(name)
        receiver.add_stream(codec.depacketizer(), payload_type=pt, clock_rate=90000,
                            expected_ssrc=None)  # fmt: skip
    view = memoryview(data)
    now = 0.0
    while view:
        size, view = view[0], view[1:]
        receiver.push(bytes(view[:size]), now)
        view = view[size:]
        now += 0.01
    receiver.expire(now + 10.0)


def jpeg_decode(data: bytes) -> None:
    """pipeline.codecs.jpeg: the decoder raises only CodecError (JpegError) on any bytes."""
    import numpy as np  # noqa: PLC0415

    from pipeline.codecs.base import CodecError  # noqa: PLC0415
    from pipeline.codecs.registry import get_codec  # noqa: PLC0415

    decoder = get_codec("JPEG").decoder()
    try:
        width, height = decoder.frame_size(data)
        decoder.decode_rgb_into(data, np.empty((min(height, 64), min(width, 64), 3), np.uint8))
    except CodecError:
        pass


def opus_toc(data: bytes) -> None:
    """pipeline.codecs.opus.toc: parse_packet raises only OpusPacketError (RFC 6716 3.4)."""
    from pipeline.codecs.opus.toc import OpusPacketError, parse_packet  # noqa: PLC0415

    with contextlib.suppress(OpusPacketError):
        parse_packet(data)


def feedback(data: bytes) -> None:
    """pipeline.transport.feedback: unpack never raises (None for anything else)."""
    from pipeline.transport.feedback import unpack  # noqa: PLC0415

    unpack(data)


def call_control(data: bytes) -> None:
    """vcall.call.codec: decode raises only PeerProtocolError."""
    from vcall.call.codec import PeerProtocolError, decode  # noqa: PLC0415

    with contextlib.suppress(PeerProtocolError):
        decode(data)


def tls_preface(data: bytes) -> None:
    """vcall.call.secure: parse_preface raises only PeerProtocolError."""
    from vcall.call.codec import PeerProtocolError  # noqa: PLC0415
    from vcall.call.secure import parse_preface  # noqa: PLC0415

    with contextlib.suppress(PeerProtocolError):
        parse_preface(data)


def discovery_request(data: bytes) -> None:
    """vcall.discovery.codec: parse_request classifies any bytes and raises nothing."""
    from vcall.discovery.codec import parse_request  # noqa: PLC0415

    selector, rest = _fdp_split(data)
    parse_request(rest, final=bool(selector & 1))


def discovery_reply(data: bytes) -> None:
    """vcall.discovery.codec: parse_reply raises only RemoteProtocolError (e.g. ReplyError)."""
    from pipeline.errors import RemoteProtocolError  # noqa: PLC0415
    from vcall.discovery.codec import Verb, parse_reply  # noqa: PLC0415

    selector, rest = _fdp_split(data)
    verbs = list(Verb)
    with contextlib.suppress(RemoteProtocolError):
        parse_reply(rest, verbs[(selector >> 1) % len(verbs)], final=bool(selector & 1))


def config(data: bytes) -> None:
    """vcall.config: parse_config_bytes raises only ConfigError, whatever the bytes."""
    from vcall.config import ConfigError, parse_config_bytes  # noqa: PLC0415

    with contextlib.suppress(ConfigError):
        parse_config_bytes(data)


def source_spec(data: bytes) -> None:
    """pipeline.sources.video: parse_spec raises only SourceSpecError."""
    from pipeline.sources.video import SourceSpecError, parse_spec  # noqa: PLC0415

    with contextlib.suppress(SourceSpecError):
        parse_spec(data.decode("utf-8", "surrogateescape"))


Target = Callable[[bytes], None]

TARGETS: dict[str, tuple[Target, tuple[str, ...]]] = {
    "rtp": (rtp, ("pipeline.wire.rtp",)),
    "rtcp": (rtcp, ("pipeline.wire.rtcp",)),
    "v0": (v0, ("pipeline.wire.v0",)),
    "sdp": (sdp, ("pipeline.wire.sdp",)),
    "rtp_receive": (rtp_receive, ("pipeline.transport.stream", "pipeline.codecs")),
    "jpeg_decode": (jpeg_decode, ("pipeline.codecs.jpeg",)),
    "opus_toc": (opus_toc, ("pipeline.codecs.opus.toc",)),
    "feedback": (feedback, ("pipeline.transport.feedback",)),
    "call_control": (call_control, ("vcall.call.codec",)),
    "tls_preface": (tls_preface, ("vcall.call.secure",)),
    "discovery_request": (discovery_request, ("vcall.discovery.codec",)),
    "discovery_reply": (discovery_reply, ("vcall.discovery.codec",)),
    "config": (config, ("vcall.config",)),
    "source_spec": (source_spec, ("pipeline.sources.video",)),
}
