"""SDP (RFC 4566) description of one RTP video stream, for ffmpeg/GStreamer.

API::

    def build_sdp(dest_ip: str, port: int, *, payload_type: int = 26,
                  rtpmap: str = "JPEG/90000", fmtp: str | None = None,
                  session_name: str = "vcall", origin_ip: str | None = None,
                  session_id: int = 0, ssrc: int | None = None, cname: str | None = None,
                  framerate: float | None = None) -> str
    class SdpError(RemoteProtocolError)        # a description we cannot use (from a file or a peer)
    @dataclass(frozen=True, slots=True)
    class SdpVideo: address: str; port: int; payload_type: int; encoding: str
    def parse_sdp(text: str, encodings=("JPEG",)) -> SdpVideo   # the first RTP/AVP video stream
                                            # whose rtpmap names one of ``encodings`` at 90 kHz

The text describes what a receiver at ``dest_ip:port`` gets: ``m=video PORT RTP/AVP PT``,
``c=IN IP4 dest_ip``, ``a=rtpmap:PT <rtpmap>`` (the codec's ``CodecInfo.rtpmap``, e.g.
``JPEG/90000``) and ``a=fmtp:PT <fmtp>`` when the codec has format parameters; RTCP goes to
port + 1 (the RTP/AVP default). ``ffplay -protocol_whitelist file,udp,rtp -i stream.sdp`` opens
it. Lines end in CRLF as RFC 4566 says. ValueError on arguments that would make an invalid
description.

``parse_sdp`` reads what ffmpeg (``-sdp_file``), GStreamer or vcall write, leniently (LF or CRLF,
unknown lines ignored, media-level ``c=`` over session-level): the first ``m=video`` stream over
RTP/AVP whose payload type is 26 or has ``a=rtpmap:<pt> JPEG/90000``. It raises nothing but
SdpError on any text.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Collection
from dataclasses import dataclass

from pipeline.errors import RemoteProtocolError

logger = logging.getLogger(__name__)


def _clean(text: str) -> str:
    # SDP fields are single lines; a CR/LF in a name would inject extra lines.
    return "".join(c if c.isprintable() else "_" for c in text).strip() or "-"


def build_sdp(
    dest_ip: str,
    port: int,
    *,
    payload_type: int = 26,
    rtpmap: str = "JPEG/90000",
    fmtp: str | None = None,
    session_name: str = "vcall",
    origin_ip: str | None = None,
    session_id: int = 0,
    ssrc: int | None = None,
    cname: str | None = None,
    framerate: float | None = None,
) -> str:
    """The SDP text (CRLF line ends) for one RTP video stream sent to ``dest_ip:port``."""
    addr = ipaddress.ip_address(dest_ip)
    origin = ipaddress.ip_address(origin_ip) if origin_ip else addr
    if not 0 < port < 65535 or not 0 <= payload_type < 128:
        raise ValueError(f"bad port {port} or payload type {payload_type}")
    family = "IP4" if addr.version == 4 else "IP6"
    lines = [
        "v=0",
        f"o=- {session_id} 0 IN IP{origin.version} {origin}",
        f"s={_clean(session_name)}",
        f"c=IN {family} {addr}",
        "t=0 0",
        f"m=video {port} RTP/AVP {payload_type}",
        f"a=rtpmap:{payload_type} {_clean(rtpmap)}",
    ]
    if fmtp:
        lines.append(f"a=fmtp:{payload_type} {_clean(fmtp)}")
    lines.append("a=recvonly")
    if framerate:
        lines.append(f"a=framerate:{framerate:g}")
    if ssrc is not None:
        if not 0 <= ssrc < 1 << 32:
            raise ValueError(f"bad SSRC {ssrc}")
        lines.append(f"a=ssrc:{ssrc} cname:{_clean(cname or 'vcall')}")
    return "\r\n".join(lines) + "\r\n"


MAX_SDP = 64 * 1024


class SdpError(RemoteProtocolError):
    """An SDP text without a usable RTP/JPEG video stream."""


@dataclass(frozen=True, slots=True)
class SdpVideo:
    address: str  # where the stream is sent (the c= line), "" if none was given
    port: int
    payload_type: int
    encoding: str = "JPEG"  # the rtpmap encoding name, upper case (JPEG, H264)


def _small_number(text: str, digits: int) -> int | None:
    """A decimal of at most ``digits`` ASCII digits, else None (int() of a 5000-digit string
    raises a plain ValueError, not SdpError)."""
    if len(text) > digits or not (text.isascii() and text.isdecimal()):
        return None
    return int(text)


def _payload(
    formats: list[str], rtpmaps: dict[str, str], encodings: Collection[str]
) -> tuple[int, str] | None:
    for fmt in formats:
        if _small_number(fmt, 3) is None:
            continue
        encoding = rtpmaps.get(fmt, "").upper()
        name, _, clock = encoding.partition("/")
        if name in encodings and clock.startswith("90000"):
            return int(fmt), name
        if fmt == "26" and not encoding and "JPEG" in encodings:  # static, RFC 3551
            return 26, "JPEG"
    return None


def parse_sdp(text: str, encodings: Collection[str] = ("JPEG",)) -> SdpVideo:
    """The first RTP/AVP video stream whose rtpmap names one of ``encodings`` at 90 kHz (or
    static payload type 26 for JPEG). SdpError otherwise."""
    if len(text) > MAX_SDP:
        raise SdpError("SDP text too long")
    session_addr = ""
    media: list[tuple[list[str], str, dict[str, str]]] = []  # (m= fields, c= address, rtpmaps)
    for raw in text.splitlines():
        line = raw.strip()
        kind, sep, value = line.partition("=")
        if not sep or len(kind) != 1:
            continue
        if kind == "m":
            media.append((value.split(), "", {}))
        elif kind == "c":
            parts = value.split()
            addr = parts[2].split("/")[0] if len(parts) >= 3 else ""
            if media:
                media[-1] = (media[-1][0], addr, media[-1][2])
            else:
                session_addr = addr
        elif kind == "a" and value.startswith("rtpmap:") and media:
            fmt, _, encoding = value[len("rtpmap:") :].partition(" ")
            media[-1][2][fmt.strip()] = encoding.strip()
    for fields, addr, rtpmaps in media:
        if len(fields) < 4 or fields[0] != "video" or fields[2].upper() != "RTP/AVP":
            continue
        found = _payload(fields[3:], rtpmaps, {e.upper() for e in encodings})
        if found is None or not 0 <= found[0] < 128:
            continue
        pt, name = found
        port = _small_number(fields[1].split("/")[0], 5)
        if port is None or not 0 < port < 65536:
            raise SdpError(f"bad port in m=video line: {fields[1][:20]!r}")
        return SdpVideo(addr or session_addr, port, pt, name)
    raise SdpError(f"no RTP/AVP video stream with {'/'.join(encodings)} at 90 kHz in the SDP")
